"""The gateway's composition root: what the HTTP front needs, started and stopped in order
(the routing table, the container pool and its Runtime API server, the asynchronous event
queue and worker, the scheduler, the file watcher, the log shipper, the metrics)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable

import structlog

from edgelambda import tracing
from edgelambda.async_events import (
    DeadLetteredEvent,
    DeadLetterRetention,
    QueuedEvent,
    RetryPolicy,
)
from edgelambda.auth import LoginThrottle, ThrottlePolicy
from edgelambda.config import Settings
from edgelambda.containers import ContainerBackend
from edgelambda.errors import ConfigError, EdgeLambdaError, EventStoreError
from edgelambda.event_queue import QUEUE_FILE, EventQueue
from edgelambda.event_worker import EventWorker
from edgelambda.invocation import Invocation
from edgelambda.invoke_api import InvokeApi
from edgelambda.listener import ConnectionLimits
from edgelambda.log_shipper import ShipperSettings, VictoriaLogsSink
from edgelambda.logs import LogSink, StdoutSink
from edgelambda.metrics import Metrics
from edgelambda.pool import Pool
from edgelambda.reload import ReloadStatus, Watcher, classify, is_relevant, watched_paths
from edgelambda.resources import Endpoints, ensure_resources
from edgelambda.routing import RoutingTable
from edgelambda.routing_file import load_configured_routing
from edgelambda.runtime_api import RuntimeApi
from edgelambda.scheduler import Scheduler
from edgelambda.tasks import LoopRegistry

log = structlog.get_logger(__name__)

EVENT_COUNTS_WAIT_S = 1.0  # what /health and the console wait for the event store


class Server:
    """Owns what the HTTP front needs: the routing table, the pool and the Runtime API
    server. ``start()`` and ``close()`` run in the application's cleanup context."""

    def __init__(
        self,
        settings: Settings,
        table: RoutingTable,
        backend: ContainerBackend,
        sink: LogSink | None = None,
    ) -> None:
        self.settings = settings
        self.table = table
        self._backend = backend
        self._pool: Pool | None = None
        self._runtime_api: RuntimeApi | None = None
        self._watcher: Watcher | None = None
        self._events: EventQueue | None = None
        self._worker: EventWorker | None = None
        self._scheduler: Scheduler | None = None
        self._shipper: VictoriaLogsSink | None = None
        self.metrics = Metrics()
        self.login_throttle = LoginThrottle(ThrottlePolicy.of(settings))
        self.loops = LoopRegistry()  # every background loop, for /health
        self.sink: LogSink = sink or StdoutSink()
        if settings.victorialogs_url and sink is None:
            self._shipper = VictoriaLogsSink(
                ShipperSettings(
                    url=settings.victorialogs_url,
                    batch_size=settings.log_batch_size,
                    flush_interval_s=settings.log_flush_interval_s,
                    capacity=settings.log_buffer_records,
                )
            )
            self.sink = self._shipper
        self.runtime_api = ""
        self.invoke_api = InvokeApi(self)
        self.started_s = time.time()
        self.reload_status = ReloadStatus.accepted(self.started_s)  # the table it started with
        self.engine_version = ""  # the engine's version, asked once at start

    @property
    def log_shipper(self) -> VictoriaLogsSink | None:
        """The shipper of function logs to VictoriaLogs, when they go there."""
        return self._shipper

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            raise RuntimeError("the gateway has not been started")
        return self._pool

    @property
    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            raise RuntimeError("the gateway has not been started")
        return self._scheduler

    async def enqueue(self, function: str, payload: bytes, *, trace_id: str | None) -> str:
        """Store an Event invocation durably, then wake the worker."""
        if self._events is None or self._worker is None:
            raise RuntimeError("the gateway has not been started")
        event_id = await self._events.enqueue(
            function,
            payload,
            trace_id=trace_id,
            now_s=time.time(),
            max_queued=self.settings.event_queue_size,
        )
        self._worker.notify()
        return event_id

    async def event_counts(self) -> dict[str, int]:
        """Event invocations queued or running, and dead-lettered: what /health shows.
        Raises :class:`~edgelambda.errors.EventStoreError` when the store cannot answer."""
        if self._events is None:
            raise RuntimeError("the gateway has not been started")
        depth, dead = await self._events.depth(), await self._events.dead_letter_count()
        return {"queued": depth, "dead_letters": dead}

    async def event_summary(self) -> dict[str, int | str]:
        """:meth:`event_counts`, or ``{"error": ...}`` saying why the store cannot answer; a
        health check must not wait on a busy store (SQLite waits up to 5 s for its lock), so
        at most :data:`EVENT_COUNTS_WAIT_S`."""
        try:
            async with asyncio.timeout(EVENT_COUNTS_WAIT_S):
                return {**await self.event_counts()}
        except EventStoreError as exc:
            return {"error": str(exc)}
        except TimeoutError:
            return {"error": f"the event store did not answer within {EVENT_COUNTS_WAIT_S:g} s"}

    async def dead_letters(
        self, function: str | None = None, limit: int | None = None
    ) -> list[DeadLetteredEvent]:
        """Dead-lettered Event invocations (of ``function``, when named), oldest first; at
        most ``limit``."""
        return await self._event_store().dead_letters(function=function, limit=limit)

    async def dead_letter_count(self, function: str | None = None) -> int:
        return await self._event_store().dead_letter_count(function)

    async def replay(self, event_id: str | None = None, *, function: str | None = None) -> int:
        """Queue dead letters again, due now, and wake the worker: the one with ``event_id``,
        or the oldest of ``function``'s that fit the room its Event queue has left
        (``EDGELAMBDA_EVENT_QUEUE_SIZE``). How many moved (an id no longer dead-lettered
        moves none)."""
        events = self._event_store()
        limit = None
        if function is not None:
            limit = max(0, self.settings.event_queue_size - await events.function_depth(function))
        moved = await events.replay(event_id, function=function, now_s=time.time(), limit=limit)
        if self._worker is not None:
            self._worker.notify()
        return moved

    def _event_store(self) -> EventQueue:
        if self._events is None:
            raise RuntimeError("the gateway has not been started")
        return self._events

    async def _run_event(self, event: QueuedEvent) -> str | None:
        """One attempt of an Event invocation; the function's error, or None on success."""
        invocation = Invocation(payload=event.payload, trace_id=event.trace_id)
        try:
            result = await self.pool.invoke(event.function, invocation)
        except EdgeLambdaError as exc:  # no capacity, engine trouble, function removed
            return f"{type(exc).__name__}: {exc}"
        if result.stream is not None:
            async for _ in result.stream.chunks():
                pass  # nobody reads an Event's response
        return result.payload.decode("utf-8", "replace") if result.is_error else None

    async def _start_events(self) -> None:
        settings = self.settings
        # A corrupt store must not stop start-up (a crash loop under a restart policy).
        self._events = await EventQueue.open(settings.data_dir / QUEUE_FILE, set_aside_corrupt=True)
        recovered = await self._events.recover(time.time())
        if recovered:
            log.info("events recovered from the previous run", count=recovered)
        self._worker = EventWorker(
            self._events,
            self._run_event,
            policy=RetryPolicy(settings.event_retry_delays_s, settings.event_max_age_s),
            retention=DeadLetterRetention(
                settings.event_dead_letter_retention_s, settings.event_dead_letter_max
            ),
            concurrency=settings.event_concurrency,
            drain_timeout_s=settings.shutdown_grace_s,
        )
        self._worker.start(self.loops)
        self._scheduler = Scheduler(enqueue=self._enqueue_scheduled, region=settings.region)
        self._scheduler.update(self.table.functions)
        self._scheduler.start(self.loops)

    async def _enqueue_scheduled(self, function: str, payload: bytes) -> None:
        await self.enqueue(function, payload, trace_id=tracing.new_trace_header(time.time()))

    async def start(self) -> None:
        settings = self.settings
        network_gateway = await self._backend.network_gateway(settings.docker_network)
        self.engine_version = await self._backend.engine_version()
        # In a container the setting names the gateway's own host name on the network.
        host = (
            _address_of(settings.runtime_api_host) if settings.runtime_api_host else network_gateway
        )
        sock = _listening_socket(host, settings.runtime_api_port)
        self.runtime_api = f"{host}:{sock.getsockname()[1]}"
        lambda_url = settings.lambda_endpoint_url or f"http://{host}:{settings.port}"
        if self._shipper is not None:
            self._shipper.start(self.loops)
        self._pool = Pool(
            functions=self.table.functions,
            backend=self._backend,
            settings=settings,
            runtime_api=self.runtime_api,
            aws_env=_function_aws_env(settings, lambda_url),
            sink=self.sink,
            metrics=self.metrics,
        )
        self.metrics.watch_pool(self._pool.snapshot)
        shipper = self._shipper
        self.metrics.watch_dropped_logs(lambda: shipper.dropped if shipper else 0)
        await self._pool.start(self.loops)
        self._runtime_api = RuntimeApi(
            self._pool,
            region=settings.region,
            limits=ConnectionLimits.of(settings),
            keepalive_s=settings.header_read_timeout_s,
        )
        await self._runtime_api.start(sock)
        log.info("runtime api listening", address=self.runtime_api)
        # Buckets and tables first: recovered and scheduled events may run at once.
        await ensure_resources(
            self.table.resources,
            Endpoints(
                settings.s3_endpoint_url,
                settings.dynamodb_endpoint_url,
                settings.region,
                settings.aws_credentials,
            ),
            wait_s=settings.resources_wait_s,
        )
        await self._start_events()
        if settings.is_reload_enabled:
            self._watcher = Watcher(
                paths=lambda: watched_paths(settings.routing_config_path, self.table.functions),
                is_relevant=lambda path: is_relevant(
                    path, routing_path=settings.routing_config_path, functions=self.table.functions
                ),
                on_change=self._files_changed,
                debounce_ms=settings.reload_debounce_ms,
            )
            self._watcher.start(self.loops)

    async def close(self) -> None:
        """Stop in order: watching and scheduling, then the event worker (its in-flight events
        finish or stay stored for the next start), the pool, the Runtime API, the store."""
        parts: list[tuple[str, Callable[[], Awaitable[None]] | None]] = [
            ("watcher", self._watcher.close if self._watcher is not None else None),
            ("scheduler", self._scheduler.close if self._scheduler is not None else None),
            ("event worker", self._worker.close if self._worker is not None else None),
            ("pool", self._pool.close if self._pool is not None else None),
            (
                "runtime api",
                self._runtime_api.close if self._runtime_api is not None else None,
            ),
            ("event store", self._events.close if self._events is not None else None),
            ("log sink", self.sink.close),  # the shipper, or stdout's pending lines
        ]
        for part, close in parts:
            if close is None:
                continue
            try:
                await close()
            except Exception:  # one part failing must not leave the others running
                log.exception("close failed", part=part)

    async def _files_changed(self, paths: set[str]) -> None:
        change = classify(
            paths, routing_path=self.settings.routing_config_path, functions=self.table.functions
        )
        if change.is_routing_changed:
            await self.reload_routing()
        for name in sorted(change.functions & self.table.functions.keys()):
            self.pool.recycle(name, reason="code changed")

    async def reload_routing(self) -> None:
        """Swap in a new routing table; a broken file is rejected and the old one serves on."""
        try:
            table = await asyncio.to_thread(load_configured_routing, self.settings)
        except ConfigError as exc:
            log.error("routing reload rejected; the previous table keeps serving", error=str(exc))
            self.reload_status = ReloadStatus.rejected(time.time(), exc)
            return
        self.reload_status = ReloadStatus.accepted(time.time())
        for note in table.notes:
            log.warning("not carried over from the SAM template", note=note)
        self.table = table  # one assignment: requests see the old table or the new one
        self.pool.update_functions(table.functions)
        if self._scheduler is not None:
            self._scheduler.update(table.functions)
        log.info("routing reloaded", functions=len(table.functions), routes=len(table.routes))


def _address_of(host: str) -> str:
    """An IPv4 address for a host name (or the address itself)."""
    try:
        return socket.gethostbyname(host)
    except OSError as exc:
        raise ConfigError(
            f"EDGELAMBDA_RUNTIME_API_HOST={host!r}: cannot be resolved: {exc}"
        ) from exc


def _function_aws_env(settings: Settings, lambda_url: str) -> dict[str, str]:
    """The box's credentials and services as functions reach them, for unmodified SDK code."""
    endpoints = {**settings.aws_credentials, "AWS_ENDPOINT_URL_LAMBDA": lambda_url}
    if settings.s3_endpoint_url:
        endpoints["AWS_ENDPOINT_URL_S3"] = settings.s3_endpoint_url
    if settings.dynamodb_endpoint_url:
        endpoints["AWS_ENDPOINT_URL_DYNAMODB"] = settings.dynamodb_endpoint_url
    return endpoints


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"runtime api cannot listen on {host}:{port}: {exc}") from exc
    sock.listen(512)
    sock.setblocking(False)
    return sock
