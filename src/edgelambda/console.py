"""The console: ``/console`` serves one page (HTML, JavaScript and CSS shipped in this
package, no build step, no CDN) and ``/console/api/`` the JSON it shows, which scripts can
read too; ``/console/api/live`` keeps every open console current with server-sent events.

Every API call needs the console's login (:func:`~edgelambda.console_api.check_access`).
The documents are :mod:`edgelambda.console_api`'s; this module is the HTTP shell around the
live feed (:mod:`edgelambda.live_feed`) and the data services' checks
(:mod:`edgelambda.service_checks`). Nothing here asks the engine: the live feed reads the
pool's own counts, once per tick for every open console together.
"""

from __future__ import annotations

import html
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

from edgelambda import console_api
from edgelambda.errors import BadRequest, LogStoreUnavailable, RouteNotFound
from edgelambda.live_feed import LiveFeed, sse_message
from edgelambda.logs import logsql_query
from edgelambda.routing import FunctionSpec
from edgelambda.server import Server
from edgelambda.service_checks import ServiceChecks

CONSOLE_PATH = "/console"
API_PATH = "/console/api"
STATIC_DIR = Path(__file__).parent / "console"
STATIC_FILES = frozenset({"console.js", "console.css"})
LOGS_TIMEOUT = aiohttp.ClientTimeout(total=10)
MAX_LOG_LINES = 1000
MAX_LOG_BYTES = 8 * 1024 * 1024  # of one LogsQL answer; beyond, the rest is not read
HEARTBEAT_S = 15.0  # an SSE comment this often keeps proxies from closing a quiet stream
# The page loads only this package's own files, posts no form, and is never framed.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; form-action 'none';"
        " frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # asked again after an upgrade
}
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class Console:
    """The console of one gateway: what its pages read, its live feed, its service checks."""

    def __init__(self, server: Server) -> None:
        self.server = server
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
        self.feed.start(self.server.loops)

    async def close(self) -> None:
        await self.feed.close()
        await self.services.close()

    def spec(self, name: str) -> FunctionSpec:
        """The function ``name`` of the current table; 404 for an unknown one."""
        spec = self.server.table.functions.get(name)
        if spec is None:
            raise RouteNotFound(
                f"console: no function {name!r}", public_message=f"No function named {name!r}"
            )
        return spec

    def function(self, name: str) -> dict[str, object]:
        server = self.server
        document = console_api.function_json(
            self.spec(name),
            server.table.routes,
            server.pool.snapshot(),
            server.pool.images().get(name),
            server.settings,
        )
        document["activity"] = server.metrics.activity.series(name, time.time())
        return document

    async def _live_document(self) -> bytes:
        server, now_s = self.server, time.time()
        table = server.table
        return orjson.dumps(  # nothing that changes by itself: unchanged, nothing is sent
            {
                "functions": console_api.live_json(
                    table, server.pool.snapshot(), server.pool.images()
                ),
                "activity": console_api.activity_json(table, server.metrics.activity, now_s),
                "events": await server.event_summary(),
                "dead_loops": server.loops.dead(),
                "reload": server.reload_status.as_json(),
            }
        )

    async def box(self) -> dict[str, object]:
        server = self.server
        shipper = server.log_shipper
        return console_api.box_json(
            settings=server.settings,
            started_s=server.started_s,
            now_s=time.time(),
            loops=server.loops.names(),
            dead_loops=server.loops.dead(),
            engine_version=server.engine_version,
            services=await self.services.results(),
            log_shipper=None if shipper is None else (shipper.buffered, shipper.dropped),
            containers=server.pool.by_state(),
            events=await server.event_summary(),
        )

    async def read_logs(self, query: str) -> list[dict[str, object]]:
        """The lines LogsQL finds for ``query``: at most :data:`MAX_LOG_LINES`, read from at
        most :data:`MAX_LOG_BYTES` of its answer."""
        base = self.server.settings.victorialogs_url
        if not base:
            raise LogStoreUnavailable(
                "console: no log store",
                public_message="Function logs are not kept: EDGELAMBDA_VICTORIALOGS_URL is not set",
            )
        url = f"{base.rstrip('/')}/select/logsql/query"
        params = {"query": query, "limit": str(MAX_LOG_LINES)}
        try:
            async with (
                aiohttp.ClientSession(timeout=LOGS_TIMEOUT) as session,
                session.get(url, params=params) as response,
            ):
                if response.status != 200:
                    said = (await response.content.read(300)).decode("utf-8", "replace")
                    raise LogStoreUnavailable(
                        f"console: {url}: HTTP {response.status}: {said}",
                        public_message=f"The log store answered HTTP {response.status}: {said}",
                    )
                raw_lines = await _bounded_lines(response.content, MAX_LOG_BYTES)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LogStoreUnavailable(
                f"console: {url}: {exc}",
                public_message=f"The log store did not answer: {type(exc).__name__}",
            ) from exc
        lines = [console_api.log_line_json(raw) for raw in raw_lines[:MAX_LOG_LINES]]
        return [line for line in lines if line is not None]


async def _bounded_lines(content: aiohttp.StreamReader, limit_bytes: int) -> list[bytes]:
    """The lines of a body, read up to ``limit_bytes`` (a line cut there is dropped)."""
    lines: list[bytes] = []
    buffer, size = b"", 0
    async for chunk in content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit_bytes:
            return lines
        *complete, buffer = (buffer + chunk).split(b"\n")
        lines.extend(complete)
    return [*lines, buffer] if buffer else lines


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
    router.add_get(f"{CONSOLE_PATH}/static/{{name}}", static)
    api = API_PATH
    router.add_get(f"{api}/live", live)
    router.add_get(f"{api}/functions", _api(functions))
    router.add_get(f"{api}/functions/{{name}}", _api(function))
    router.add_get(f"{api}/functions/{{name}}/logs", _api(function_logs))
    router.add_post(f"{api}/functions/{{name}}/remove-idle", _api(remove_idle))
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
        console_api.check_access(request.headers, console.server.settings, time.time())
        document = await handler(request, console)
        return web.json_response(document, dumps=_dumps, headers=API_HEADERS)

    return handle


def _dumps(document: object) -> str:
    return orjson.dumps(document).decode()


# -- the page --------------------------------------------------------------------------------


async def page(request: web.Request) -> web.Response:
    """The console's one page; it holds no data, so it is served to anyone (its API is not)."""
    return web.Response(
        text=request.app[CONSOLE_KEY].page, content_type="text/html", headers=PAGE_HEADERS
    )


async def static(request: web.Request) -> web.FileResponse:
    """The page's script and stylesheet; checked again on every load (no stale script after
    an upgrade: an unchanged file is answered 304)."""
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise RouteNotFound(f"console: no file {name!r}")
    return web.FileResponse(STATIC_DIR / name, headers=PAGE_HEADERS)


# -- the API -----------------------------------------------------------------------------------


async def _unknown(request: web.Request, console: Console) -> object:
    raise RouteNotFound(f"console: no API at {request.path}")


async def functions(request: web.Request, console: Console) -> object:
    names = sorted(console.server.table.functions)
    return {"functions": [console.function(name) for name in names]}


async def function(request: web.Request, console: Console) -> object:
    """One function, with its last invocations and (the oldest of) its dead letters."""
    name = request.match_info["name"]
    document = console.function(name)
    server = console.server
    document["invocations"] = console_api.invocations_json(server.metrics.activity, name)
    dead = await server.dead_letters(name, limit=console_api.LISTED)
    document["dead_letters"] = [console_api.dead_letter_json(d) for d in dead]
    document["dead_letter_count"] = await server.dead_letter_count(name)
    document["logs_ui"] = console_api.logs_ui_base(server.settings)
    return document


async def function_logs(request: web.Request, console: Console) -> object:
    """The function's log lines (one invocation's with ``request_id``), read through
    VictoriaLogs' LogsQL API as ``edgelambda logs`` reads them."""
    name = console.spec(request.match_info["name"]).name
    since = request.query.get("since", "1h")
    if not console_api.is_duration(since):
        raise BadRequest(f"since={since!r}", public_message="since must be a duration like 15m")
    query = logsql_query(name, since=since, request_id=request.query.get("request_id"))
    lines = await console.read_logs(query)
    base = console_api.logs_ui_base(console.server.settings)
    return {
        "query": query,
        "ui_url": console_api.logs_ui_url(base, query) if base else None,
        "lines": lines,
    }


async def remove_idle(request: web.Request, console: Console) -> object:
    name = console.spec(request.match_info["name"]).name
    return {"removed": console.server.pool.remove_idle(name)}


async def replay_function(request: web.Request, console: Console) -> object:
    """Queue the function's dead letters again, as many as its Event queue has room for."""
    name = console.spec(request.match_info["name"]).name
    replayed = await console.server.replay(function=name)
    return {"replayed": replayed, "left": await console.server.dead_letter_count(name)}


async def dead_letters(request: web.Request, console: Console) -> object:
    limit = console_api.limit_of(request.query.get("limit"))
    found = await console.server.dead_letters(request.query.get("function"), limit)
    return {"dead_letters": [console_api.dead_letter_json(dead) for dead in found]}


async def replay_one(request: web.Request, console: Console) -> object:
    event_id = request.match_info["id"]
    replayed = await console.server.replay(event_id)
    if not replayed:
        raise RouteNotFound(
            f"console: no dead letter {event_id!r}", public_message=f"No dead letter {event_id!r}"
        )
    return {"replayed": replayed}


async def routes(request: web.Request, console: Console) -> object:
    server = console.server
    return {
        "file": str(server.settings.routing_config_path),
        "reload": server.reload_status.as_json(),
        "routes": console_api.routes_json(server.table),
    }


async def box(request: web.Request, console: Console) -> object:
    return await console.box()


async def live(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one ``data:`` line with the live document at once and whenever it
    changes, a comment every :data:`HEARTBEAT_S` otherwise; until the gateway stops or the
    login's token expires (the console then logs in again)."""
    console = request.app[CONSOLE_KEY]
    expires_s = console_api.check_access(request.headers, console.server.settings, time.time())
    async with console.feed.listen() as listener:  # a failing render is a 500, not a cut
        response = web.StreamResponse(
            headers={**API_HEADERS, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        try:
            while (document := await listener.next(_wait_s(expires_s))) is not None:
                if expires_s is not None and time.time() >= expires_s:
                    break
                await response.write(sse_message(document))
        except ConnectionResetError:  # the console was closed
            pass
    return response


def _wait_s(expires_s: float | None) -> float:
    """How long a stream waits for the next document: a heartbeat, or less when the
    login's token expires sooner."""
    if expires_s is None:
        return HEARTBEAT_S
    return max(0.0, min(HEARTBEAT_S, expires_s - time.time()))
