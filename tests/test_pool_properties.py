"""Random interleavings of callers, runtimes (each sandbox's own, one using another sandbox's
name, and strangers) and the engine, against the pool behind its Runtime API over HTTP on
127.0.0.1: every invocation is settled once, within its bound, and only ever runs in a
sandbox of its own function.

Every fake container gets the address 127.0.0.1, so sandboxes differ only by the secret name
each calls the Runtime API by: the identity check is exercised on every request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

import aiohttp
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edgelambda.config import Settings
from edgelambda.containers import ContainerExit, ContainerSpec, StartedContainer
from edgelambda.invocation import Invocation, InvocationResult
from edgelambda.logs import RecordingSink
from edgelambda.pool import Pool
from tests.fakes import RUNTIME_PATH, Clock, FakeBackend, function_spec, serving_runtime_api

FUNCTIONS = ("a", "b")
TIMEOUT_S = 0.1  # each function's timeout
QUEUE_WAIT_S = 0.2
INIT_TIMEOUT_S = 0.2
SLACK_S = 0.05  # the pool's last-resort bound, shortened for the test
BOUND_S = QUEUE_WAIT_S + INIT_TIMEOUT_S + TIMEOUT_S + SLACK_S
LATENESS_S = 0.25  # a loaded test machine's timers may fire this late
HEARTBEAT_S = 0.005
STRANGER = "runtime-" + "0" * 32 + ":9001"  # a well-formed name no sandbox has
# The common steps of a working runtime appear more often than the faults between them.
ACTIONS = (
    *("invoke", "invoke", "poll", "poll", "poll", "respond", "respond", "respond"),
    *("error", "forge", "stranger", "disconnect", "exit", "restart", "wait", "idle"),
)


class Engine(FakeBackend):
    """A fake engine (every container at 127.0.0.1) whose containers can die, and which can
    restart: its event stream ends and every container is gone."""

    def __init__(self) -> None:
        super().__init__(address="127.0.0.1")
        self.host_of: dict[str, str] = {}  # container -> the name its runtime calls by
        self.function_of: dict[str, str] = {}
        self.restarted_engine = asyncio.Event()

    async def start(self, spec: ContainerSpec) -> StartedContainer:
        started = await super().start(spec)
        self.host_of[started.id] = spec.env["AWS_LAMBDA_RUNTIME_API"]
        self.function_of[started.id] = spec.env["AWS_LAMBDA_FUNCTION_NAME"]
        return started

    async def exits(self, stack: str) -> AsyncIterator[ContainerExit]:
        while not self.restarted_engine.is_set():
            get = asyncio.ensure_future(self.exit_events.get())
            restart = asyncio.ensure_future(self.restarted_engine.wait())
            done, _ = await asyncio.wait({get, restart}, return_when=asyncio.FIRST_COMPLETED)
            get.cancel()
            restart.cancel()
            if get in done and not get.cancelled():
                yield get.result()
        self.restarted_engine.clear()

    def restart_engine(self) -> None:
        self.removed.extend(self.host_of)  # every container stopped with the engine
        self.restarted_engine.set()


@dataclass
class Call:
    function: str
    invocation: Invocation
    task: asyncio.Task[InvocationResult]
    started_s: float
    answered_s: float | None = None


class Descheduled:
    """When this process was kept off the CPU (a loaded machine): a heartbeat on the loop
    notes each wake-up that came late while the process used less CPU than the wait took.
    Time the loop spent running code (ours included) is never counted, so a pool that
    blocked its loop would still miss its bound."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []  # (when, seconds off the CPU) per late beat
        self._task = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        while True:
            wall, cpu = time.monotonic(), time.process_time()
            await asyncio.sleep(HEARTBEAT_S)
            late_s = time.monotonic() - wall - HEARTBEAT_S
            off_cpu_s = late_s - (time.process_time() - cpu)
            if off_cpu_s > 0.01:
                self.spans.append((time.monotonic(), off_cpu_s))

    def within(self, start_s: float, end_s: float) -> float:
        """Seconds off the CPU noted between ``start_s`` and ``end_s`` (and one beat on)."""
        return sum(off for when, off in self.spans if start_s <= when <= end_s + HEARTBEAT_S)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.wait({self._task})


@dataclass
class World:
    """The pool behind its Runtime API, the engine, the callers, and what each container's
    runtime holds."""

    pool: Pool
    engine: Engine
    http: aiohttp.ClientSession
    descheduled: Descheduled
    calls: list[Call] = field(default_factory=list)
    polls: dict[str, asyncio.Task[None]] = field(default_factory=dict)  # by container
    held: dict[str, str] = field(default_factory=dict)  # container -> request id it holds
    accepted: dict[str, bytes] = field(default_factory=dict)  # request id -> its answer
    misplaced: list[str] = field(default_factory=list)  # ran in another function's sandbox
    forged: list[str] = field(default_factory=list)  # answers accepted for another's call

    def container(self, n: int) -> str | None:
        ids = list(self.engine.host_of)
        return ids[n % len(ids)] if ids else None

    async def poll(self, container_id: str) -> None:
        """The container's runtime asks for work; what it gets, it holds."""
        host = self.engine.host_of[container_id]
        async with self.http.get(f"{RUNTIME_PATH}/invocation/next", headers={"Host": host}) as r:
            await r.read()
            if r.status != 200:
                return
            request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
        call = next(c for c in self.calls if c.invocation.request_id == request_id)
        if call.function != self.engine.function_of[container_id]:
            self.misplaced.append(request_id)
        self.held[container_id] = request_id

    async def post(self, container_id: str | None, request_id: str, kind: str) -> int:
        host = STRANGER if container_id is None else self.engine.host_of[container_id]
        path = f"{RUNTIME_PATH}/invocation/{request_id}/{kind}"
        body = f'"{kind} from {container_id}"'.encode()
        async with self.http.post(path, data=body, headers={"Host": host}) as reply:
            await reply.read()
            if reply.status == 202:
                self.accepted[request_id] = body
            return reply.status


async def act(world: World, action: str, n: int) -> None:  # noqa: C901 - one case per action
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
    elif action == "stranger" and world.calls:
        request_id = world.calls[n % len(world.calls)].invocation.request_id
        assert await world.post(None, request_id, "response") == 403
        async with world.http.get(
            f"{RUNTIME_PATH}/invocation/next", headers={"Host": "127.0.0.1:9001"}
        ) as reply:
            assert reply.status == 403  # the right address, but not a sandbox's name
    elif container_id is None:
        return
    elif action == "exit":
        world.engine.exit_events.put_nowait(ContainerExit(container_id, 1, is_oom=n % 2 == 0))
    elif action == "poll" and container_id not in world.polls:
        world.polls[container_id] = asyncio.create_task(world.poll(container_id))
        world.polls[container_id].add_done_callback(lambda _: world.polls.pop(container_id))
    elif action == "disconnect" and container_id in world.polls:
        world.polls[container_id].cancel()  # the runtime vanished while polling
    elif action in ("respond", "error") and container_id in world.held:
        kind = "response" if action == "respond" else "error"
        await world.post(container_id, world.held.pop(container_id), kind)
    elif action == "forge" and world.held:
        owner, request_id = next(iter(world.held.items()))
        if owner != container_id and await world.post(container_id, request_id, "response") in (
            200,
            202,
        ):
            world.forged.append(request_id)


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
        runtime_api="127.0.0.1:9001",
        clock=Clock(),
        sink=RecordingSink(),
    )


async def scenario(actions: list[tuple[str, int]]) -> World:
    engine = Engine()
    pool = make_pool(engine)
    async with (
        serving_runtime_api(pool) as address,
        aiohttp.ClientSession(f"http://{address}") as http,
    ):
        world = World(pool, engine, http, Descheduled())
        await pool.start()
        for action, n in actions:
            await act(world, action, n)
            await asyncio.sleep(0.001)  # let the starts, polls and exits it set off go on
        await asyncio.wait(
            [c.task for c in world.calls] or [asyncio.ensure_future(asyncio.sleep(0))],
            timeout=BOUND_S + LATENESS_S + 2,
        )
        for task in list(world.polls.values()):
            task.cancel()
        await world.descheduled.stop()
        await pool.close()
    return world


@pytest.fixture(autouse=True)
def short_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edgelambda.pool.ANSWER_SLACK_S", SLACK_S)
    monkeypatch.setattr("edgelambda.sandbox_engine.WATCH_BACKOFF_S", (0.001,))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(ACTIONS), st.integers(0, 7)), max_size=30))
# A runtime polling again while it holds an invocation (a handler calling its own Runtime
# API), a runtime answering another sandbox's invocation, and a stranger, always tried:
@example([("invoke", 0), ("poll", 0), ("wait", 0), ("invoke", 0), ("poll", 0), ("wait", 0)])
@example([("invoke", 0), ("invoke", 1), ("poll", 0), ("poll", 1), ("wait", 0), ("forge", 1)])
@example([("invoke", 0), ("poll", 0), ("wait", 0), ("stranger", 0), ("respond", 0)])
def test_every_invocation_is_settled_once_in_time_and_in_its_own_function(
    actions: list[tuple[str, int]],
) -> None:
    world = asyncio.run(scenario(actions))

    for call in world.calls:
        assert call.task.done(), f"{call.invocation.request_id} was never answered"
        assert call.answered_s is not None
        off_cpu_s = world.descheduled.within(call.started_s, call.answered_s)
        assert call.answered_s - call.started_s <= BOUND_S + LATENESS_S + off_cpu_s
        if call.task.exception() is None and call.invocation.request_id in world.accepted:
            # The runtime's accepted answer is the one the caller got: never overwritten.
            assert call.task.result().payload == world.accepted[call.invocation.request_id]
    assert world.misplaced == []
    assert world.forged == []  # no sandbox answered another's invocation
