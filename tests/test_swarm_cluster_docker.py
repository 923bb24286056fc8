"""Two nodes: the host engine as Swarm manager and a Docker-in-Docker worker joined to it.
The gateway (a container on the manager) serves one function placed on each node; the
worker's task pulls the function's image through its own mirror of the box's registry and
calls the gateway's Runtime API across the overlay network."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiodocker
import aiohttp
import pytest
from aiohttp.test_utils import unused_port

from tests.compose_stack import get_json, run_command
from tests.conftest import BASE_IMAGE, lay_out_box, routing_text
from tests.swarm_cluster import Cluster, exec_in, gateway_container, stack_services, two_node_swarm
from tests.test_async_events_docker import API_KEY
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


@asynccontextmanager
async def cluster_gateway(
    docker: aiodocker.Docker,
    box: Path,
    functions: dict[str, dict[str, object]],
    *,
    env: tuple[str, ...] = (),
    heartbeat_s: float = 5.0,
) -> AsyncIterator[tuple[str, str, Cluster]]:
    """The gateway on a two-node swarm serving ``functions``, each on a public GET route
    named after it: its URL, its stack and the cluster."""
    image, node_image = await gateway_image(), await dind_image()
    stack = f"sc{uuid.uuid4().hex[:8]}"
    routes = [
        {"path": f"/{name}", "method": "GET", "function": name, "auth": "none"}
        for name in functions
    ]
    lay_out_box(box, "routing.yaml", routing_text(functions, routes))
    port = unused_port()
    async with two_node_swarm(docker, node_image, heartbeat_s=heartbeat_s) as cluster:
        owned = await registries(docker, cluster, port)
        try:
            await overlay(cluster.network)
            env = (
                f"EDGELAMBDA_RUNTIME_IMAGES=python3.12={BASE_IMAGE}",
                f"EDGELAMBDA_REGISTRY=127.0.0.1:{port}",
                "EDGELAMBDA_REAP_INTERVAL_S=0.5",
                *env,
            )
            async with gateway_container(
                docker, image=image, network=cluster.network, stack=stack, box=box, env=env
            ) as url:
                yield url, stack, cluster
        finally:
            for container_id in owned:
                await docker.containers.container(container_id).delete(force=True)


async def test_functions_run_where_placed_spread_when_scaled_and_stop_when_idle(
    docker: aiodocker.Docker, tmp_path: Path
) -> None:
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
    async with cluster_gateway(docker, tmp_path, functions) as (url, stack, cluster):
        await placed_spread_and_stopped(docker, url, stack, cluster)


async def placed_spread_and_stopped(
    docker: aiodocker.Docker, url: str, stack: str, cluster: Cluster
) -> None:

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
    for service in await stack_services(docker, stack):
        for task in await docker.tasks.list(filters={"service": service["ID"]}):
            function = service["Spec"]["Labels"]["edgelambda.function"]
            placed.setdefault(function, []).append(task["NodeID"])
    return placed


TIMEOUT_S = 5.0  # the functions' timeout
ANSWER_BOUND_S = 5.0  # how much longer than that any caller may wait, a node lost or not
EVENTS = 40


@dataclass(frozen=True)
class Call:
    started_s: float  # since the load began
    waited_s: float
    status: int


async def test_a_worker_killed_under_load_costs_only_what_it_held(
    docker: aiodocker.Docker, tmp_path: Path
) -> None:
    limits = {"max_concurrency": 4, "timeout": TIMEOUT_S}
    functions = {
        "work": {"handler": "app.handler", "code": "functions/lifecycle", **limits},
        "events": {"handler": "app.slow_event", "code": "functions/sdk", **limits},
    }
    env = ("EDGELAMBDA_EVENT_RETRY_DELAYS_S=2,4", "EDGELAMBDA_EVENT_CONCURRENCY=4")
    # A 1 s heartbeat: the manager marks a silent node down after about 3 s, not 15 s.
    cluster = cluster_gateway(docker, tmp_path, functions, env=env, heartbeat_s=1.0)
    async with cluster as (url, stack, cluster_):
        # Both functions scaled out to four sandboxes, which the scheduler spreads.
        await get_json(f"{url}/health", within_s=60)
        warmed = await asyncio.gather(
            *(invoke(url, {"n": -1}) for _ in range(4)),
            *(get_json(f"{url}/work?action=sleep&s=2", within_s=120) for _ in range(4)),
        )
        assert warmed[:4] == [200] * 4
        placed = await nodes_of(docker, stack)
        assert cluster_.worker_node in placed["work"], placed
        assert cluster_.worker_node in placed["events"], placed

        began = time.monotonic()
        stop = asyncio.Event()
        # More callers than sandboxes: every sandbox is busy when the node dies.
        loads = [asyncio.create_task(keep_calling(f"{url}/work", began, stop)) for _ in range(6)]
        statuses = await asyncio.gather(*(post_event(url, n) for n in range(EVENTS)))
        assert statuses == [202] * EVENTS
        await asyncio.sleep(1.0)
        await docker.containers.container(cluster_.worker).kill()
        killed_s = time.monotonic() - began
        await asyncio.sleep(20.0)
        stop.set()
        calls = [call for load in loads for call in await load]
        failed = [call for call in calls if call.status != 200]
        print(f"{len(calls)} calls, longest {max(c.waited_s for c in calls):.2f} s; not 200:")
        print("\n".join(f"  {c} ({c.started_s - killed_s:+.2f} s from the kill)" for c in failed))

        # No caller waited past the timeout plus the bound; all were answered.
        assert max(call.waited_s for call in calls) <= TIMEOUT_S + ANSWER_BOUND_S, calls
        # Once the manager knows the node is gone (and the sandboxes it held have been
        # answered for), every call is served, by the manager's sandboxes alone.
        later = [call for call in calls if call.started_s > killed_s + TIMEOUT_S + 2]
        assert later
        assert {call.status for call in later} == {200}, later
        assert set((await nodes_of(docker, stack))["work"]) == {cluster_.manager_node}

        # Every Event invocation ran to success: none queued, none dead-lettered.
        deadline = time.monotonic() + 60
        while (health := await get_json(f"{url}/health"))["events"] != {
            "queued": 0,
            "dead_letters": 0,
        }:
            assert time.monotonic() < deadline, health
            await asyncio.sleep(1.0)
        logs = "".join(await docker.containers.container(f"{stack}-gateway").log(stdout=True))
        assert {int(n) for n in re.findall(r"ran event (\d+)", logs)} >= set(range(EVENTS))
        assert "task lost with its node" in logs


async def keep_calling(url: str, began: float, stop: asyncio.Event) -> list[Call]:
    """GET ``url`` (a 0.5 s sleep) one call after another until ``stop``; every call."""
    calls = []
    # A call that hangs fails the test at once (an answer past this fails it anyway).
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S + ANSWER_BOUND_S + 1)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not stop.is_set():
            started = time.monotonic()
            try:
                async with session.get(f"{url}?action=sleep&s=0.5") as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            calls.append(Call(started - began, time.monotonic() - started, status))
    return calls


async def post_event(url: str, n: int) -> int:
    return await invoke(url, {"n": n}, kind="Event")


async def invoke(url: str, payload: dict[str, object], *, kind: str = "RequestResponse") -> int:
    """Invoke the `events` function through the Invoke API; the status."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/2015-03-31/functions/events/invocations",
            data=json.dumps(payload),
            headers={"x-api-key": API_KEY, "X-Amz-Invocation-Type": kind},
        ) as response,
    ):
        await response.read()
        return response.status
