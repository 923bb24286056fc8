"""What a function container is: its spec (pure), and the narrow backend Protocol that runs
it. :mod:`edgelambda.docker_backend` is the real backend; unit tests use fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from edgelambda.images import TASK_ROOT
from edgelambda.logs import OutputLine
from edgelambda.routing import FunctionSpec

LABEL_FUNCTION = "edgelambda.function"
LABEL_INSTANCE = "edgelambda.instance"
LABEL_STACK = "edgelambda.stack"
LABEL_IMAGE = "edgelambda.image"

SANDBOX_USER = "993:990"  # the uid Lambda's sbx_user1051 has; never root
TMP_SIZE_MB = 512  # Lambda's default ephemeral storage
PIDS_LIMIT = 1024  # Lambda's process/thread limit
MB_PER_VCPU = 1769  # Lambda gives one vCPU per 1,769 MB
CUSTOM_RUNTIME_PREFIX = "provided"  # provided, provided.al2, provided.al2023
RUNTIME_ALIAS_PREFIX = "runtime-"  # + a sandbox's token: a DNS label of 40 characters


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to create one hardened function container."""

    name: str
    image: str
    command: tuple[str, ...]
    env: Mapping[str, str]
    labels: Mapping[str, str]
    network: str
    memory_mb: int
    cpus: float
    pids_limit: int = PIDS_LIMIT
    user: str = SANDBOX_USER
    tmp_size_mb: int = TMP_SIZE_MB
    entrypoint: tuple[str, ...] | None = None  # None: the image's own
    extra_hosts: tuple[str, ...] = ()  # "name:address" lines for the container's /etc/hosts
    # Where a cluster may place it (Swarm constraints, "node.labels.zone == edge-a"); one
    # engine has one place.
    placement: tuple[str, ...] = ()


@dataclass(frozen=True)
class StartedContainer:
    id: str
    address: str  # IPv4 address on the function network; identifies Runtime API callers


@dataclass(frozen=True)
class ContainerExit:
    """The engine reported that a container's process ended."""

    container_id: str
    exit_code: int
    is_oom: bool


@dataclass(frozen=True)
class BackendAbilities:
    """What a backend can do beyond running containers: keep a stopped one to start again
    (a warm start), and freeze a running one (the frozen standby). One engine can; a
    cluster's scheduler cannot (its tasks are never started again, and freezing is one
    node's own)."""

    can_restart: bool = True
    can_freeze: bool = True


class ContainerBackend(Protocol):
    """The container engine as the pool sees it."""

    abilities: BackendAbilities

    async def engine_version(self) -> str:
        """The engine's name and version, for the console."""

    async def network_gateway(self, network: str) -> str:
        """Ensure the bridge network exists; return its gateway address."""

    async def function_image(self, function: FunctionSpec, base_image: str) -> str:
        """Ensure the function's image exists (built from its code); return its tag."""

    async def start(self, spec: ContainerSpec) -> StartedContainer:
        """Create and start a container."""

    async def stop(self, container_id: str) -> None:
        """Stop a container but keep it for a later :meth:`restart`."""

    async def restart(self, container_id: str) -> str:
        """Start a stopped container again; return its (new) address."""

    async def pause(self, container_id: str) -> None:
        """Freeze a running container: no CPU, its memory and connections kept."""

    async def unpause(self, container_id: str) -> None:
        """Let a paused container run on from where it was frozen."""

    async def remove(self, container_id: str) -> None:
        """Kill and remove a container; a container already gone is not an error."""

    async def remove_stack(self, stack: str) -> int:
        """Remove every container labelled with ``stack``; return how many."""

    async def running_containers(self, stack: str) -> set[str]:
        """Ids of the running containers labelled with ``stack``."""

    def output(self, container_id: str, since_s: float) -> AsyncIterator[OutputLine]:
        """What the container prints from ``since_s`` on, line by line, until it stops."""

    async def memory_peak_mb(self, container_id: str) -> int | None:
        """The container's peak memory use (cgroup), or None when the engine cannot tell."""

    def exits(self, stack: str) -> AsyncIterator[ContainerExit]:
        """Exits of ``stack``'s containers as the engine reports them. Ends, or raises
        EngineUnavailable, when the engine's event stream ends."""


def runtime_alias(token: str) -> str:
    """The host name a sandbox calls its Runtime API by: it carries the sandbox's secret
    token, so the Runtime API knows its caller by the name it called (HTTP's ``Host``) as well
    as by its address, which the engine may give to another container after a restart."""
    return f"{RUNTIME_ALIAS_PREFIX}{token}"


def runtime_token(host: str) -> str | None:
    """The token in a Runtime API request's ``Host`` (``runtime-<token>:<port>``), if any."""
    name = host.rpartition(":")[0] or host
    return (
        name.removeprefix(RUNTIME_ALIAS_PREFIX) if name.startswith(RUNTIME_ALIAS_PREFIX) else None
    )


def container_spec(
    function: FunctionSpec,
    *,
    image: str,
    instance: str,
    stack: str,
    network: str,
    runtime_api: str,
    region: str,
    host_cpus: int,
    aws_env: Mapping[str, str] | None = None,
    token: str | None = None,
) -> ContainerSpec:
    """The spec of one sandbox of ``function``: Lambda's environment, labels and limits.
    With a ``token``, the sandbox reaches the Runtime API (``address:port``) by its own
    :func:`runtime_alias`, an entry of its /etc/hosts; every runtime takes
    ``AWS_LAMBDA_RUNTIME_API`` as ``host:port``, so a name works wherever an address does."""
    is_custom_runtime = function.runtime.startswith(CUSTOM_RUNTIME_PREFIX)
    extra_hosts: tuple[str, ...] = ()
    if token is not None:
        address, _, port = runtime_api.rpartition(":")
        runtime_api = f"{runtime_alias(token)}:{port}"
        extra_hosts = (f"{runtime_alias(token)}:{address}",)
    return ContainerSpec(
        extra_hosts=extra_hosts,
        name=f"{stack}-{function.name}-{instance[:12]}".lower(),
        image=image,
        # A custom runtime is the function's own bootstrap, as on Lambda's provided runtimes.
        entrypoint=(f"{TASK_ROOT}/bootstrap",) if is_custom_runtime else None,
        command=(function.handler,) if function.handler and not is_custom_runtime else (),
        env=function_env(
            function,
            instance=instance,
            runtime_api=runtime_api,
            region=region,
            aws_env=aws_env or {},
        ),
        labels={
            LABEL_FUNCTION: function.name,
            LABEL_INSTANCE: instance,
            LABEL_STACK: stack,
            LABEL_IMAGE: image,
        },
        network=network,
        placement=function.placement,
        memory_mb=function.memory_mb,
        # At least one full CPU: Lambda's small fractions would make cold starts crawl here.
        cpus=min(float(host_cpus), max(1.0, function.memory_mb / MB_PER_VCPU)),
    )


def function_env(
    function: FunctionSpec,
    *,
    instance: str,
    runtime_api: str,
    region: str,
    aws_env: Mapping[str, str],
) -> dict[str, str]:
    """The user's variables overlaid with Lambda's reserved ones (which always win), and
    the stack's AWS environment (the box's credentials and its service endpoints,
    ``AWS_ENDPOINT_URL_S3`` ...) so unmodified SDK code reaches the stack; a function may
    still point an endpoint elsewhere itself. No ``AWS_SESSION_TOKEN``: the box's keys are
    static, and RustFS refuses a session token presented with them."""
    reserved = {
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(max(1, round(function.timeout_s))),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"$LATEST/{instance}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "_HANDLER": function.handler,
        "LAMBDA_TASK_ROOT": TASK_ROOT,
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "TZ": ":UTC",
    }
    return {**aws_env, **function.environment, **reserved}
