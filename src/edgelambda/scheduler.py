"""Scheduled functions: ``schedule:`` entries fire EventBridge "Scheduled Event"s, queued as
asynchronous invocations. Which fires are due is pure (time passed in); :class:`Scheduler`
is the loop around it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from edgelambda.aws import ACCOUNT_ID
from edgelambda.routing import FunctionSpec
from edgelambda.schedule import Schedule, parse_schedule
from edgelambda.tasks import LoopRegistry, start_loop

log = structlog.get_logger(__name__)

MAX_SLEEP_S = 60.0  # re-check at least this often (clock changes, reloads)

Key = tuple[str, str]  # (function, expression)
Enqueue = Callable[[str, bytes], Awaitable[None]]


@dataclass(frozen=True)
class Target:
    function: str
    expression: str
    schedule: Schedule

    @property
    def key(self) -> Key:
        return (self.function, self.expression)


@dataclass(frozen=True)
class Fire:
    target: Target
    at: datetime
    missed: int  # earlier fires that fell due while nobody was running them


def targets_of(functions: Mapping[str, FunctionSpec]) -> list[Target]:
    return [
        Target(name, expression, parse_schedule(expression))
        for name, spec in sorted(functions.items())
        for expression in spec.schedules
    ]


def due(target: Target, last: datetime, now: datetime) -> Fire | None:
    """The fire of ``target`` due at ``now`` after its previous one at ``last``: the most
    recent grid point, once (fires missed in between are counted, not replayed, as
    EventBridge does not replay them either)."""
    fire_at = target.schedule.next_fire(last)
    if fire_at is None or fire_at > now:
        return None
    missed = 0
    while (following := target.schedule.next_fire(fire_at)) is not None and following <= now:
        fire_at, missed = following, missed + 1
    return Fire(target, fire_at, missed)


def scheduled_event(fire: Fire, *, region: str) -> dict[str, object]:
    """The EventBridge event a scheduled rule delivers."""
    digest = uuid.uuid5(uuid.NAMESPACE_URL, fire.target.expression).hex[:8]
    rule = f"edgelambda-{fire.target.function}-{digest}"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": fire.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{ACCOUNT_ID}:rule/{rule}"],
        "detail": {},
    }


class Scheduler:
    """Fires the schedules of the current routing table; one task, owned and awaited."""

    def __init__(
        self,
        *,
        enqueue: Enqueue,
        region: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._enqueue = enqueue
        self._region = region
        self._clock = clock
        self._targets: list[Target] = []
        self._last: dict[Key, datetime] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def update(self, functions: Mapping[str, FunctionSpec]) -> None:
        """Follow a (re)loaded table. A schedule that stays keeps its last fire time, so a
        reload never fires it twice; a new one counts from now."""
        now = self._clock()
        self._targets = targets_of(functions)
        self._last = {t.key: self._last.get(t.key, now) for t in self._targets}
        self._changed.set()

    def start(self, loops: LoopRegistry | None = None) -> None:
        self._task = start_loop(self._run(), "scheduler", loops)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def tick(self, now: datetime | None = None) -> list[Fire]:
        """Fire everything due at ``now`` (the clock's time by default); a failure is logged
        and never stops the others."""
        now = now or self._clock()
        fires = [f for t in self._targets if (f := due(t, self._last[t.key], now)) is not None]
        for fire in fires:
            self._last[fire.target.key] = fire.at
            await self._fire(fire)
        return fires

    async def _fire(self, fire: Fire) -> None:
        if fire.missed:
            log.warning("schedule fires missed", function=fire.target.function, missed=fire.missed)
        payload = scheduled_event(fire, region=self._region)
        try:
            await self._enqueue(fire.target.function, json.dumps(payload).encode())
        except Exception:
            log.exception("scheduled fire failed", function=fire.target.function)
            return
        log.info("schedule fired", function=fire.target.function, at=payload["time"])

    def seconds_to_next(self) -> float:
        now = self._clock()
        upcoming = [
            fire_at
            for t in self._targets
            if (fire_at := t.schedule.next_fire(self._last[t.key])) is not None
        ]
        if not upcoming:
            return MAX_SLEEP_S
        return max(0.0, min(MAX_SLEEP_S, (min(upcoming) - now) / timedelta(seconds=1)))

    async def _run(self) -> None:
        while True:
            await self.tick()
            self._changed.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that comes
            # with the wake-up, and close() would wait on this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.seconds_to_next()):
                    await self._changed.wait()
