"""Function images: the Docker build context of a function's code and layers (or of an
image function's Dockerfile directory), and the tag it is built under.

The code reaches containers inside an image built from a tar of the code directory, never
through a bind mount, so the gateway can itself run in a container or inside DinD. The tar is
made once; its digest is the hash of those exact bytes, and those bytes are what the engine
receives, so code edited while it is packed can never be stored under another content's tag.

Layers are laid out under /opt as Lambda does: each one's content extracted there in the
listed order, a later layer's file replacing an earlier one's ("Packaging your layer
content", AWS Lambda Developer Guide:
https://docs.aws.amazon.com/lambda/latest/dg/packaging-layers.html). They are copied before
the code, so functions on one base image with the same layers share those image layers in the
engine's build cache.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO

from edgelambda.errors import CodeError

# Caches, VCS data and SAM CLI's build directory (aws-lambda-builders leaves .aws-sam out of
# a package too: PythonPipWorkflow.EXCLUDED_FILES).
IGNORED_NAMES = frozenset(
    {"__pycache__", ".git", ".venv", ".pytest_cache", ".DS_Store", ".aws-sam"}
)
# Where inline code goes: CloudFormation writes Code.ZipFile to a file named index
# (AWS::Lambda::Function Code), so its handler is index.<function>.
INLINE_MODULE_FILE = "index.py"
TASK_ROOT = "/var/task"
LAYERS_ROOT = "/opt"
REQUIREMENTS = "requirements.txt"
LABEL_BASE_IMAGE_ID = "edgelambda.base-image-id"
SPOOL_BYTES = 8 * 1024 * 1024  # a context larger than this is spooled to a temporary file
_CHUNK_BYTES = 1024 * 1024
# O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: a file swapped for a
# symlink after the walk looked at it is refused, not followed.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class CodeLimits:
    """Bounds on what a code directory may put into an image."""

    max_bytes: int = 250 * 1024 * 1024  # AWS's limit for an unzipped deployment package
    max_files: int = 20_000


class BuildContext:
    """A build context tar, its digest, and the Dockerfile in it to build. The tar lives in
    memory up to :data:`SPOOL_BYTES`, in a temporary file beyond; :meth:`close` releases it."""

    def __init__(self, file: IO[bytes], digest: str, dockerfile: str = "Dockerfile") -> None:
        self.file = file
        self.digest = digest
        self.dockerfile = dockerfile

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> BuildContext:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def image_tag(function_name: str, digest: str) -> str:
    """``edgelambda-fn/<name>:<digest>``; Docker repository names are lower-case."""
    repository = re.sub(r"[^a-z0-9._-]+", "-", function_name.lower()).strip("-._") or "function"
    return f"edgelambda-fn/{repository}:{digest}"


def dockerfile(
    base_image: str, base_image_id: str, *, has_requirements: bool, layer_count: int = 0
) -> str:
    """The function image: the base, its layers under /opt, the code, and its requirements
    installed next to it as AWS documents for container images (`pip install -r ...
    --target /var/task`). The base image's id is a label, so a new base under the same name
    changes the context's digest and the function is rebuilt on it. The layers come first:
    the engine's build cache then shares them between functions on the same base."""
    lines = [
        f"FROM {base_image}",
        f"LABEL {LABEL_BASE_IMAGE_ID}={base_image_id}",
        *(f"COPY layers/{index}/ {LAYERS_ROOT}/" for index in range(layer_count)),
        f"COPY code/ {TASK_ROOT}/",
    ]
    if has_requirements:
        lines.append(
            "RUN python3 -m pip install --no-cache-dir --disable-pip-version-check"
            f" -r {TASK_ROOT}/{REQUIREMENTS} --target {TASK_ROOT}"
        )
    return "\n".join(lines) + "\n"


def build_context(
    code_dir: Path,
    base_image: str,
    *,
    base_image_id: str,
    limits: CodeLimits,
    layers: Sequence[Path] = (),
    inline: tuple[str, str] | None = None,
) -> BuildContext:
    """A tar holding a generated Dockerfile, each layer under ``layers/<index>/`` and the
    code under ``code/`` (the code directory's files, or the one ``inline`` file: its name
    and text), and the hash of its bytes. Raises :class:`CodeError` when the code or a layer
    cannot be packed, or all together pass a cap (AWS counts a function's unzipped size with
    its layers)."""
    recipe = dockerfile(
        base_image,
        base_image_id,
        has_requirements=inline is None and (code_dir / REQUIREMENTS).is_file(),
        layer_count=len(layers),
    )
    what = f"code directory {code_dir}" + (" with its layers" if layers else "")
    budget = _Budget(limits, what)

    def write(tar: tarfile.TarFile) -> None:
        _add_bytes(tar, "Dockerfile", recipe.encode())
        for index, layer in enumerate(layers):
            _add_layer(tar, f"layers/{index}", layer, budget)
        _add_dir(tar, "code", 0o755)
        if inline is not None:
            name, text = inline
            _add_bytes(tar, f"code/{name}", text.encode())
        else:
            _add_tree(tar, "code/", code_dir, code_files(code_dir), budget)

    return _pack(write)


def image_context(build_dir: Path, dockerfile_name: str, *, limits: CodeLimits) -> BuildContext:
    """A tar of an image function's build directory as it is (its own Dockerfile, named
    ``dockerfile_name``, included), and the hash of its bytes. Raises :class:`CodeError`
    when the directory or its Dockerfile is missing, or it cannot be packed or passes a
    cap."""
    if not build_dir.is_dir():
        raise CodeError(f"image directory {build_dir} does not exist or is not a directory")
    if not (build_dir / dockerfile_name).is_file():
        raise CodeError(f"image directory {build_dir} has no Dockerfile {dockerfile_name}")
    budget = _Budget(limits, f"image directory {build_dir}")

    def write(tar: tarfile.TarFile) -> None:
        _add_tree(tar, "", build_dir, _walk(build_dir, ""), budget)

    context = _pack(write)
    context.dockerfile = dockerfile_name
    return context


def _pack(write: Callable[[tarfile.TarFile], None]) -> BuildContext:
    """The tar ``write`` fills, spooled, and its digest."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115  # returned
    try:
        with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tar:
            write(tar)
        digest = _digest(spool)
    except BaseException:
        spool.close()
        raise
    return BuildContext(spool, digest)


def code_files(code_dir: Path) -> Iterator[tuple[str, Path]]:
    """``(relative posix path, path)`` of every entry of a code directory that is not a
    directory, in a stable order, without caches and VCS data. Raises :class:`CodeError`
    when the directory cannot be listed."""
    if not code_dir.is_dir():
        raise CodeError(f"code directory {code_dir} does not exist or is not a directory")
    yield from _walk(code_dir, "")


def _walk(directory: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError as exc:
        raise CodeError(f"cannot list {directory}: {exc.strerror or exc}") from exc
    for entry in entries:
        if entry.name in IGNORED_NAMES or entry.name.endswith(".pyc"):
            continue
        relative = f"{prefix}{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path), f"{relative}/")
        else:
            yield relative, Path(entry.path)


class _Budget:
    """The files and bytes a build context may still take, counted across everything packed
    into it; :meth:`take` raises :class:`CodeError` past a cap."""

    def __init__(self, limits: CodeLimits, what: str) -> None:
        self._limits = limits
        self._what = what
        self._files = 0
        self._bytes = 0

    def take(self, size: int) -> None:
        self._files, self._bytes = self._files + 1, self._bytes + size
        if self._files > self._limits.max_files:
            raise CodeError(
                f"{self._what} has more than {self._limits.max_files} files"
                " (EDGELAMBDA_CODE_MAX_FILES)"
            )
        if self._bytes > self._limits.max_bytes:
            raise CodeError(
                f"{self._what} holds more than {self._limits.max_bytes // (1024 * 1024)} MB"
                " (EDGELAMBDA_CODE_MAX_MB)"
            )


def _add_tree(
    tar: tarfile.TarFile,
    prefix: str,
    directory: Path,
    files: Iterable[tuple[str, Path]],
    budget: _Budget,
) -> None:
    """``files`` of ``directory`` into the tar under ``prefix``, regular files only."""
    root = directory.resolve()
    for relative, path in files:
        with _open_regular(path, root) as handle:
            size = os.fstat(handle.fileno()).st_size
            budget.take(size)
            _add_file(tar, f"{prefix}{relative}", handle, size, path)


def _add_layer(tar: tarfile.TarFile, name: str, layer: Path, budget: _Budget) -> None:
    """A layer's content under ``name/``: a directory's files, or a .zip file's."""
    _add_dir(tar, name, 0o755)
    if layer.is_dir():
        _add_tree(tar, f"{name}/", layer, _walk(layer, ""), budget)
    elif layer.is_file() and layer.suffix.lower() == ".zip":
        _add_zip(tar, f"{name}/", layer, budget)
    else:
        raise CodeError(f"layer {layer} does not exist or is neither a directory nor a .zip file")


def _add_zip(tar: tarfile.TarFile, prefix: str, archive: Path, budget: _Budget) -> None:
    """A .zip layer's entries under ``prefix``, as safely as a code directory's files: only
    regular files (directories are implied), none outside the layer, within the caps."""
    try:
        with _open_archive(archive) as handle, zipfile.ZipFile(handle) as zipped:
            for info in zipped.infolist():
                name = _zip_member_name(archive, info)
                if name is None:
                    continue
                budget.take(info.file_size)  # the most a member's reader ever returns
                with zipped.open(info) as member:
                    _add_zip_member(tar, f"{prefix}{name}", info, member, archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise CodeError(f"layer {archive} is not a readable .zip file: {exc}") from exc
    except RuntimeError as exc:  # an encrypted member
        raise CodeError(f"layer {archive}: {exc}") from exc


def _open_archive(archive: Path) -> IO[bytes]:
    """The .zip file (through a symlink, as a code directory may be one) opened when it is
    a regular file."""
    try:
        target = archive.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise CodeError(f"cannot read layer {archive}: {exc}") from exc
    return _open_regular(target, target.parent)


def _zip_member_name(archive: Path, info: zipfile.ZipInfo) -> str | None:
    """The member's path inside the layer, or None for a directory entry (nothing is
    written for one). An absolute path, a ``..`` or anything but a regular file is refused
    (:class:`CodeError`)."""
    if info.is_dir():
        return None
    path = PurePosixPath(info.filename)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise CodeError(f"layer {archive}: {info.filename!r} would land outside the layer")
    mode = info.external_attr >> 16  # Unix mode, when a Unix zip wrote one
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        raise CodeError(
            f"layer {archive}: {info.filename!r} is not a regular file ({_zip_kind(mode)});"
            " only files are packed"
        )
    return str(path)


def _zip_kind(mode: int) -> str:
    return "a symlink" if stat.S_ISLNK(mode) else _kind(mode)


def _add_zip_member(
    tar: tarfile.TarFile, name: str, info: zipfile.ZipInfo, member: IO[bytes], archive: Path
) -> None:
    entry = tarfile.TarInfo(name)
    entry.size = info.file_size
    entry.mode = 0o755 if (info.external_attr >> 16) & 0o111 else 0o644
    # A member shorter than it claims ends the copy with OSError; its checksum is checked
    # as it is read (zipfile.BadZipFile).
    try:
        tar.addfile(entry, member)
    except OSError as exc:
        raise CodeError(f"layer {archive}: {info.filename!r} is damaged: {exc}") from exc


def _open_regular(path: Path, root: Path) -> IO[bytes]:
    """``path`` opened for reading when it is a regular file, or a symlink to one inside
    ``root``; a device, socket, pipe or symlink elsewhere is refused (:class:`CodeError`).
    A symlink is stored as the file it names: an image holds regular files only."""
    target = path
    if path.is_symlink():
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
            raise CodeError(f"{path} is a symlink to nothing readable: {exc}") from exc
        if not target.is_relative_to(root):
            raise CodeError(f"{path} is a symlink leaving the code directory (to {target})")
    try:
        _check_regular(path, os.lstat(target).st_mode)  # a socket cannot even be opened
        descriptor = os.open(target, _OPEN_FLAGS)
    except OSError as exc:
        raise CodeError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        _check_regular(path, os.fstat(descriptor).st_mode)  # not swapped since the lstat
    except CodeError:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "rb")


def _check_regular(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise CodeError(f"{path} is not a regular file ({_kind(mode)}); only files are packed")


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _kind(mode: int) -> str:
    return next((name for is_kind, name in _KINDS if is_kind(mode)), "a special file")


def _add_file(tar: tarfile.TarFile, name: str, handle: IO[bytes], size: int, path: Path) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    # World-readable so the unprivileged sandbox user can read root-owned code.
    info.mode = 0o755 if os.fstat(handle.fileno()).st_mode & 0o111 else 0o644
    try:
        # Exactly `size` bytes are copied: a file that grew meanwhile is cut at the size it
        # had when opened (the tar stays consistent), one that shrank is an error.
        tar.addfile(info, handle)
    except OSError as exc:
        raise CodeError(f"cannot read {path}: {exc}") from exc


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    tar.addfile(info)


def _digest(spool: IO[bytes]) -> str:
    """A short hash of the tar exactly as written, rewound for sending."""
    spool.seek(0)
    digest = hashlib.sha256()
    while chunk := spool.read(_CHUNK_BYTES):
        digest.update(chunk)
    spool.seek(0)
    return digest.hexdigest()[:16]
