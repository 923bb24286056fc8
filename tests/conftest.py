"""Fixtures. Tests marked ``docker`` run against the real engine and the local runtime base
image (`make test` ensures both); the others need neither."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiodocker
import aiohttp
import pytest
from aiohttp.test_utils import TestClient, unused_port

from edgelambda.config import Settings
from edgelambda.containers import LABEL_STACK, ContainerBackend
from edgelambda.docker_backend import DockerBackend
from edgelambda.gateway import SERVER_KEY, create_app
from edgelambda.logs import RecordingSink
from edgelambda.routing_file import load_routing
from edgelambda.swarm_backend import SwarmBackend
from tests.swarm_cluster import delete_network, single_node_swarm, stack_services

TEST_FUNCTIONS = Path(__file__).parent / "functions"
REPO_ROOT = Path(__file__).parent.parent
BASE_IMAGE = os.environ.get("EDGELAMBDA_TEST_BASE_IMAGE", "edgelambda/runtime-python:local")
# What a box's functions/ holds: the repository's example (hello) and the test functions.
FUNCTION_SOURCES = (REPO_ROOT / "functions", TEST_FUNCTIONS)

GatewayFactory = Callable[..., Awaitable[TestClient]]


def function_code(name: str) -> str:
    """The ``code:`` of function directory `name` in a box (:func:`lay_out_box`): relative to
    the routing file, as a user writes it."""
    return f"functions/{name}"


def lay_out_box(box: Path, routing_name: str, text: str) -> Path:
    """Lay ``box`` out as a deployment: the routing file `routing_name` (returned) with, beside
    it, ``functions/`` holding a copy of each function in :data:`FUNCTION_SOURCES`, since
    ``code:`` must lie inside the routing file's directory. The copy is made once per box, so
    the gateways of one test share it, edits included."""
    functions = box / "functions"
    if not functions.exists():
        for source in FUNCTION_SOURCES:
            shutil.copytree(source, functions, dirs_exist_ok=True)
    routing = box / routing_name
    routing.write_text(text)
    return routing


def routing_text(functions: dict[str, dict[str, object]], routes: list[dict[str, object]]) -> str:
    """A routing.yaml body; JSON is valid YAML."""
    return json.dumps({"functions": functions, "routes": routes}, indent=2)


def one_function(code: Path | str, *, path: str = "/fn", **function: object) -> str:
    """A routing.yaml with one function `fn` (handler app.handler) on a public GET route."""
    spec = {"handler": "app.handler", "code": str(code), **function}
    route = {"path": path, "method": "GET", "function": "fn", "auth": "none"}
    return routing_text({"fn": spec}, [route])


def lifecycle_routing(**function: object) -> str:
    """:func:`one_function` serving the `lifecycle` test function, which reports (or sleeps,
    crashes, runs out of memory) as its ``?action=`` asks."""
    return one_function(function_code("lifecycle"), **function)


async def report(client: TestClient, query: str = "") -> dict[str, object]:
    """What the `lifecycle` function at /fn reports: its container, uid, invocation count."""
    response = await client.get(f"/fn{query}")
    assert response.status == 200, await response.text()
    body: dict[str, object] = await response.json()
    return body


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


@pytest.fixture
async def built_images(docker: aiodocker.Docker) -> AsyncIterator[Callable[[str], None]]:
    """Factory: ``built_images(repository)`` marks every image of ``repository`` (a
    function's ``edgelambda-fn/<name>``, or one the test builds) for removal after the test.
    Ask for it before ``gateway``, so the gateway's containers are gone by then."""
    repositories: list[str] = []
    yield repositories.append
    for repository in repositories:
        found = await docker.images.list(filters={"reference": [repository]})
        for image in found:
            await docker.images.delete(image["Id"], force=True)


async def stack_containers(docker: aiodocker.Docker, stack: str) -> list[str]:
    found = await docker.containers.list(
        all=True, filters=json.dumps({"label": [f"{LABEL_STACK}={stack}"]})
    )
    return [c.id for c in found]


async def remove_container(docker: aiodocker.Docker, container_id: str) -> None:
    """Force-remove a leftover; one the engine is already removing (a request the killed
    gateway sent last) or has removed is gone either way."""
    try:
        await docker.containers.container(container_id).delete(force=True)
    except aiodocker.DockerError as exc:
        if exc.status not in (404, 409):
            raise


# The shared parts of the suite run against both container backends: a test marked with
# this gets the `gateway` fixture once with the Docker backend and once with the Swarm
# backend on a single-node swarm of this engine. The swarm's sandboxes sit on a swarm-scoped
# bridge network there, so that the in-process gateway on the host reaches them (and tells
# them apart by address) as it does the Docker backend's; the overlay network between nodes
# is what test_swarm_cluster_docker.py covers.
BOTH_BACKENDS = pytest.mark.parametrize("backend_kind", ["docker", "swarm"], indirect=True)


@pytest.fixture
def backend_kind(request: pytest.FixtureRequest) -> str:
    """The container backend the `gateway` fixture uses: docker unless parametrised."""
    return str(getattr(request, "param", "docker"))


@asynccontextmanager
async def sandbox_network(docker: aiodocker.Docker, backend_kind: str) -> AsyncIterator[str]:
    """The name of the network the test's sandboxes join: one the Docker backend creates,
    or a swarm-scoped bridge on a single-node swarm made for the test; removed after."""
    if backend_kind == "swarm":
        async with single_node_swarm(docker, bridge_anchor=BASE_IMAGE) as network:
            yield network
    else:
        network = f"edgelambda-test-{uuid.uuid4().hex[:10]}"
        try:
            yield network
        finally:
            await delete_network(docker, network)  # the backend made it


async def connect_backend(backend_kind: str) -> ContainerBackend:
    if backend_kind == "swarm":
        return await SwarmBackend.connect()
    return await DockerBackend.connect()


async def sandboxes_left(docker: aiodocker.Docker, stack: str) -> list[str]:
    """What a gateway left of ``stack``: Swarm services, then containers (on a swarm, a
    removed service's container goes a moment later: it is waited for, briefly; the Docker
    backend removes its containers before it returns)."""
    in_swarm = (await docker.system.info())["Swarm"]["LocalNodeState"] == "active"
    services = await stack_services(docker, stack) if in_swarm else []
    for service in services:
        await docker.services.delete(service["ID"])
    for _ in range(100 if in_swarm else 0):
        if services or not await stack_containers(docker, stack):
            break
        await asyncio.sleep(0.1)
    return [s["ID"] for s in services] + await stack_containers(docker, stack)


@pytest.fixture
async def gateway(
    docker: aiodocker.Docker,
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    tmp_path: Path,
    backend_kind: str,
) -> AsyncIterator[GatewayFactory]:
    """Factory: ``await gateway(routing_yaml_text, **settings)`` -> a client of a gateway
    started in-process, with its own network and stack label, its routing file
    ``tmp_path/routing.yaml`` in a box (:func:`lay_out_box`), on the container backend
    ``backend_kind`` names. On teardown it checks that the gateway left no sandbox behind,
    then removes the network."""
    async with sandbox_network(docker, backend_kind) as network:
        async for factory in _gateways(docker, aiohttp_client, tmp_path, backend_kind, network):
            yield factory


async def _gateways(
    docker: aiodocker.Docker,
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    tmp_path: Path,
    backend_kind: str,
    network: str,
) -> AsyncIterator[GatewayFactory]:
    stack = f"test-{uuid.uuid4().hex[:10]}"
    backends: list[ContainerBackend] = []
    clients: list[TestClient] = []

    async def start(
        text: str, *, reachable_from_functions: bool = False, **overrides: object
    ) -> TestClient:
        routing = lay_out_box(tmp_path, "routing.yaml", textwrap.dedent(text))
        table = load_routing(routing)  # as `serve` reads it
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
            "backend": backend_kind,
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
        backend = await connect_backend(backend_kind)
        backends.append(backend)
        # Function logs are kept in memory, unless the test ships them to a log store.
        sink = None if settings.victorialogs_url else RecordingSink()
        client = await aiohttp_client(
            create_app(settings, table, backend, sink), server_kwargs=server_kwargs
        )
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()
    for backend in backends:
        await backend.close()
    leftovers = await sandboxes_left(docker, stack)
    for container_id in await stack_containers(docker, stack):
        await remove_container(docker, container_id)
    assert leftovers == [], f"the gateway left sandboxes behind: {leftovers}"


class Server:
    """An `edgelambda serve` process started by :func:`serve_factory`."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, stack: str) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.stack = stack


Starter = Callable[..., Awaitable[Server]]


@pytest.fixture
async def serve_factory(tmp_path: Path, docker: aiodocker.Docker) -> AsyncIterator[Starter]:
    """Factory: ``await serve_factory(routing_yaml_text, env=..., log=path)`` starts
    `python -m edgelambda serve` as a real process, its routing file in a box
    (:func:`lay_out_box`); the processes of one test share a stack, a data directory and the
    box, as restarts of one gateway do. Teardown kills what still runs and
    removes the containers and the network."""
    stack = f"test-{uuid.uuid4().hex[:10]}"
    processes: list[asyncio.subprocess.Process] = []

    async def start(
        text: str, *, env: dict[str, str] | None = None, log: Path | None = None
    ) -> Server:
        routing = lay_out_box(tmp_path, "serve-routing.yaml", text)
        port = unused_port()
        environment = {
            **os.environ,
            "ROUTING_CONFIG_PATH": str(routing),
            "EDGELAMBDA_HOST": "127.0.0.1",
            "EDGELAMBDA_PORT": str(port),
            "EDGELAMBDA_RUNTIME_API_PORT": "0",
            "EDGELAMBDA_DATA_DIR": str(tmp_path / "serve-data"),
            "DOCKER_NETWORK": f"edgelambda-{stack}",
            "EDGELAMBDA_STACK": stack,
            "EDGELAMBDA_RUNTIME_IMAGES": f"python3.12={BASE_IMAGE}",
            "EDGELAMBDA_LOG_FORMAT": "json",
            **(env or {}),
        }
        # A local log file: opening it does not block the loop noticeably.
        with open(log or os.devnull, "w") as output:  # noqa: ASYNC230
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edgelambda", "serve",
                env=environment, stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        processes.append(process)
        server = Server(process, port, stack)
        await wait_healthy(server)
        return server

    yield start
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.wait()
    for container_id in await stack_containers(docker, stack):
        await remove_container(docker, container_id)
    for net in await docker.networks.list(filters={"name": f"edgelambda-{stack}"}):
        await (await docker.networks.get(net["Id"])).delete()


async def wait_healthy(server: Server, timeout_s: float = 20) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(int(timeout_s / 0.1)):
            assert server.process.returncode is None, "the gateway exited during start-up"
            try:
                async with session.get(f"{server.url}/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"gateway not healthy within {timeout_s} s")


def ran_echo(client: TestClient) -> bool:
    """Whether the in-process gateway's function log shows the `echo` test handler ran."""
    sink = client.app[SERVER_KEY].sink
    assert isinstance(sink, RecordingSink)
    return any(record.message.startswith("echo handling ") for record in sink.records)
