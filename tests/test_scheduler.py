"""The schedule loop's decisions, with a test clock: no sleeping."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from edgelambda.scheduler import Scheduler
from tests.fakes import function_spec

START = datetime(2026, 11, 28, 19, 0, 30, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class Recorder:
    def __init__(self, failing: set[str] | None = None) -> None:
        self.fired: list[tuple[str, dict[str, object]]] = []
        self.failing = failing or set()

    async def __call__(self, function: str, payload: bytes) -> None:
        if function in self.failing:
            raise RuntimeError("queue unavailable")
        self.fired.append((function, json.loads(payload)))


def _scheduler(clock: Clock, recorder: Recorder, **schedules: str) -> Scheduler:
    scheduler = Scheduler(enqueue=recorder, region="us-east-1", clock=clock)
    functions = {
        name: replace(function_spec(), name=name, schedules=(expression,))
        for name, expression in schedules.items()
    }
    scheduler.update(functions)
    return scheduler


async def test_a_one_minute_rate_fires_every_minute_on_the_minute() -> None:
    clock, recorder = Clock(), Recorder()
    scheduler = _scheduler(clock, recorder, tick="rate(1 minute)")

    for _ in range(5):
        assert 0 < scheduler.seconds_to_next() <= 60
        clock.now += timedelta(seconds=scheduler.seconds_to_next())
        await scheduler.tick()

    times = [event["time"] for _, event in recorder.fired]
    assert times == [f"2026-11-28T19:0{m}:00Z" for m in range(1, 6)]
    event = recorder.fired[0][1]
    assert event["source"] == "aws.events"
    assert event["detail-type"] == "Scheduled Event"
    assert event["detail"] == {}
    assert event["account"] == "123456789012"
    assert str(event["resources"][0]).startswith("arn:aws:events:us-east-1:123456789012:rule/")


async def test_nothing_fires_before_its_time_and_late_ticks_fire_once() -> None:
    clock, recorder = Clock(), Recorder()
    scheduler = _scheduler(clock, recorder, tick="rate(1 minute)")

    await scheduler.tick()
    assert recorder.fired == []
    clock.now += timedelta(minutes=10)  # the loop was stalled: missed fires are not replayed
    fires = await scheduler.tick()

    assert len(recorder.fired) == 1
    assert fires[0].missed == 9
    assert recorder.fired[0][1]["time"] == "2026-11-28T19:10:00Z"


async def test_a_reload_does_not_fire_twice() -> None:
    clock, recorder = Clock(), Recorder()
    scheduler = _scheduler(clock, recorder, tick="rate(1 minute)")
    clock.now = START + timedelta(seconds=30)
    await scheduler.tick()
    assert len(recorder.fired) == 1

    scheduler.update({"tick": replace(function_spec(), name="tick", schedules=("rate(1 minute)",))})
    await scheduler.tick()

    assert len(recorder.fired) == 1


async def test_a_failing_fire_never_stops_the_others() -> None:
    clock, recorder = Clock(), Recorder(failing={"broken"})
    scheduler = _scheduler(clock, recorder, broken="rate(1 minute)", fine="cron(* * * * ? *)")
    clock.now += timedelta(minutes=1)

    fires = await scheduler.tick()

    assert {fire.target.function for fire in fires} == {"broken", "fine"}
    assert [function for function, _ in recorder.fired] == ["fine"]
