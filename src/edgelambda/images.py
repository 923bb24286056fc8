"""Function images: the Docker build context of a function's code, and the tag it is built
under.

The code reaches containers inside an image built from a tar of the code directory, never
through a bind mount, so the gateway can itself run in a container or inside DinD. The tar is
made once; its digest is the hash of those exact bytes, and those bytes are what the engine
receives, so code edited while it is packed can never be stored under another content's tag.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from edgelambda.errors import CodeError

IGNORED_NAMES = frozenset({"__pycache__", ".git", ".venv", ".pytest_cache", ".DS_Store"})
TASK_ROOT = "/var/task"
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
    """A build context tar and its digest. The tar lives in memory up to
    :data:`SPOOL_BYTES`, in a temporary file beyond; :meth:`close` releases it."""

    def __init__(self, file: IO[bytes], digest: str) -> None:
        self.file = file
        self.digest = digest

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


def dockerfile(base_image: str, base_image_id: str, *, has_requirements: bool) -> str:
    """The function image: the base plus the code, and its requirements installed next to
    it as AWS documents for container images (`pip install -r ... --target /var/task`). The
    base image's id is a label, so a new base under the same name changes the context's
    digest and the function is rebuilt on it."""
    lines = [
        f"FROM {base_image}",
        f"LABEL {LABEL_BASE_IMAGE_ID}={base_image_id}",
        f"COPY code/ {TASK_ROOT}/",
    ]
    if has_requirements:
        lines.append(
            "RUN python3 -m pip install --no-cache-dir --disable-pip-version-check"
            f" -r {TASK_ROOT}/{REQUIREMENTS} --target {TASK_ROOT}"
        )
    return "\n".join(lines) + "\n"


def build_context(
    code_dir: Path, base_image: str, *, base_image_id: str, limits: CodeLimits
) -> BuildContext:
    """A tar holding a generated Dockerfile and the code under ``code/``, and the hash of
    its bytes. Raises :class:`CodeError` when the code cannot be packed or passes a cap."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115  # returned
    try:
        _write_tar(spool, code_dir, base_image, base_image_id, limits)
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


def _write_tar(
    out: IO[bytes], code_dir: Path, base_image: str, base_image_id: str, limits: CodeLimits
) -> None:
    root = code_dir.resolve()
    has_requirements = (code_dir / REQUIREMENTS).is_file()
    recipe = dockerfile(base_image, base_image_id, has_requirements=has_requirements)
    files = total_bytes = 0
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "Dockerfile", recipe.encode())
        _add_dir(tar, "code", 0o755)
        for relative, path in code_files(code_dir):
            with _open_regular(path, root) as handle:
                size = os.fstat(handle.fileno()).st_size
                files, total_bytes = files + 1, total_bytes + size
                _check_limits(code_dir, limits, files=files, total_bytes=total_bytes)
                _add_file(tar, f"code/{relative}", handle, size, path)


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


def _check_limits(code_dir: Path, limits: CodeLimits, *, files: int, total_bytes: int) -> None:
    if files > limits.max_files:
        raise CodeError(
            f"code directory {code_dir} has more than {limits.max_files} files"
            " (EDGELAMBDA_CODE_MAX_FILES)"
        )
    if total_bytes > limits.max_bytes:
        raise CodeError(
            f"code directory {code_dir} holds more than {limits.max_bytes // (1024 * 1024)} MB"
            " (EDGELAMBDA_CODE_MAX_MB)"
        )


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
