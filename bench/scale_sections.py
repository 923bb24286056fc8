"""The scale sections of `make bench`: warm latency through 10 routes against 1,000 and
through 10 live containers against 300, in alternating rounds, and the RSS of a gateway with
50 functions and two live containers each."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
from bench_run import (
    BASE_CONTAINERS,
    CONTAINERS_PER_SCALED_FUNCTION,
    HELLO,
    SCALE_ROUTES,
    SCALED,
    SCALED_HOLD,
    BenchRun,
    Endpoint,
    call,
    client_session,
    container_states,
    document_of,
    held_functions,
    remove_stacks,
    routing_document,
    tolerant_burst,
)
from harness import p50_p99_ms, rss_mb

SCALE_ROUNDS = 20
SCALE_REQUESTS_PER_ROUND = 50
FILL_ROUNDS = 3  # bursts at most, until the live containers are all there
# For the containers started for a burst to finish starting (300 take about 50 s on two cores).
SETTLE_TIMEOUT_S = 120.0
BURST_TIMEOUT_S = 900.0  # for one burst's requests, each queued while hundreds start
LIVE_STATES = ("ready", "busy", "frozen", "thawing")  # /health's states of a live container


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
