"""Function images: a content hash of a function's code and a Docker build context for it.

The code reaches containers inside an image built from a tar of the code directory, never
through a bind mount, so the gateway can itself run in a container or inside DinD.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

# Bump when the generated Dockerfile changes, so every function image is rebuilt.
RECIPE_VERSION = "2"
IGNORED_NAMES = frozenset({"__pycache__", ".git", ".venv", ".pytest_cache", ".DS_Store"})
TASK_ROOT = "/var/task"


def code_files(code_dir: Path) -> Iterator[Path]:
    """Files of a code directory in a stable order, without caches and VCS data."""
    for path in sorted(code_dir.rglob("*")):
        relative = path.relative_to(code_dir)
        if IGNORED_NAMES.intersection(relative.parts) or path.suffix == ".pyc":
            continue
        if path.is_file():
            yield path


def code_digest(code_dir: Path, base_image_id: str) -> str:
    """A short hash of everything that ends up in the function's image."""
    digest = hashlib.sha256(f"{RECIPE_VERSION}\0{base_image_id}\0".encode())
    for path in code_files(code_dir):
        is_executable = path.stat().st_mode & 0o111 != 0
        digest.update(f"{path.relative_to(code_dir).as_posix()}\0{is_executable}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def image_tag(function_name: str, digest: str) -> str:
    """``edgelambda-fn/<name>:<digest>``; Docker repository names are lower-case."""
    repository = re.sub(r"[^a-z0-9._-]+", "-", function_name.lower()).strip("-._") or "function"
    return f"edgelambda-fn/{repository}:{digest}"


REQUIREMENTS = "requirements.txt"


def dockerfile(base_image: str, *, has_requirements: bool) -> str:
    """The function image: the base plus the code, and its requirements installed next to
    it as AWS documents for container images (`pip install -r ... --target /var/task`)."""
    lines = [f"FROM {base_image}", f"COPY code/ {TASK_ROOT}/"]
    if has_requirements:
        lines.append(
            "RUN python3 -m pip install --no-cache-dir --disable-pip-version-check"
            f" -r {TASK_ROOT}/{REQUIREMENTS} --target {TASK_ROOT}"
        )
    return "\n".join(lines) + "\n"


def build_context(code_dir: Path, base_image: str) -> bytes:
    """A tar holding a generated Dockerfile and the code under ``code/``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        has_requirements = (code_dir / REQUIREMENTS).is_file()
        _add_bytes(
            tar, "Dockerfile", dockerfile(base_image, has_requirements=has_requirements).encode()
        )
        _add_dir(tar, "code", 0o755)
        for path in code_files(code_dir):
            info = tar.gettarinfo(
                str(path), arcname=f"code/{path.relative_to(code_dir).as_posix()}"
            )
            # World-readable so the unprivileged sandbox user can read root-owned code.
            info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    return buffer.getvalue()


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
