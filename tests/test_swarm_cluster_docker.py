"""Two nodes: the host engine as Swarm manager and a Docker-in-Docker worker joined to it.
The gateway (a container on the manager) serves one function placed on each node; the
worker's task pulls the function's image through its own mirror of the box's registry and
calls the gateway's Runtime API across the overlay network."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest
from aiohttp.test_utils import unused_port

from edgelambda.containers import LABEL_STACK
from tests.compose_stack import get_json, run_command
from tests.conftest import BASE_IMAGE, lay_out_box, routing_text
from tests.swarm_cluster import Cluster, exec_in, gateway_container, two_node_swarm
from tests.test_swarm_gateway_docker import gateway_image, overlay
from tests.test_swarm_registry_docker import REGISTRY_IMAGE

pytestmark = pytest.mark.docker


async def dind_image() -> str:
    """The Docker-in-Docker rootfs (the box's parent's), built offline if missing."""
    script = (
        'source scripts/lib.sh; log() { echo "$*" >&2; }; '
        "image_exists $DIND_ROOTFS_IMAGE || import_rootfs $ROOTFS_SUITE "
        '$DIND_ROOTFS_PACKAGES $DIND_ROOTFS_IMAGE "$(mktemp -d)"; echo $DIND_ROOTFS_IMAGE'
    )
    output = await run_command("bash", "-c", script, env=dict(os.environ))
    return output.strip().splitlines()[-1]


async def registries(docker: aiodocker.Docker, cluster: Cluster, port: int) -> list[str]:
    """The box's registry on the manager (127.0.0.1:port for its engine, and the bridge
    address for the worker's mirror), and the worker's pull-through mirror of it at its
    own 127.0.0.1:port (an image loaded into the worker: it cannot pull it from itself)."""
    env = {**os.environ, "EDGELAMBDA_STACK_IMAGES": "registry", "EDGELAMBDA_SKIP_BASE_IMAGE": "1"}
    await run_command("bash", "scripts/build-stack-images.sh", env=env)
    bindings = [
        {"HostIp": "127.0.0.1", "HostPort": str(port)},
        {"HostIp": cluster.manager_address, "HostPort": str(port)},
    ]
    main = await docker.containers.run(
        {"Image": REGISTRY_IMAGE, "HostConfig": {"PortBindings": {"5000/tcp": bindings}}},
        name=f"{cluster.worker}-registry",
    )
    assert await get_json(f"http://127.0.0.1:{port}/v2/", within_s=30) == {}
    await run_command(
        "bash", "-c", f"docker save {REGISTRY_IMAGE} | docker exec -i {cluster.worker} docker load",
        env=dict(os.environ),
    )  # fmt: skip
    worker = docker.containers.container(cluster.worker)
    await exec_in(
        worker, "docker", "run", "-d", "--name", "mirror", "-p", f"127.0.0.1:{port}:5000",
        "-e", f"REGISTRY_PROXY_REMOTEURL=http://{cluster.manager_address}:{port}",
        REGISTRY_IMAGE,
    )  # fmt: skip
    return [main.id]


@pytest.fixture
async def cluster_gateway(
    docker: aiodocker.Docker, tmp_path: Path
) -> AsyncIterator[tuple[str, str, Cluster]]:
    image, node_image = await gateway_image(), await dind_image()
    stack = f"sc{uuid.uuid4().hex[:8]}"
    function = {"handler": "app.handler", "code": "functions/responses"}
    functions = {
        "onworker": {**function, "placement": ["node.role == worker"]},
        "onmanager": {**function, "placement": ["node.role == manager"]},
        # Anywhere, four at a time, stopped after 3 s idle.
        "spread": {
            "handler": "app.handler",
            "code": "functions/lifecycle",
            "max_concurrency": 4,
            "idle_timeout": 3,
        },
    }
    routes = [
        {"path": f"/{name}", "method": "GET", "function": name, "auth": "none"}
        for name in functions
    ]
    lay_out_box(tmp_path, "routing.yaml", routing_text(functions, routes))
    port = unused_port()
    async with two_node_swarm(docker, node_image) as cluster:
        owned = await registries(docker, cluster, port)
        try:
            await overlay(cluster.network)
            env = (
                f"EDGELAMBDA_RUNTIME_IMAGES=python3.12={BASE_IMAGE}",
                f"EDGELAMBDA_REGISTRY=127.0.0.1:{port}",
                "EDGELAMBDA_REAP_INTERVAL_S=0.5",
            )
            async with gateway_container(
                docker, image=image, network=cluster.network, stack=stack, box=tmp_path, env=env
            ) as url:
                yield url, stack, cluster
        finally:
            for container_id in owned:
                await docker.containers.container(container_id).delete(force=True)


async def test_functions_run_where_placed_spread_when_scaled_and_stop_when_idle(
    cluster_gateway: tuple[str, str, Cluster], docker: aiodocker.Docker
) -> None:
    url, stack, cluster = cluster_gateway

    for name in ("onworker", "onmanager"):
        event = await get_json(f"{url}/{name}?shape=echo", within_s=120)
        assert event["path"] == f"/{name}"

    assert await nodes_of(docker, stack) == {
        "onworker": [cluster.worker_node],
        "onmanager": [cluster.manager_node],
    }

    # Four at once scale out to four tasks, which the scheduler spreads over both nodes.
    calls = [get_json(f"{url}/spread?action=sleep&s=4", within_s=120) for _ in range(4)]
    served = await asyncio.gather(*calls)
    assert len({body["container"] for body in served}) == 4
    spread = (await nodes_of(docker, stack))["spread"]
    assert sorted(set(spread)) == sorted({cluster.worker_node, cluster.manager_node})

    # Idle past their timeout, the four are stopped (removed: Swarm starts no task again).
    deadline = time.monotonic() + 30
    while "spread" in await nodes_of(docker, stack):
        assert time.monotonic() < deadline, "the idle sandboxes were never stopped"
        await asyncio.sleep(0.5)
    assert set(await nodes_of(docker, stack)) == {"onworker", "onmanager"}


async def nodes_of(docker: aiodocker.Docker, stack: str) -> dict[str, list[str]]:
    """The nodes the stack's tasks run on, by function."""
    placed: dict[str, list[str]] = {}
    for service in await docker.services.list(filters={"label": f"{LABEL_STACK}={stack}"}):
        for task in await docker.tasks.list(filters={"service": service["ID"]}):
            function = service["Spec"]["Labels"]["edgelambda.function"]
            placed.setdefault(function, []).append(task["NodeID"])
    return placed
