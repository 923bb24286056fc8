"""Random interleavings of callers, runtimes (right, wrong and gone) and the engine, against
the pool over a fake backend: every invocation is settled once, within its bound, and only
ever runs in a sandbox of its own function."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgelambda.config import Settings
from edgelambda.containers import ContainerExit, ContainerSpec, StartedContainer
from edgelambda.errors import EdgeLambdaError
from edgelambda.invocation import Invocation, InvocationResult
from edgelambda.logs import RecordingSink
from edgelambda.pool import Pool
from edgelambda.sandbox import Sandbox
from tests.fakes import Clock, FakeBackend, function_spec

FUNCTIONS = ("a", "b")
TIMEOUT_S = 0.05  # each function's timeout
QUEUE_WAIT_S = 0.1
INIT_TIMEOUT_S = 0.05
SLACK_S = 0.05  # the pool's last-resort bound, shortened for the test
BOUND_S = QUEUE_WAIT_S + INIT_TIMEOUT_S + TIMEOUT_S + SLACK_S
LATENESS_S = 0.25  # a loaded test machine's timers may fire this late
# The common steps of a working runtime appear more often than the faults between them.
ACTIONS = (
    *("invoke", "invoke", "poll", "poll", "poll", "respond", "respond", "respond"),
    *("error", "forge", "disconnect", "lose", "exit", "restart", "wait", "idle"),
)


class Engine(FakeBackend):
    """A fake engine whose containers can die, and which can restart (its event stream ends
    and every container is gone)."""

    def __init__(self) -> None:
        super().__init__()
        self.address_of: dict[str, str] = {}
        self.restarted = asyncio.Event()

    async def start(self, spec: ContainerSpec) -> StartedContainer:
        started = await super().start(spec)
        self.address_of[started.id] = started.address
        return started

    async def restart(self, container_id: str) -> str:
        self.address_of[container_id] = await super().restart(container_id)
        return self.address_of[container_id]

    async def exits(self, stack: str) -> AsyncIterator[ContainerExit]:
        while not self.restarted.is_set():
            get = asyncio.ensure_future(self.exit_events.get())
            restart = asyncio.ensure_future(self.restarted.wait())
            done, _ = await asyncio.wait({get, restart}, return_when=asyncio.FIRST_COMPLETED)
            get.cancel()
            restart.cancel()
            if get in done and not get.cancelled():
                yield get.result()
        self.restarted.clear()

    def restart_engine(self) -> None:
        self.removed.extend(self.address_of)  # every container stopped with the engine
        self.restarted.set()


@dataclass
class Call:
    function: str
    invocation: Invocation
    task: asyncio.Task[InvocationResult]
    started_s: float
    answered_s: float | None = None


@dataclass
class World:
    """The pool, the engine, the callers and what each sandbox's runtime holds."""

    pool: Pool
    engine: Engine
    calls: list[Call] = field(default_factory=list)
    polls: dict[str, asyncio.Task[Invocation]] = field(default_factory=dict)  # by container
    held: dict[str, tuple[Sandbox, Invocation]] = field(default_factory=dict)  # by container
    accepted: dict[str, bytes] = field(default_factory=dict)  # request id -> what was answered
    delivered_to: dict[str, Sandbox] = field(default_factory=dict)  # request id -> sandbox
    misplaced: list[str] = field(default_factory=list)  # ran in another function's sandbox

    def container(self, n: int) -> str | None:
        ids = list(self.engine.address_of)
        return ids[n % len(ids)] if ids else None

    async def sandbox(self, container_id: str) -> Sandbox | None:
        return await self.pool.sandbox_at(self.engine.address_of[container_id], wait_s=0.0)

    def collect(self) -> None:
        """Polls that ended: what they delivered is now held by that sandbox's runtime."""
        for container_id, task in list(self.polls.items()):
            if not task.done():
                continue
            del self.polls[container_id]
            if task.cancelled() or task.exception() is not None:
                continue
            invocation = task.result()
            self.held[container_id] = (self.delivered_to[invocation.request_id], invocation)


async def poll(world: World, sandbox: Sandbox) -> Invocation:
    invocation = await world.pool.next_invocation(sandbox)
    world.delivered_to[invocation.request_id] = sandbox
    call = next(c for c in world.calls if c.invocation is invocation)
    if sandbox.function.name != call.function:
        world.misplaced.append(invocation.request_id)
    return invocation


async def act(world: World, action: str, n: int) -> None:  # noqa: C901 - one case per action
    world.collect()
    container_id = world.container(n)
    if action == "invoke":
        function = FUNCTIONS[n % len(FUNCTIONS)]
        invocation = Invocation(payload=f'"{n}"'.encode())
        task = asyncio.create_task(world.pool.invoke(function, invocation))
        call = Call(function, invocation, task, time.monotonic())
        task.add_done_callback(lambda _: setattr(call, "answered_s", time.monotonic()))
        world.calls.append(call)
    elif action == "wait":
        await asyncio.sleep(0.02)
    elif action == "idle":
        clock = world.pool._clock  # the reaper's clock: jump past the idle timeout
        assert isinstance(clock, Clock)
        clock.now_s += 120
        world.pool.reap(clock.now_s)
    elif action == "restart":
        world.engine.restart_engine()
    elif container_id is None:
        return
    elif action == "exit":
        world.engine.exit_events.put_nowait(ContainerExit(container_id, 1, is_oom=n % 2 == 0))
    elif action == "poll":
        sandbox = await world.sandbox(container_id)
        if sandbox is not None and container_id not in world.polls:
            world.polls[container_id] = asyncio.create_task(poll(world, sandbox))
    elif action == "disconnect" and container_id in world.polls:
        world.polls.pop(container_id).cancel()  # the runtime vanished while polling
    elif action in ("respond", "error", "lose") and container_id in world.held:
        sandbox, invocation = world.held.pop(container_id)
        answer(world, action, sandbox, invocation, n)
    elif action == "forge" and world.held:
        victim = next(iter(world.held.values()))[1]
        sandbox = await world.sandbox(container_id)
        if sandbox is not None and sandbox.current is not victim:
            with pytest.raises(EdgeLambdaError):  # another sandbox's invocation: refused
                world.pool.respond(sandbox, victim.request_id, b'"forged"')


def answer(world: World, action: str, sandbox: Sandbox, invocation: Invocation, n: int) -> None:
    if action == "lose":  # delivered, but the runtime never got it
        world.pool.undeliverable(sandbox, invocation)
        return
    payload = f'"answer {n}"'.encode()
    try:
        if action == "respond":
            world.pool.respond(sandbox, invocation.request_id, payload)
        else:
            world.pool.fail(sandbox, invocation.request_id, payload, "Handler.Error")
    except EdgeLambdaError:
        return  # too late (timed out, sandbox retired): refused, as it should be
    world.accepted[invocation.request_id] = payload


def make_pool(engine: Engine) -> Pool:
    return Pool(
        functions={
            name: replace(function_spec(timeout_s=TIMEOUT_S), name=name) for name in FUNCTIONS
        },
        backend=engine,
        settings=Settings(
            queue_size=5,
            queue_wait_s=QUEUE_WAIT_S,
            init_timeout_s=INIT_TIMEOUT_S,
            shutdown_grace_s=0.05,
            idle_timeout_s=60,
            stopped_retention_s=600,
            reap_interval_s=3600,
        ),
        runtime_api="10.0.0.1:9001",
        clock=Clock(),
        sink=RecordingSink(),
    )


async def scenario(actions: list[tuple[str, int]]) -> World:
    engine = Engine()
    world = World(make_pool(engine), engine)
    await world.pool.start()
    for action, n in actions:
        await act(world, action, n)
        for _ in range(3):  # let starts, polls and exits the action set off go on
            await asyncio.sleep(0)
    await asyncio.wait(
        [c.task for c in world.calls] or [asyncio.ensure_future(asyncio.sleep(0))],
        timeout=BOUND_S + LATENESS_S + 0.5,
    )
    world.collect()
    for task in world.polls.values():
        task.cancel()
    await world.pool.close()
    return world


@pytest.fixture(autouse=True)
def short_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edgelambda.pool.ANSWER_SLACK_S", SLACK_S)
    monkeypatch.setattr("edgelambda.sandbox_engine.WATCH_BACKOFF_S", (0.001,))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(ACTIONS), st.integers(0, 7)), max_size=30))
def test_every_invocation_is_settled_once_in_time_and_in_its_own_function(
    actions: list[tuple[str, int]],
) -> None:
    world = asyncio.run(scenario(actions))

    for call in world.calls:
        assert call.task.done(), f"{call.invocation.request_id} was never answered"
        assert call.answered_s is not None
        assert call.answered_s - call.started_s <= BOUND_S + LATENESS_S
        if call.task.exception() is None and call.invocation.request_id in world.accepted:
            # The runtime's accepted answer is the one the caller got: never overwritten.
            assert call.task.result().payload == world.accepted[call.invocation.request_id]
    assert world.misplaced == []
