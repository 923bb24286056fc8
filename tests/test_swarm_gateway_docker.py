"""The gateway with EDGELAMBDA_BACKEND=swarm, as it must run there: a container on the
overlay network, its functions Swarm tasks that call its Runtime API across that network.
One node (the host engine as manager); the same routing.yaml and functions as with one
engine."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest

from edgelambda.swarm_backend import SwarmBackend
from tests.compose_stack import get_json, run_command
from tests.conftest import BASE_IMAGE, lay_out_box, one_function, stack_containers
from tests.swarm_cluster import exec_in, gateway_container, single_node_swarm, stack_services

pytestmark = pytest.mark.docker
GATEWAY_IMAGE = "edgelambda/gateway:local"  # the script's alias of what it built or found


async def gateway_image() -> str:
    """The gateway image of this checkout (built as the stack builds it; reused if built)."""
    env = {**os.environ, "EDGELAMBDA_STACK_IMAGES": "gateway", "EDGELAMBDA_SKIP_BASE_IMAGE": "1"}
    await run_command("bash", "scripts/build-stack-images.sh", env=env)
    return GATEWAY_IMAGE


@pytest.fixture
async def swarm_gateway(docker: aiodocker.Docker, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """A gateway container on a single-node swarm's overlay: its URL, and its stack label."""
    image = await gateway_image()
    stack = f"sw{uuid.uuid4().hex[:8]}"
    lay_out_box(tmp_path, "routing.yaml", one_function("functions/responses"))
    async with single_node_swarm(docker) as network:
        await overlay(network)
        env = (f"EDGELAMBDA_RUNTIME_IMAGES=python3.12={BASE_IMAGE}",)
        async with gateway_container(
            docker, image=image, network=network, stack=stack, box=tmp_path, env=env
        ) as url:
            yield url, stack


async def overlay(network: str) -> None:
    """Create the overlay network as the backend does (the gateway joins it first)."""
    backend = await SwarmBackend.connect()
    try:
        await backend.network_gateway(network)
    finally:
        await backend.close()


async def test_a_function_runs_as_a_swarm_task_behind_the_gateway(
    swarm_gateway: tuple[str, str], docker: aiodocker.Docker
) -> None:
    url, stack = swarm_gateway

    event = await get_json(f"{url}/fn?shape=echo", within_s=60)

    assert (event["path"], event["queryStringParameters"]) == ("/fn", {"shape": "echo"})
    (service,) = await stack_services(docker, stack)
    tasks = await docker.tasks.list(filters={"service": service["ID"]})
    assert [t["Status"]["State"] for t in tasks] == ["running"]
    assert await stack_containers(docker, stack) != []  # the task's container, this node's
    again = await get_json(f"{url}/fn?shape=echo")  # warm: the same task serves
    assert again["path"] == "/fn"
    assert len(await stack_services(docker, stack)) == 1
    health = await get_json(f"{url}/health")
    assert health["containers"].get("ready") == 1  # by state, as with one engine


async def test_a_restarted_gateway_replaces_what_its_last_run_left(
    docker: aiodocker.Docker, tmp_path: Path
) -> None:
    image, stack = await gateway_image(), f"sw{uuid.uuid4().hex[:8]}"
    lay_out_box(tmp_path, "routing.yaml", one_function("functions/responses"))
    env = (f"EDGELAMBDA_RUNTIME_IMAGES=python3.12={BASE_IMAGE}",)
    async with single_node_swarm(docker) as network:
        await overlay(network)
        async with gateway_container(
            docker, image=image, network=network, stack=stack, box=tmp_path, env=env,
            serve_twice=True,
        ) as url:  # fmt: skip
            await restarted_gateway(docker, url, stack)


async def restarted_gateway(docker: aiodocker.Docker, url: str, stack: str) -> None:
    """``url``'s gateway, killed, removes nothing: its next run starts by removing what the
    last one left, then serves with a sandbox of its own."""
    await get_json(f"{url}/fn?shape=echo", within_s=60)
    left = await service_ids(docker, stack)
    assert len(left) == 1

    gateway = docker.containers.container(f"{stack}-gateway")
    await exec_in(gateway, "python3", "-c", KILL_THE_GATEWAY)
    await get_json(f"{url}/fn?shape=echo", within_s=60)
    now = await service_ids(docker, stack)
    assert len(now) == 1
    assert now.isdisjoint(left)


# SIGKILL to the `edgelambda serve` process that is not PID 1 (the shell is, until it execs
# the second one).
KILL_THE_GATEWAY = """
import os, signal
for pid in filter(str.isdigit, os.listdir("/proc")):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().split(b"\\0")
    if pid != "1" and argv[:4] == [b"python3", b"-m", b"edgelambda", b"serve"]:
        os.kill(int(pid), signal.SIGKILL)
"""


async def service_ids(docker: aiodocker.Docker, stack: str) -> set[str]:
    return {s["ID"] for s in await stack_services(docker, stack)}
