"""The load sections of `make bench`: the reference's thinnest path, the gateway on the same
routes, and the gateway through a JWT route with log shipping and metrics scraped, each loaded
by the reference's ``bench.py`` with the same flags.

The sides chosen are up at once and measured in alternating rounds (thinnest, gateway, JWT,
thinnest, ...): on these shared machines the speed drifts by a third within minutes, and one
5 s window per side compared the drift as much as the sides. Each figure is the median of
its rounds; every round's load figures are kept beside it."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiodocker
import aiohttp
from aiohttp import web
from bench_run import (
    API_KEY,
    CONTAINERS_PER_FUNCTION,
    PASSWORD,
    USER,
    BenchRun,
    client_session,
    counters_of,
    login,
    routing_document,
    warm_up,
)
from harness import free_port, progress, rss_mb, serve_posts
from perf_reference import ClientFlags
from report import trimmed

# bench.py's flags, the same for every side; 5 s load runs keep a round near a minute.
FLAGS = ClientFlags(phases="warm,load,sleep", load_duration_s=5.0, concurrency=(8, 32))
JWT_FLAGS = ClientFlags(phases="load", load_duration_s=5.0, concurrency=(8, 32))
# Five: in one run of three, a side's rounds were seen to differ by a fifth (the machine's
# load drifting), enough to move a median across a bound.
LOAD_ROUNDS = 5
METRICS_SCRAPE_INTERVAL_S = 1.0
LOG_FLUSH_WAIT_S = 2.0  # the shipper flushes every second


@dataclass
class Side:
    """One side, up and warmed: where bench.py sends its load, and what else it reports."""

    url: str
    flags: ClientFlags
    auth: str | None = None
    details: Callable[[], Awaitable[dict[str, Any]]] | None = None
    # What runs beside the side's own rounds only (the JWT side's metrics scrapes).
    beside: Callable[[], AbstractAsyncContextManager[object]] = contextlib.nullcontext
    rounds: list[dict[str, Any]] = field(default_factory=list)  # bench.py's, trimmed

    async def report(self) -> dict[str, Any]:
        extra = await self.details() if self.details is not None else {}
        return {**combined(self.rounds), **extra}


@asynccontextmanager
async def thinnest_side(run: BenchRun) -> AsyncIterator[Side]:
    async with (
        run.perf.thinnest(free_port(), CONTAINERS_PER_FUNCTION) as url,
        client_session() as session,
    ):
        await warm_up(session, url)
        yield Side(url, FLAGS)


@asynccontextmanager
async def gateway_side(run: BenchRun) -> AsyncIterator[Side]:
    async with (
        run.gateway("gateway", routing_document(), run.stack) as served,
        client_session() as session,
        aiodocker.Docker() as docker,
    ):
        counts = await warm_up(session, served.url, counters=counters_of(docker, run.stack))

        async def details() -> dict[str, Any]:
            return {"containers_after_warm_up": counts, "rss_mb": rss_mb(served.pid)}

        yield Side(served.url, FLAGS, details=details)


@asynccontextmanager
async def gateway_jwt_logs_side(run: BenchRun) -> AsyncIterator[Side]:
    async with (
        log_stand_in() as logs,
        run.gateway(
            "gateway-jwt-logs",
            routing_document(auth="jwt"),
            run.jwt_stack,
            EDGELAMBDA_VICTORIALOGS_URL=logs.url,
            X_API_KEY=API_KEY,
            AUTH_USER=USER,
            AUTH_PASS=PASSWORD,
        ) as served,
        client_session() as session,
        aiodocker.Docker() as docker,
    ):
        auth = f"Bearer {await login(session, served.url)}"
        counts = await warm_up(
            session,
            served.url,
            headers={"Authorization": auth},
            counters=counters_of(docker, run.jwt_stack),
        )
        scrapes: dict[str, int] = {}

        async def details() -> dict[str, Any]:
            await asyncio.sleep(LOG_FLUSH_WAIT_S)
            return {
                "containers_after_warm_up": counts,
                "log_records_shipped": logs.records,
                "metrics_scrapes": scrapes,
                "rss_mb": rss_mb(served.pid),
            }

        def beside() -> AbstractAsyncContextManager[object]:
            return scraping_metrics(session, served.url, scrapes)

        yield Side(served.url, JWT_FLAGS, auth, details, beside)


SideFactory = Callable[[BenchRun], AbstractAsyncContextManager[Side]]
SIDES: dict[str, SideFactory] = {
    "thinnest": thinnest_side,
    "gateway": gateway_side,
    "gateway_jwt_logs": gateway_jwt_logs_side,
}


async def load_sides(run: BenchRun, names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The sides ``names`` (of :data:`SIDES`), all up at once, loaded in alternating rounds;
    each side's medians, its rounds and its details."""
    async with AsyncExitStack() as stack:
        sides: dict[str, Side] = {}
        for name in names:
            progress(f"{name}: starting and warming up")
            sides[name] = await stack.enter_async_context(SIDES[name](run))
        for number in range(1, LOAD_ROUNDS + 1):
            for name, side in sides.items():
                progress(f"round {number} of {LOAD_ROUNDS}: {name}")
                async with side.beside():
                    result = await run.perf.run_client(side.url, name, side.flags, side.auth)
                side.rounds.append(trimmed(result))
        return {name: await side.report() for name, side in sides.items()}


def combined(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """bench.py's trimmed reports of several rounds as one: the median of each figure, and
    each round's load figures as measured."""
    out: dict[str, Any] = {}
    warm = [r["warm_ms"] for r in rounds if "warm_ms" in r]
    if warm:
        out["warm_ms"] = {
            name: {
                **_medians([w[name] for w in warm], ("p50", "p90", "p99")),
                "n": sum(w[name]["n"] or 0 for w in warm),
                "errors": sum(w[name]["errors"] for w in warm),
            }
            for name in warm[0]
        }
    loads = [r["load"] for r in rounds if "load" in r]
    if loads:
        out["load"] = [
            {
                "clients": runs[0]["clients"],
                **_medians(list(runs), ("rps", "p50_ms", "p99_ms")),
                "errors": sum(run["errors"] for run in runs),
            }
            for runs in zip(*loads, strict=True)
        ]
        out["load_rounds"] = loads
    sleeps = [r["ten_1s_sleeps"] for r in rounds if "ten_1s_sleeps" in r]
    if sleeps:
        out["ten_1s_sleeps"] = {
            **sleeps[-1],
            "wall_s": statistics.median(s["wall_s"] for s in sleeps),
            "errors": sum(s["errors"] or 0 for s in sleeps),
        }
    exceptions = [r["exceptions"] for r in rounds if "exceptions" in r]
    if exceptions:
        out["exceptions"] = exceptions
    return out


def _medians(figures: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in keys:
        values = [figure[key] for figure in figures if figure[key] is not None]
        out[key] = statistics.median(values) if values else None
    return out


class LogStandIn:
    """VictoriaLogs' ``/insert/jsonline`` on 127.0.0.1, as the gateway ships to it: each batch
    answered 204 and its records counted."""

    def __init__(self) -> None:
        self.records = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner, self.url = await serve_posts({"/insert/jsonline": self.insert})

    async def insert(self, request: web.Request) -> web.Response:
        # One record per line, each ended by a newline as the shipper writes them; counted
        # without splitting: this stand-in shares the machine's two cores with the gateway.
        self.records += (await request.read()).count(b"\n")
        return web.Response(status=204)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@asynccontextmanager
async def log_stand_in() -> AsyncIterator[LogStandIn]:
    stand_in = LogStandIn()
    await stand_in.start()
    try:
        yield stand_in
    finally:
        await stand_in.close()


@asynccontextmanager
async def scraping_metrics(
    session: aiohttp.ClientSession, url: str, scrapes: dict[str, int]
) -> AsyncIterator[None]:
    """``GET /metrics`` every second meanwhile, as a Prometheus would; the answers counted by
    status in ``scrapes``."""

    async def scrape() -> None:
        while True:
            async with session.get(f"{url}/metrics") as response:
                await response.read()
                scrapes[str(response.status)] = scrapes.get(str(response.status), 0) + 1
            await asyncio.sleep(METRICS_SCRAPE_INTERVAL_S)

    task = asyncio.create_task(scrape())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
