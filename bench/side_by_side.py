"""`make bench`: the gateway against the performance reference and the engine's own costs,
measured one after the other in one run, printed as one JSON report (progress on stderr).

- thinnest: the reference's ``minimal_gateway.py`` with ten pre-started containers per
  function, loaded by the reference's ``bench.py`` (warm latency, 8 and 32 clients, ten 1 s
  sleeps);
- gateway: ``edgelambda serve`` serving the same function, warmed up to ten containers per
  function, loaded by ``bench.py`` with the same flags;
- gateway_jwt_logs: the same load through an ``auth: jwt`` route, with log shipping to a
  stand-in of VictoriaLogs and ``/metrics`` scraped every second;
  (these three sides are up at once and loaded in alternating rounds, each figure the median
  of its rounds: see load_sections)
- raw: create + start + runtime ready of one container, and of ten at once, by bare aiodocker;
- cold: the gateway's first request after it starts, and ten simultaneous first requests to a
  function with ``max_concurrency`` 10, each sleeping long enough that ten containers are
  needed (compared less the sleep);
- engine: the engine's unpause of a paused container;
- scale: warm latency through a gateway with 10 routes and one with 1,000, in alternating
  rounds, and their RSS;
- containers: warm latency through a gateway whose function has 10 live containers and one
  whose function has 300, in alternating rounds, and their RSS;
- functions: the RSS of a gateway with 50 functions and two live containers each;
- console: the console's pages loaded in a real browser from a gateway with 50 functions and
  two live containers each, and the request path's throughput with five consoles following
  the live feed against none (see console_sections).

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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench_run import CODE_DIR, TEN_COLD_SLEEP_S, BenchRun, ScaleCounts, remove_stacks
from console_sections import console
from engine_sections import cold_starts, engine_unpause, raw_costs
from harness import progress
from load_sections import FLAGS, JWT_FLAGS, LOAD_ROUNDS, SIDES, load_sides
from perf_reference import PerfReference
from report import absolutes, ratios, targets
from scale_sections import container_scale, function_scale, route_scale

# Every section takes about 5 min on two cores; a scale section whose containers do not all
# start waits for them up to FILL_ROUNDS x SETTLE_TIMEOUT_S more.
BENCH_TIMEOUT_S = 1800
NOTES = (
    "targets are issue 14's bounds; each says whether it holds in this run",
    f"each of the ten simultaneous cold requests sleeps {TEN_COLD_SLEEP_S} s in the function"
    " so that no container serves two (at 0.1 s, 3 containers served all ten); their ratio"
    " is taken less the sleep",
    "absolute figures move from run to run on a shared machine; compare the ratios",
)


Section = Callable[[BenchRun], Awaitable[dict[str, Any]]]
# The sections after the load sides (SIDES, measured together), in the order a run takes them.
SECTIONS: dict[str, Section] = {
    "raw": raw_costs,
    "cold": cold_starts,
    "engine": engine_unpause,
    "scale": route_scale,
    "containers": container_scale,
    "functions": function_scale,
    "console": console,
}
SECTION_NAMES = (*SIDES, *SECTIONS)
SCALE_COUNT_SECTIONS = frozenset({"containers", "functions", "console"})


async def measure(run: BenchRun, names: tuple[str, ...]) -> dict[str, Any]:
    """The sections ``names``, the ratios between them and their targets; and how long each
    took (the load sides together)."""
    report: dict[str, Any] = {}
    wall_s: dict[str, float] = {}
    sides = tuple(name for name in names if name in SIDES)
    steps: list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]] = []
    if sides:
        steps.append(("+".join(sides), lambda: load_sides(run, sides)))
    steps += [(name, _whole(name, SECTIONS[name], run)) for name in names if name in SECTIONS]
    for label, step in steps:
        progress(f"{label} ...")
        started = time.perf_counter()
        report.update(await step())
        wall_s[label] = round(time.perf_counter() - started, 1)
        progress(f"{label}: {wall_s[label]} s")
    report["ratios"] = ratios(report)
    report["targets"] = targets({**report["ratios"], **absolutes(report)})
    report["section_wall_s"] = wall_s
    return report


def _whole(name: str, section: Section, run: BenchRun) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def step() -> dict[str, Any]:
        return {name: await section(run)}

    return step


def chosen_sections(argv: list[str] | None = None) -> tuple[str, ...]:
    """The sections named by ``--sections`` (all by default), in the order of a run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--sections",
        default=",".join(SECTION_NAMES),
        help=f"comma-separated, of: {', '.join(SECTION_NAMES)} (default: all)",
    )
    named = {name.strip() for name in parser.parse_args(argv).sections.split(",")} - {""}
    unknown = named - set(SECTION_NAMES)
    if not named or unknown:
        parser.error(f"--sections: unknown {sorted(unknown)}, or none named")
    return tuple(name for name in SECTION_NAMES if name in named)


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
    if set(SIDES) & set(names):
        report["bench_py_flags"] = {
            "sides": FLAGS.text(),
            "gateway_jwt_logs": JWT_FLAGS.text(),
            "rounds": LOAD_ROUNDS,
        }
    report["notes"] = notes(names, counts)
    report["bench_wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main(chosen_sections()))
