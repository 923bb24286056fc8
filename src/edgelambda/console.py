"""The console: ``/console`` serves one page (HTML, JavaScript and CSS shipped in this
package, no build step, no CDN) and ``/console/api/`` the JSON it shows, which scripts can
read too; ``/console/api/live`` keeps every open console current with server-sent events.

Every API call needs the console's login (:func:`~edgelambda.console_api.check_access`).
The documents are :mod:`edgelambda.console_api`'s; this module is the HTTP shell, the live
feed and the data services' health checks. Nothing here asks the engine: the live feed reads
the pool's own counts, once per tick for every open console together.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

from edgelambda import __version__, console_api
from edgelambda.activity import Activity
from edgelambda.async_events import DeadLetteredEvent
from edgelambda.config import Settings
from edgelambda.errors import (
    BadRequest,
    LogStoreUnavailable,
    RouteNotFound,
)
from edgelambda.pool import Pool
from edgelambda.routing import RoutingTable
from edgelambda.server import Server
from edgelambda.tasks import LoopRegistry, start_loop

CONSOLE_PATH = "/console"
API_PATH = "/console/api"
STATIC_DIR = Path(__file__).parent / "console"
SERVICE_CHECK_TIMEOUT_S = 2.0
SERVICE_CHECK_TTL_S = 5.0  # consoles opened together share one round of checks
LOGS_TIMEOUT = aiohttp.ClientTimeout(total=10)
EVENT_COUNTS_WAIT_S = 1.0
HEARTBEAT_S = 15.0  # an SSE comment this often keeps proxies from closing a quiet stream
MAX_LOG_LINES = 1000
# The page loads only this package's own files, and is never framed by another site.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class _Listener:
    """One open console's place in the feed: the latest document it has not sent yet."""

    def __init__(self) -> None:
        self._latest: bytes | None = None
        self._is_closed = False
        self._wake = asyncio.Event()

    def put(self, document: bytes) -> None:
        self._latest = document  # a slow console skips to the newest document
        self._wake.set()

    def close(self) -> None:
        self._is_closed = True
        self._wake.set()

    async def next(self, wait_s: float) -> bytes | None:
        """The next document; b"" after ``wait_s`` without one; None once closed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await self._wake.wait()
        self._wake.clear()
        if self._is_closed:
            return None
        document, self._latest = self._latest, None
        return document or b""


class LiveFeed:
    """Sends the live document to every open console: rendered once per tick while anyone
    listens, sent only when it changed, the same bytes to all."""

    def __init__(self, render: Callable[[], Awaitable[bytes]], interval_s: float) -> None:
        self._render = render
        self._interval_s = interval_s
        self._listeners: set[_Listener] = set()
        self._someone = asyncio.Event()
        self._last: bytes | None = None
        self._task: asyncio.Task[None] | None = None
        self._is_closed = False

    def start(self, loops: LoopRegistry | None = None) -> None:
        self._task = start_loop(self._run(), "console feed", loops)

    async def close(self) -> None:
        """End every open stream (and any opened from now on), then the loop."""
        self._is_closed = True
        for listener in list(self._listeners):
            listener.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[_Listener]:
        """A listener that starts with the current document."""
        listener = _Listener()
        document = await self._render()
        self._publish(document)  # to those already listening, if it is news to them
        listener.put(document)
        if self._is_closed:
            listener.close()
        self._listeners.add(listener)
        self._someone.set()
        try:
            yield listener
        finally:
            self._listeners.discard(listener)
            if not self._listeners:
                self._someone.clear()
                self._last = None

    async def _run(self) -> None:
        while True:
            await self._someone.wait()
            self._publish(await self._render())
            await asyncio.sleep(self._interval_s)

    def _publish(self, document: bytes) -> None:
        if document != self._last:
            self._last = document
            for listener in self._listeners:
                listener.put(document)


class ServiceChecks:
    """The data services' health as the gateway reaches them: each answers HTTP within
    :data:`SERVICE_CHECK_TIMEOUT_S` or is down. One round serves every console asking within
    :data:`SERVICE_CHECK_TTL_S`."""

    def __init__(self, services: dict[str, str | None]) -> None:
        self._services = services  # name -> the URL checked; None: not configured
        self._session: aiohttp.ClientSession | None = None
        self._last: tuple[float, list[dict[str, object]]] | None = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def results(self) -> list[dict[str, object]]:
        async with self._lock:
            now = time.monotonic()
            if self._last is None or now - self._last[0] > SERVICE_CHECK_TTL_S:
                checks = [self._check(name, url) for name, url in self._services.items()]
                self._last = (now, list(await asyncio.gather(*checks)))
            return self._last[1]

    async def _check(self, name: str, url: str | None) -> dict[str, object]:
        if url is None:
            return {"name": name, "url": None, "status": "not configured", "detail": None}
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=SERVICE_CHECK_TIMEOUT_S)
            self._session = aiohttp.ClientSession(timeout=timeout)
        started = time.monotonic()
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                # Any HTTP answer means it serves (S3 and DynamoDB refuse an unsigned GET).
                detail = f"HTTP {response.status} in {(time.monotonic() - started) * 1000:.0f} ms"
                return {"name": name, "url": url, "status": "up", "detail": detail}
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            return {"name": name, "url": url, "status": "down", "detail": reason}


class Console:
    """The console of one gateway: its routes, its live feed and its service checks."""

    def __init__(self, server: Server) -> None:
        self._server = server
        settings = server.settings
        self.feed = LiveFeed(self._live_document, settings.console_refresh_s)
        # The page, with where its login form posts to.
        template = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        self.page = template.replace("{{AUTH_PATH}}", html.escape(settings.auth_endpoint_path))
        logs = settings.victorialogs_url
        self.services = ServiceChecks(
            {
                "S3 (RustFS)": settings.s3_endpoint_url,
                "DynamoDB (Alternator)": settings.dynamodb_endpoint_url,
                "VictoriaLogs": f"{logs.rstrip('/')}/health" if logs else None,
            }
        )

    async def start(self) -> None:
        self.feed.start(self._server.loops)

    @property
    def settings(self) -> Settings:
        return self._server.settings

    @property
    def table(self) -> RoutingTable:
        return self._server.table  # the current one: a reload swaps it

    @property
    def pool(self) -> Pool:
        return self._server.pool

    @property
    def activity(self) -> Activity:
        return self._server.metrics.activity

    def reload_status(self) -> dict[str, object]:
        return self._server.reload_status.as_json()

    async def dead_letters(self, function: str | None) -> list[DeadLetteredEvent]:
        """The dead letters (of ``function`` only, when named), oldest first."""
        found = await self._server.dead_letters()
        return [dead for dead in found if function is None or dead.function == function]

    async def replay(self, event_ids: list[str]) -> int:
        return await self._server.replay(event_ids)

    async def read_logs(self, query: str) -> list[dict[str, object]]:
        """The lines LogsQL finds for ``query``, at most :data:`MAX_LOG_LINES`."""
        base = self._server.settings.victorialogs_url
        if not base:
            raise LogStoreUnavailable(
                "console: no log store",
                public_message="Function logs are not kept: EDGELAMBDA_VICTORIALOGS_URL is not set",
            )
        url = f"{base.rstrip('/')}/select/logsql/query"
        params = {"query": query, "limit": str(MAX_LOG_LINES)}
        lines: list[dict[str, object]] = []
        try:
            async with (
                aiohttp.ClientSession(timeout=LOGS_TIMEOUT) as session,
                session.get(url, params=params) as response,
            ):
                response.raise_for_status()
                async for raw in response.content:
                    line = console_api.log_line_json(raw)
                    if line is not None:
                        lines.append(line)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LogStoreUnavailable(
                f"console: {url}: {exc}",
                public_message=f"The log store did not answer: {type(exc).__name__}",
            ) from exc
        return lines

    async def close(self) -> None:
        await self.feed.close()
        await self.services.close()

    # -- documents ------------------------------------------------------------------------

    async def events(self) -> dict[str, int | str]:
        """Event invocations queued and dead-lettered, or why the store cannot say."""
        return await self._server.event_summary(EVENT_COUNTS_WAIT_S)

    async def _live_document(self) -> bytes:
        server, now_s = self._server, time.time()
        table = server.table
        return orjson.dumps(  # nothing that changes by itself: unchanged, nothing is sent
            {
                "functions": console_api.live_json(
                    table, server.pool.snapshot(), server.pool.images()
                ),
                "activity": console_api.activity_json(table, server.metrics.activity, now_s),
                "events": await self.events(),
                "dead_loops": server.loops.dead(),
                "reload": server.reload_status.as_json(),
            }
        )

    def function(self, name: str) -> dict[str, object]:
        server = self._server
        spec = server.table.functions.get(name)
        if spec is None:
            raise RouteNotFound(
                f"console: no function {name!r}", public_message=f"No function named {name!r}"
            )
        document = console_api.function_json(
            spec,
            server.table.routes,
            server.pool.snapshot(),
            server.pool.image_of(name),
            server.settings,
        )
        document["activity"] = server.metrics.activity.series(name, time.time())
        return document

    def logs_ui_base(self) -> str | None:
        settings = self._server.settings
        return settings.victorialogs_ui_url or settings.victorialogs_url

    async def box(self) -> dict[str, object]:
        server = self._server
        settings = server.settings
        shipper = server.log_shipper
        dead = server.loops.dead()
        return {
            "version": __version__,
            "started": server.started_s,
            "uptime_s": round(time.time() - server.started_s, 1),
            "mode": "production" if settings.is_production else "development",
            "loops": [
                {
                    "name": name,
                    "status": "dead" if name in dead else "running",
                    "detail": dead.get(name),
                }
                for name in server.loops.names()
            ],
            "engine": {"backend": settings.backend, "version": server.engine_version},
            "services": await self.services.results(),
            "log_shipper": (
                None
                if shipper is None
                else {
                    "url": settings.victorialogs_url,
                    "buffered": shipper.buffered,
                    "capacity": settings.log_buffer_records,
                    "dropped": shipper.dropped,
                }
            ),
            "containers": server.pool.by_state(),
            "events": await self.events(),
            "logs_ui": self.logs_ui_base(),
        }


CONSOLE_KEY = web.AppKey("console", Console)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_console(app: web.Application, server: Server) -> None:
    """Serve the console and its API from ``app`` (before its catch-all route)."""
    app[CONSOLE_KEY] = Console(server)
    app.cleanup_ctx.append(_console_lifecycle)
    app.on_shutdown.append(_end_live_streams)  # before aiohttp waits for open requests
    router = app.router
    router.add_get(CONSOLE_PATH, page)
    router.add_get(f"{CONSOLE_PATH}/", page)
    router.add_static(f"{CONSOLE_PATH}/static", STATIC_DIR, append_version=False)
    api = API_PATH
    router.add_get(f"{api}/live", live)
    router.add_get(f"{api}/functions", _api(functions))
    router.add_get(f"{api}/functions/{{name}}", _api(function))
    router.add_get(f"{api}/functions/{{name}}/logs", _api(function_logs))
    router.add_post(f"{api}/functions/{{name}}/stop-idle", _api(stop_idle))
    router.add_post(f"{api}/functions/{{name}}/replay", _api(replay_function))
    router.add_get(f"{api}/dead-letters", _api(dead_letters))
    router.add_post(f"{api}/dead-letters/{{id}}/replay", _api(replay_one))
    router.add_get(f"{api}/routes", _api(routes))
    router.add_get(f"{api}/box", _api(box))
    router.add_route("*", f"{api}/{{tail:.*}}", _api(_unknown))


async def _console_lifecycle(app: web.Application) -> AsyncIterator[None]:
    console = app[CONSOLE_KEY]
    await console.start()
    try:
        yield
    finally:
        await console.close()


async def _end_live_streams(app: web.Application) -> None:
    await app[CONSOLE_KEY].feed.close()


def _api(handler: Callable[[web.Request, Console], Awaitable[object]]) -> Handler:
    """A JSON API handler behind the console's login."""

    async def handle(request: web.Request) -> web.StreamResponse:
        console = request.app[CONSOLE_KEY]
        console_api.check_access(request.headers, console.settings, time.time())
        document = await handler(request, console)
        return web.json_response(document, dumps=_dumps, headers=API_HEADERS)

    return handle


def _dumps(document: object) -> str:
    return orjson.dumps(document).decode()


async def page(request: web.Request) -> web.Response:
    """The console's one page; it holds no data, so it is served to anyone (its API is not)."""
    return web.Response(
        text=request.app[CONSOLE_KEY].page, content_type="text/html", headers=PAGE_HEADERS
    )


async def _unknown(request: web.Request, console: Console) -> object:
    raise RouteNotFound(f"console: no API at {request.path}")


async def functions(request: web.Request, console: Console) -> object:
    return {"functions": [console.function(name) for name in sorted(console.table.functions)]}


async def function(request: web.Request, console: Console) -> object:
    name = request.match_info["name"]
    document = console.function(name)
    document["invocations"] = console_api.invocations_json(console.activity, name)
    dead = await console.dead_letters(name)
    document["dead_letters"] = [console_api.dead_letter_json(d) for d in dead]
    document["logs_ui"] = console.logs_ui_base()
    return document


async def function_logs(request: web.Request, console: Console) -> object:
    """The function's log lines (one invocation's with ``request_id``), read through
    VictoriaLogs' LogsQL API as ``edgelambda logs`` reads them."""
    name = request.match_info["name"]
    console.function(name)  # 404 for an unknown one
    since = request.query.get("since", "1h")
    if not console_api.is_duration(since):
        raise BadRequest(f"since={since!r}", public_message="since must be a duration like 15m")
    query = console_api.invocation_logs_query(name, request.query.get("request_id"), since)
    lines = await console.read_logs(query)
    base = console.logs_ui_base()
    return {
        "query": query,
        "ui_url": console_api.logs_ui_url(base, query) if base else None,
        "lines": lines,
    }


async def stop_idle(request: web.Request, console: Console) -> object:
    name = request.match_info["name"]
    console.function(name)
    return {"stopped": console.pool.stop_idle(name)}


async def replay_function(request: web.Request, console: Console) -> object:
    """Queue every dead letter of the function again."""
    name = request.match_info["name"]
    console.function(name)
    ids = [dead.id for dead in await console.dead_letters(name)]
    return {"replayed": await console.replay(ids)}


async def dead_letters(request: web.Request, console: Console) -> object:
    found = await console.dead_letters(request.query.get("function"))
    return {"dead_letters": [console_api.dead_letter_json(dead) for dead in found]}


async def replay_one(request: web.Request, console: Console) -> object:
    event_id = request.match_info["id"]
    replayed = await console.replay([event_id])
    if not replayed:
        raise RouteNotFound(
            f"console: no dead letter {event_id!r}", public_message=f"No dead letter {event_id!r}"
        )
    return {"replayed": replayed}


async def routes(request: web.Request, console: Console) -> object:
    return {
        "file": str(console.settings.routing_config_path),
        "reload": console.reload_status(),
        "routes": console_api.routes_json(console.table),
    }


async def box(request: web.Request, console: Console) -> object:
    return await console.box()


async def live(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one ``data:`` line with the live document whenever it changes
    (and at once), a comment every :data:`HEARTBEAT_S` otherwise, until the gateway stops."""
    console = request.app[CONSOLE_KEY]
    console_api.check_access(request.headers, console.settings, time.time())
    response = web.StreamResponse(
        headers={**API_HEADERS, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    async with console.feed.listen() as listener:
        try:
            while (document := await listener.next(HEARTBEAT_S)) is not None:
                await response.write(sse_message(document))
        except ConnectionResetError:  # the console was closed
            return response
    return response


def sse_message(document: bytes) -> bytes:
    """One server-sent event carrying ``document`` (one line of JSON), or a comment line
    for none (HTML Living Standard, "Server-sent events": lines starting with a colon are
    comments)."""
    return b"data: " + document + b"\n\n" if document else b": alive\n\n"
