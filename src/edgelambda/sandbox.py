"""Sandboxes as a guarded state machine, and the pool's decisions as pure functions.

A sandbox is one function container and the state of the runtime inside it; each arrow is
a transition method, and no other change of state exists:

    starting --await_work--> ready --assign--> busy --await_work--> ready
    ready --freeze--> frozen (paused, its poll still open) --thaw--> thawing --thawed--> ready
    ready or frozen --stop--> stopped (kept for a warm start) --restart--> starting
    any of them --retire--> dead (crashed, timed out, outdated or removed)

Everything here is synchronous and takes time as an argument, so the scheduling rules are
unit-tested without sleeping; :mod:`edgelambda.pool` and :mod:`edgelambda.lifecycle` are
the async shell that applies them.
"""

from __future__ import annotations

import asyncio
import heapq
import secrets
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum

from edgelambda.errors import (
    InvalidRequestId,
    SandboxRetired,
    SandboxStateError,
    TooManyRequests,
)
from edgelambda.invocation import Invocation, InvocationResult
from edgelambda.logs import SandboxOutput
from edgelambda.routing import FunctionSpec


class SandboxState(Enum):
    STARTING = "starting"  # container (re)started, runtime not polling yet
    READY = "ready"  # runtime polling /next, no invocation
    BUSY = "busy"  # running one invocation
    FROZEN = "frozen"  # container paused after a short idle time; its poll is still open
    THAWING = "thawing"  # container being unpaused for work that waits
    STOPPED = "stopped"  # container stopped after idling, kept for a warm start
    DEAD = "dead"  # out of service for good; its container is being removed

    @property
    def is_running(self) -> bool:
        """Whether its container exists and is not stopped (a paused one counts)."""
        # Identity, not a set: an Enum's hash is Python code, and this runs on every call.
        return self is not SandboxState.STOPPED and self is not SandboxState.DEAD


class Sandbox:
    """One function container and what its runtime is doing. Timestamps are monotonic s.

    Its state changes only through the transition methods below; each names the states it
    starts from and raises :class:`SandboxStateError` from any other. Its moves that give back
    concurrency or leave its container paused count in ``releases``, its pool's tally."""

    def __init__(
        self,
        function: FunctionSpec,
        *,
        now_s: float,
        generation: int = 0,
        releases: ReleaseTally | None = None,
    ) -> None:
        self.function = function
        self._releases = releases if releases is not None else ReleaseTally()
        self.generation = generation  # the function's generation (code/settings) it runs
        self.instance = uuid.uuid4().hex
        self.token = secrets.token_hex(16)  # its Runtime API secret (containers.runtime_alias)
        self._state = SandboxState.STARTING
        self.container_id: str | None = None
        self.address: str | None = None
        self.current: Invocation | None = None
        self.poll: asyncio.Future[Invocation] | None = None
        self.timer: asyncio.TimerHandle | None = None  # init or invocation deadline
        self.started_s = now_s  # when the latest (re)start began
        self.idle_since_s = now_s  # last time it finished work (or became ready)
        self.stopped_s = now_s  # when it was stopped; meaningful in STOPPED
        self.is_cold = True  # a new container (False after a warm restart)
        self.is_streaming = False  # answered with a stream that is still flowing
        self.output = SandboxOutput()  # the function log's record of it

    @property
    def state(self) -> SandboxState:
        return self._state

    @property
    def is_finishing(self) -> bool:
        """Answered its invocation, not yet polling again: free in a fraction of a ms. A
        streamed answer settles the invocation when the stream starts; that sandbox stays
        busy until the stream ends."""
        return (
            self._state is SandboxState.BUSY
            and self.current is not None
            and self.current.result.done()
            and not self.is_streaming
        )

    # -- transitions --------------------------------------------------------------------

    def restart(self, now_s: float) -> None:
        """stopped -> starting: its kept container is started again (a warm start)."""
        self._move(SandboxState.STARTING, SandboxState.STOPPED)
        self.is_cold, self.started_s = False, now_s

    def await_work(self, poll: asyncio.Future[Invocation], now_s: float) -> None:
        """starting or busy -> ready: the runtime polls for its next invocation (its first
        poll ends the start, and its init timer with it). A busy runtime must have answered
        its invocation first, and finished streaming it: the invocation is never dropped."""
        if self._state is SandboxState.BUSY and not self.is_finishing:
            raise SandboxStateError(f"{self!r} cannot become ready: its invocation is open")
        if self._state is SandboxState.STARTING:
            self.disarm()
            self.idle_since_s = now_s
        self._move(SandboxState.READY, SandboxState.STARTING, SandboxState.BUSY)
        self.poll, self.current = poll, None

    def assign(self, invocation: Invocation) -> None:
        """ready -> busy: hand ``invocation`` to the runtime's pending poll."""
        self._move(SandboxState.BUSY, SandboxState.READY)
        assert self.poll is not None, "a ready sandbox is polling"
        self.current = invocation
        self.poll.set_result(invocation)
        self.poll = None  # answered: the runtime may poll again as soon as it has answered

    def answer(self, invocation: Invocation, result: InvocationResult, now_s: float) -> None:
        """The runtime answered (busy stays busy until it polls again)."""
        self._expect(SandboxState.BUSY, change="answer")
        self.disarm()
        self.idle_since_s = now_s
        invocation.settle(result)

    def start_stream(self, invocation: Invocation, result: InvocationResult) -> None:
        """The runtime started a streamed answer; the deadline runs on until it ends."""
        self._expect(SandboxState.BUSY, change="stream")
        self.is_streaming = True
        invocation.settle(result)

    def end_stream(self, now_s: float) -> None:
        """The streamed answer ended (in a busy sandbox, or one retired while it flowed)."""
        self._expect(SandboxState.BUSY, SandboxState.DEAD, change="end a stream")
        self.is_streaming = False
        self.disarm()
        self.idle_since_s = now_s

    def take_back(self, invocation: Invocation) -> bool:
        """``invocation`` never reached the runtime: whether it was still this sandbox's to
        give to another (busy, holding it, and not answered)."""
        if self._state is not SandboxState.BUSY or self.current is not invocation:
            return False
        self.disarm()
        self.current = None
        return not invocation.result.done()

    def freeze(self) -> None:
        """ready -> frozen: its container is paused; its runtime's poll stays open, and its
        idle time runs on."""
        self._move(SandboxState.FROZEN, SandboxState.READY)

    def thaw(self) -> None:
        """frozen -> thawing: its container is being unpaused for work that waits."""
        self._move(SandboxState.THAWING, SandboxState.FROZEN)

    def thawed(self) -> None:
        """thawing -> ready: its container runs again; the poll it left open takes work."""
        self._move(SandboxState.READY, SandboxState.THAWING)

    def stop(self, now_s: float) -> None:
        """ready or frozen -> stopped: its container is stopped, kept for a warm start."""
        self._move(SandboxState.STOPPED, SandboxState.READY, SandboxState.FROZEN)
        self.stopped_s = now_s
        self._end_poll(SandboxRetired("idle"))

    def retire(self, reason: str, result: InvocationResult) -> Invocation | None:
        """any state but dead -> dead: out of service for good. The invocation it held gets
        ``result`` and is returned (for its log); a waiting poll ends with ``reason``."""
        states = [state for state in SandboxState if state is not SandboxState.DEAD]
        self._move(SandboxState.DEAD, *states)
        self.disarm()
        held = self.current
        if held is not None:
            held.settle(result)
        self._end_poll(SandboxRetired(reason))
        return held

    def holding(self, request_id: str) -> Invocation:
        """The unanswered invocation ``request_id`` this sandbox holds; anything else is an
        answer for an invocation that is not its own."""
        invocation = self.current
        if invocation is None or invocation.request_id != request_id or invocation.result.done():
            raise InvalidRequestId(f"{request_id} is not the invocation this sandbox holds")
        return invocation

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def forget_poll(self, poll: asyncio.Future[Invocation]) -> None:
        """The runtime behind ``poll`` went away before it was answered."""
        if self.poll is poll:
            self.poll = None

    def _end_poll(self, error: SandboxRetired) -> None:
        if self.poll is not None and not self.poll.done():
            self.poll.set_exception(error)
        self.poll = None

    def _expect(self, *states: SandboxState, change: str) -> None:
        if self._state not in states:
            allowed = ", ".join(state.value for state in states)
            raise SandboxStateError(f"{self!r} cannot {change} (only from: {allowed})")

    def _move(self, to: SandboxState, *starts: SandboxState) -> None:
        self._expect(*starts, change=f"become {to.value}")
        self._state = to
        if to in _RELEASING_STATES:
            self._releases.moves += 1

    def __repr__(self) -> str:
        return f"<Sandbox {self.function.name} {self.instance[:8]} {self._state.value}>"


def sandboxes_to_start(*, queued: int, coming: int, running: int, max_concurrency: int) -> int:
    """How many sandboxes the queue needs started: one per waiting invocation that no
    sandbox about to become free (starting, or finishing its last invocation) will take,
    within the function's concurrency limit."""
    return max(0, min(queued - coming, max_concurrency - running))


def idle_to_stop(
    sandboxes: Iterable[Sandbox], *, now_s: float, idle_timeout_s: float, min_warm: int
) -> list[Sandbox]:
    """Ready or frozen sandboxes idle for longer than ``idle_timeout_s``, keeping
    ``min_warm`` running sandboxes (the most recently used ones stay)."""
    running = [s for s in sandboxes if s.state.is_running]
    ready = sorted(
        (s for s in running if s.state in (SandboxState.READY, SandboxState.FROZEN)),
        key=lambda s: s.idle_since_s,
    )
    spare = max(0, len(running) - min_warm)
    expired = [s for s in ready if now_s - s.idle_since_s >= idle_timeout_s]
    return expired[:spare]


def idle_to_freeze(
    sandboxes: Iterable[Sandbox], *, now_s: float, freeze_after_s: float
) -> list[Sandbox]:
    """Ready sandboxes idle for ``freeze_after_s`` or longer (none when it is 0)."""
    if freeze_after_s <= 0:
        return []
    return [
        s
        for s in sandboxes
        if s.state is SandboxState.READY and now_s - s.idle_since_s >= freeze_after_s
    ]


def stopped_to_remove(
    sandboxes: Iterable[Sandbox], *, now_s: float, retention_s: float
) -> list[Sandbox]:
    """Stopped sandboxes kept for longer than the retention period."""
    return [
        s
        for s in sandboxes
        if s.state is SandboxState.STOPPED and now_s - s.stopped_s >= retention_s
    ]


def warm_needed(sandboxes: Iterable[Sandbox], *, min_warm: int) -> int:
    """How many sandboxes to start so that ``min_warm`` are running."""
    return max(0, min_warm - sum(1 for s in sandboxes if s.state.is_running))


@dataclass
class ReleaseTally:
    """How many moves of one pool's sandboxes gave back concurrency or left a container
    paused (to stopped, dead or frozen): a pool that had no room when it last counted its
    sandboxes need not count them again until this changes (FunctionPool.is_saturated)."""

    moves: int = 0


@dataclass
class PayloadTally:
    """The bytes of every function's waiting payloads, kept as they queue and leave (the
    budget is checked on every invocation: a sum over the functions would grow with them)."""

    queued_bytes: int = 0


# A tuple, not a set: membership is then identity checks, where a set hashes each Enum member
# in Python code (census runs for every dispatch while work waits).
_COMING_STATES = (SandboxState.STARTING, SandboxState.THAWING)
_RELEASING_STATES = (SandboxState.STOPPED, SandboxState.DEAD, SandboxState.FROZEN)


@dataclass(frozen=True)
class Census:
    """One function's sandboxes as the pool weighs them when work waits."""

    # Starting, thawing, or finishing their invocation: they will ask for work soon without
    # being handed any now.
    coming: int
    running: int  # live containers (the concurrency limit counts these)
    frozen: list[Sandbox]  # in no order: see warmest()


def warmest(sandboxes: Iterable[Sandbox], count: int) -> list[Sandbox]:
    """The ``count`` most recently used of ``sandboxes`` (the warmest first): only as many
    are ordered as are asked for."""
    return heapq.nlargest(count, sandboxes, key=lambda s: s.idle_since_s) if count > 0 else []


@dataclass(eq=False)
class FunctionPool:
    """The sandboxes and the waiting invocations of one function, and the verbs that keep
    its queue and sets consistent: the pool decides, these do the bookkeeping."""

    function: FunctionSpec
    queue_size: int
    # Every function's waiting payloads together: the pool hands one tally to all of them.
    payloads: PayloadTally
    queue: deque[Invocation] = field(default_factory=deque)
    idle: deque[Sandbox] = field(default_factory=deque)  # READY, most recently freed last
    sandboxes: set[Sandbox] = field(default_factory=set)  # every state but DEAD
    generation: int = 0  # bumped when the function's code or settings change
    is_removed: bool = False  # gone from routing.yaml; kept until its sandboxes are gone
    releases: ReleaseTally = field(default_factory=ReleaseTally)  # its sandboxes' moves
    # releases.moves when a census found as many sandboxes running as the function may have
    # and none frozen; None since anything else.
    _saturated_at: int | None = field(default=None, init=False)

    def count(self, *states: SandboxState) -> int:
        return sum(1 for s in self.sandboxes if s.state in states)

    @property
    def running(self) -> int:
        return sum(1 for s in self.sandboxes if s.state.is_running)

    def census(self) -> Census:
        """Which sandboxes will ask for work soon, how many run, which are frozen: in one
        pass over the sandboxes, as the pool asks all three each time work waits. It also
        notes whether it found no room, for :meth:`is_saturated`."""
        coming = running = 0
        frozen: list[Sandbox] = []
        for sandbox in self.sandboxes:
            state = sandbox.state
            running += state.is_running
            if state is SandboxState.FROZEN:
                frozen.append(sandbox)
            elif state in _COMING_STATES or sandbox.is_finishing:
                coming += 1
        is_saturated = running >= self.function.max_concurrency and not frozen
        self._saturated_at = self.releases.moves if is_saturated else None
        return Census(coming, running, frozen)

    def is_saturated(self) -> bool:
        """Whether the last census found no sandbox to start or thaw, whatever the queue:
        as many running as the function may have, none frozen; and no sandbox has stopped,
        died or frozen since, nor has the function changed. Only those make room, so while
        it holds, work that waits need not count the sandboxes again: with the queue always
        full, every dispatch would."""
        return self._saturated_at == self.releases.moves

    def state_counts(self) -> dict[SandboxState, int]:
        """How many of its sandboxes are in each state (states with none left out)."""
        counts: dict[SandboxState, int] = {}
        for sandbox in self.sandboxes:
            counts[sandbox.state] = counts.get(sandbox.state, 0) + 1
        return counts

    def stopped(self) -> Sandbox | None:
        """The most recently stopped sandbox, the best candidate for a warm start."""
        stopped = [s for s in self.sandboxes if s.state is SandboxState.STOPPED]
        return max(stopped, key=lambda s: s.stopped_s, default=None)

    # -- the function -------------------------------------------------------------------

    def configure(self, function: FunctionSpec) -> bool:
        """The routing file defines the function (again): whether that changed its code or
        settings, or brought it back, so that its sandboxes must be recycled."""
        is_changed = self.function != function or self.is_removed
        self.function, self.is_removed = function, False
        self._saturated_at = None  # its concurrency limit may have changed
        return is_changed

    def remove(self, error: BaseException) -> bool:
        """The function left the routing file: it takes no more work, and what waits fails
        with ``error``. Whether it was still defined."""
        if self.is_removed:
            return False
        self.is_removed = True
        self.fail_waiting(error)
        return True

    # -- sandboxes ----------------------------------------------------------------------

    def new_sandbox(self, now_s: float) -> Sandbox:
        sandbox = Sandbox(
            self.function, now_s=now_s, generation=self.generation, releases=self.releases
        )
        self.sandboxes.add(sandbox)
        return sandbox

    def is_outdated(self, sandbox: Sandbox) -> bool:
        """Whether ``sandbox`` runs code or settings the function no longer has."""
        return sandbox.generation != self.generation

    def outdate(self) -> None:
        """The function's code or settings changed: every sandbox so far is outdated."""
        self.generation += 1

    def park(self, sandbox: Sandbox) -> None:
        """``sandbox`` is ready: it is the first to get work (the most recently used)."""
        self.idle.append(sandbox)

    def unpark(self, sandbox: Sandbox) -> None:
        if sandbox in self.idle:
            self.idle.remove(sandbox)

    def forget(self, sandbox: Sandbox) -> None:
        """``sandbox`` is dead: it is no longer counted or given work."""
        self.sandboxes.discard(sandbox)
        self.unpark(sandbox)

    # -- the queue ----------------------------------------------------------------------

    def enqueue(self, invocation: Invocation) -> None:
        if len(self.queue) >= self.queue_size:
            raise TooManyRequests(f"{self.function.name}: queue of {self.queue_size} is full")
        self.queue.append(invocation)
        self._count_bytes(len(invocation.payload))

    def requeue_first(self, invocation: Invocation) -> None:
        """``invocation`` was handed out but never reached a runtime: it goes first again."""
        self.queue.appendleft(invocation)
        self._count_bytes(len(invocation.payload))

    def withdraw(self, invocation: Invocation) -> bool:
        """Take ``invocation`` out of the queue; whether it was still waiting there."""
        if invocation not in self.queue:
            return False
        self.queue.remove(invocation)
        self._count_bytes(-len(invocation.payload))
        return True

    def take_first(self) -> Invocation | None:
        return self._pop() if self.queue else None

    def fail_waiting(self, error: BaseException) -> None:
        """Answer every waiting invocation with ``error``."""
        while self.queue:
            self._pop().settle(error)

    def take_pairs(self) -> Iterator[tuple[Sandbox, Invocation]]:
        """Pairs of a ready sandbox and the oldest waiting invocation, while both last; the
        sandbox freed last goes first (its container is the warmest)."""
        while self.queue and self.idle:
            yield self.idle.pop(), self._pop()

    def _pop(self) -> Invocation:
        invocation = self.queue.popleft()
        self._count_bytes(-len(invocation.payload))
        return invocation

    def _count_bytes(self, change: int) -> None:
        self.payloads.queued_bytes += change


@dataclass(frozen=True)
class ReapPlan:
    """What the reaper does to one function's sandboxes."""

    to_freeze: tuple[Sandbox, ...]
    to_stop: tuple[Sandbox, ...]
    to_remove: tuple[Sandbox, ...]
    to_start: int


def reap_plan(
    pool: FunctionPool,
    *,
    now_s: float,
    freeze_after_s: float,
    idle_timeout_s: float,
    retention_s: float,
) -> ReapPlan:
    """Stop the sandboxes idle past ``idle_timeout_s`` (keeping ``min_warm`` running),
    freeze the other ready ones idle for ``freeze_after_s``, remove those stopped past
    ``retention_s``, and start as many as ``min_warm`` still asks for (none for a function
    removed from the routing file)."""
    min_warm = pool.function.min_warm
    to_stop = idle_to_stop(
        pool.sandboxes, now_s=now_s, idle_timeout_s=idle_timeout_s, min_warm=min_warm
    )
    to_freeze = idle_to_freeze(pool.sandboxes, now_s=now_s, freeze_after_s=freeze_after_s)
    return ReapPlan(
        to_freeze=tuple(s for s in to_freeze if s not in to_stop),
        to_stop=tuple(to_stop),
        to_remove=tuple(stopped_to_remove(pool.sandboxes, now_s=now_s, retention_s=retention_s)),
        to_start=warm_needed(pool.sandboxes, min_warm=0 if pool.is_removed else min_warm),
    )


def pools_snapshot(
    pools: Mapping[str, FunctionPool],
) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """Containers by (function, state) and waiting invocations by function, for metrics."""
    containers = {
        (name, state.value): count
        for name, pool in pools.items()
        for state, count in pool.state_counts().items()
    }
    return containers, {name: len(pool.queue) for name, pool in pools.items()}


def containers_by_state(pools: Iterable[FunctionPool]) -> dict[str, int]:
    """Containers of every function by state (states with none left out)."""
    totals: dict[str, int] = {}
    for pool in pools:
        for state, count in pool.state_counts().items():
            totals[state.value] = totals.get(state.value, 0) + count
    return totals


def check_payload_budget(payloads: PayloadTally, payload_bytes: int, budget_bytes: int) -> None:
    """One memory budget for every function's waiting payloads: beyond it, 429."""
    if payloads.queued_bytes + payload_bytes > budget_bytes:
        raise TooManyRequests(f"waiting payloads would exceed {budget_bytes} bytes")
