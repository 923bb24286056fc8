"""A Swarm for the Swarm backend's tests: the host engine as a single-node manager for the
test's duration (left again afterwards, unless it was one already), with an attachable
overlay network of the test's own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker
import aiodocker.docker
import yaml

from edgelambda.containers import LABEL_STACK


@asynccontextmanager
async def single_node_swarm(
    docker: aiodocker.Docker, *, bridge_anchor: str | None = None
) -> AsyncIterator[str]:
    """The name of an overlay network to create (the backend creates it), removed after.

    With ``bridge_anchor`` (an image), a swarm-scoped bridge network of that name, created
    here: its tasks are this engine's containers on a host bridge, which a gateway on the
    host reaches as it reaches the Docker backend's containers. The engine makes such a
    network's bridge (and its gateway address, where the gateway listens) only once a
    container joins it: a container of that image holds it open for the test."""
    info = await docker.system.info()
    was_active = info["Swarm"]["LocalNodeState"] == "active"
    if not was_active:
        await docker.swarm.init(advertise_addr="127.0.0.1")
    network = f"elswarm-{uuid.uuid4().hex[:8]}"
    anchor = None
    try:
        if bridge_anchor is not None:
            config = {"Name": network, "Driver": "bridge", "Scope": "swarm", "Attachable": True}
            await docker.networks.create(config)
            anchor = await docker.containers.run(
                {
                    "Image": bridge_anchor,
                    "Entrypoint": ["sleep", "infinity"],
                    "HostConfig": {"NetworkMode": network},
                },
                name=f"{network}-anchor",
            )
        yield network
    finally:
        await tear_down(docker, anchor, network, was_active=was_active)


async def tear_down(
    docker: aiodocker.Docker,
    container: aiodocker.docker.DockerContainer | None,
    network: str,
    *,
    was_active: bool,
) -> None:
    """A test swarm's cleanup: its container (if one started), its network, then the swarm
    unless it was there before, left whatever else could not be done."""
    try:
        if container is not None:
            await container.delete(force=True)
        await delete_network(docker, network)
    finally:
        await leave_swarm(docker, was_active)


def stack_services(docker: aiodocker.Docker, stack: str) -> Awaitable[list[dict[str, Any]]]:
    """The Swarm services of a gateway's stack (its sandboxes), by their label."""
    return docker.services.list(filters={"label": f"{LABEL_STACK}={stack}"})


async def leave_swarm(docker: aiodocker.Docker, was_active: bool) -> None:
    """Leave the swarm a test made (whatever else its cleanup could not do)."""
    if not was_active:
        await docker.swarm.leave(force=True)
        # The bridge Swarm made for its tasks' way out; a later init makes it anew.
        for net in await docker.networks.list(filters={"name": "docker_gwbridge"}):
            await (await docker.networks.get(net["Id"])).delete()


async def delete_network(docker: aiodocker.Docker, name: str) -> None:
    """Delete network ``name`` once no task holds it: a removed service's task lets go of it
    a moment after the service is gone."""
    for attempt in range(50):
        try:
            for net in await docker.networks.list(filters={"name": name}):
                await (await docker.networks.get(net["Id"])).delete()
            return
        except aiodocker.DockerError as exc:
            if exc.status != 400 or attempt == 49:  # 400: "in use by task"
                raise
            await asyncio.sleep(0.2)


# What a nested engine needs here, as the box's override grants it: every capability but
# SYS_RESOURCE, which these machines' bounding set lacks (so --privileged fails).
CAPS_OVERRIDE = Path(__file__).resolve().parents[1] / "compose" / "docker-compose.dind-caps.yml"
NODE_CAPABILITIES = yaml.safe_load(CAPS_OVERRIDE.read_text())["services"]["onpre-app-root"][
    "cap_add"
]


@dataclass(frozen=True)
class Cluster:
    """A two-node swarm: the host engine as manager, a Docker-in-Docker worker."""

    network: str  # an overlay network's name, created by the backend
    manager_address: str  # where the worker reaches the manager (the default bridge's gateway)
    worker: str  # the worker container's name
    worker_node: str  # its node id
    manager_node: str


@asynccontextmanager
async def two_node_swarm(
    docker: aiodocker.Docker, dind_image: str, *, heartbeat_s: float = 5.0
) -> AsyncIterator[Cluster]:
    """The host engine as manager, advertised on the default bridge's gateway address, and a
    Docker-in-Docker worker joined to it; the worker removed and the swarm left after.
    ``heartbeat_s`` is the nodes' heartbeat period (``docker swarm init
    --dispatcher-heartbeat``, 5 s by default): a node that misses about three is ``down``."""
    bridge = await (await docker.networks.get("bridge")).show()
    address = bridge["IPAM"]["Config"][0]["Gateway"]
    info = await docker.system.info()
    if info["Swarm"]["LocalNodeState"] == "active":
        raise RuntimeError("the engine is in a swarm already; this test makes its own")
    # SwarmSpec.Dispatcher.HeartbeatPeriod is in nanoseconds (Engine API 1.41, "Swarm").
    spec = {"Dispatcher": {"HeartbeatPeriod": int(heartbeat_s * 1e9)}}
    await docker.swarm.init(advertise_addr=address, swarm_spec=spec)
    name = f"elworker-{uuid.uuid4().hex[:8]}"
    network = f"elswarm-{uuid.uuid4().hex[:8]}"
    worker = None
    try:
        worker = await docker.containers.run(worker_config(dind_image), name=name)
        await until_engine_answers(worker)
        token = (await docker.swarm.inspect())["JoinTokens"]["Worker"]
        await exec_in(worker, "docker", "swarm", "join", "--token", token, f"{address}:2377")
        manager = (await docker.system.info())["Swarm"]["NodeID"]
        (worker_node,) = [n["ID"] for n in await docker.nodes.list() if n["ID"] != manager]
        yield Cluster(network, address, name, worker_node, manager)
    finally:
        await tear_down(docker, worker, network, was_active=False)


def worker_config(image: str) -> dict[str, object]:
    return {
        "Image": image,
        "Cmd": ["dockerd", "--host", "unix:///var/run/docker.sock"],
        "HostConfig": {
            "CapAdd": NODE_CAPABILITIES,
            "SecurityOpt": ["seccomp=unconfined", "apparmor=unconfined"],
            # The CLI's --security-opt systempaths=unconfined: nothing of /proc masked.
            "MaskedPaths": [],
            "ReadonlyPaths": [],
            "CgroupnsMode": "host",
            "Binds": ["/sys/fs/cgroup:/sys/fs/cgroup:rw"],
            "Tmpfs": {"/var/lib/docker": "rw,exec"},
        },
    }


async def until_engine_answers(worker: aiodocker.docker.DockerContainer) -> None:
    for _ in range(120):
        try:
            await exec_in(worker, "docker", "info")
            return
        except AssertionError:
            await asyncio.sleep(0.5)
    raise AssertionError("the worker's engine never answered")


async def exec_in(worker: aiodocker.docker.DockerContainer, *command: str) -> str:
    """Run ``command`` in the worker container; its output, asserting it succeeded."""
    execution = await worker.exec(list(command))
    async with execution.start(detach=False) as stream:
        output = b""
        while (message := await stream.read_out()) is not None:
            output += message.data
    result = await execution.inspect()
    assert result["ExitCode"] == 0, f"{' '.join(command)}: {output.decode(errors='replace')}"
    return output.decode(errors="replace")


@asynccontextmanager
async def gateway_container(
    docker: aiodocker.Docker,
    *,
    image: str,
    network: str,
    stack: str,
    box: Path,
    env: tuple[str, ...] = (),
    name: str | None = None,
    serve_twice: bool = False,
) -> AsyncIterator[str]:
    """The gateway as it runs with EDGELAMBDA_BACKEND=swarm: a container on the overlay
    ``network``, serving ``box``'s routing.yaml and functions/ (named ``name``, by default
    after the stack); its URL on 127.0.0.1. On the way out it is stopped (SIGTERM: it
    removes its sandboxes), and no service of ``stack`` may be left.

    ``serve_twice``: when the first gateway process dies, a second one starts in the same
    container, as a restart policy would start it (a container killed and started again
    cannot always rejoin an attachable overlay on Docker 20.10: "network not found")."""
    name = name or f"{stack}-gateway"
    serve = ["python3", "-m", "edgelambda", "serve"]
    twice = {"Entrypoint": ["sh", "-c", f"{' '.join(serve)}; exec {' '.join(serve)}"]}
    container = await docker.containers.run(
        {
            "Image": image,
            **(twice if serve_twice else {"Cmd": ["serve"]}),
            "Env": [
                "ROUTING_CONFIG_PATH=/srv/routing.yaml",
                f"DOCKER_NETWORK={network}",
                "EDGELAMBDA_BACKEND=swarm",
                f"EDGELAMBDA_RUNTIME_API_HOST={name}",  # its own name on the overlay
                f"EDGELAMBDA_STACK={stack}",
                "EDGELAMBDA_DATA_DIR=/data",
                "EDGELAMBDA_LOG_FORMAT=json",
                *env,
            ],
            "HostConfig": {
                "NetworkMode": network,
                "PortBindings": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
                "Binds": [
                    "/var/run/docker.sock:/var/run/docker.sock",
                    f"{box / 'routing.yaml'}:/srv/routing.yaml:ro",
                    f"{box / 'functions'}:/srv/functions:ro",
                ],
                "Tmpfs": {"/data": "rw"},
            },
        },
        name=name,
    )
    try:
        port = (await container.show())["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"]
        yield f"http://127.0.0.1:{port}"
    finally:
        await container.stop(t=20)  # SIGTERM: the gateway removes its sandboxes
        logs = await container.log(stdout=True, stderr=True)
        await container.delete(force=True)
        left = await stack_services(docker, stack)
        for service in left:
            await docker.services.delete(service["ID"])
        assert left == [], "".join(logs)[-3000:]
