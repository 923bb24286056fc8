"""The console section of `make bench` (issue 17's bounds):

- its pages' load times in a real browser (Debian's chromium through Playwright) from a
  gateway with ``run.counts.functions`` functions and two live containers each: from the
  navigation to the page drawn with its data, each page loaded ``PAGE_LOADS`` times;
- the request path with five consoles open against none: the reference's ``bench.py`` load
  (8 and 32 clients) on the gateway serving the reference function, in rounds of one load
  without and one with five consoles following the live feed, back to back and in turns
  first; the ratio is the median of the rounds' own ratios. A console here is what the
  gateway serves one: the functions page's API read, then its live stream, read as it comes
  (a browser's own rendering is left out: on two cores it would compete with the load
  itself, which measures the machine, not the gateway).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
from bench_run import (
    CONTAINERS_PER_SCALED_FUNCTION,
    BenchRun,
    client_session,
    document_of,
    held_functions,
    remove_stacks,
    routing_document,
    warm_up,
)
from harness import progress, rss_mb
from load_sections import combined
from perf_reference import ClientFlags
from playwright.async_api import Page, async_playwright
from report import paired_ratios, trimmed
from scale_sections import BURST_TIMEOUT_S, fill, scale_settings

from edgelambda.config import DEFAULT_API_KEY

CONSOLES = 5
PAGE_LOADS = 5
CONSOLE_ROUNDS = 7  # each with both kinds, back to back
LOAD_FLAGS = ClientFlags(phases="load", load_duration_s=5.0, concurrency=(8, 32))
KEYED = {"x-api-key": DEFAULT_API_KEY}  # development mode: the API key is the console's login
PAGE_TIMEOUT_MS = 30_000
# Each page, and what shows it drawn with its data.
PAGES = {
    "functions": ("#/functions", "#functions tr[data-function] .containers .chip"),
    "function": ("#/functions/f0", "#invocations"),
    "routes": ("#/routes", "#routes tbody tr"),
    "box": ("#/box", "#services tr"),
}


async def console(run: BenchRun) -> dict[str, Any]:
    return {
        "pages": await page_loads(run),
        "live_feed_load": await load_with_consoles(run),
    }


async def page_loads(run: BenchRun) -> dict[str, Any]:
    endpoints = held_functions(run.counts.functions)
    containers = len(endpoints) * CONTAINERS_PER_SCALED_FUNCTION
    stack_name = run.console_stacks[0]
    async with AsyncExitStack() as stack:
        stack.push_async_callback(remove_stacks, stack_name)
        served = await stack.enter_async_context(
            run.gateway(
                "console",
                document_of(endpoints, max_concurrency=CONTAINERS_PER_SCALED_FUNCTION),
                stack_name,
                **scale_settings(containers),
            )
        )
        session = await stack.enter_async_context(
            client_session(limit=containers, timeout_s=BURST_TIMEOUT_S)
        )
        filled = await fill(session, served.url, endpoints, CONTAINERS_PER_SCALED_FUNCTION)
        progress(f"console: {filled['live_containers']} live containers; loading pages")
        times = await browse(served.url, len(endpoints))
        return {
            "functions": len(endpoints),
            **filled,
            "page_load_ms": {
                name: {"median": statistics.median(samples), "max": max(samples), "all": samples}
                for name, samples in times.items()
            },
            "rss_mb": rss_mb(served.pid),
        }


async def browse(url: str, functions: int) -> dict[str, list[float]]:
    """Each page's load times, ms: a full navigation (the HTML, script and stylesheet, the
    API reads, the drawing) until its data shows."""
    browser_path = os.environ.get("EDGELAMBDA_BROWSER") or shutil.which("chromium")
    if browser_path is None:
        raise SystemExit("make bench: no chromium (`make browser` installs Debian's)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=browser_path, args=["--no-sandbox"]
        )
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            await log_in(page, url)
            times: dict[str, list[float]] = {name: [] for name in PAGES}
            for _ in range(PAGE_LOADS):
                for name, (fragment, drawn) in PAGES.items():
                    await page.goto("about:blank")
                    started = time.perf_counter()
                    await page.goto(f"{url}/console{fragment}")
                    await page.locator(drawn).first.wait_for(timeout=PAGE_TIMEOUT_MS)
                    if name == "functions":
                        rows = page.locator("#functions tr[data-function]")
                        assert await rows.count() == functions, "not every function is shown"
                    times[name].append(round((time.perf_counter() - started) * 1000, 1))
            return times
        finally:
            await browser.close()


async def log_in(page: Page, url: str) -> None:
    await page.goto(f"{url}/console")
    await page.fill("input[name=apikey]", DEFAULT_API_KEY)
    await page.click("#login button[type=submit]")
    await page.locator("#functions").wait_for(timeout=PAGE_TIMEOUT_MS)


async def load_with_consoles(run: BenchRun) -> dict[str, Any]:
    stack_name = run.console_stacks[1]
    async with AsyncExitStack() as stack:
        stack.push_async_callback(remove_stacks, stack_name)
        served = await stack.enter_async_context(
            run.gateway("console-load", routing_document(), stack_name)
        )
        session = await stack.enter_async_context(client_session())
        await warm_up(session, served.url)
        rounds: dict[str, list[dict[str, Any]]] = {"no_console": [], "five_consoles": []}
        documents = [0]
        for number in range(1, CONSOLE_ROUNDS + 1):
            # Each round has both kinds back to back, in turns first, so the machine's drift
            # weighs on both alike; the ratio is the median of the rounds' own ratios.
            kinds = list(rounds) if number % 2 else list(reversed(rounds))
            for kind in kinds:
                progress(f"console round {number} of {CONSOLE_ROUNDS}: {kind}")
                consoles = CONSOLES if kind == "five_consoles" else 0
                async with open_consoles(served.url, consoles, documents):
                    result = await run.perf.run_client(served.url, kind, LOAD_FLAGS)
                rounds[kind].append(trimmed(result))
        return {
            **{name: combined(kind) for name, kind in rounds.items()},
            "paired_ratios": paired_ratios(
                rounds["five_consoles"], rounds["no_console"], LOAD_FLAGS.concurrency
            ),
            "live_documents_received": documents[0],
            "rss_mb": rss_mb(served.pid),
        }


@contextlib.asynccontextmanager
async def open_consoles(url: str, count: int, documents: list[int]) -> AsyncIterator[None]:
    """``count`` consoles on the functions page: each reads the page's API once, then its
    live stream until the block ends; ``documents[0]`` counts the documents they received."""
    async with aiohttp.ClientSession(headers=KEYED) as session:
        ready = [asyncio.Event() for _ in range(count)]
        tasks = [asyncio.create_task(follow(session, url, r, documents)) for r in ready]
        try:
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 30)
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def follow(
    session: aiohttp.ClientSession, url: str, ready: asyncio.Event, documents: list[int]
) -> None:
    async with session.get(f"{url}/console/api/functions") as response:
        response.raise_for_status()
        await response.read()
    async with session.get(f"{url}/console/api/live") as response:
        response.raise_for_status()
        async for line in response.content:
            if line.startswith(b"data: "):
                documents[0] += 1
                ready.set()
