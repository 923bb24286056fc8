"""The function log of the pool's sandboxes: each line a container prints, attributed to
the invocation it belongs to, and Lambda's own START / END / REPORT lines around each
invocation. Records go to a :class:`~edgelambda.logs.LogSink`; each invocation also keeps
its own lines for ``X-Amz-Log-Type: Tail``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from edgelambda.activity import InvocationSummary
from edgelambda.containers import ContainerBackend
from edgelambda.invocation import Invocation
from edgelambda.logs import (
    InvocationLog,
    LogRecord,
    LogSink,
    OutputLine,
    OutputStream,
    SandboxOutput,
    end_line,
    owner,
    report_line,
    start_line,
    window_end,
)
from edgelambda.metrics import Metrics, outcome
from edgelambda.sandbox import Sandbox
from edgelambda.tasks import TaskSet

# The peak memory of a container is asked of the engine at most this often: a stats call per
# invocation would load the engine more than the invocations themselves.
MEMORY_REFRESH_S = 5.0
MEMORY_WAIT_S = 0.5  # a slower answer is not waited for: REPORT gives the last known peak
# The engine stamps and sends a line milliseconds after the container wrote it (tens of ms
# under load), so an invocation's last lines often arrive after its response. END waits for
# them: until a line stamped after the next invocation began arrives, or the stream has been
# quiet this long, ...
OUTPUT_QUIET_S = 0.05
OUTPUT_WAIT_S = 1.0  # ... but never longer than this
_TICK_S = 1e-5  # apart in time, so sorting by time keeps END before REPORT


@dataclass(eq=False, slots=True)
class _Closing:
    """A concluded invocation whose END waits for the engine to deliver its last output."""

    sandbox: Sandbox
    record: InvocationLog
    memory: asyncio.Task[None] | None  # the peak memory being asked meanwhile
    give_up_at: float  # loop time
    timer: asyncio.TimerHandle | None = field(default=None, init=False)  # None: output done


class Journal:
    """Writes and attributes the function log of a pool's sandboxes."""

    def __init__(
        self,
        *,
        backend: ContainerBackend,
        sink: LogSink,
        tasks: TaskSet,
        metrics: Metrics | None = None,
    ) -> None:
        self._backend = backend
        self._sink = sink
        self._metrics = metrics
        self._tasks = tasks  # the pool's task set: every background task has an owner
        # Concluded invocations whose END waits for output, by sandbox.
        self._closing: dict[Sandbox, list[_Closing]] = {}
        self._none_closing = asyncio.Event()  # set while _closing is empty
        self._none_closing.set()

    def initialised(self, sandbox: Sandbox, init_ms: float) -> None:
        """``sandbox``'s runtime is ready after a cold start of ``init_ms``: the invocation
        it runs next paid for it (its REPORT says so)."""
        sandbox.output.pending_init_ms = init_ms

    def begin(self, sandbox: Sandbox, invocation: Invocation) -> None:
        """``invocation`` starts in ``sandbox``: write START."""
        record, output = invocation.log, sandbox.output
        record.started_s = time.time()
        record.init_ms, output.pending_init_ms = output.pending_init_ms, None
        output.recent.append(record)
        self._platform(sandbox, record, start_line(record.request_id), record.started_s)
        if self._metrics is not None and record.init_ms is not None:
            self._metrics.cold_starts.labels(sandbox.function.name).inc()

    def conclude(self, sandbox: Sandbox, invocation: Invocation) -> None:
        """``invocation`` ended (answered, failed, timed out or crashed): write END and REPORT
        once its output has arrived from the engine and the container's peak memory is known
        (each wait bounded)."""
        record = invocation.log
        if record not in sandbox.output.recent or record.ended_s is not None:
            return  # it never began here, or it is concluded already
        record.ended_s = time.time()
        self._count(sandbox, invocation)
        memory = (  # beside the wait for output, at most every MEMORY_REFRESH_S per sandbox
            self._tasks.spawn(self._refresh_memory(sandbox))
            if self._is_memory_due(sandbox)
            else None
        )
        self._close_when_caught_up(sandbox, record, memory)

    def _count(self, sandbox: Sandbox, invocation: Invocation) -> None:
        record = invocation.log
        if self._metrics is None or record.ended_s is None:
            return
        future = invocation.result
        result = (
            future.result()
            if future.done() and not future.cancelled() and not future.exception()
            else None
        )
        summary = InvocationSummary(
            time_s=record.started_s,
            request_id=record.request_id,
            trace_id=record.trace_id,
            outcome=outcome(result),
            error_type=None if result is None else result.error_type,
            duration_ms=(record.ended_s - record.started_s) * 1000,
            is_cold=record.init_ms is not None,
            container=(sandbox.container_id or "")[:12],
        )
        self._metrics.record_invocation(sandbox.function.name, summary)

    def _close_when_caught_up(
        self, sandbox: Sandbox, record: InvocationLog, memory: asyncio.Task[None] | None
    ) -> None:
        """END after the invocation's last output, then REPORT: once the engine's stream is
        past it (a line past it arrived: at once, or in :meth:`_attribute`), or has been quiet
        for :data:`OUTPUT_QUIET_S`, or :data:`OUTPUT_WAIT_S` has passed; and once ``memory``
        (the peak memory asked meanwhile, bounded by :data:`MEMORY_WAIT_S`) is known. A timer
        per waiting invocation, not a task: this runs for every invocation."""
        loop = asyncio.get_running_loop()
        waiting = _Closing(sandbox, record, memory, give_up_at=loop.time() + OUTPUT_WAIT_S)
        self._closing.setdefault(sandbox, []).append(waiting)
        self._none_closing.clear()
        if is_stream_past(sandbox.output, record):
            self._output_done(waiting)
        else:
            waiting.timer = loop.call_later(OUTPUT_QUIET_S, self._check, waiting, loop.time())

    def _check(self, waiting: _Closing, quiet_from: float) -> None:
        """The timer: no line arrived since ``quiet_from``, a quiet period ago, or time is up."""
        loop, arrived_at = asyncio.get_running_loop(), waiting.sandbox.output.line_arrived_at
        if arrived_at <= quiet_from or loop.time() >= waiting.give_up_at:
            self._output_done(waiting)
        else:  # a line arrived meanwhile, not yet one past the invocation: quiet from it on
            at = min(arrived_at + OUTPUT_QUIET_S, waiting.give_up_at)
            waiting.timer = loop.call_at(at, self._check, waiting, arrived_at)

    def _output_done(self, waiting: _Closing) -> None:
        """No more output is awaited for ``waiting``: close it, once its memory is known."""
        if waiting.timer is not None:
            waiting.timer.cancel()
            waiting.timer = None
        if waiting.memory is None or waiting.memory.done():
            self._finish(waiting)
        else:
            waiting.memory.add_done_callback(lambda _: self._finish(waiting))

    def _finish(self, waiting: _Closing) -> None:
        here = self._closing[waiting.sandbox]
        here.remove(waiting)
        if not here:
            del self._closing[waiting.sandbox]
            if not self._closing:
                self._none_closing.set()
        self._close(waiting.sandbox, waiting.record)

    def _close(self, sandbox: Sandbox, record: InvocationLog) -> None:
        end_s = log_end_s(sandbox.output, record, time.time())
        self._platform(sandbox, record, end_line(record.request_id), end_s)
        self._write_report(sandbox, record, end_s + _TICK_S)

    async def drain(self) -> None:
        """Wait until every concluded invocation's log is closed (each within
        :data:`OUTPUT_WAIT_S`); at shutdown."""
        await self._none_closing.wait()

    @staticmethod
    def _is_memory_due(sandbox: Sandbox) -> bool:
        return time.monotonic() - sandbox.output.memory_checked_s >= MEMORY_REFRESH_S

    async def _refresh_memory(self, sandbox: Sandbox) -> None:
        """Ask the engine for the container's peak memory, unless it was asked recently."""
        output = sandbox.output
        if not self._is_memory_due(sandbox):
            return
        output.memory_checked_s = time.monotonic()
        if sandbox.container_id is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(MEMORY_WAIT_S):
                peak_mb = await self._backend.memory_peak_mb(sandbox.container_id)
                if peak_mb is not None:
                    output.memory_peak_mb = peak_mb

    def _write_report(self, sandbox: Sandbox, record: InvocationLog, time_s: float) -> None:
        assert record.ended_s is not None
        line = report_line(
            record.request_id,
            duration_ms=(record.ended_s - record.started_s) * 1000,
            memory_mb=sandbox.function.memory_mb,
            max_memory_used_mb=sandbox.output.memory_peak_mb,
            init_duration_ms=record.init_ms,
        )
        self._platform(sandbox, record, line, time_s)
        record.done.set()

    async def follow(self, sandbox: Sandbox, container_id: str, since_s: float) -> None:
        """Attribute what the container prints until it stops."""
        async for line in self._backend.output(container_id, since_s):
            self._attribute(sandbox, line)

    def _attribute(self, sandbox: Sandbox, line: OutputLine) -> None:
        output = sandbox.output
        request_id = owner(line.time_s, [record.span for record in output.recent])
        record = next((r for r in output.recent if r.request_id == request_id), None)
        # Once REPORT is written the invocation's own log is closed: REPORT stays its last
        # line. Later output (a thread still printing) still reaches the sink, attributed.
        if record is not None and not record.done.is_set():
            record.add(line.text)
        output.seen_s = max(output.seen_s, line.time_s)
        output.line_arrived_at = asyncio.get_running_loop().time()
        self._sink.emit(self._record(sandbox, record, line.text, line.stream, line.time_s))
        for waiting in [
            w
            for w in self._closing.get(sandbox, ())
            if w.timer is not None and is_stream_past(output, w.record)
        ]:
            self._output_done(waiting)

    def _platform(self, sandbox: Sandbox, record: InvocationLog, text: str, time_s: float) -> None:
        record.add(text)
        # START, END and REPORT are info: no level to look for in them.
        self._sink.emit(self._record(sandbox, record, text, OutputStream.PLATFORM, time_s, "info"))

    @staticmethod
    def _record(
        sandbox: Sandbox,
        record: InvocationLog | None,
        text: str,
        stream: str,
        time_s: float,
        level: str | None = None,
    ) -> LogRecord:
        return LogRecord(
            time_s=time_s,
            message=text,
            function=sandbox.function.name,
            container=(sandbox.container_id or "")[:12],
            stream=stream,
            request_id=record.request_id if record else None,
            trace_id=record.trace_id if record else None,
            # Only the invocation that paid for the cold start is a cold one.
            is_cold_start=record.init_ms is not None if record else sandbox.is_cold,
            level=level,
        )

    @staticmethod
    async def settled(invocation: Invocation, timeout_s: float) -> None:
        """Wait (bounded) until ``invocation``'s log is complete: its output, END and REPORT."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await invocation.log.done.wait()


def _window_end_s(output: SandboxOutput, record: InvocationLog) -> float | None:
    """When the sandbox's next invocation started (None while none has)."""
    return window_end(record.started_s, [r.started_s for r in output.recent])


def log_end_s(output: SandboxOutput, record: InvocationLog, now_s: float) -> float:
    """The time END and REPORT carry: now, but before the sandbox's next START when that
    invocation already began, so a log store sorted by time keeps each invocation whole."""
    window_end_s = _window_end_s(output, record)
    return now_s if window_end_s is None else min(now_s, window_end_s - 2 * _TICK_S)


def is_stream_past(output: SandboxOutput, record: InvocationLog) -> bool:
    """Whether a line stamped after ``record``'s window has arrived: the engine sends lines
    in order, so none of its own is still to come."""
    if record not in output.recent:
        return True  # too old for any line to be attributed to it
    window_end_s = _window_end_s(output, record)
    return window_end_s is not None and output.seen_s >= window_end_s
