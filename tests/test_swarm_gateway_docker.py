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

from edgelambda.containers import LABEL_STACK
from edgelambda.swarm_backend import SwarmBackend
from tests.compose_stack import get_json, run_command
from tests.conftest import BASE_IMAGE, lay_out_box, one_function, stack_containers
from tests.swarm_cluster import single_node_swarm

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
    routing = lay_out_box(tmp_path, "routing.yaml", one_function("functions/responses"))
    async with single_node_swarm(docker) as network:
        backend = await SwarmBackend.connect()
        try:
            await backend.network_gateway(network)  # the overlay the gateway joins
        finally:
            await backend.close()
        name = f"{stack}-gateway"
        container = await docker.containers.run(
            {
                "Image": image,
                "Cmd": ["serve"],
                "Env": [
                    "ROUTING_CONFIG_PATH=/srv/routing.yaml",
                    f"DOCKER_NETWORK={network}",
                    "EDGELAMBDA_BACKEND=swarm",
                    f"EDGELAMBDA_RUNTIME_API_HOST={name}",  # its own name on the overlay
                    f"EDGELAMBDA_STACK={stack}",
                    f"EDGELAMBDA_RUNTIME_IMAGES=python3.12={BASE_IMAGE}",
                    "EDGELAMBDA_DATA_DIR=/data",
                    "EDGELAMBDA_LOG_FORMAT=json",
                ],
                "HostConfig": {
                    "NetworkMode": network,
                    "PortBindings": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
                    "Binds": [
                        "/var/run/docker.sock:/var/run/docker.sock",
                        f"{routing}:/srv/routing.yaml:ro",
                        f"{tmp_path / 'functions'}:/srv/functions:ro",
                    ],
                    "Tmpfs": {"/data": "rw"},
                },
            },
            name=name,
        )
        try:
            port = (await container.show())["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"]
            yield f"http://127.0.0.1:{port}", stack
        finally:
            await container.stop(t=20)  # SIGTERM: the gateway removes its sandboxes
            logs = await container.log(stdout=True, stderr=True)
            await container.delete(force=True)
            left = await docker.services.list(filters={"label": f"{LABEL_STACK}={stack}"})
            for service in left:
                await docker.services.delete(service["ID"])
            assert left == [], "".join(logs)[-3000:]


async def test_a_function_runs_as_a_swarm_task_behind_the_gateway(
    swarm_gateway: tuple[str, str], docker: aiodocker.Docker
) -> None:
    url, stack = swarm_gateway

    event = await get_json(f"{url}/fn?shape=echo", within_s=60)

    assert (event["path"], event["queryStringParameters"]) == ("/fn", {"shape": "echo"})
    (service,) = await docker.services.list(filters={"label": f"{LABEL_STACK}={stack}"})
    tasks = await docker.tasks.list(filters={"service": service["ID"]})
    assert [t["Status"]["State"] for t in tasks] == ["running"]
    assert await stack_containers(docker, stack) != []  # the task's container, this node's
    again = await get_json(f"{url}/fn?shape=echo")  # warm: the same task serves
    assert again["path"] == "/fn"
    assert len(await docker.services.list(filters={"label": f"{LABEL_STACK}={stack}"})) == 1
    health = await get_json(f"{url}/health")
    assert health["containers"].get("ready") == 1  # by state, as with one engine
