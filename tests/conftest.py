"""Fixtures. Tests marked ``docker`` run against the real engine and the local runtime base
image (`make test` ensures both); the others need neither."""

from __future__ import annotations

import json
import os
import textwrap
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiodocker
import pytest
from aiohttp.test_utils import TestClient, unused_port

from edgelambda.app import create_app
from edgelambda.config import Settings
from edgelambda.containers import LABEL_STACK
from edgelambda.docker_backend import DockerBackend
from edgelambda.routing import parse_routing

TEST_FUNCTIONS = Path(__file__).parent / "functions"
REPO_ROOT = Path(__file__).parent.parent
BASE_IMAGE = os.environ.get("EDGELAMBDA_TEST_BASE_IMAGE", "edgelambda/runtime-python:local")

GatewayFactory = Callable[..., Awaitable[TestClient]]


def routing_text(functions: dict[str, dict[str, object]], routes: list[dict[str, object]]) -> str:
    """A routing.yaml body; JSON is valid YAML."""
    return json.dumps({"functions": functions, "routes": routes}, indent=2)


@pytest.fixture
async def docker() -> AsyncIterator[aiodocker.Docker]:
    client = aiodocker.Docker()
    try:
        await client.version()
    except Exception as exc:
        await client.close()
        pytest.fail(f"no Docker engine answers ({exc}); run `make test`, which starts one")
    try:
        await client.images.inspect(BASE_IMAGE)
    except aiodocker.DockerError:
        await client.close()
        pytest.fail(f"base image {BASE_IMAGE} is missing; run `make base-images`")
    yield client
    await client.close()


async def stack_containers(docker: aiodocker.Docker, stack: str) -> list[str]:
    found = await docker.containers.list(
        all=True, filters=json.dumps({"label": [f"{LABEL_STACK}={stack}"]})
    )
    return [c.id for c in found]


@pytest.fixture
async def gateway(
    docker: aiodocker.Docker,
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    tmp_path: Path,
) -> AsyncIterator[GatewayFactory]:
    """Factory: ``await gateway(routing_yaml_text, **settings)`` -> a client of a gateway
    started in-process, with its own network and stack label. On teardown it checks that the
    gateway left no container behind, then removes the network."""
    stack = f"test-{uuid.uuid4().hex[:10]}"
    network = f"edgelambda-{stack}"
    backends: list[DockerBackend] = []
    clients: list[TestClient] = []

    async def start(
        text: str, *, reachable_from_functions: bool = False, **overrides: object
    ) -> TestClient:
        routing = tmp_path / "routing.yaml"
        routing.write_text(textwrap.dedent(text))
        # Relative code paths in test tables mean the repository's (functions/hello).
        table = parse_routing(routing.read_text(), source=str(routing), base_dir=REPO_ROOT)
        server_kwargs: dict[str, object] = {}
        if reachable_from_functions:
            # Functions calling back (AWS_ENDPOINT_URL_LAMBDA) reach the gateway through the
            # network's gateway address, so listen beyond loopback, on a known port.
            server_kwargs = {"host": "0.0.0.0", "port": unused_port()}
        fields: dict[str, object] = {
            "port": server_kwargs.get("port", 8000),
            "data_dir": tmp_path / "data",
            "event_retry_delays_s": (0.2, 0.4),
            "routing_config_path": routing,
            "reload_debounce_ms": 100,
            "docker_network": network,
            "stack": stack,
            "runtime_api_port": 0,
            "runtime_images": {
                "python3.12": BASE_IMAGE,
                "python3.11": BASE_IMAGE,
                "provided.al2023": BASE_IMAGE,
            },
            "shutdown_grace_s": 5.0,
        }
        settings = Settings(**{**fields, **overrides})  # type: ignore[arg-type]
        backend = await DockerBackend.connect()
        backends.append(backend)
        client = await aiohttp_client(
            create_app(settings, table, backend), server_kwargs=server_kwargs
        )
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()
    for backend in backends:
        await backend.close()
    leftovers = await stack_containers(docker, stack)
    for container_id in leftovers:
        await docker.containers.container(container_id).delete(force=True)
    for net in await docker.networks.list(filters={"name": network}):
        await (await docker.networks.get(net["Id"])).delete()
    assert leftovers == [], f"the gateway left containers behind: {leftovers}"
