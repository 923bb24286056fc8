"""The engine sections of `make bench`: bare create + start + ready by aiodocker, the
gateway's cold starts (one, and ten at once), and the engine's unpause beside the gateway's
first request to a frozen container."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from bench_run import (
    CONTAINERS_PER_FUNCTION,
    HELLO,
    SLEEP,
    TEN_COLD_SLEEP,
    TEN_COLD_SLEEP_S,
    BenchRun,
    burst,
    call,
    client_session,
    container_states,
    network_of,
    routing_document,
)
from harness import median_ms
from raw_engine import RawEngine

COLD_SAMPLES = 5
ENGINE_SETTLE_S = 1.0  # before each single cold start: the engine done with what came before
UNPAUSE_SAMPLES = 5
FROZEN_SAMPLES = 7
FREEZE_AFTER_S = 0.3


@asynccontextmanager
async def raw_engine(run: BenchRun, function: str) -> AsyncIterator[RawEngine]:
    engine = RawEngine(run.function(function), network_of(run.stack), run.stack)
    try:
        await engine.start()
        yield engine
    finally:
        await engine.close()


async def raw_costs(run: BenchRun) -> dict[str, Any]:
    """Ten of the ``sleep`` containers the ten cold requests below start, started at once.
    (One ``hello`` container alone is measured beside each gateway's first request.)"""
    async with raw_engine(run, SLEEP.function) as engine:
        tens = [
            await engine.concurrent_create_start_ready_s(CONTAINERS_PER_FUNCTION)
            for _ in range(COLD_SAMPLES)
        ]
    return {"ten_concurrent_create_start_ready_ms": median_ms(tens)}


async def cold_starts(run: BenchRun) -> dict[str, Any]:
    """Per gateway start (which removes the previous one's containers): the first request to
    ``hello``, then ten simultaneous first requests to ``sleep``, and how many containers
    served those (their cold starts, from ``/metrics``); and beside each, a bare ``hello``
    container started. The bare start and the gateway alternate, first one then the other,
    so that neither always follows the other's teardown (a gateway removes eleven
    containers, a bare start one), and each waits :data:`ENGINE_SETTLE_S` first. Measured a
    section apart, as they were, the engine's drift moved their ratio by a tenth."""
    raw_singles: list[float] = []
    firsts: list[float] = []
    tens: list[float] = []
    served_by: list[int] = []

    async def bare() -> None:
        async with raw_engine(run, HELLO.function) as engine:
            await asyncio.sleep(ENGINE_SETTLE_S)
            raw_singles.append(await engine.create_start_ready_s())

    async def gateway() -> None:
        async with run.gateway("cold", routing_document()) as served, client_session() as session:
            await asyncio.sleep(ENGINE_SETTLE_S)
            firsts.append(await call(session, served.url, HELLO))
            begun = time.perf_counter()
            await burst(session, served.url, (TEN_COLD_SLEEP,), CONTAINERS_PER_FUNCTION)
            tens.append(time.perf_counter() - begun)
            served_by.append(cold_starts_of(await metrics_text(session, served.url), "sleep"))

    for sample in range(COLD_SAMPLES):
        for side in (bare, gateway) if sample % 2 == 0 else (gateway, bare):
            await side()
    return {
        "raw_create_start_ready_ms": median_ms(raw_singles),
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
