from __future__ import annotations

import io
import tarfile
from pathlib import Path

from edgelambda import images


def _code(tmp_path: Path) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "app.py").write_text("def handler(e, c):\n    return 1\n")
    (tmp_path / "pkg" / "util.py").write_text("X = 1\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"junk")
    return tmp_path


def test_digest_is_stable_and_ignores_caches(tmp_path: Path) -> None:
    code = _code(tmp_path)
    first = images.code_digest(code, "sha256:base")
    (code / "__pycache__" / "other.pyc").write_bytes(b"more junk")

    assert images.code_digest(code, "sha256:base") == first


def test_digest_changes_with_code_and_base_image(tmp_path: Path) -> None:
    code = _code(tmp_path)
    first = images.code_digest(code, "sha256:base")

    assert images.code_digest(code, "sha256:other") != first
    (code / "pkg" / "util.py").write_text("X = 2\n")
    assert images.code_digest(code, "sha256:base") != first


def test_build_context_holds_dockerfile_and_readable_code(tmp_path: Path) -> None:
    code = _code(tmp_path)

    with tarfile.open(fileobj=io.BytesIO(images.build_context(code, "base:1"))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        dockerfile = tar.extractfile("Dockerfile")
        assert dockerfile is not None
        assert dockerfile.read().decode() == "FROM base:1\nCOPY code/ /var/task/\n"

    assert set(members) == {"Dockerfile", "code", "code/app.py", "code/pkg/util.py"}
    assert members["code/app.py"].mode == 0o644
    assert members["code/app.py"].uid == 0


def test_image_tag_is_a_valid_repository_name() -> None:
    assert images.image_tag("Hello_World", "abc") == "edgelambda-fn/hello_world:abc"
    assert images.image_tag("my fn!", "abc") == "edgelambda-fn/my-fn:abc"
