"""The Docker Swarm backend: a sandbox is a one-replica service whose single task the Swarm
scheduler places on any node that fits it, on an attachable overlay network.

What a cluster changes, and how this module meets it (Docker Engine API 1.41, "Services",
"Tasks"; swarmkit's task states):

- **No restart, no pause.** A task that stopped is gone (a service never starts the same
  container again) and a frozen container is an engine-local notion: :meth:`stop` removes
  the service, :meth:`restart`, :meth:`pause` and :meth:`unpause` raise EngineUnavailable,
  which the pool treats as a failed warm start / freeze (it starts a new sandbox).
- **No VIP.** Services get ``dnsrr`` endpoints: a virtual IP needs the kernel's IPVS, which
  these machines lack ("No route to host" through a service's VIP, while its task's own
  address answers), and sandboxes are never called by service name anyway.
- **Exits** are task state changes, which the engine's event stream does not carry: they
  are polled from the manager.
- **Memory peaks** need the node's own engine: not known here (REPORT leaves the line out).
- **Output** is the service's log, which the manager gathers from whichever node runs it.
- **Images** are built on the manager's engine and pushed to the registry the nodes pull
  from (none given: they stay on the manager, whose tasks alone can run them).

- **Node loss.** A task on a node that died keeps its last state (``running``, desired
  ``shutdown``) for as long as the node is gone: the manager cannot hear its end. A node the
  manager marks ``down`` (after missing its heartbeats: ``docker swarm init
  --dispatcher-heartbeat``, 5 s by default, about 13 s to notice here) or no longer lists
  ends every task it held, as an exit with no code (-1); a start placed there fails.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import aiodocker
import aiohttp
import structlog

from edgelambda.containers import (
    LABEL_STACK,
    BackendAbilities,
    ContainerExit,
    ContainerSpec,
    StartedContainer,
)
from edgelambda.docker_backend import (
    NOT_FOUND,
    BackendLimits,
    DockerBackend,
    LogLimits,
    close_engine_client,
    engine_client,
    engine_errors,
    engine_version,
    find_network,
    gateway_address,
    log_config,
)
from edgelambda.docker_logs import FRAME_STREAMS, NO_TIMEOUT, read_frame
from edgelambda.errors import EngineUnavailable
from edgelambda.logs import OutputLine, parse_docker_line
from edgelambda.routing import FunctionSpec

log = structlog.get_logger(__name__)

TASK_START_S = 120.0  # placement, the image's pull on its node, and the container's start
TASK_POLL_S = 0.25
NETWORK_READY_S = 10.0
EXIT_POLL_S = 0.5
STOP_GRACE_NS = 100_000_000  # 0.1 s
SIGKILL_EXIT = 137
REMEMBERED_REMOVALS = 1024  # recent removals, so that no follow of one starts after it
# swarmkit's task states at and after which its container has ended (api/types.proto).
ENDED_STATES = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})
FAILED_BEFORE_RUNNING = ENDED_STATES - {"complete"}  # and no exit code: see has_run


def service_spec(spec: ContainerSpec, *, logs: LogLimits | None = None) -> dict[str, Any]:
    """The ``services/create`` task template (as aiodocker takes it) of a hardened one-task
    sandbox: the limits, user, read-only root, dropped capabilities and /tmp of the Docker
    backend's ``engine_config``, and the function's placement constraints
    (``node.labels.zone == edge-a``)."""
    memory = spec.memory_mb * 1024 * 1024
    entrypoint = {} if spec.entrypoint is None else {"Command": list(spec.entrypoint)}
    container = {
        **entrypoint,
        "Image": spec.image,
        "Args": list(spec.command),
        "Env": dict(spec.env),  # aiodocker's services.create writes the KEY=value list
        "Labels": dict(spec.labels),
        "User": spec.user,
        "ReadOnly": True,
        "CapabilityDrop": ["ALL"],
        # A removed sandbox has nothing left to finish (its invocation was answered or timed
        # out), and its runtime, PID 1, ignores SIGTERM: killed at once, as the Docker
        # backend's forced removal does, not after the engine's 10 s (0 means that default).
        "StopGracePeriod": STOP_GRACE_NS,
        # "IP name" lines, not docker run's "name:IP" (swarmkit ContainerSpec.hosts).
        "Hosts": [" ".join(reversed(line.rsplit(":", 1))) for line in spec.extra_hosts],
        "Mounts": [
            {
                "Type": "tmpfs",
                "Target": "/tmp",
                "TmpfsOptions": {"SizeBytes": spec.tmp_size_mb * 1024 * 1024, "Mode": 0o1777},
            }
        ],
    }
    return {
        "ContainerSpec": container,
        "Resources": {
            "Limits": {
                "MemoryBytes": memory,
                "NanoCPUs": int(spec.cpus * 1e9),
                "Pids": spec.pids_limit,
            },
            # The scheduler places a task only on a node with this much memory free.
            "Reservations": {"MemoryBytes": memory},
        },
        "RestartPolicy": {"Condition": "none"},  # a sandbox that ends is replaced, not restarted
        "Placement": {"Constraints": list(spec.placement)},
        "Networks": [{"Target": spec.network}],
        "LogDriver": {"Name": "json-file", "Options": log_config(logs or LogLimits())["Config"]},
    }


def container_status(task: dict[str, Any]) -> dict[str, Any]:
    """A task's ``Status.ContainerStatus`` (its container's id and exit code), or {}."""
    return dict(task.get("Status", {}).get("ContainerStatus") or {})


def task_address(task: dict[str, Any], network: str) -> str | None:
    """A task's IPv4 address on ``network`` (its attachment's first address, less the
    prefix length), or None while it has none."""
    for attachment in task.get("NetworksAttachments") or []:
        if attachment.get("Network", {}).get("Spec", {}).get("Name") == network:
            addresses = attachment.get("Addresses") or []
            return str(addresses[0]).partition("/")[0] if addresses else None
    return None


def has_run(task: dict[str, Any]) -> bool:
    """Whether a task's container started: it runs, or it ran and ended (it has an exit
    code), as a container that exits at once does."""
    state, container = task.get("Status", {}).get("State"), container_status(task)
    return state == "running" or (
        state in ENDED_STATES
        and container.get("ExitCode") is not None
        and bool(container.get("ContainerID"))
    )


def live_nodes(nodes: list[Any]) -> frozenset[str]:
    """The ids of the nodes not known to be gone: every listed node but a ``down`` one. A
    node is ``unknown`` to a manager for a moment after a leadership change, and
    ``disconnected`` for a moment of a lost session: neither ends its tasks."""
    return frozenset(str(n["ID"]) for n in nodes if n.get("Status", {}).get("State") != "down")


def is_lost(task: dict[str, Any], live: frozenset[str]) -> bool:
    """Whether a task sits on a node that is down or gone: whatever it ran went with it."""
    node = task.get("NodeID")
    return bool(node) and node not in live


def has_ended(task: dict[str, Any], live: frozenset[str]) -> bool:
    """Whether a task's container has ended: by its state, or with its node."""
    return task.get("Status", {}).get("State") in ENDED_STATES or is_lost(task, live)


def task_exit(service_id: str, task: dict[str, Any], *, is_oom: bool = False) -> ContainerExit:
    """A task that ended, as the pool sees a container's exit (-1: no exit code, as for a
    task lost with its node). Whether the kernel killed it for memory is its container's
    to say, on its node: the manager only knows the code (137, as for any SIGKILL)."""
    exit_code = container_status(task).get("ExitCode")
    return ContainerExit(
        service_id, exit_code=int(exit_code) if exit_code is not None else -1, is_oom=is_oom
    )


def was_killed(task: dict[str, Any]) -> bool:
    """Whether a task's container ended by SIGKILL (128 + 9), as an OOM kill does."""
    return bool(container_status(task).get("ExitCode") == SIGKILL_EXIT)


class SwarmBackend:
    """:class:`edgelambda.containers.ContainerBackend` on a Docker Swarm: sandboxes as
    services of the manager the client talks to."""

    abilities = BackendAbilities(can_restart=False, can_freeze=False)

    def __init__(
        self,
        docker: aiodocker.Docker,
        limits: BackendLimits | None = None,
        registry: str | None = None,
    ) -> None:
        self._docker = docker
        limits = limits or BackendLimits()
        self._logs = limits.logs
        # Function images are built as the Docker backend builds them, on this engine, and
        # pushed to the registry every node pulls from (None: tasks run on this node only).
        self._images = DockerBackend(docker, limits)
        self._registry = registry
        self._pushes: dict[str, asyncio.Task[str]] = {}  # by reference: one push each
        # The log streams being followed, by service: a removed service's log stream stays
        # open (a container's ends with it), so removing a service closes it here.
        self._follows: dict[str, aiohttp.ClientResponse | None] = {}
        self._removed: deque[str] = deque(maxlen=REMEMBERED_REMOVALS)  # not to follow again

    @classmethod
    async def connect(
        cls, limits: BackendLimits | None = None, registry: str | None = None
    ) -> SwarmBackend:
        """Connect to the engine aiodocker finds, which must be a Swarm manager."""
        async with engine_errors("connect"):
            docker = await engine_client()
            try:
                info = await docker.system.info()
            except BaseException:
                await close_engine_client(docker)
                raise
        swarm = info.get("Swarm", {})
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            await close_engine_client(docker)
            raise EngineUnavailable(
                "the engine is not a Swarm manager (docker swarm init, or DOCKER_HOST of one)"
            )
        return cls(docker, limits, registry)

    async def close(self) -> None:
        for push in self._pushes.values():
            push.cancel()
        await asyncio.gather(*self._pushes.values(), return_exceptions=True)
        await self._images.close()  # its builds, then the engine client both use

    async def function_image(self, function: FunctionSpec, base_image: str) -> str:
        """The function's image, built on the manager's engine and pushed to the registry;
        its reference there (the tag is the content hash, so a pushed one is never pushed
        again), or the local tag without a registry."""
        tag = await self._images.function_image(function, base_image)
        if self._registry is None:
            return tag
        reference = f"{self._registry}/{tag}"
        push = self._pushes.get(reference)
        if push is None or push.cancelled() or (push.done() and push.exception()):
            push = asyncio.create_task(self._push(tag, reference))
            self._pushes[reference] = push
        return await asyncio.shield(push)

    async def _push(self, tag: str, reference: str) -> str:
        repository, _, version = reference.rpartition(":")
        async with engine_errors(f"push {reference}"):
            await self._docker.images.tag(tag, repository, tag=version)
            progress = await self._docker.images.push(repository, tag=version)
        errors = [line["error"] for line in progress if isinstance(line, dict) and "error" in line]
        if errors:
            raise EngineUnavailable(f"push {reference}: {errors[-1]}")
        log.info("image pushed", image=reference)
        return reference

    async def engine_version(self) -> str:
        return f"{await engine_version(self._docker)}, Swarm manager"

    async def network_gateway(self, network: str) -> str:
        """Ensure the attachable overlay network exists; its gateway address."""
        async with engine_errors(f"network {network}"):
            info = await find_network(self._docker, network)
            if info is None:
                created = await self._docker.networks.create(
                    {
                        "Name": network,
                        "Driver": "overlay",
                        "Attachable": True,
                        "CheckDuplicate": True,
                    }
                )
                info = await created.show()
                log.info("overlay network created", network=network)
            deadline = time.monotonic() + NETWORK_READY_S
            while not (gateway := gateway_address(info)) and time.monotonic() < deadline:
                # The manager allocates a new overlay's subnet a moment after creating it.
                await asyncio.sleep(TASK_POLL_S)
                info = await (await self._docker.networks.get(info["Id"])).show()
        if not gateway:
            raise EngineUnavailable(f"network {network} has no IPv4 gateway address")
        return gateway

    async def start(self, spec: ContainerSpec) -> StartedContainer:
        async with engine_errors(f"start {spec.name}"):
            created = await self._docker.services.create(
                service_spec(spec, logs=self._logs),
                name=spec.name,
                labels=dict(spec.labels),
                mode={"Replicated": {"Replicas": 1}},
                endpoint_spec={"Mode": "dnsrr"},
            )
        service_id = str(created["ID"])
        try:
            address = await self._running_address(service_id, spec.network)
        except BaseException:
            await self._remove_quietly(service_id)
            raise
        return StartedContainer(id=service_id, address=address)

    async def _running_address(self, service_id: str, network: str) -> str:
        """Wait (bounded) for the service's task to run; its address on ``network``."""
        deadline = time.monotonic() + TASK_START_S
        while time.monotonic() < deadline:
            task = await self._task_of(service_id)
            state = task.get("Status", {}).get("State") if task else None
            if (
                task
                and task.get("NodeID")
                and not has_run(task)
                and is_lost(task, await self._live_nodes())
            ):
                raise EngineUnavailable(
                    f"service {service_id[:12]}: its task's node {task['NodeID'][:12]} is down"
                )
            if task and has_run(task) and (address := await self._address(task, network)):
                return address  # running, or already ended: exits() reports that
            if task and state in FAILED_BEFORE_RUNNING:
                error = task.get("Status", {}).get("Err") or state
                raise EngineUnavailable(f"service {service_id[:12]}: its task {state}: {error}")
            await asyncio.sleep(TASK_POLL_S)
        raise EngineUnavailable(
            f"service {service_id[:12]}: no task running after {TASK_START_S:g} s"
        )

    async def _address(self, task: dict[str, Any], network: str) -> str | None:
        """The task's address on ``network``: the manager's allocation on an overlay; on a
        swarm-scoped network of a node-local driver (``docker network create --scope swarm
        --driver bridge``: one node's sandboxes beside a gateway on that host) the engine
        allocates it, so the task's container on this engine says."""
        if (address := task_address(task, network)) is not None:
            return address
        if not container_status(task).get("ContainerID"):
            return None
        container = await self._local_container(task)
        if container is None:
            raise EngineUnavailable(
                f"network {network} has no address of the task on node "
                f"{str(task.get('NodeID'))[:12]}: a node-local network reaches only this "
                "engine's tasks (use an overlay network)"
            )
        found = container["NetworkSettings"]["Networks"].get(network, {}).get("IPAddress")
        return str(found) if found else None

    async def _was_oom_killed(self, task: dict[str, Any]) -> bool:
        """Whether the kernel killed the task's container for memory: known when the task
        ran on this engine's node (the container is this engine's), else not."""
        try:
            container = await self._local_container(task)
        except EngineUnavailable as exc:  # an exit is reported all the same
            log.warning("could not inspect an ended task", error=str(exc))
            return False
        return bool(container and container["State"].get("OOMKilled"))

    async def _local_container(self, task: dict[str, Any]) -> dict[str, Any] | None:
        """The task's container as this engine shows it; None if it has none here."""
        container_id = container_status(task).get("ContainerID")
        if not container_id:
            return None
        async with engine_errors(f"container {container_id[:12]}"):
            try:
                return await self._docker.containers.container(container_id).show()
            except aiodocker.DockerError as exc:
                if exc.status != NOT_FOUND:
                    raise
                return None

    async def _task_of(self, service_id: str) -> dict[str, Any] | None:
        async with engine_errors(f"tasks of {service_id[:12]}"):
            tasks = await self._docker.tasks.list(filters={"service": service_id})
        return dict(tasks[-1]) if tasks else None

    async def stop(self, container_id: str) -> None:
        """A task cannot be stopped and started again: the service goes."""
        await self.remove(container_id)

    async def restart(self, container_id: str) -> str:
        raise EngineUnavailable("a Swarm task is never started again; a new sandbox starts")

    async def pause(self, container_id: str) -> None:
        raise EngineUnavailable("Swarm has no frozen standby (pause is one engine's)")

    async def unpause(self, container_id: str) -> None:
        raise EngineUnavailable("Swarm has no frozen standby (pause is one engine's)")

    async def remove(self, container_id: str) -> None:
        self._removed.append(container_id)
        if (follow := self._follows.pop(container_id, None)) is not None:
            follow.close()  # its connection, not back to the pool: the stream had not ended
        async with engine_errors(f"remove {container_id[:12]}"):
            try:
                await self._docker.services.delete(container_id)
            except aiodocker.DockerError as exc:
                if exc.status != NOT_FOUND:
                    raise

    async def remove_stack(self, stack: str) -> int:
        found = await self._services(stack)
        await asyncio.gather(*(self.remove(str(s["ID"])) for s in found))
        return len(found)

    async def running_containers(self, stack: str) -> set[str]:
        """The stack's services whose task runs on a live node (a removed service's task
        lingers a moment, still running, while its node stops it: it does not count)."""
        services = {str(s["ID"]) for s in await self._services(stack)}
        tasks, live = await self._tasks_of(stack), await self._live_nodes()
        return {
            str(t["ServiceID"])
            for t in tasks
            if t.get("Status", {}).get("State") == "running"
            and t["ServiceID"] in services
            and not is_lost(t, live)
        }

    async def output(self, container_id: str, since_s: float) -> AsyncIterator[OutputLine]:
        """The service's log (the manager gathers it from the task's node), both streams
        told apart by the multiplexed stream's frames, as a container's are."""
        params = {
            "follow": "1",
            "timestamps": "1",
            "stdout": "1",
            "stderr": "1",
            "since": str(int(since_s)),  # whole seconds: older lines are dropped below
        }
        # aiodocker's logs() would leave the connection open when the stream is left early;
        # the response is closed here, whatever happens.
        query = self._docker._query(
            f"services/{container_id}/logs", params=params, timeout=NO_TIMEOUT
        )
        if container_id in self._removed:
            return  # removed before its output was asked for
        self._follows[container_id] = None  # from here on, remove() ends this follow
        try:
            async with engine_errors(f"logs of {container_id[:12]}"), query as response:
                try:
                    if container_id not in self._follows:
                        return  # removed while the request was on its way
                    self._follows[container_id] = response
                    while (frame := await read_frame(response.content)) is not None:
                        if (line := _output_line(*frame, since_s)) is not None:
                            yield line
                except aiohttp.ClientError:
                    if container_id in self._follows:
                        raise  # a failure, not remove() closing the stream
                finally:
                    response.close()
        except EngineUnavailable:
            if container_id in self._follows:
                raise  # not removed: a failure
            # removed while the request was on its way: the service had no log left to give
        finally:
            self._follows.pop(container_id, None)

    async def memory_peak_mb(self, container_id: str) -> int | None:
        return None  # a container's stats are its own node's engine's

    async def exits(self, stack: str) -> AsyncIterator[ContainerExit]:
        """Tasks of ``stack`` that ended, or were lost with their node, each once, polled
        every :data:`EXIT_POLL_S`."""
        reported: set[str] = set()
        while True:
            tasks, live = await self._tasks_of(stack), await self._live_nodes()
            for task in tasks:
                if has_ended(task, live) and task["ID"] not in reported:
                    reported.add(str(task["ID"]))
                    if is_lost(task, live):
                        log.warning(
                            "task lost with its node",
                            service=str(task["ServiceID"])[:12],
                            node=str(task["NodeID"])[:12],
                        )
                    is_oom = was_killed(task) and await self._was_oom_killed(task)
                    yield task_exit(str(task["ServiceID"]), task, is_oom=is_oom)
            reported &= {str(t["ID"]) for t in tasks}  # a removed service's tasks are gone
            await asyncio.sleep(EXIT_POLL_S)

    async def _tasks_of(self, stack: str) -> list[dict[str, Any]]:
        async with engine_errors(f"tasks of {stack}"):
            tasks = await self._docker.tasks.list(filters={"label": f"{LABEL_STACK}={stack}"})
        return [dict(t) for t in tasks]

    async def _live_nodes(self) -> frozenset[str]:
        async with engine_errors("nodes"):
            return live_nodes(list(await self._docker.nodes.list()))

    async def _services(self, stack: str) -> list[Any]:
        async with engine_errors(f"services of {stack}"):
            return list(
                await self._docker.services.list(filters={"label": f"{LABEL_STACK}={stack}"})
            )

    async def _remove_quietly(self, service_id: str) -> None:
        try:
            await self.remove(service_id)
        except EngineUnavailable as exc:
            log.warning("could not remove service", service=service_id[:12], error=str(exc))


def _output_line(kind: int, data: bytes, since_s: float) -> OutputLine | None:
    """One frame of a service's log (``<RFC 3339 stamp> <text>``); None for another stream
    type, or a line stamped before ``since_s``."""
    stream = FRAME_STREAMS.get(kind)
    if stream is None or not data:
        return None
    time_s, text = parse_docker_line(data.decode("utf-8", "replace"))
    return OutputLine(time_s, stream, text) if time_s >= since_s else None
