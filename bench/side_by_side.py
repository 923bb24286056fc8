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
  rounds, and their RSS.

Then the ratios between the sides and the bound each is held to. Every container and network
it made is removed at the end; the gateways' logs are kept only when the run failed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
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
from report import ratios, targets, trimmed

from edgelambda.routing import FunctionSpec
from edgelambda.routing_file import parse_routing

BENCH_TIMEOUT_S = 900
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


def routing_document(*, auth: str = "none", routes: int = len(ENDPOINTS)) -> dict[str, Any]:
    """The gateway's routing file for the reference function: its three routes, and up to
    ``routes`` in all with extra ones to ``hello`` (JSON is YAML)."""
    functions = {
        e.function: {
            "handler": e.handler,
            "code": CODE_DIR,
            "max_concurrency": CONTAINERS_PER_FUNCTION,
        }
        for e in ENDPOINTS
    }
    own = [
        {"path": e.path, "method": e.method, "function": e.function, "auth": auth}
        for e in ENDPOINTS
    ]
    extra = [
        {"path": extra_path(i), "method": "GET", "function": HELLO.function, "auth": "none"}
        for i in range(routes - len(own))
    ]
    return {"functions": functions, "routes": own + extra}


def extra_path(index: int) -> str:
    # Literal, parameter and greedy shapes, as a real table has; none matches the three paths.
    return (f"/r{index}", f"/r{index}/items/{{id}}", f"/r{index}/{{proxy+}}")[index % 3]


def network_of(stack: str) -> str:
    return f"edgelambda-{stack}"


@dataclass(frozen=True)
class BenchRun:
    """One run's files (``work``: routing files beside the function's code, the gateways'
    data and logs) and the stack label of the containers it makes."""

    perf: PerfReference
    work: Path
    stack: str

    @property
    def routing_dir(self) -> Path:
        return self.work / "routing"

    @property
    def scale_stacks(self) -> tuple[str, ...]:
        # Two gateways run at once there, each with its own label and network.
        return tuple(f"{self.stack}-routes{n}" for n in SCALE_ROUTES)

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
            # Ten cold starts beside other work can take long on two cores.
            EDGELAMBDA_INIT_TIMEOUT_S="60",
            EDGELAMBDA_QUEUE_WAIT_S="120",
            **settings,
        )
        return gateway_process(env, self.work / f"{name}.log")


# -- requests --------------------------------------------------------------------------------


def client_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128))


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
    """``clients`` simultaneous requests to each endpoint."""
    await asyncio.gather(
        *(call(session, url, e, headers) for e in endpoints for _ in range(clients))
    )


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
        async with session.get(f"{url}/health") as response:
            containers = (await response.json())["containers"]
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
    session: aiohttp.ClientSession, urls: dict[str, str]
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in urls}
    for url in urls.values():  # the first is a cold start
        for _ in range(SCALE_REQUESTS_PER_ROUND):
            await call(session, url, HELLO)
    for _ in range(SCALE_ROUNDS):
        for name, url in urls.items():
            for _ in range(SCALE_REQUESTS_PER_ROUND):
                samples[name].append(await call(session, url, HELLO))
    return samples


# -- the run ---------------------------------------------------------------------------------


async def measure(run: BenchRun) -> dict[str, Any]:
    report: dict[str, Any] = {}
    sections = (
        ("thinnest", thinnest_side),
        ("gateway", gateway_side),
        ("gateway_jwt_logs", gateway_jwt_logs_side),
        ("raw", raw_costs),
        ("cold", cold_starts),
        ("engine", engine_unpause),
        ("scale", route_scale),
    )
    for name, section in sections:
        progress(f"{name} ...")
        started = time.perf_counter()
        report[name] = await section(run)
        progress(f"{name}: {time.perf_counter() - started:.1f} s")
    report["ratios"] = ratios(report)
    frozen_ms = report["engine"]["frozen_standby_first_request_ms"]["median"]
    report["targets"] = targets({**report["ratios"], "frozen_standby_first_request_ms": frozen_ms})
    return report


async def main() -> None:
    perf = PerfReference.from_env(os.environ)
    stack = f"bench-{uuid.uuid4().hex[:8]}"
    run = BenchRun(perf, Path(tempfile.mkdtemp(prefix=f"edgelambda-{stack}-")), stack)
    # The gateway takes code only from inside its routing file's directory: a copy, there.
    perf.copy_function(run.routing_dir / CODE_DIR)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(BENCH_TIMEOUT_S):
            report = await measure(run)
    except BaseException:
        progress(f"failed; the gateways' logs are kept in {run.work}")
        raise
    finally:
        for label in (stack, *run.scale_stacks):
            await cleanup(network_of(label), label)
    shutil.rmtree(run.work)
    report["bench_py_flags"] = {"sides": FLAGS.text(), "gateway_jwt_logs": JWT_FLAGS.text()}
    report["notes"] = NOTES
    report["bench_wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
