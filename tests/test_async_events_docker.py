"""Event (asynchronous) invocations: durable across a SIGKILL of the gateway, retried, and
dead-lettered when they keep failing."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from edgelambda.gateway import SERVER_KEY
from tests.conftest import GatewayFactory, Server, Starter, function_code, ran_echo, routing_text

pytestmark = pytest.mark.docker

SDK = function_code("sdk")
API_KEY = "dev-api-key-change-in-production"
CONCURRENCY = 4
RAN = re.compile(r"ran event (\d+)")


def runs_in(log: Path) -> list[int]:
    """Event numbers the gateway's function log shows running."""
    found = []
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("stream") == "stdout" and (match := RAN.fullmatch(record.get("_msg", ""))):
            found.append(int(match.group(1)))
    return found


async def post_event(server: Server, n: int) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.url}/2015-03-31/functions/slow/invocations",
            data=json.dumps({"n": n}),
            headers={"x-api-key": API_KEY, "X-Amz-Invocation-Type": "Event"},
        ) as response,
    ):
        return response.status


async def test_events_survive_a_sigkill_and_run_at_least_once(
    serve_factory: Starter, tmp_path: Path
) -> None:
    routing = routing_text(
        {"slow": {"handler": "app.slow_event", "code": SDK, "max_concurrency": CONCURRENCY}}, []
    )
    env = {"EDGELAMBDA_EVENT_CONCURRENCY": str(CONCURRENCY)}
    first = await serve_factory(routing, env=env, log=tmp_path / "first.log")
    statuses = [await post_event(first, n) for n in range(20)]
    assert statuses == [202] * 20

    deadline = time.monotonic() + 30
    while len(runs_in(tmp_path / "first.log")) < CONCURRENCY:  # mid-way: some ran, most wait
        assert time.monotonic() < deadline, "no event ran"
        await asyncio.sleep(0.1)
    first.process.kill()
    await first.process.wait()
    ran_before = runs_in(tmp_path / "first.log")
    assert len(ran_before) < 20

    await serve_factory(routing, env=env, log=tmp_path / "second.log")
    deadline = time.monotonic() + 60
    while set(ran_before + runs_in(tmp_path / "second.log")) != set(range(20)):
        assert time.monotonic() < deadline, "events were lost"
        await asyncio.sleep(0.2)

    counts = Counter(ran_before + runs_in(tmp_path / "second.log"))
    twice = [n for n, count in counts.items() if count > 1]
    # Only the events in flight at the kill (at most CONCURRENCY) may run a second time.
    assert len(twice) <= CONCURRENCY
    assert max(counts.values()) <= 2


async def test_a_failing_event_is_tried_three_times_then_dead_lettered(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    client = await gateway(routing_text({"fail": {"handler": "app.fail", "code": SDK}}, []))

    response = await client.post(
        "/2015-03-31/functions/fail/invocations",
        data=b'{"k": 1}',
        headers={"x-api-key": API_KEY, "X-Amz-Invocation-Type": "Event"},
    )
    assert response.status == 202

    events = client.app[SERVER_KEY]._events
    assert events is not None
    deadline = time.monotonic() + 15
    while not (dead := await events.dead_letters()):
        assert time.monotonic() < deadline, "the event never reached the dead-letter store"
        await asyncio.sleep(0.1)
    assert dead[0].attempts == 3
    assert dead[0].function == "fail"
    assert "this function always fails" in (dead[0].last_error or "")

    listed = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgelambda", "events", "dlq",
        env={**os.environ, "EDGELAMBDA_DATA_DIR": str(tmp_path / "data")},
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(listed.communicate(), timeout=30)
    assert listed.returncode == 0
    assert json.loads(stdout.decode().splitlines()[0])["id"] == dead[0].id

    replay = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgelambda", "events", "dlq", "--replay", dead[0].id,
        env={**os.environ, "EDGELAMBDA_DATA_DIR": str(tmp_path / "data")},
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(replay.communicate(), timeout=30)
    assert replay.returncode == 0
    assert stdout.decode().strip() == "replayed 1 event(s); a running gateway picks them up"


async def test_a_scheduled_fire_runs_the_function_with_an_eventbridge_event(
    gateway: GatewayFactory,
) -> None:
    function = {"handler": "app.echo", "code": SDK, "schedule": "rate(1 minute)"}
    client = await gateway(routing_text({"tick": function}, []))
    scheduler = client.app[SERVER_KEY].scheduler

    fires = await scheduler.tick(now=datetime.now(UTC) + timedelta(minutes=1, seconds=1))
    deadline = time.monotonic() + 15
    while not ran_echo(client):
        assert time.monotonic() < deadline, "the scheduled event never ran"
        await asyncio.sleep(0.1)

    assert [fire.target.function for fire in fires] == ["tick"]
