"""Packing a code directory into a build context: what goes in, the caps, what is refused,
and a digest that is the hash of the very tar a build sends."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import stat
import tarfile
import zipfile
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


# --- layers --------------------------------------------------------------------------------


def _layer(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    layer = tmp_path / name
    for relative, text in files.items():
        (layer / relative).parent.mkdir(parents=True, exist_ok=True)
        (layer / relative).write_text(text)
    return layer


def _zip(path: Path, members: dict[str, bytes], *, modes: dict[str, int] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 2, 3, 4, 5))
            if modes and name in modes:
                info.external_attr = modes[name] << 16
            archive.writestr(info, data)
    return path


def _build_with(
    code: Path, *layers: Path, limits: images.CodeLimits = LIMITS
) -> images.BuildContext:
    return images.build_context(
        code, "base:1", base_image_id="sha256:base", limits=limits, layers=layers
    )


def _layered_digest(code: Path, *layers: Path) -> str:
    with _build_with(code, *layers) as context:
        return context.digest


def test_layers_are_copied_under_opt_in_order_before_the_code(tmp_path: Path) -> None:
    first = _layer(tmp_path, "first", {"python/common.py": "A = 1\n"})
    second = _zip(tmp_path / "second.zip", {"python/lib/python3.11/site-packages/b.py": b"B = 2\n"})

    with _build_with(_code(tmp_path), first, second) as context:
        members = _members(context)

    assert members["Dockerfile"] == (
        b"FROM base:1\nLABEL edgelambda.base-image-id=sha256:base\n"
        b"COPY layers/0/ /opt/\nCOPY layers/1/ /opt/\nCOPY code/ /var/task/\n"
    )
    assert members["layers/0/python/common.py"] == b"A = 1\n"
    assert members["layers/1/python/lib/python3.11/site-packages/b.py"] == b"B = 2\n"
    assert members["code/app.py"] is not None


def test_a_layer_change_changes_the_digest(tmp_path: Path) -> None:
    code, layer = _code(tmp_path), _layer(tmp_path, "layer", {"python/m.py": "X = 1\n"})
    archive = _zip(tmp_path / "l.zip", {"python/z.py": b"Z = 1\n"})
    first = _layered_digest(code, layer, archive)

    assert _layered_digest(code, layer, archive) == first
    assert _layered_digest(code, archive, layer) != first  # the order is part of the image
    assert _layered_digest(code) != first
    (layer / "python" / "m.py").write_text("X = 2\n")
    assert _layered_digest(code, layer, archive) != first
    (layer / "python" / "m.py").write_text("X = 1\n")
    _zip(archive, {"python/z.py": b"Z = 2\n"})
    assert _layered_digest(code, layer, archive) != first


def test_zip_members_keep_their_executable_bit_and_nothing_else(tmp_path: Path) -> None:
    archive = _zip(
        tmp_path / "tools.zip",
        {"bin/": b"", "bin/tool": b"#!/bin/sh\n", "./python/m.py": b"M = 1\n"},
        modes={"bin/tool": stat.S_IFREG | 0o700},
    )

    with (
        _build_with(_code(tmp_path), archive) as context,
        tarfile.open(fileobj=context.file) as tar,
    ):
        layer = {m.name: m for m in tar.getmembers() if m.name.startswith("layers/")}

    assert set(layer) == {"layers/0", "layers/0/bin/tool", "layers/0/python/m.py"}
    assert layer["layers/0/bin/tool"].mode == 0o755
    assert layer["layers/0/python/m.py"].mode == 0o644
    assert (layer["layers/0/bin/tool"].uid, layer["layers/0/bin/tool"].mtime) == (0, 0)


@pytest.mark.parametrize(
    ("name", "mode", "problem"),
    [
        ("/etc/evil.py", 0, "'/etc/evil.py' would land outside the layer"),
        ("python/../../evil.py", 0, "would land outside the layer"),
        (
            "python/link.py",
            stat.S_IFLNK | 0o777,
            "'python/link.py' is not a regular file (a symlink)",
        ),
        ("python/fifo", stat.S_IFIFO | 0o644, "is not a regular file (a pipe)"),
    ],
)
def test_zip_members_that_are_not_files_inside_the_layer_are_refused(
    tmp_path: Path, name: str, mode: int, problem: str
) -> None:
    archive = _zip(
        tmp_path / "bad.zip", {"python/ok.py": b"", name: b"/etc/passwd"}, modes={name: mode}
    )

    with pytest.raises(CodeError, match=re.escape(problem)) as caught:
        _build_with(_code(tmp_path), archive)

    assert str(archive) in str(caught.value)


def test_a_file_that_is_no_zip_is_a_code_error(tmp_path: Path) -> None:
    archive = tmp_path / "layer.zip"
    archive.write_bytes(b"PK but not really")

    with pytest.raises(CodeError, match=r"layer .*layer.zip is not a readable .zip file"):
        _build_with(_code(tmp_path), archive)


def test_a_damaged_zip_member_is_a_code_error(tmp_path: Path) -> None:
    archive = tmp_path / "layer.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zipped:
        zipped.writestr("python/m.py", b"M = 'original'\n")
    damaged = archive.read_bytes().replace(b"original", b"tampered")
    archive.write_bytes(damaged)

    with pytest.raises(CodeError, match=r"layer .*layer.zip.*Bad CRC-32"):
        _build_with(_code(tmp_path), archive)


def test_a_missing_layer_is_a_code_error(tmp_path: Path) -> None:
    with pytest.raises(CodeError, match=r"layer .*gone does not exist or is neither"):
        _build_with(_code(tmp_path), tmp_path / "gone")


def test_a_layer_symlink_leaving_the_layer_is_refused(tmp_path: Path) -> None:
    layer = _layer(tmp_path, "layer", {"python/m.py": "M = 1\n"})
    (layer / "python" / "secret").symlink_to("/etc/hostname")

    with pytest.raises(CodeError, match="symlink leaving the code directory"):
        _build_with(_code(tmp_path), layer)


def test_layers_count_toward_the_code_caps(tmp_path: Path) -> None:
    code = _code(tmp_path)  # two files
    layer = _layer(tmp_path, "layer", {"python/m.py": "M = 1\n"})
    archive = _zip(tmp_path / "big.zip", {"blob": b"\0" * (1024 * 1024)})

    with _build_with(code, layer, limits=images.CodeLimits(max_files=3)):
        pass
    with pytest.raises(CodeError, match=r"with its layers has more than 2 files"):
        _build_with(code, layer, limits=images.CodeLimits(max_files=2))
    # A zip member's declared size counts before a byte of it is read.
    with pytest.raises(CodeError, match=r"with its layers holds more than 1 MB"):
        _build_with(code, archive, limits=images.CodeLimits(max_bytes=1024 * 1024))


# --- image functions built from a directory -----------------------------------------------


def _image_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "image"
    (directory / "src").mkdir(parents=True)
    (directory / "Dockerfile").write_text("FROM base:1\nCOPY src/ /var/task/\n")
    (directory / "lambda.Dockerfile").write_text("FROM other:2\n")
    (directory / "src" / "app.py").write_text("def handler(e, c):\n    return 1\n")
    (directory / "__pycache__").mkdir()
    return directory


def test_an_image_directory_is_packed_as_it_is(tmp_path: Path) -> None:
    with images.image_context(_image_dir(tmp_path), "Dockerfile", limits=LIMITS) as context:
        members = _members(context)

    assert context.dockerfile == "Dockerfile"
    assert set(members) == {"Dockerfile", "lambda.Dockerfile", "src/app.py"}
    assert members["Dockerfile"] == b"FROM base:1\nCOPY src/ /var/task/\n"


def test_an_image_directory_digest_follows_its_files(tmp_path: Path) -> None:
    directory = _image_dir(tmp_path)

    def digest(dockerfile: str = "Dockerfile") -> str:
        with images.image_context(directory, dockerfile, limits=LIMITS) as context:
            return context.digest

    first = digest()
    assert digest() == first
    assert digest("lambda.Dockerfile") == first  # the same bytes; the build names the file
    (directory / "src" / "app.py").write_text("def handler(e, c):\n    return 2\n")
    assert digest() != first


def test_an_image_directory_must_exist_and_hold_its_dockerfile(tmp_path: Path) -> None:
    directory = _image_dir(tmp_path)

    with pytest.raises(CodeError, match=r"image directory .*nothing does not exist"):
        images.image_context(tmp_path / "nothing", "Dockerfile", limits=LIMITS)
    with pytest.raises(CodeError, match=r"image directory .*image has no Dockerfile other.df"):
        images.image_context(directory, "other.df", limits=LIMITS)


def test_an_image_directory_is_packed_as_safely_as_code(tmp_path: Path) -> None:
    directory = _image_dir(tmp_path)
    (directory / "leak").symlink_to("/etc/hostname")

    with pytest.raises(CodeError, match="symlink leaving the code directory"):
        images.image_context(directory, "Dockerfile", limits=LIMITS)
    (directory / "leak").unlink()
    with pytest.raises(CodeError, match=r"image directory .* has more than 2 files"):
        images.image_context(directory, "Dockerfile", limits=images.CodeLimits(max_files=2))


def test_inline_code_is_written_as_the_handler_s_module(tmp_path: Path) -> None:
    code = _code(tmp_path)  # ignored: the inline module is the code
    (code / "requirements.txt").write_text("requests\n")
    source = "def handler(event, context):\n    return 1\n"

    with images.build_context(
        code, "base:1", base_image_id="sha256:base", limits=LIMITS, inline=("index.py", source)
    ) as context:
        members = _members(context)

    assert members["code/index.py"] == source.encode()
    assert not any(name.startswith("code/app") for name in members)
    assert b"pip install" not in (members["Dockerfile"] or b"")
