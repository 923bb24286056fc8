"""Settings, read once from the environment into a typed, frozen value.

The names kept from the original system (``IDLE_TIMEOUT_MINUTES``, ``DOCKER_NETWORK``, ...)
are read as they are; everything else uses the ``EDGELAMBDA_`` prefix. A bad value raises
:class:`ConfigError` naming the variable, and start-up stops.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import platform
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from edgelambda.aws import ACCOUNT_ID
from edgelambda.errors import ConfigError
from edgelambda.sam_import import ImportOptions, lambda_architecture, parse_overrides

DEFAULT_JWT_SECRET = "dev-jwt-secret-change-in-production-please"  # >= 32 bytes for HS256
DEFAULT_API_KEY = "dev-api-key-change-in-production"
DEFAULT_AUTH_PASS = "onpremise-pass"
# The box's AWS credentials: RustFS's root keys, the keys functions and the gateway sign S3
# and DynamoDB calls with, and the keys a SigV4-signed Invoke call must verify against.
DEFAULT_ACCESS_KEY_ID = "edgelambda"
DEFAULT_SECRET_ACCESS_KEY = "edgelambda"
MIN_SECRET_BYTES = 32

# Runtime -> base image. AWS's public images by default; air-gapped boxes and the tests
# point these at the locally built base (`make base-images`) with EDGELAMBDA_RUNTIME_IMAGES.
DEFAULT_RUNTIME_IMAGES: Mapping[str, str] = MappingProxyType(
    {
        "python3.9": "public.ecr.aws/lambda/python:3.9",
        "python3.10": "public.ecr.aws/lambda/python:3.10",
        "python3.11": "public.ecr.aws/lambda/python:3.11",
        "python3.12": "public.ecr.aws/lambda/python:3.12",
        "python3.13": "public.ecr.aws/lambda/python:3.13",
        "provided.al2": "public.ecr.aws/lambda/provided:al2",
        "provided.al2023": "public.ecr.aws/lambda/provided:al2023",
    }
)

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """Everything the gateway reads from its environment."""

    host: str = "0.0.0.0"
    port: int = 8000
    routing_config_path: Path = Path("routing.yaml")
    # The directory that code, layers and image directories must lie inside; None: the
    # routing file's directory.
    code_root: Path | None = None
    idle_timeout_s: float = 300.0
    docker_network: str = "edgelambda_default"
    api_key: str = DEFAULT_API_KEY
    auth_user: str = "onpremise-user"
    auth_pass: str = DEFAULT_AUTH_PASS
    jwt_secret: str = DEFAULT_JWT_SECRET
    jwt_expires_s: int = 3000
    auth_endpoint_path: str = "/user/auth/ver1.0"
    is_production: bool = False
    aws_access_key_id: str = DEFAULT_ACCESS_KEY_ID
    aws_secret_access_key: str = DEFAULT_SECRET_ACCESS_KEY
    # Address the Runtime API binds to and that containers are told to call; None means
    # the function network's gateway address (the gateway runs on the Docker host).
    runtime_api_host: str | None = None
    runtime_api_port: int = 9001
    # The gateway's address as functions see it (AWS_ENDPOINT_URL_LAMBDA); None means
    # http://<runtime api host>:<port>.
    lambda_endpoint_url: str | None = None
    cli_gateway_url: str | None = None  # EDGELAMBDA_URL, for the CLI
    # The stack's services, given to functions as AWS_ENDPOINT_URL_S3 / _DYNAMODB and used
    # to create the declared buckets and tables.
    s3_endpoint_url: str | None = None
    dynamodb_endpoint_url: str | None = None
    resources_wait_s: float = 120.0  # how long start-up waits for S3/DynamoDB to answer
    runtime_images: Mapping[str, str] = field(default_factory=lambda: DEFAULT_RUNTIME_IMAGES)
    # A code directory packed into an image: at most this size and file count, else the
    # function's start fails (502). The engine's log files kept per function container.
    code_max_mb: int = 250  # AWS's limit for an unzipped deployment package
    code_max_files: int = 20_000
    function_log_max_mb: int = 10
    function_log_max_files: int = 3
    stack: str = "edgelambda"  # from_env's default is per deployment: default_stack()
    region: str = "us-east-1"
    # A SAM template served as the routing file: its stack name (AWS::StackName) and its
    # parameters' values, as `sam deploy --parameter-overrides` takes them.
    sam_stack_name: str = "sam-app"
    sam_parameters: Mapping[str, str] = field(default_factory=dict)
    shutdown_grace_s: float = 10.0
    queue_size: int = 100  # invocations waiting per function before 429
    queue_wait_s: float = 30.0  # longest wait for a sandbox before 429
    queued_payload_mb: int = 256  # all functions' waiting payloads together, before 429
    stopped_retention_s: float = 3600.0  # how long a stopped container is kept for warm starts
    reap_interval_s: float = 1.0  # how often the reaper looks for idle containers
    freeze_after_s: float = 5.0  # idle seconds before a ready container is paused; 0: never
    data_dir: Path = Path("data")  # durable state: the async event queue
    event_retry_delays_s: tuple[float, ...] = (60.0, 120.0)  # AWS's back-off for Event calls
    event_max_age_s: float = 21600.0  # MaximumEventAgeInSeconds
    event_concurrency: int = 4  # Event invocations run at once
    event_queue_size: int = 1000  # Event invocations stored per function before 429
    event_dead_letter_retention_s: float = 1_209_600.0  # 14 days, SQS's longest retention
    event_dead_letter_max: int = 10_000  # dead letters kept; beyond, the oldest are dropped
    victorialogs_url: str | None = None  # None: function logs go to the gateway's stdout
    # VictoriaLogs as a browser reaches it, for the console's links to its UI (":PORT": the
    # console's own host on that port); None: the gateway's own URL for it.
    victorialogs_ui_url: str | None = None
    console_refresh_s: float = 1.0  # how often open consoles are sent what changed
    log_batch_size: int = 500
    log_flush_interval_s: float = 1.0
    log_buffer_records: int = 20_000  # held while the log store is unreachable
    is_reload_enabled: bool = True  # watch routing.yaml and code directories
    reload_debounce_ms: int = 400
    init_timeout_s: float = 10.0  # Lambda's limit for the init phase
    # The login endpoint: largest body read; failed logins per address within a window before
    # 429; addresses remembered at most (the oldest are forgotten first).
    login_max_body_bytes: int = 16_384
    login_max_failures: int = 5
    login_failure_window_s: float = 60.0
    login_throttle_addresses: int = 10_000
    # Slow clients: time to send a request's headers (also the idle keep-alive time), and
    # connections open at once on each listener; beyond it a new one gets 503 and is closed;
    # and of those, connections open at once from one client address (503 beyond it too).
    header_read_timeout_s: float = 10.0
    max_connections: int = 1000
    max_connections_per_address: int = 250
    log_format: str = "console"
    # "uvloop" when it is installed, else "asyncio".
    event_loop: str = field(default_factory=lambda: _default_event_loop())
    # docker: containers on the one engine; swarm: tasks of the Swarm that engine manages.
    backend: str = "docker"
    # swarm: the registry function images are pushed to and every node pulls them from,
    # as host:port the engines reach (127.0.0.1:5000: each node's own mirror of it).
    registry: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read and validate every setting from ``env`` (normally ``os.environ``)."""
        settings = cls(
            host=_read(env, "EDGELAMBDA_HOST", cls.host, _non_empty),
            port=_read(env, "EDGELAMBDA_PORT", cls.port, _port),
            routing_config_path=_read(env, "ROUTING_CONFIG_PATH", cls.routing_config_path, Path),
            code_root=_read(env, "EDGELAMBDA_CODE_ROOT", cls.code_root, _directory),
            idle_timeout_s=_read(env, "IDLE_TIMEOUT_MINUTES", 5.0, _positive_float) * 60,
            docker_network=_read(env, "DOCKER_NETWORK", cls.docker_network, _non_empty),
            api_key=_read(env, "X_API_KEY", cls.api_key, _non_empty),
            auth_user=_read(env, "AUTH_USER", cls.auth_user, _non_empty),
            auth_pass=_read(env, "AUTH_PASS", cls.auth_pass, _non_empty),
            jwt_secret=_read(env, "JWT_SECRET_KEY", cls.jwt_secret, _hs256_secret),
            jwt_expires_s=_read(env, "JWT_EXPIRES_DELTA", cls.jwt_expires_s, _positive_int),
            auth_endpoint_path=_read(env, "AUTH_ENDPOINT_PATH", cls.auth_endpoint_path, _url_path),
            is_production=_read(env, "EDGELAMBDA_PRODUCTION", False, _bool),
            aws_access_key_id=_read(
                env, "EDGELAMBDA_AWS_ACCESS_KEY_ID", cls.aws_access_key_id, _access_key_id
            ),
            aws_secret_access_key=_read(
                env, "EDGELAMBDA_AWS_SECRET_ACCESS_KEY", cls.aws_secret_access_key, _secret_key
            ),
            runtime_api_host=env.get("EDGELAMBDA_RUNTIME_API_HOST") or None,
            runtime_api_port=_read(env, "EDGELAMBDA_RUNTIME_API_PORT", 9001, _port),
            lambda_endpoint_url=env.get("EDGELAMBDA_LAMBDA_ENDPOINT_URL") or None,
            cli_gateway_url=env.get("EDGELAMBDA_URL") or None,
            s3_endpoint_url=env.get("EDGELAMBDA_S3_ENDPOINT_URL") or None,
            dynamodb_endpoint_url=env.get("EDGELAMBDA_DYNAMODB_ENDPOINT_URL") or None,
            resources_wait_s=_read(env, "EDGELAMBDA_RESOURCES_WAIT_S", 120.0, _positive_float),
            runtime_images=_read(env, "EDGELAMBDA_RUNTIME_IMAGES", {}, _image_map),
            code_max_mb=_read(env, "EDGELAMBDA_CODE_MAX_MB", cls.code_max_mb, _positive_int),
            code_max_files=_read(
                env, "EDGELAMBDA_CODE_MAX_FILES", cls.code_max_files, _positive_int
            ),
            function_log_max_mb=_read(
                env, "EDGELAMBDA_FUNCTION_LOG_MAX_MB", cls.function_log_max_mb, _positive_int
            ),
            function_log_max_files=_read(
                env, "EDGELAMBDA_FUNCTION_LOG_MAX_FILES", cls.function_log_max_files, _log_files
            ),
            stack=_read(env, "EDGELAMBDA_STACK", cls.stack, _label_value),
            region=_read(env, "AWS_REGION", cls.region, _non_empty),
            sam_stack_name=_read(env, "EDGELAMBDA_SAM_STACK_NAME", "sam-app", _stack_name),
            sam_parameters=_read(env, "EDGELAMBDA_SAM_PARAMETERS", {}, _sam_parameters),
            shutdown_grace_s=_read(env, "EDGELAMBDA_SHUTDOWN_GRACE_S", 10.0, _positive_float),
            queue_size=_read(env, "EDGELAMBDA_QUEUE_SIZE", cls.queue_size, _positive_int),
            queued_payload_mb=_read(
                env, "EDGELAMBDA_QUEUED_PAYLOAD_MB", cls.queued_payload_mb, _positive_int
            ),
            queue_wait_s=_read(env, "EDGELAMBDA_QUEUE_WAIT_S", 30.0, _positive_float),
            stopped_retention_s=_read(
                env, "EDGELAMBDA_STOPPED_RETENTION_S", 3600.0, _positive_float
            ),
            reap_interval_s=_read(env, "EDGELAMBDA_REAP_INTERVAL_S", 1.0, _positive_float),
            freeze_after_s=_read(env, "EDGELAMBDA_FREEZE_AFTER_S", 5.0, _non_negative_float),
            data_dir=Path(env.get("EDGELAMBDA_DATA_DIR") or "data"),
            event_retry_delays_s=_read(
                env, "EDGELAMBDA_EVENT_RETRY_DELAYS_S", (60.0, 120.0), _delays
            ),
            event_max_age_s=_read(env, "EDGELAMBDA_EVENT_MAX_AGE_S", 21600.0, _positive_float),
            event_concurrency=_read(env, "EDGELAMBDA_EVENT_CONCURRENCY", 4, _positive_int),
            event_queue_size=_read(env, "EDGELAMBDA_EVENT_QUEUE_SIZE", 1000, _positive_int),
            event_dead_letter_retention_s=_read(
                env, "EDGELAMBDA_EVENT_DEAD_LETTER_RETENTION_S", 1_209_600.0, _positive_float
            ),
            event_dead_letter_max=_read(
                env, "EDGELAMBDA_EVENT_DEAD_LETTER_MAX", 10_000, _positive_int
            ),
            victorialogs_url=env.get("EDGELAMBDA_VICTORIALOGS_URL") or None,
            victorialogs_ui_url=env.get("EDGELAMBDA_VICTORIALOGS_UI_URL") or None,
            console_refresh_s=_read(env, "EDGELAMBDA_CONSOLE_REFRESH_S", 1.0, _positive_float),
            log_batch_size=_read(env, "EDGELAMBDA_LOG_BATCH_SIZE", 500, _positive_int),
            log_flush_interval_s=_read(
                env, "EDGELAMBDA_LOG_FLUSH_INTERVAL_S", 1.0, _positive_float
            ),
            log_buffer_records=_read(env, "EDGELAMBDA_LOG_BUFFER_RECORDS", 20_000, _positive_int),
            is_reload_enabled=_read(env, "EDGELAMBDA_RELOAD", True, _bool),
            reload_debounce_ms=_read(env, "EDGELAMBDA_RELOAD_DEBOUNCE_MS", 400, _positive_int),
            init_timeout_s=_read(env, "EDGELAMBDA_INIT_TIMEOUT_S", 10.0, _positive_float),
            login_max_body_bytes=_read(
                env, "EDGELAMBDA_LOGIN_MAX_BODY_BYTES", 16_384, _positive_int
            ),
            login_max_failures=_read(env, "EDGELAMBDA_LOGIN_MAX_FAILURES", 5, _positive_int),
            login_failure_window_s=_read(
                env, "EDGELAMBDA_LOGIN_FAILURE_WINDOW_S", 60.0, _positive_float
            ),
            login_throttle_addresses=_read(
                env, "EDGELAMBDA_LOGIN_THROTTLE_ADDRESSES", 10_000, _positive_int
            ),
            header_read_timeout_s=_read(
                env, "EDGELAMBDA_HEADER_READ_TIMEOUT_S", 10.0, _positive_float
            ),
            max_connections=_read(env, "EDGELAMBDA_MAX_CONNECTIONS", 1000, _positive_int),
            max_connections_per_address=_read(
                env, "EDGELAMBDA_MAX_CONNECTIONS_PER_ADDRESS", 250, _positive_int
            ),
            log_format=_read(env, "EDGELAMBDA_LOG_FORMAT", cls.log_format, _log_format),
            event_loop=_read(env, "EDGELAMBDA_EVENT_LOOP", _default_event_loop(), _event_loop),
            backend=_read(env, "EDGELAMBDA_BACKEND", cls.backend, _backend),
            registry=_read(env, "EDGELAMBDA_REGISTRY", cls.registry, _registry),
        )
        if not env.get("EDGELAMBDA_STACK", "").strip():
            stack = default_stack(settings.data_dir, settings.port, settings.docker_network)
            settings = replace(settings, stack=stack)
        settings.check_production()
        return settings

    def __post_init__(self) -> None:
        merged = {**DEFAULT_RUNTIME_IMAGES, **self.runtime_images}
        object.__setattr__(self, "runtime_images", MappingProxyType(merged))

    def check_production(self) -> None:
        """Production mode refuses every development default that works as a secret."""
        if not self.is_production:
            return
        names = self.default_secrets()
        if names:
            raise ConfigError(
                f"{', '.join(names)}: the development default is refused in production mode;"
                " set each to a value of your own"
            )

    def default_secrets(self) -> list[str]:
        """The variables whose development default is still in use, by name."""
        defaults = (
            ("JWT_SECRET_KEY", self.jwt_secret, DEFAULT_JWT_SECRET),
            ("X_API_KEY", self.api_key, DEFAULT_API_KEY),
            ("AUTH_PASS", self.auth_pass, DEFAULT_AUTH_PASS),
            ("EDGELAMBDA_AWS_ACCESS_KEY_ID", self.aws_access_key_id, DEFAULT_ACCESS_KEY_ID),
            (
                "EDGELAMBDA_AWS_SECRET_ACCESS_KEY",
                self.aws_secret_access_key,
                DEFAULT_SECRET_ACCESS_KEY,
            ),
        )
        return [name for name, value, default in defaults if value == default]

    @property
    def aws_credentials(self) -> dict[str, str]:
        """The box's credentials as the AWS SDKs read them from the environment."""
        return {
            "AWS_ACCESS_KEY_ID": self.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.aws_secret_access_key,
        }

    @property
    def gateway_url(self) -> str:
        """Where the CLI finds a running gateway: EDGELAMBDA_URL, or this machine's port."""
        return self.cli_gateway_url or f"http://127.0.0.1:{self.port}"

    def sam_options(self) -> ImportOptions:
        """How a SAM template is converted: this stack's name, region and parameters."""
        return ImportOptions(
            stack=self.sam_stack_name,
            region=self.region,
            account_id=ACCOUNT_ID,
            parameter_overrides=self.sam_parameters,
            host_architecture=lambda_architecture(platform.machine()),
        )

    def base_image_for(self, runtime: str) -> str:
        """The base image of a runtime name such as ``python3.12``."""
        try:
            return self.runtime_images[runtime]
        except KeyError:
            known = ", ".join(sorted(self.runtime_images))
            raise ConfigError(f"runtime {runtime!r} has no base image (known: {known})") from None


def default_stack(data_dir: Path, port: int, docker_network: str) -> str:
    """The stack id of a gateway that names none: ``edgelambda-`` and a hash of what sets one
    deployment apart from another on the same engine.

    The pool removes every container labelled with its stack at start and shutdown, so two
    gateways sharing an id remove each other's containers. The absolute data directory and
    the port tell apart gateways started on the host (`make run` in two checkouts, or on two
    ports) and from the compose stack's gateway (/data in its container); the network tells
    apart compose projects, whose gateways all see /data and :8000. None of them changes when
    the same deployment restarts, so it still removes what its previous run left.
    """
    identity = f"{data_dir.resolve()}|{port}|{docker_network}"
    return f"edgelambda-{hashlib.sha256(identity.encode()).hexdigest()[:10]}"


def _read(env: Mapping[str, str], name: str, default: T, parse: Callable[[str], T]) -> T:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw.strip())
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r}: {exc}") from None


def _non_empty(raw: str) -> str:
    return raw


def _access_key_id(raw: str) -> str:
    # RustFS's bounds for access keys (rustfs/rustfs crates/policy/src/auth/credentials.rs:
    # ACCESS_KEY_MIN_LEN 3); '/', '=' and ',' would break a SigV4 Credential= field.
    if len(raw) < 3 or not raw.isascii() or any(c.isspace() or c in "/=," for c in raw):
        raise ValueError("must be at least 3 characters, without spaces, '/', '=' or ','")
    return raw


def _secret_key(raw: str) -> str:
    # RustFS's bound for secret keys (the same file: SECRET_KEY_MIN_LEN 8).
    if len(raw) < 8 or not raw.isascii() or any(c.isspace() for c in raw):
        raise ValueError("must be at least 8 characters, without spaces")
    return raw


def _hs256_secret(raw: str) -> str:
    if len(raw.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"must be at least {MIN_SECRET_BYTES} bytes (RFC 7518 for HS256)")
    return raw


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not 0 <= value < math.inf:
        raise ValueError("must be a number, 0 or more")
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _log_files(raw: str) -> int:
    # With one file, a reader following the log hangs when it rotates (moby/moby#39235).
    value = int(raw)
    if value < 2:
        raise ValueError("must be at least 2")
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number (0 picks a free one)")
    return value


def _delays(raw: str) -> tuple[float, ...]:
    """``60,120``: one delay in seconds per retry (an empty list means no retries)."""
    delays = tuple(float(part) for part in raw.split(",") if part.strip())
    if any(delay < 0 for delay in delays):
        raise ValueError("delays must not be negative")
    return delays


def _bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be true or false")


def _directory(raw: str) -> Path | None:
    path = Path(raw)
    if not path.is_dir():
        raise ValueError("must be an existing directory")
    return path.absolute()


def _url_path(raw: str) -> str:
    if not raw.startswith("/"):
        raise ValueError("must start with /")
    return raw


def _stack_name(raw: str) -> str:
    # CloudFormation's stack-name pattern: [a-zA-Z][-a-zA-Z0-9]*, at most 128 characters.
    if not re.fullmatch(r"[A-Za-z][-A-Za-z0-9]{0,127}", raw):
        raise ValueError("must be a letter, then letters, digits and '-' (128 at most)")
    return raw


def _sam_parameters(raw: str) -> dict[str, str]:
    return parse_overrides(shlex.split(raw))


def _label_value(raw: str) -> str:
    if not raw.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError("only letters, digits, '-', '_' and '.' are allowed")
    return raw


def _registry(raw: str) -> str:
    # A registry's host[:port], as an image reference starts (no scheme, no path).
    if not re.fullmatch(r"[A-Za-z0-9.-]+(?::[0-9]{1,5})?", raw):
        raise ValueError("must be host:port, as an image reference names a registry")
    return raw


def _backend(raw: str) -> str:
    if raw not in {"docker", "swarm"}:
        raise ValueError("must be docker or swarm")
    return raw


def _default_event_loop() -> str:
    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def _event_loop(raw: str) -> str:
    if raw not in {"asyncio", "uvloop"}:
        raise ValueError("must be asyncio or uvloop")
    if raw == "uvloop" and not importlib.util.find_spec("uvloop"):
        raise ValueError("uvloop is not installed")
    return raw


def _log_format(raw: str) -> str:
    if raw not in {"console", "json"}:
        raise ValueError("must be console or json")
    return raw


def _image_map(raw: str) -> Mapping[str, str]:
    """``python3.12=img:tag,python3.11=other`` -> {runtime: image}."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        runtime, sep, image = item.partition("=")
        if not sep or not runtime.strip() or not image.strip():
            raise ValueError(f"{item!r} is not runtime=image")
        pairs[runtime.strip()] = image.strip()
    return pairs
