"""The Docker Engine backend: the only module that talks to aiodocker.

Every engine error is wrapped into :class:`EngineUnavailable` here, where it happens.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiodocker
import aiohttp
import structlog
from aiodocker.events import DockerEvents

from edgelambda import images
from edgelambda.config import Settings
from edgelambda.containers import (
    LABEL_FUNCTION,
    LABEL_STACK,
    BackendAbilities,
    ContainerExit,
    ContainerSpec,
    StartedContainer,
)
from edgelambda.docker_logs import ContainerOutput, LogVolume
from edgelambda.errors import EngineUnavailable
from edgelambda.logs import OutputLine
from edgelambda.routing import FunctionSpec

log = structlog.get_logger(__name__)

NOT_FOUND = 404
CONFLICT = 409


@dataclass(frozen=True)
class LogLimits:
    """How much output the engine keeps per function container: ``max_files`` files of
    ``max_size_mb`` each, the oldest dropped on rotation."""

    max_size_mb: int = 10
    max_files: int = 3


@dataclass(frozen=True)
class BackendLimits:
    """The bounds this backend puts on what functions bring (code) and produce (output)."""

    code: images.CodeLimits = field(default_factory=images.CodeLimits)
    logs: LogLimits = field(default_factory=LogLimits)

    @classmethod
    def from_settings(cls, settings: Settings) -> BackendLimits:
        return cls(
            code=images.CodeLimits(
                max_bytes=settings.code_max_mb * 1024 * 1024,
                max_files=settings.code_max_files,
            ),
            logs=LogLimits(
                max_size_mb=settings.function_log_max_mb,
                max_files=settings.function_log_max_files,
            ),
        )


@asynccontextmanager
async def engine_errors(action: str) -> AsyncIterator[None]:
    """Turn aiodocker and connection errors into EngineUnavailable naming the action."""
    try:
        yield
    except aiodocker.DockerError as exc:
        raise EngineUnavailable(f"{action}: {exc.message} (status {exc.status})") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise EngineUnavailable(f"{action}: engine unreachable: {exc}") from exc


async def engine_client(url: str | None = None) -> aiodocker.Docker:
    """A client of the engine at ``url``, or wherever aiodocker finds it (the Docker context,
    DOCKER_HOST, the local sockets). aiohttp lets a connector hold 100 connections, and the
    gateway keeps one open per running container (its output follow), so past 100 containers
    every engine call would wait for a free one: no start, stop or removal. On a Unix socket
    the client therefore gets a connector without that limit, which
    :func:`close_engine_client` closes."""
    docker = aiodocker.Docker(url=url)
    if not isinstance(docker.connector, aiohttp.UnixConnector):
        return docker  # TCP or SSH: aiodocker's own connector
    path = docker.connector.path
    await docker.close()
    unlimited = aiohttp.UnixConnector(path, limit=0)
    return aiodocker.Docker(url="unix://localhost", connector=unlimited)  # a host for URLs


async def close_engine_client(docker: aiodocker.Docker) -> None:
    await docker.close()
    await docker.connector.close()  # engine_client's own, which aiodocker leaves open


class DockerBackend:
    """:class:`edgelambda.containers.ContainerBackend` on the Docker Engine API."""

    abilities = BackendAbilities()  # one engine keeps and freezes containers

    def __init__(self, docker: aiodocker.Docker, limits: BackendLimits | None = None) -> None:
        self._docker = docker
        self._limits = limits or BackendLimits()
        self._image_builds: dict[str, asyncio.Task[str]] = {}
        self._log_volumes: dict[str, LogVolume] = {}  # by container, until it is removed

    @classmethod
    async def connect(cls, limits: BackendLimits | None = None) -> DockerBackend:
        """Connect to the engine aiodocker finds (the Docker context, DOCKER_HOST, the local
        socket)."""
        async with engine_errors("connect"):
            docker = await engine_client()
            try:
                await docker.version()
            except BaseException:
                await close_engine_client(docker)
                raise
        return cls(docker, limits)

    async def close(self) -> None:
        for build in self._image_builds.values():
            build.cancel()
        await asyncio.gather(*self._image_builds.values(), return_exceptions=True)
        await close_engine_client(self._docker)

    async def engine_version(self) -> str:
        return await engine_version(self._docker)

    async def network_gateway(self, network: str) -> str:
        async with engine_errors(f"network {network}"):
            info = await find_network(self._docker, network)
            if info is None:
                created = await self._docker.networks.create(
                    {"Name": network, "Driver": "bridge", "CheckDuplicate": True}
                )
                info = await created.show()
                log.info("network created", network=network)
        gateway = gateway_address(info)
        if gateway is None:
            raise EngineUnavailable(f"network {network} has no IPv4 gateway address")
        return gateway

    async def function_image(self, function: FunctionSpec, base_image: str) -> str:
        # Every cold start packs the code anew (raising CodeError when it cannot): the tag
        # is the hash of this very tar, which is also what a build sends.
        context = await self._build_context(function, base_image)
        tag = images.image_tag(function.name, context.digest)
        # Concurrent cold starts of one function share a single build.
        build = self._image_builds.get(tag)
        if build is None or build.cancelled():
            build = asyncio.create_task(self._ensure_image(tag, function, context))
            build.add_done_callback(lambda _: context.close())  # the build owns the tar
            self._image_builds[tag] = build
        else:
            context.close()  # these very bytes are being (or were) built by another call
        try:
            return await asyncio.shield(build)
        except EngineUnavailable:
            self._image_builds.pop(tag, None)
            raise

    async def _build_context(self, function: FunctionSpec, base_image: str) -> images.BuildContext:
        """The code and layers on the runtime's base image, or an image function's own
        Dockerfile directory (which names its base itself)."""
        if function.dockerfile is not None:
            return await asyncio.to_thread(
                images.image_context,
                function.code_dir,
                function.dockerfile,
                limits=self._limits.code,
            )
        base = await self._base_image(base_image)
        return await asyncio.to_thread(
            images.build_context,
            function.code_dir,
            base_image,
            base_image_id=base["Id"],
            limits=self._limits.code,
            layers=function.layers,
            inline=(
                (images.INLINE_MODULE_FILE, function.inline_code)
                if function.inline_code is not None
                else None
            ),
        )

    async def _base_image(self, name: str) -> dict[str, Any]:
        """The runtime base image, pulled once if this engine does not have it yet."""
        async with engine_errors(f"base image {name}"):
            try:
                info: dict[str, Any] = await self._docker.images.inspect(name)
                return info
            except aiodocker.DockerError as exc:
                if exc.status != NOT_FOUND:
                    raise
        log.info("pulling base image", image=name)
        try:
            await self._docker.images.pull(name)
        except (aiodocker.DockerError, aiohttp.ClientError) as exc:
            raise EngineUnavailable(
                f"base image {name} is not on this engine and cannot be pulled ({exc}); "
                "build a local one with `make base-images` and map the runtime to it with "
                "EDGELAMBDA_RUNTIME_IMAGES"
            ) from exc
        async with engine_errors(f"base image {name}"):
            pulled: dict[str, Any] = await self._docker.images.inspect(name)
            return pulled

    async def _ensure_image(
        self, tag: str, function: FunctionSpec, context: images.BuildContext
    ) -> str:
        async with engine_errors(f"build {tag}"):
            try:
                await self._docker.images.inspect(tag)
                return tag
            except aiodocker.DockerError as exc:
                if exc.status != NOT_FOUND:
                    raise
            output = await self._docker.images.build(
                fileobj=context.file,
                encoding="application/x-tar",
                path_dockerfile=context.dockerfile,
                tag=tag,
                labels={LABEL_FUNCTION: function.name},
                rm=True,
                forcerm=True,
            )
        errors = [line["error"] for line in output if "error" in line]
        if errors:
            raise EngineUnavailable(f"build {tag}: {errors[-1].strip()}")
        log.info("image built", function=function.name, image=tag)
        return tag

    async def start(self, spec: ContainerSpec) -> StartedContainer:
        async with engine_errors(f"start {spec.name}"):
            config = engine_config(spec, self._limits.logs)
            container = await self._docker.containers.create(config, name=spec.name)
            try:
                await container.start()
                info = await container.show()
            except BaseException:
                await self._remove_quietly(container.id)
                raise
        return StartedContainer(id=container.id, address=_address(info))

    async def stop(self, container_id: str) -> None:
        # An idle runtime holds no work, so there is nothing to wait for: kill it at once.
        async with engine_errors(f"stop {container_id[:12]}"):
            try:
                await self._docker.containers.container(container_id).kill(signal="SIGKILL")
            except aiodocker.DockerError as exc:
                if exc.status != CONFLICT:  # 409: it is not running any more
                    raise

    async def restart(self, container_id: str) -> str:
        async with engine_errors(f"restart {container_id[:12]}"):
            container = self._docker.containers.container(container_id)
            await container.start()
            info = await container.show()
        return _address(info)

    async def pause(self, container_id: str) -> None:
        # The engine freezes the container's cgroup (Engine API, "Pause a container").
        async with engine_errors(f"pause {container_id[:12]}"):
            await self._docker.containers.container(container_id).pause()

    async def unpause(self, container_id: str) -> None:
        async with engine_errors(f"unpause {container_id[:12]}"):
            await self._docker.containers.container(container_id).unpause()

    async def remove(self, container_id: str) -> None:
        self._log_volumes.pop(container_id, None)
        async with engine_errors(f"remove {container_id[:12]}"):
            try:
                await self._docker.containers.container(container_id).delete(force=True, v=True)
            except aiodocker.DockerError as exc:
                if exc.status != NOT_FOUND:
                    raise

    async def remove_stack(self, stack: str) -> int:
        async with engine_errors(f"list containers of {stack}"):
            found = await self._docker.containers.list(all=True, filters=_stack_filter(stack))
        await asyncio.gather(*(self.remove(c.id) for c in found))
        return len(found)

    async def output(self, container_id: str, since_s: float) -> AsyncIterator[OutputLine]:
        # Timestamps let lines of an earlier run of a restarted container be told apart and
        # attributed; the volume estimate outlives a run (the log file does too).
        output = ContainerOutput(
            self._docker,
            container_id,
            since_s,
            volume=self._log_volumes.setdefault(container_id, LogVolume()),
            watch_after_bytes=self._limits.logs.max_size_mb * 1024 * 1024 // 2,
        )
        async for line in output.lines():
            yield line

    async def memory_peak_mb(self, container_id: str) -> int | None:
        try:
            # one-shot (Engine API 1.41) answers at once instead of sampling for a second;
            # aiodocker's stats() cannot pass it.
            stats = await self._docker._query_json(
                f"containers/{container_id}/stats", params={"stream": "0", "one-shot": "1"}
            )
        except (aiodocker.DockerError, aiohttp.ClientError):
            return None
        # A container that has just exited (crashed, OOM-killed) has no stats: null, or
        # null/empty memory_stats.
        memory = stats.get("memory_stats") if isinstance(stats, dict) else None
        peak = memory.get("max_usage") if isinstance(memory, dict) else None
        return round(peak / 1024 / 1024) if isinstance(peak, int) else None

    async def running_containers(self, stack: str) -> set[str]:
        async with engine_errors(f"list containers of {stack}"):
            found = await self._docker.containers.list(filters=_stack_filter(stack))
        return {c.id for c in found}

    async def exits(self, stack: str) -> AsyncIterator[ContainerExit]:
        filters = _stack_filter(stack, type=["container"], event=["die"])
        # A fresh DockerEvents per call, so a stream that ended can be opened again.
        events = DockerEvents(self._docker)  # type: ignore[no-untyped-call]  # untyped in aiodocker
        subscriber = events.subscribe(create_task=False)  # type: ignore[no-untyped-call]
        stream = asyncio.create_task(events.run(filters=filters))
        try:
            while (event := await subscriber.get()) is not None:
                yield await self._exit_of(event["Actor"]["ID"], event["Actor"]["Attributes"])
            if not stream.cancelled() and stream.done() and stream.exception() is not None:
                raise EngineUnavailable(f"event stream failed: {stream.exception()}")
            raise EngineUnavailable("the engine closed its event stream")
        finally:
            stream.cancel()
            await asyncio.gather(stream, return_exceptions=True)

    async def _exit_of(self, container_id: str, attributes: dict[str, str]) -> ContainerExit:
        exit_code = int(attributes.get("exitCode", "-1"))
        try:
            info = await self._docker.containers.container(container_id).show()
            is_oom = bool(info["State"].get("OOMKilled"))
        except aiodocker.DockerError:  # already removed: it cannot tell us more
            is_oom = False
        return ContainerExit(container_id, exit_code=exit_code, is_oom=is_oom)

    async def _remove_quietly(self, container_id: str) -> None:
        try:
            await self.remove(container_id)
        except EngineUnavailable as exc:
            log.warning("could not remove container", container=container_id[:12], error=str(exc))


async def engine_version(docker: aiodocker.Docker) -> str:
    """The engine's product, version and API version, as ``GET /version`` reports them."""
    async with engine_errors("version"):
        version = await docker.version()
    return f"Docker {version.get('Version', '?')} (API {version.get('ApiVersion', '?')})"


async def find_network(docker: aiodocker.Docker, name: str) -> dict[str, Any] | None:
    """The network named exactly ``name``, or None: look before creating, as Engine 1.41
    lets two networks share a name (and its name filter matches parts of names)."""
    found = await docker.networks.list(filters={"name": name})
    return next((dict(n) for n in found if n["Name"] == name), None)


def gateway_address(info: dict[str, Any]) -> str | None:
    """A network's IPv4 gateway address, or None while it has none."""
    configs = info.get("IPAM", {}).get("Config") or []
    return next((str(c["Gateway"]) for c in configs if "." in c.get("Gateway", "")), None)


def _stack_filter(stack: str, **more: list[str]) -> str:
    """Engine API ``filters`` selecting the containers (or events) of one stack."""
    return json.dumps({"label": [f"{LABEL_STACK}={stack}"], **more})


def _address(info: dict[str, Any]) -> str:
    """The container's IPv4 address on its (single) network."""
    networks = info["NetworkSettings"]["Networks"]
    return str(next(iter(networks.values()))["IPAddress"])


def engine_config(spec: ContainerSpec, logs: LogLimits | None = None) -> dict[str, Any]:
    """Engine API ``containers/create`` body for a hardened sandbox."""
    logs = logs or LogLimits()
    memory = spec.memory_mb * 1024 * 1024
    entrypoint = {} if spec.entrypoint is None else {"Entrypoint": list(spec.entrypoint)}
    return {
        **entrypoint,
        "Image": spec.image,
        "Cmd": list(spec.command),
        "Env": [f"{key}={value}" for key, value in spec.env.items()],
        "Labels": dict(spec.labels),
        "User": spec.user,
        "HostConfig": {
            "NetworkMode": spec.network,
            "Memory": memory,
            "MemorySwap": memory,  # no swap: an over-allocation is OOM-killed as on Lambda
            "NanoCpus": int(spec.cpus * 1e9),
            "PidsLimit": spec.pids_limit,
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "ReadonlyRootfs": True,
            "Tmpfs": {"/tmp": f"rw,nosuid,nodev,size={spec.tmp_size_mb}m"},
            "LogConfig": log_config(logs),
            "ExtraHosts": list(spec.extra_hosts),  # the sandbox's name for the Runtime API
        },
    }


def log_config(logs: LogLimits) -> dict[str, Any]:
    """``HostConfig.LogConfig``: the json-file driver, rotated, so a chatty function cannot
    fill the engine's disk; the engine's defaults keep every line (max-size -1). The options
    are strings, units k/m/g, and max-file counts only with max-size
    (https://docs.docker.com/engine/logging/drivers/json-file/). ``output()`` follows the
    engine's log stream across rotations (resuming it where Docker 20.10's follow stalls:
    :mod:`edgelambda.docker_logs`); with max-file 1 a follow hangs at every rotation
    (moby/moby#39235), so the settings require at least 2."""
    return {
        "Type": "json-file",
        "Config": {"max-size": f"{logs.max_size_mb}m", "max-file": str(logs.max_files)},
    }
