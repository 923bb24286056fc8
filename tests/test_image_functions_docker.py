"""Container-image functions on the real engine: an image the gateway builds from a Dockerfile
directory (rebuilt when its files change) and an image the user built, each run through the
gateway under the same hardening as every function (read-only root, writable /tmp)."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiodocker
import pytest
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from edgelambda.containers import LABEL_IMAGE
from edgelambda.gateway import SERVER_KEY
from tests.conftest import BASE_IMAGE, GatewayFactory, routing_text, stack_containers

pytestmark = pytest.mark.docker

# Reports how its filesystem is mounted and what writing to it does, as the sandbox user.
PROBE = """\
import errno
import json
import os


def _mount_options(target):
    with open("/proc/mounts") as mounts:
        for line in mounts:
            _, mount_point, _, options, *_ = line.split()
            if mount_point == target:
                found = options.split(",")
    return found


def _write(path):
    try:
        with open(path, "w") as file:
            file.write("probe")
        with open(path) as file:
            return file.read()
    except OSError as exc:
        return errno.errorcode[exc.errno]


def handler(event, context):
    body = {
        "answer": ANSWER,
        "uid": os.getuid(),
        "root": _mount_options("/"),
        "tmp": _mount_options("/tmp"),
        "write_root": _write("/probe"),
        "write_task": _write("/var/task/probe"),
        "write_tmp": _write("/tmp/probe"),
    }
    return {"statusCode": 200, "body": json.dumps(body)}
"""

# The handler is named by the image's CMD: the routing file names none.
DOCKERFILE = f'FROM {BASE_IMAGE}\nCOPY app.py /var/task/\nCMD ["app.handler"]\n'


def _image_dir(root: Path, answer: str, dockerfile: str = "Dockerfile") -> Path:
    directory = root / "images" / "probe"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / dockerfile).write_text(DOCKERFILE)
    (directory / "app.py").write_text(f"ANSWER = {answer!r}\n{PROBE}")
    return directory


def _routing(**function: object) -> str:
    route = {"path": "/probe", "method": "GET", "function": "probe", "auth": "none"}
    return routing_text({"probe": function}, [route])


async def _probe(client: TestClient) -> dict[str, Any]:
    response = await client.get("/probe")
    assert response.status == 200, await response.text()
    body: dict[str, Any] = json.loads(await response.text())
    return body


def _assert_hardened(body: dict[str, Any]) -> None:
    assert body["uid"] == 993  # never root
    assert "ro" in body["root"]
    assert (body["write_root"], body["write_task"]) == ("EROFS", "EROFS")
    assert "rw" in body["tmp"]
    assert body["write_tmp"] == "probe"


async def test_an_image_built_from_a_directory_runs_under_the_read_only_root(
    built_images: Callable[[str], None],
    gateway: GatewayFactory,
    docker: aiodocker.Docker,
    tmp_path: Path,
) -> None:
    _image_dir(tmp_path, "built from a directory")
    built_images("edgelambda-fn/probe")
    client = await gateway(_routing(image="./images/probe"))

    body = await _probe(client)

    assert body["answer"] == "built from a directory"
    _assert_hardened(body)
    (container_id,) = await stack_containers(docker, client.app[SERVER_KEY].settings.stack)
    info = await docker.containers.container(container_id).show()
    assert info["Config"]["Labels"][LABEL_IMAGE].startswith("edgelambda-fn/probe:")
    assert info["HostConfig"]["ReadonlyRootfs"] is True


async def test_an_image_directory_is_rebuilt_when_its_files_change(
    built_images: Callable[[str], None], gateway: GatewayFactory, tmp_path: Path
) -> None:
    directory = _image_dir(tmp_path, "first")
    built_images("edgelambda-fn/probe")
    client = await gateway(_routing(image="./images/probe"))
    assert (await _probe(client))["answer"] == "first"

    (directory / "app.py").write_text(f"ANSWER = 'edited'\n{PROBE}")

    deadline = time.monotonic() + 20
    while (await _probe(client))["answer"] != "edited":
        assert time.monotonic() < deadline, "the edited image was never served"
        await asyncio.sleep(0.2)


async def test_dockerfile_names_the_file_to_build(
    built_images: Callable[[str], None], gateway: GatewayFactory, tmp_path: Path
) -> None:
    directory = _image_dir(tmp_path, "from lambda.Dockerfile", dockerfile="lambda.Dockerfile")
    (directory / "Dockerfile").write_text("FROM edgelambda/does-not-exist:1\n")
    built_images("edgelambda-fn/probe")
    client = await gateway(_routing(image="./images/probe", dockerfile="lambda.Dockerfile"))

    assert (await _probe(client))["answer"] == "from lambda.Dockerfile"


async def test_a_missing_dockerfile_fails_the_first_call_at_once(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    (tmp_path / "images" / "empty").mkdir(parents=True)
    client = await gateway(_routing(image="./images/empty"))

    started = time.monotonic()
    with capture_logs() as logs:
        response = await client.get("/probe")

    assert response.status == 502
    assert time.monotonic() - started < 5
    failures = [e["error"] for e in logs if e["event"] == "cold start failed"]
    assert f"image directory {tmp_path / 'images' / 'empty'} has no Dockerfile" in failures[0]


async def _build(docker: aiodocker.Docker, tag: str, files: dict[str, str]) -> None:
    """Build ``files`` (a Dockerfile among them) as the user would, outside the gateway."""
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(text.encode()))
    context.seek(0)
    output = await docker.images.build(
        fileobj=context, encoding="application/x-tar", tag=tag, rm=True, forcerm=True
    )
    assert not [line for line in output if "error" in line], output


async def test_an_image_reference_runs_with_its_own_cmd(
    built_images: Callable[[str], None],
    gateway: GatewayFactory,
    docker: aiodocker.Docker,
) -> None:
    repository = f"edgelambda-test/image-{uuid.uuid4().hex[:8]}"
    built_images(repository)
    await _build(
        docker,
        f"{repository}:1",
        {"Dockerfile": DOCKERFILE, "app.py": f"ANSWER = 'built by the user'\n{PROBE}"},
    )
    client = await gateway(_routing(image=f"{repository}:1"))

    body = await _probe(client)

    assert body["answer"] == "built by the user"
    _assert_hardened(body)
