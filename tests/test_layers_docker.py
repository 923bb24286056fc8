"""Layers on the real engine: laid out under /opt as Lambda does, importable from the
function's Python as on AWS, the later layer winning, and shared between functions in the
engine's build cache."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiodocker
import pytest

from tests.conftest import BASE_IMAGE, GatewayFactory, routing_text

pytestmark = pytest.mark.docker

# Reports what it imported from the layers, what /opt holds, and where Python looks.
HANDLER = """\
import json
import sys

import from_dir
import from_zip
import shared


def handler(event, context):
    with open("/opt/etc/greeting.txt") as greeting:
        text = greeting.read().strip()
    body = {
        "from_dir": from_dir.NAME,
        "from_zip": from_zip.NAME,
        "shared": shared.WHO,
        "greeting": text,
        "sys_path": sys.path,
    }
    return {"statusCode": 200, "body": json.dumps(body)}
"""


async def _base_python(docker: aiodocker.Docker) -> str:
    """``python3.X``, the interpreter of the base image the tests run functions on."""
    version = "import sys; print(f'python{sys.version_info[0]}.{sys.version_info[1]}')"
    container = await docker.containers.run(
        {"Image": BASE_IMAGE, "Entrypoint": ["python3", "-c", version]}
    )
    try:
        await container.wait()
        return "".join(await container.log(stdout=True)).strip()
    finally:
        await container.delete(force=True)


def _files(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)


def _zip(path: Path, files: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)


def _function(name: str, layers: list[str]) -> dict[str, object]:
    return {"handler": "app.handler", "code": f"code/{name}", "layers": layers}


def _route(path: str, function: str) -> dict[str, object]:
    return {"path": path, "method": "GET", "function": function, "auth": "none"}


async def _body(client: Any, path: str) -> dict[str, Any]:
    response = await client.get(path)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = json.loads(await response.text())
    return body


async def test_a_function_imports_a_module_from_each_of_two_layers(
    built_images: Callable[[str], None],
    gateway: GatewayFactory,
    docker: aiodocker.Docker,
    tmp_path: Path,
) -> None:
    python = await _base_python(docker)
    _files(tmp_path / "code" / "layered", {"app.py": HANDLER})
    # A directory with modules under python/, and a zip with a site-packages directory.
    _files(
        tmp_path / "layers" / "common",
        {
            "python/from_dir.py": "NAME = 'a module of the directory layer'\n",
            "python/shared.py": "WHO = 'the first layer'\n",
            "etc/greeting.txt": "hello from the first layer\n",
        },
    )
    _zip(
        tmp_path / "layers" / "extra.zip",
        {f"python/lib/{python}/site-packages/from_zip.py": "NAME = 'a module of the zip layer'\n"},
    )
    built_images("edgelambda-fn/layered")
    client = await gateway(
        routing_text(
            {"layered": _function("layered", ["layers/common", "layers/extra.zip"])},
            [_route("/layered", "layered")],
        )
    )

    body = await _body(client, "/layered")

    assert body["from_dir"] == "a module of the directory layer"
    assert body["from_zip"] == "a module of the zip layer"
    assert body["greeting"] == "hello from the first layer"
    # AWS's order: the function's code first, then the layers' two directories.
    assert body["sys_path"][:3] == [
        "/var/task",
        f"/opt/python/lib/{python}/site-packages",
        "/opt/python",
    ]


async def test_the_later_layers_file_wins(
    built_images: Callable[[str], None],
    gateway: GatewayFactory,
    docker: aiodocker.Docker,
    tmp_path: Path,
) -> None:
    python = await _base_python(docker)
    _files(tmp_path / "code" / "overlaid", {"app.py": HANDLER})
    _files(
        tmp_path / "layers" / "first",
        {
            "python/from_dir.py": "NAME = 'only in the first'\n",
            "python/shared.py": "WHO = 'the first layer'\n",
            "etc/greeting.txt": "hello from the first layer\n",
        },
    )
    _zip(
        tmp_path / "layers" / "second.zip",
        {
            f"python/lib/{python}/site-packages/from_zip.py": "NAME = 'only in the second'\n",
            "python/shared.py": "WHO = 'the second layer'\n",
            "etc/greeting.txt": "hello from the second layer\n",
        },
    )
    built_images("edgelambda-fn/overlaid")
    client = await gateway(
        routing_text(
            {"overlaid": _function("overlaid", ["layers/first", "layers/second.zip"])},
            [_route("/overlaid", "overlaid")],
        )
    )

    body = await _body(client, "/overlaid")

    assert body["shared"] == "the second layer"
    assert body["greeting"] == "hello from the second layer"
    assert (body["from_dir"], body["from_zip"]) == ("only in the first", "only in the second")


async def _opt_step(docker: aiodocker.Docker, function: str) -> tuple[str, str]:
    """The id of the image step that copied the layer into /opt in ``function``'s image,
    and of the step that copied its code."""
    (image,) = await docker.images.list(filters={"reference": [f"edgelambda-fn/{function}"]})
    history = await docker.images.history(image["Id"])
    steps = {step["CreatedBy"]: step["Id"] for step in history}
    opt = [step_id for created, step_id in steps.items() if " in /opt/" in created]
    code = [step_id for created, step_id in steps.items() if " in /var/task/" in created]
    assert len(opt) == len(code) == 1, history
    return opt[0], code[0]


async def test_functions_with_the_same_layers_share_them_in_the_build_cache(
    built_images: Callable[[str], None],
    gateway: GatewayFactory,
    docker: aiodocker.Docker,
    tmp_path: Path,
) -> None:
    python = await _base_python(docker)
    _files(tmp_path / "layers" / "common", {"python/from_dir.py": "NAME = 'shared'\n"})
    _zip(tmp_path / "layers" / "extra.zip", {f"python/lib/{python}/site-packages/x.py": ""})
    functions, routes = {}, []
    for name in ("sharing-a", "sharing-b"):
        handler = f"def handler(e, c):\n    return {{'statusCode': 200, 'body': '{name}'}}\n"
        _files(tmp_path / "code" / name, {"app.py": handler})
        functions[name] = _function(name, ["layers/common"])
        routes.append(_route(f"/{name}", name))
        built_images(f"edgelambda-fn/{name}")
    client = await gateway(routing_text(functions, routes))

    for name in functions:
        response = await client.get(f"/{name}")
        assert (response.status, await response.text()) == (200, name)

    layer_a, code_a = await _opt_step(docker, "sharing-a")
    layer_b, code_b = await _opt_step(docker, "sharing-b")
    assert layer_a == layer_b != "<missing>"  # one image layer, built once
    assert code_a != code_b
