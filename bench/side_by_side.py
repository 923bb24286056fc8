"""`make bench`: the gateway against the performance reference and the engine's own costs,
measured one after the other in one run, printed as one JSON report (progress on stderr).

- thinnest: the reference's ``minimal_gateway.py`` with ten pre-started containers per
  function, loaded by the reference's ``bench.py`` (warm latency, 8 and 32 clients, ten 1 s
  sleeps);
- gateway: ``edgelambda serve`` serving the same function, warmed up to ten containers per
  function, loaded by ``bench.py`` with the same flags;
- gateway_jwt_logs: the same load through an ``auth: jwt`` route, with log shipping to a
  stand-in of VictoriaLogs and ``/metrics`` scraped every second;
- raw: create + start + runtime ready of one container, and of ten at once, by bare aiodocker;
- cold: the gateway's first request after it starts, and ten simultaneous first requests to a
  function with ``max_concurrency`` 10, each sleeping long enough that ten containers are
  needed (compared less the sleep);
- engine: the engine's unpause of a paused container;
- scale: warm latency through a gateway with 10 routes and one with 1,000, in alternating
  rounds, and their RSS;
- containers: warm latency through a gateway whose function has 10 live containers and one
  whose function has 300, in alternating rounds, and their RSS;
- functions: the RSS of a gateway with 50 functions and two live containers each.

Then the ratios between the sides and the bound each is held to. Every container and network
it made is removed at the end; the gateways' logs are kept only when the run failed.

``--sections containers,functions`` measures only those sections (in the order above), and
reports only the ratios and targets they give. ``EDGELAMBDA_BENCH_SCALE_CONTAINERS`` (300)
and ``EDGELAMBDA_BENCH_SCALE_FUNCTIONS`` (50) set the counts of the last two, for development;
the report's notes say which were used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from aiohttp import web
from harness import (
    ContainerCount,
    Gateway,
    cleanup,
    container_counter,
    free_port,
    gateway_process,
    median_ms,
    p50_p99_ms,
    progress,
    rss_mb,
    serve_env,
)
from perf_reference import ClientFlags, PerfReference
from raw_engine import RawEngine
from report import absolutes, ratios, targets, trimmed

from edgelambda.routing import FunctionSpec
from edgelambda.routing_file import parse_routing

# Every section takes about 5 min on two cores; a scale section whose containers do not all
# start waits for them up to FILL_ROUNDS x SETTLE_TIMEOUT_S more.
BENCH_TIMEOUT_S = 1800
CONTAINERS_PER_FUNCTION = 10
# bench.py's flags, the same for every side; 5 s load runs keep the bench near 3 min.
FLAGS = ClientFlags(phases="warm,load,sleep", load_duration_s=5.0, concurrency=(8, 32))
JWT_FLAGS = ClientFlags(phases="load", load_duration_s=5.0, concurrency=(8, 32))
WARM_UP_ROUNDS = 10
RAW_SAMPLES = 5
COLD_SAMPLES = 5
UNPAUSE_SAMPLES = 5
FROZEN_SAMPLES = 7
FREEZE_AFTER_S = 0.3
SCALE_ROUTES = (10, 1000)
SCALE_ROUNDS = 20
SCALE_REQUESTS_PER_ROUND = 50
SCALE_CONTAINERS_SETTING = "EDGELAMBDA_BENCH_SCALE_CONTAINERS"
SCALE_FUNCTIONS_SETTING = "EDGELAMBDA_BENCH_SCALE_FUNCTIONS"
BASE_CONTAINERS = 10  # what the scaled container count is compared with
ACCEPTANCE_CONTAINERS = 300  # issue 14's counts, the defaults
ACCEPTANCE_FUNCTIONS = 50
CONTAINERS_PER_SCALED_FUNCTION = 2
# How long each request of a burst holds its container: long enough that the burst's last
# request arrives before its first container is free again.
CONTAINER_HOLD_S = 5.0
FUNCTION_HOLD_S = 3.0
FILL_ROUNDS = 3  # bursts at most, until the live containers are all there
# For the containers started for a burst to finish starting (300 take about 50 s on two
# cores). Beyond 100 live containers the gateway's engine client may start nothing more: its
# aiohttp connector allows 100 connections and each live container's log follow holds one
# (the starts queued before the follows still go through).
SETTLE_TIMEOUT_S = 120.0
BURST_TIMEOUT_S = 900.0  # for one burst's requests, each queued while hundreds start
LIVE_STATES = ("ready", "busy", "frozen", "thawing")  # /health's states of a live container
# The ten cold requests' sleep: long enough that the first container up cannot take a second
# request before the tenth is up (ten bare starts at once take about 2 s on two cores).
TEN_COLD_SLEEP_S = 3.0
METRICS_SCRAPE_INTERVAL_S = 1.0
LOG_FLUSH_WAIT_S = 2.0  # the shipper flushes every second
CODE_DIR = "fn"
NOTES = (
    "targets are the bounds later work is accepted against; they are not expected to hold yet",
    f"each of the ten simultaneous cold requests sleeps {TEN_COLD_SLEEP_S} s in the function"
    " so that no container serves two (at 0.1 s, 3 containers served all ten); their ratio"
    " is taken less the sleep",
    "absolute figures move from run to run on a shared machine; compare the ratios",
)
AUTH_PATH = "/user/auth/ver1.0"
API_KEY = "bench-api-key"
USER, PASSWORD = "bench-user", "bench-pass"


@dataclass(frozen=True)
class Endpoint:
    """One of the reference function's handlers, and the route that serves it."""

    function: str
    handler: str
    method: str
    path: str
    query: str = ""

    @property
    def target(self) -> str:
        return self.path + self.query


HELLO = Endpoint("hello", "app.handler", "GET", "/hello")
ECHO = Endpoint("echo", "app.echo", "POST", "/echo")
SLEEP = Endpoint("sleep", "app.sleep", "GET", "/sleep", "?s=1")
TEN_COLD_SLEEP = Endpoint("sleep", "app.sleep", "GET", "/sleep", f"?s={TEN_COLD_SLEEP_S}")
ENDPOINTS = (HELLO, ECHO, SLEEP)
# The container scale's one function runs the reference's sleep handler: ``?s=0`` answers at
# once (the requests measured), a longer sleep holds a container (the bursts that start them).
SCALED = Endpoint("hello", "app.sleep", "GET", "/hello", "?s=0")
SCALED_HOLD = Endpoint("hello", "app.sleep", "GET", "/hello", f"?s={CONTAINER_HOLD_S}")


def held_functions(count: int) -> tuple[Endpoint, ...]:
    """``count`` functions of the same code, a route each, called with a sleep that holds
    their containers."""
    return tuple(
        Endpoint(f"f{i}", "app.sleep", "GET", f"/f{i}", f"?s={FUNCTION_HOLD_S}")
        for i in range(count)
    )


def document_of(
    endpoints: tuple[Endpoint, ...], max_concurrency: int, auth: str = "none"
) -> dict[str, Any]:
    """A routing file with a function and a route per endpoint (JSON is YAML)."""
    functions = {
        e.function: {"handler": e.handler, "code": CODE_DIR, "max_concurrency": max_concurrency}
        for e in endpoints
    }
    routes = [
        {"path": e.path, "method": e.method, "function": e.function, "auth": auth}
        for e in endpoints
    ]
    return {"functions": functions, "routes": routes}


def routing_document(*, auth: str = "none", routes: int = len(ENDPOINTS)) -> dict[str, Any]:
    """The gateway's routing file for the reference function: its three routes, and up to
    ``routes`` in all with extra ones to ``hello``."""
    document = document_of(ENDPOINTS, CONTAINERS_PER_FUNCTION, auth)
    extra = [
        {"path": extra_path(i), "method": "GET", "function": HELLO.function, "auth": "none"}
        for i in range(routes - len(ENDPOINTS))
    ]
    return {**document, "routes": document["routes"] + extra}


def extra_path(index: int) -> str:
    # Literal, parameter and greedy shapes, as a real table has; none matches the three paths.
    return (f"/r{index}", f"/r{index}/items/{{id}}", f"/r{index}/{{proxy+}}")[index % 3]


def network_of(stack: str) -> str:
    return f"edgelambda-{stack}"


async def remove_stacks(*stacks: str) -> None:
    """Every container labelled with one of ``stacks``, and their networks."""
    for label in stacks:
        await cleanup(network_of(label), label)


@dataclass(frozen=True)
class ScaleCounts:
    """The counts of the container and function scale sections: the acceptance's unless
    development asks for fewer."""

    containers: int = ACCEPTANCE_CONTAINERS
    functions: int = ACCEPTANCE_FUNCTIONS

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ScaleCounts:
        return cls(
            containers=_count(env, SCALE_CONTAINERS_SETTING, cls.containers),
            functions=_count(env, SCALE_FUNCTIONS_SETTING, cls.functions),
        )

    def note(self) -> str:
        return (
            f"containers: one function with {self.containers} live containers against one"
            f" with {BASE_CONTAINERS} ({SCALE_CONTAINERS_SETTING}); functions:"
            f" {self.functions} functions with {CONTAINERS_PER_SCALED_FUNCTION} live"
            f" containers each ({SCALE_FUNCTIONS_SETTING}); the acceptance's counts are"
            f" {ACCEPTANCE_CONTAINERS} and {ACCEPTANCE_FUNCTIONS}; a gateway short of its"
            " live containers (live_containers < wanted_containers) leaves its target unjudged"
        )


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise SystemExit(f"make bench: {name} must be a positive whole number, not {text!r}")
    return int(text)


@dataclass(frozen=True)
class BenchRun:
    """One run's files (``work``: routing files beside the function's code, the gateways'
    data and logs), the stack label of the containers it makes and the scale counts."""

    perf: PerfReference
    work: Path
    stack: str
    counts: ScaleCounts

    @property
    def routing_dir(self) -> Path:
        return self.work / "routing"

    @property
    def scale_stacks(self) -> tuple[str, ...]:
        # Two gateways run at once there, each with its own label and network.
        return tuple(f"{self.stack}-routes{n}" for n in SCALE_ROUTES)

    @property
    def container_stacks(self) -> tuple[str, ...]:
        return (f"{self.stack}-containers-base", f"{self.stack}-containers-scaled")

    @property
    def functions_stack(self) -> str:
        return f"{self.stack}-functions"

    @property
    def all_stacks(self) -> tuple[str, ...]:
        return (self.stack, *self.scale_stacks, *self.container_stacks, self.functions_stack)

    def function(self, name: str) -> FunctionSpec:
        table = parse_routing(
            json.dumps(routing_document()), source="bench", base_dir=self.routing_dir
        )
        return table.functions[name]

    def gateway(
        self, name: str, document: dict[str, Any], stack: str = "", **settings: str
    ) -> AbstractAsyncContextManager[Gateway]:
        """``edgelambda serve`` with ``document`` as its routing file, healthy."""
        routing = self.routing_dir / f"{name}.yaml"
        routing.write_text(json.dumps(document))
        stack = stack or self.stack
        env = serve_env(
            routing,
            port=free_port(),
            stack=stack,
            network=network_of(stack),
            EDGELAMBDA_DATA_DIR=str(self.work / f"data-{name}"),
            # Ten cold starts beside other work can take long on two cores; ``settings`` may
            # ask for longer still.
            **{"EDGELAMBDA_INIT_TIMEOUT_S": "60", "EDGELAMBDA_QUEUE_WAIT_S": "120", **settings},
        )
        return gateway_process(env, self.work / f"{name}.log")


# -- requests --------------------------------------------------------------------------------


def client_session(limit: int = 128, timeout_s: float = 300.0) -> aiohttp.ClientSession:
    """At most ``limit`` connections at once; a request may take ``timeout_s``."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit),
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    )


async def call(
    session: aiohttp.ClientSession,
    url: str,
    endpoint: Endpoint,
    headers: dict[str, str] | None = None,
) -> float:
    """Seconds one request took; anything but 200 is an error."""
    body = b"warm-up" if endpoint.method == "POST" else None
    started = time.perf_counter()
    async with session.request(
        endpoint.method, url + endpoint.target, data=body, headers=headers
    ) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{endpoint.method} {endpoint.target}: HTTP {response.status}")
    return time.perf_counter() - started


async def burst(
    session: aiohttp.ClientSession,
    url: str,
    endpoints: tuple[Endpoint, ...],
    clients: int,
    headers: dict[str, str] | None = None,
) -> None:
    """``clients`` simultaneous requests to each endpoint; the first failure is raised once
    every request has been answered."""
    failures = await tolerant_burst(session, url, endpoints, clients, headers)
    if failures:
        raise failures[0]


async def tolerant_burst(
    session: aiohttp.ClientSession,
    url: str,
    endpoints: tuple[Endpoint, ...],
    clients: int,
    headers: dict[str, str] | None = None,
) -> list[Exception]:
    """``clients`` simultaneous requests to each endpoint, every one answered; the failures."""
    results = await asyncio.gather(
        *(call(session, url, e, headers) for e in endpoints for _ in range(clients)),
        return_exceptions=True,
    )
    return [result for result in results if isinstance(result, Exception)]


async def warm_up(
    session: aiohttp.ClientSession,
    url: str,
    endpoints: tuple[Endpoint, ...] = ENDPOINTS,
    *,
    headers: dict[str, str] | None = None,
    counters: dict[str, ContainerCount] | None = None,
) -> dict[str, int]:
    """The same warm-up on every side: ten simultaneous requests to each endpoint; then,
    where containers can be counted, bursts until each function has ten running (bounded).
    The counts reached."""
    await burst(session, url, endpoints, CONTAINERS_PER_FUNCTION, headers)
    if counters is None:
        return {}
    counts = {e.function: await counters[e.function]() for e in endpoints}
    for _ in range(WARM_UP_ROUNDS):
        short = tuple(e for e in endpoints if counts[e.function] < CONTAINERS_PER_FUNCTION)
        if not short:
            break
        await burst(session, url, short, 2 * CONTAINERS_PER_FUNCTION, headers)
        counts = {e.function: await counters[e.function]() for e in endpoints}
    return counts


def counters_of(docker: aiodocker.Docker, stack: str) -> dict[str, ContainerCount]:
    return {e.function: container_counter(docker, stack, e.function) for e in ENDPOINTS}


async def login(session: aiohttp.ClientSession, url: str) -> str:
    """A JWT from the gateway's auth endpoint, as the original client logs in."""
    body = {"AuthParameters": {"USERNAME": USER, "PASSWORD": PASSWORD}}
    headers = {"x-api-key": API_KEY}
    async with session.post(url + AUTH_PATH, json=body, headers=headers) as response:
        if response.status != 200:
            raise RuntimeError(f"login: HTTP {response.status}")
        answer = await response.json(content_type=None)
    token: str = answer["AuthenticationResult"]["IdToken"]
    return token


# -- the sides -------------------------------------------------------------------------------


async def thinnest_side(run: BenchRun) -> dict[str, Any]:
    async with (
        run.perf.thinnest(free_port(), CONTAINERS_PER_FUNCTION) as url,
        client_session() as session,
    ):
        await warm_up(session, url)
        result = await run.perf.run_client(url, "thinnest", FLAGS)
    return trimmed(result)


async def gateway_side(run: BenchRun) -> dict[str, Any]:
    async with (
        run.gateway("gateway", routing_document()) as served,
        client_session() as session,
        aiodocker.Docker() as docker,
    ):
        counts = await warm_up(session, served.url, counters=counters_of(docker, run.stack))
        result = await run.perf.run_client(served.url, "gateway", FLAGS)
        rss = rss_mb(served.pid)
    return {**trimmed(result), "containers_after_warm_up": counts, "rss_mb": rss}


async def gateway_jwt_logs_side(run: BenchRun) -> dict[str, Any]:
    async with (
        log_stand_in() as logs,
        run.gateway(
            "gateway-jwt-logs",
            routing_document(auth="jwt"),
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
            (HELLO,),
            headers={"Authorization": auth},
            counters=counters_of(docker, run.stack),
        )
        async with scraping_metrics(session, served.url) as scrapes:
            result = await run.perf.run_client(served.url, "gateway_jwt_logs", JWT_FLAGS, auth)
        await asyncio.sleep(LOG_FLUSH_WAIT_S)
        return {
            **trimmed(result),
            "containers_after_warm_up": counts,
            "log_records_shipped": logs.records,
            "metrics_scrapes": scrapes,
            "rss_mb": rss_mb(served.pid),
        }


class LogStandIn:
    """VictoriaLogs' ``/insert/jsonline`` on 127.0.0.1, as the gateway ships to it: each batch
    answered 204 and its records counted."""

    def __init__(self) -> None:
        self.records = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=1024**3)
        app.router.add_post("/insert/jsonline", self.insert)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def insert(self, request: web.Request) -> web.Response:
        self.records += len((await request.read()).splitlines())
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
    session: aiohttp.ClientSession, url: str
) -> AsyncIterator[dict[str, int]]:
    """``GET /metrics`` every second meanwhile, as a Prometheus would; the answers counted by
    status."""
    scrapes: dict[str, int] = {}

    async def scrape() -> None:
        while True:
            async with session.get(f"{url}/metrics") as response:
                await response.read()
                scrapes[str(response.status)] = scrapes.get(str(response.status), 0) + 1
            await asyncio.sleep(METRICS_SCRAPE_INTERVAL_S)

    task = asyncio.create_task(scrape())
    try:
        yield scrapes
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# -- the engine's own costs and the gateway's cold starts ------------------------------------


@asynccontextmanager
async def raw_engine(run: BenchRun, function: str) -> AsyncIterator[RawEngine]:
    engine = RawEngine(run.function(function), network_of(run.stack), run.stack)
    try:
        await engine.start()
        yield engine
    finally:
        await engine.close()


async def raw_costs(run: BenchRun) -> dict[str, Any]:
    """The same functions' containers as the cold requests below start: ``hello`` alone,
    ``sleep`` ten at once."""
    async with raw_engine(run, HELLO.function) as engine:
        singles = [await engine.create_start_ready_s() for _ in range(RAW_SAMPLES)]
    async with raw_engine(run, SLEEP.function) as engine:
        tens = [
            await engine.concurrent_create_start_ready_s(CONTAINERS_PER_FUNCTION)
            for _ in range(COLD_SAMPLES)
        ]
    return {
        "create_start_ready_ms": median_ms(singles),
        "ten_concurrent_create_start_ready_ms": median_ms(tens),
    }


async def cold_starts(run: BenchRun) -> dict[str, Any]:
    """Per gateway start (which removes the previous one's containers): the first request to
    ``hello``, then ten simultaneous first requests to ``sleep``, and how many containers
    served those (their cold starts, from ``/metrics``)."""
    firsts: list[float] = []
    tens: list[float] = []
    served_by: list[int] = []
    for _ in range(COLD_SAMPLES):
        async with run.gateway("cold", routing_document()) as served, client_session() as session:
            firsts.append(await call(session, served.url, HELLO))
            begun = time.perf_counter()
            await burst(session, served.url, (TEN_COLD_SLEEP,), CONTAINERS_PER_FUNCTION)
            tens.append(time.perf_counter() - begun)
            served_by.append(cold_starts_of(await metrics_text(session, served.url), "sleep"))
    return {
        "first_request_ms": median_ms(firsts),
        "ten_simultaneous_first_requests_ms": median_ms(tens),
        "ten_simultaneous_first_requests_less_sleep_ms": median_ms(
            [wall - TEN_COLD_SLEEP_S for wall in tens]
        ),
        "ten_simultaneous_served_by_containers": served_by,
    }


async def metrics_text(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(f"{url}/metrics") as response:
        response.raise_for_status()
        return await response.text()


def cold_starts_of(metrics: str, function: str) -> int:
    """``edgelambda_cold_starts_total`` of ``function`` in Prometheus text."""
    series = f'edgelambda_cold_starts_total{{function="{function}"}}'
    values = [line.split()[-1] for line in metrics.splitlines() if line.startswith(series)]
    return int(float(values[0])) if values else 0


async def engine_unpause(run: BenchRun) -> dict[str, Any]:
    """The engine's own unpause, then the gateway's first request to a frozen container
    (client-measured on 127.0.0.1, so an upper bound of the server's time), in turns."""
    async with raw_engine(run, HELLO.function) as raw_hello:
        unpause, unpause_invoke = await raw_hello.unpause_s(UNPAUSE_SAMPLES)
    frozen = await frozen_first_requests(run)
    return {
        "unpause_ms": median_ms(unpause),
        "unpause_then_invocation_ms": median_ms(unpause_invoke),
        "frozen_standby_first_request_ms": median_ms(frozen),
    }


async def frozen_first_requests(run: BenchRun) -> list[float]:
    """The first request to ``hello`` each time its one container has been frozen."""
    settings = {
        "EDGELAMBDA_FREEZE_AFTER_S": str(FREEZE_AFTER_S),
        "EDGELAMBDA_REAP_INTERVAL_S": "0.1",
    }
    samples = []
    gateway = run.gateway("frozen", routing_document(), **settings)
    async with gateway as served, client_session() as session:
        await call(session, served.url, HELLO)  # the cold start
        for _ in range(FROZEN_SAMPLES):
            await until_frozen(session, served.url)
            samples.append(await call(session, served.url, HELLO))
    return samples


async def until_frozen(session: aiohttp.ClientSession, url: str) -> None:
    """Until ``/health`` counts a frozen container and no ready one (bounded)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        containers = await container_states(session, url)
        if containers.get("frozen") and not containers.get("ready"):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the gateway froze no container within 10 s")


# -- scale -----------------------------------------------------------------------------------


async def route_scale(run: BenchRun) -> dict[str, Any]:
    """Warm ``GET /hello`` through a gateway with 10 routes and one with 1,000, both up at
    once and measured in alternating rounds, so the machine's drifting load weighs on both."""
    async with AsyncExitStack() as stack:
        gateways = {
            f"routes_{routes}": await stack.enter_async_context(
                run.gateway(f"routes-{routes}", routing_document(routes=routes), label)
            )
            for routes, label in zip(SCALE_ROUTES, run.scale_stacks, strict=True)
        }
        session = await stack.enter_async_context(client_session())
        samples = await alternating(session, {name: g.url for name, g in gateways.items()})
        return {
            name: {**p50_p99_ms(samples[name]), "rss_mb": rss_mb(g.pid)}
            for name, g in gateways.items()
        }


async def alternating(
    session: aiohttp.ClientSession, urls: dict[str, str], endpoint: Endpoint = HELLO
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in urls}
    for url in urls.values():  # the first may be a cold start
        for _ in range(SCALE_REQUESTS_PER_ROUND):
            await call(session, url, endpoint)
    for _ in range(SCALE_ROUNDS):
        for name, url in urls.items():
            for _ in range(SCALE_REQUESTS_PER_ROUND):
                samples[name].append(await call(session, url, endpoint))
    return samples


def scale_settings(containers: int) -> dict[str, str]:
    """A gateway's settings for ``containers`` live containers, started by bursts."""
    connections = str(max(1000, 2 * containers))  # a burst's requests all come from 127.0.0.1
    return {
        # Idle containers stay running: the comparison is not about thawing.
        "EDGELAMBDA_FREEZE_AFTER_S": "0",
        "IDLE_TIMEOUT_MINUTES": "30",
        # Hundreds of runtimes start at once on two cores; the burst waits for them.
        "EDGELAMBDA_INIT_TIMEOUT_S": "300",
        "EDGELAMBDA_QUEUE_WAIT_S": "600",
        # A burst queues one request per container wanted (beyond 100, 429 by default).
        "EDGELAMBDA_QUEUE_SIZE": str(containers),
        "EDGELAMBDA_MAX_CONNECTIONS": connections,
        "EDGELAMBDA_MAX_CONNECTIONS_PER_ADDRESS": connections,
    }


async def container_scale(run: BenchRun) -> dict[str, Any]:
    """Warm ``GET /hello?s=0`` through a gateway whose function has 10 live containers and
    one whose function has ``run.counts.containers``, both up at once and measured in
    alternating rounds; each function's ``max_concurrency`` is its count, and bursts of held
    requests start its containers."""
    wanted = {"containers_10": BASE_CONTAINERS, "containers_scaled": run.counts.containers}
    async with AsyncExitStack() as stack:
        # Last out: whatever a gateway that had to be killed left behind.
        stack.push_async_callback(remove_stacks, *run.container_stacks)
        gateways = {
            name: await stack.enter_async_context(
                run.gateway(
                    f"containers-{count}",
                    document_of((SCALED,), max_concurrency=count),
                    label,
                    **scale_settings(count),
                )
            )
            for (name, count), label in zip(wanted.items(), run.container_stacks, strict=True)
        }
        session = await stack.enter_async_context(
            client_session(limit=max(wanted.values()), timeout_s=BURST_TIMEOUT_S)
        )
        fills = {
            name: await fill(session, g.url, (SCALED_HOLD,), wanted[name])
            for name, g in gateways.items()
        }
        samples = await alternating(session, {n: g.url for n, g in gateways.items()}, SCALED)
        return {
            name: {**fills[name], **p50_p99_ms(samples[name]), "rss_mb": rss_mb(g.pid)}
            for name, g in gateways.items()
        }


async def function_scale(run: BenchRun) -> dict[str, Any]:
    """The RSS of a gateway with ``run.counts.functions`` functions, before any container
    and with two live containers each, started by bursts of two held requests to every
    function at once."""
    endpoints = held_functions(run.counts.functions)
    containers = len(endpoints) * CONTAINERS_PER_SCALED_FUNCTION
    async with AsyncExitStack() as stack:
        stack.push_async_callback(remove_stacks, run.functions_stack)
        served = await stack.enter_async_context(
            run.gateway(
                "functions",
                document_of(endpoints, max_concurrency=CONTAINERS_PER_SCALED_FUNCTION),
                run.functions_stack,
                **scale_settings(containers),
            )
        )
        session = await stack.enter_async_context(
            client_session(limit=containers, timeout_s=BURST_TIMEOUT_S)
        )
        rss_before = rss_mb(served.pid)
        filled = await fill(session, served.url, endpoints, CONTAINERS_PER_SCALED_FUNCTION)
        return {
            "functions": len(endpoints),
            **filled,
            "rss_mb_before_containers": rss_before,
            "rss_mb": rss_mb(served.pid),
        }


async def fill(
    session: aiohttp.ClientSession, url: str, endpoints: tuple[Endpoint, ...], per_endpoint: int
) -> dict[str, Any]:
    """Bursts of ``per_endpoint`` simultaneous held requests to each endpoint, until
    ``/health`` counts a live container for every request of a burst (``FILL_ROUNDS`` at
    most, and none after containers failed to finish starting: the gateway starts no more
    while they are pending): the live containers reached, all of them by state, the bursts
    sent, their failed requests and the seconds it took."""
    wanted = len(endpoints) * per_endpoint
    failures: Counter[str] = Counter()
    started = time.perf_counter()
    states: dict[str, int] = {}
    bursts = 0
    while bursts < FILL_ROUNDS and live_count(states) < wanted and not states.get("starting"):
        bursts += 1
        failed = await tolerant_burst(session, url, endpoints, per_endpoint)
        failures.update(f"{type(exc).__name__}: {exc}" for exc in failed)
        states = await settled_states(session, url)
    return {
        "wanted_containers": wanted,
        "live_containers": live_count(states),
        "containers_by_state": states,
        "bursts": bursts,
        "failed_requests": dict(failures),
        "fill_s": round(time.perf_counter() - started, 1),
    }


async def container_states(session: aiohttp.ClientSession, url: str) -> dict[str, int]:
    """``/health``'s containers by state."""
    async with session.get(f"{url}/health") as response:
        states: dict[str, int] = (await response.json())["containers"]
    return states


async def settled_states(session: aiohttp.ClientSession, url: str) -> dict[str, int]:
    """``/health``'s containers by state once none is starting (or after
    ``SETTLE_TIMEOUT_S``: then as they are)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    states = await container_states(session, url)
    while states.get("starting") and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        states = await container_states(session, url)
    return states


def live_count(states: Mapping[str, int]) -> int:
    return sum(states.get(state, 0) for state in LIVE_STATES)


# -- the run ---------------------------------------------------------------------------------


Section = Callable[[BenchRun], Awaitable[dict[str, Any]]]
# Every section, in the order a run measures them.
SECTIONS: dict[str, Section] = {
    "thinnest": thinnest_side,
    "gateway": gateway_side,
    "gateway_jwt_logs": gateway_jwt_logs_side,
    "raw": raw_costs,
    "cold": cold_starts,
    "engine": engine_unpause,
    "scale": route_scale,
    "containers": container_scale,
    "functions": function_scale,
}
BENCH_PY_SECTIONS = frozenset({"thinnest", "gateway", "gateway_jwt_logs"})
SCALE_COUNT_SECTIONS = frozenset({"containers", "functions"})


async def measure(run: BenchRun, names: tuple[str, ...]) -> dict[str, Any]:
    """The sections ``names``, the ratios between them and their targets; and how long each
    section took."""
    report: dict[str, Any] = {}
    wall_s: dict[str, float] = {}
    for name in names:
        progress(f"{name} ...")
        started = time.perf_counter()
        report[name] = await SECTIONS[name](run)
        wall_s[name] = round(time.perf_counter() - started, 1)
        progress(f"{name}: {wall_s[name]} s")
    report["ratios"] = ratios(report)
    report["targets"] = targets({**report["ratios"], **absolutes(report)})
    report["section_wall_s"] = wall_s
    return report


def chosen_sections(argv: list[str] | None = None) -> tuple[str, ...]:
    """The sections named by ``--sections`` (all by default), in the order of a run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated, of: {', '.join(SECTIONS)} (default: all)",
    )
    named = {name.strip() for name in parser.parse_args(argv).sections.split(",")} - {""}
    if not named or named - SECTIONS.keys():
        parser.error(f"--sections: unknown {sorted(named - SECTIONS.keys())}, or none named")
    return tuple(name for name in SECTIONS if name in named)


def notes(names: tuple[str, ...], counts: ScaleCounts) -> tuple[str, ...]:
    return NOTES + ((counts.note(),) if SCALE_COUNT_SECTIONS & set(names) else ())


async def main(names: tuple[str, ...]) -> None:
    perf = PerfReference.from_env(os.environ)
    counts = ScaleCounts.from_env(os.environ)
    stack = f"bench-{uuid.uuid4().hex[:8]}"
    run = BenchRun(perf, Path(tempfile.mkdtemp(prefix=f"edgelambda-{stack}-")), stack, counts)
    # The gateway takes code only from inside its routing file's directory: a copy, there.
    perf.copy_function(run.routing_dir / CODE_DIR)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(BENCH_TIMEOUT_S):
            report = await measure(run, names)
    except BaseException:
        progress(f"failed; the gateways' logs are kept in {run.work}")
        raise
    finally:
        await remove_stacks(*run.all_stacks)
    shutil.rmtree(run.work)
    if BENCH_PY_SECTIONS & set(names):
        report["bench_py_flags"] = {"sides": FLAGS.text(), "gateway_jwt_logs": JWT_FLAGS.text()}
    report["notes"] = notes(names, counts)
    report["bench_wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main(chosen_sections()))
