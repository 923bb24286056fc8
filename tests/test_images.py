"""Packing a code directory into a build context: what goes in, the caps, what is refused,
and a digest that is the hash of the very tar a build sends."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgelambda import images
from edgelambda.errors import CodeError

LIMITS = images.CodeLimits()


def _code(tmp_path: Path) -> Path:
    code = tmp_path / "code"
    (code / "pkg").mkdir(parents=True)
    (code / "app.py").write_text("def handler(e, c):\n    return 1\n")
    (code / "pkg" / "util.py").write_text("X = 1\n")
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"junk")
    return code


def _build(
    code: Path, base_id: str = "sha256:base", limits: images.CodeLimits = LIMITS
) -> images.BuildContext:
    return images.build_context(code, "base:1", base_image_id=base_id, limits=limits)


def _digest(code: Path, base_id: str = "sha256:base") -> str:
    with _build(code, base_id) as context:
        return context.digest


def _members(context: images.BuildContext) -> dict[str, bytes | None]:
    with tarfile.open(fileobj=context.file) as tar:
        return {
            member.name: (handle.read() if (handle := tar.extractfile(member)) else None)
            for member in tar.getmembers()
        }


def test_digest_is_stable_and_ignores_caches(tmp_path: Path) -> None:
    code = _code(tmp_path)
    first = _digest(code)
    (code / "__pycache__" / "other.pyc").write_bytes(b"more junk")
    os.utime(code / "app.py", (1, 1))  # times are not content

    assert _digest(code) == first


def test_digest_changes_with_code_and_base_image(tmp_path: Path) -> None:
    code = _code(tmp_path)
    first = _digest(code)

    assert _digest(code, "sha256:other") != first
    (code / "pkg" / "util.py").write_text("X = 2\n")
    assert _digest(code) != first
    (code / "pkg" / "util.py").write_text("X = 1\n")
    (code / "pkg" / "util.py").chmod(0o755)
    assert _digest(code) != first


def test_the_digest_is_the_hash_of_the_bytes_sent(tmp_path: Path) -> None:
    with _build(_code(tmp_path)) as context:
        sent = context.file.read()  # what the engine reads

        assert context.digest == hashlib.sha256(sent).hexdigest()[:16]


def test_code_edited_while_packed_is_tagged_by_what_was_packed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = _code(tmp_path)
    listed = images.code_files

    def edited_once_listed(code_dir: Path) -> Iterator[tuple[str, Path]]:
        files = list(listed(code_dir))  # the walk is done; now an editor saves a file
        (code_dir / "pkg" / "util.py").write_text("X = 'edited'\n")
        yield from files

    monkeypatch.setattr(images, "code_files", edited_once_listed)
    with _build(code) as context:
        members = _members(context)
        context.file.seek(0)
        sent_digest = hashlib.sha256(context.file.read()).hexdigest()[:16]
    monkeypatch.undo()

    assert members["code/pkg/util.py"] == b"X = 'edited'\n"
    # The tag names what the tar holds: the same as a quiet build of the edited tree.
    assert context.digest == sent_digest == _digest(code)


def test_build_context_holds_dockerfile_and_readable_code(tmp_path: Path) -> None:
    with _build(_code(tmp_path)) as context, tarfile.open(fileobj=context.file) as tar:
        members = {m.name: m for m in tar.getmembers()}
        dockerfile = tar.extractfile("Dockerfile")
        assert dockerfile is not None
        assert dockerfile.read().decode() == (
            "FROM base:1\nLABEL edgelambda.base-image-id=sha256:base\nCOPY code/ /var/task/\n"
        )

    assert set(members) == {"Dockerfile", "code", "code/app.py", "code/pkg/util.py"}
    assert members["code/app.py"].mode == 0o644
    assert (members["code/app.py"].uid, members["code/app.py"].mtime) == (0, 0)


def test_a_symlink_to_a_file_inside_is_packed_as_that_file(tmp_path: Path) -> None:
    code = _code(tmp_path)
    (code / "link.py").symlink_to(code / "pkg" / "util.py")

    with _build(code) as context, tarfile.open(fileobj=context.file) as tar:
        member = tar.getmember("code/link.py")
        handle = tar.extractfile(member)
        assert member.isreg()
        assert handle is not None
        assert handle.read() == b"X = 1\n"


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("/etc/hostname", "symlink leaving the code directory"),
        ("/proc/self/mem", "symlink leaving the code directory"),  # unreadable, even for root
        ("missing.py", "symlink to nothing readable"),
        ("pkg", "is not a regular file (a directory)"),
    ],
)
def test_symlinks_leaving_or_not_to_a_file_are_refused(
    tmp_path: Path, target: str, problem: str
) -> None:
    code = _code(tmp_path)
    (code / "link").symlink_to(target)

    with pytest.raises(CodeError, match=re.escape(problem)) as caught:
        _build(code)

    assert str(code / "link") in str(caught.value)
    assert caught.value.status == 502


def test_a_pipe_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    code = _code(tmp_path)
    os.mkfifo(code / "pipe")

    with pytest.raises(CodeError, match=r"pipe is not a regular file \(a pipe\)"):
        _build(code)


def test_a_socket_is_refused(tmp_path: Path) -> None:
    code = _code(tmp_path)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(code / "s.sock"))

        with pytest.raises(CodeError, match=r"not a regular file \(a socket\)"):
            _build(code)


def test_a_file_gone_or_unreadable_is_a_code_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = _code(tmp_path)
    listed = images.code_files

    def vanishing(code_dir: Path) -> Iterator[tuple[str, Path]]:
        files = list(listed(code_dir))
        (code_dir / "app.py").unlink()
        yield from files

    monkeypatch.setattr(images, "code_files", vanishing)
    with pytest.raises(CodeError, match=r"cannot read .*app.py: No such file"):
        _build(code)


def test_a_missing_code_directory_is_a_code_error(tmp_path: Path) -> None:
    with pytest.raises(CodeError, match="does not exist or is not a directory"):
        _build(tmp_path / "nothing")


def test_the_file_count_is_capped(tmp_path: Path) -> None:
    code = _code(tmp_path)  # two files

    with _build(code, limits=images.CodeLimits(max_files=2)):
        pass
    with pytest.raises(CodeError, match=r"more than 1 files \(EDGELAMBDA_CODE_MAX_FILES\)"):
        _build(code, limits=images.CodeLimits(max_files=1))


def test_the_total_size_is_capped(tmp_path: Path) -> None:
    code = _code(tmp_path)
    (code / "big.bin").write_bytes(b"\0" * (1024 * 1024))
    size = sum(path.stat().st_size for _, path in images.code_files(code))

    with _build(code, limits=images.CodeLimits(max_bytes=size)):
        pass
    with pytest.raises(CodeError, match=r"more than 1 MB \(EDGELAMBDA_CODE_MAX_MB\)"):
        _build(code, limits=images.CodeLimits(max_bytes=size - 1))


def test_image_tag_is_a_valid_repository_name() -> None:
    assert images.image_tag("Hello_World", "abc") == "edgelambda-fn/hello_world:abc"
    assert images.image_tag("my fn!", "abc") == "edgelambda-fn/my-fn:abc"
