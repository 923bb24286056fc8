"""The function log of the pool's sandboxes: each line a container prints, attributed to
the invocation it belongs to, and Lambda's own START / END / REPORT lines around each
invocation. Records go to a :class:`~edgelambda.logs.LogSink`; each invocation also keeps
its own lines for ``X-Amz-Log-Type: Tail``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

from edgelambda.containers import ContainerBackend
from edgelambda.logs import (
    LogRecord,
    LogSink,
    OutputLine,
    OutputStream,
    Span,
    end_line,
    owner,
    report_line,
    start_line,
    window_end,
)
from edgelambda.metrics import Metrics, outcome
from edgelambda.sandbox import Invocation, Sandbox

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


class Journal:
    """Writes and attributes the function log of a pool's sandboxes."""

    def __init__(
        self,
        *,
        backend: ContainerBackend,
        sink: LogSink,
        own: Callable[[Coroutine[Any, Any, None]], None],
        metrics: Metrics | None = None,
    ) -> None:
        self._backend = backend
        self._sink = sink
        self._metrics = metrics
        self._own = own  # the pool's task set: every background task has an owner

    def begin(self, sandbox: Sandbox, invocation: Invocation) -> None:
        """``invocation`` starts in ``sandbox``: write START."""
        invocation.sandbox = sandbox
        invocation.started_s = time.time()
        invocation.init_ms, sandbox.pending_init_ms = sandbox.pending_init_ms, None
        sandbox.recent.append(invocation)
        self._platform(sandbox, invocation, start_line(invocation.request_id), time.time())
        if self._metrics is not None and invocation.init_ms is not None:
            self._metrics.cold_starts.labels(sandbox.function.name).inc()

    def conclude(self, sandbox: Sandbox, invocation: Invocation) -> None:
        """``invocation`` ended (answered, failed, timed out or crashed): write END and REPORT
        once its output has arrived from the engine and the container's peak memory is known
        (each wait bounded)."""
        if invocation.sandbox is not sandbox or invocation.ended_s is not None:
            return
        invocation.ended_s = time.time()
        self._count(sandbox, invocation)
        self._own(self._close(sandbox, invocation))

    def _count(self, sandbox: Sandbox, invocation: Invocation) -> None:
        if self._metrics is None or invocation.ended_s is None:
            return
        future = invocation.result
        result = (
            future.result()
            if future.done() and not future.cancelled() and not future.exception()
            else None
        )
        name = sandbox.function.name
        self._metrics.invocations.labels(name, outcome(result)).inc()
        self._metrics.duration.labels(name).observe(invocation.ended_s - invocation.started_s)

    async def _close(self, sandbox: Sandbox, invocation: Invocation) -> None:
        """END after the invocation's last output, then REPORT; written even when cancelled
        (shutdown), so no invocation's log is left open."""
        assert invocation.ended_s is not None
        try:
            await asyncio.gather(
                _output_caught_up(sandbox, invocation), self._refresh_memory(sandbox)
            )
        finally:
            end_s = _log_end_s(sandbox, invocation)
            self._platform(sandbox, invocation, end_line(invocation.request_id), end_s)
            self._write_report(sandbox, invocation, end_s + _TICK_S)

    async def _refresh_memory(self, sandbox: Sandbox) -> None:
        """Ask the engine for the container's peak memory, unless it was asked recently."""
        if time.monotonic() - sandbox.memory_checked_s < MEMORY_REFRESH_S:
            return
        sandbox.memory_checked_s = time.monotonic()
        if sandbox.container_id is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(MEMORY_WAIT_S):
                peak_mb = await self._backend.memory_peak_mb(sandbox.container_id)
                if peak_mb is not None:
                    sandbox.memory_peak_mb = peak_mb

    def _write_report(self, sandbox: Sandbox, invocation: Invocation, time_s: float) -> None:
        assert invocation.ended_s is not None
        line = report_line(
            invocation.request_id,
            duration_ms=(invocation.ended_s - invocation.started_s) * 1000,
            memory_mb=sandbox.function.memory_mb,
            max_memory_used_mb=sandbox.memory_peak_mb,
            init_duration_ms=invocation.init_ms,
        )
        self._platform(sandbox, invocation, line, time_s)
        invocation.log_done.set()

    async def follow(self, sandbox: Sandbox, container_id: str, since_s: float) -> None:
        """Attribute what the container prints until it stops."""
        async for line in self._backend.output(container_id, since_s):
            self._attribute(sandbox, line)

    def _attribute(self, sandbox: Sandbox, line: OutputLine) -> None:
        spans = [Span(i.request_id, i.started_s, i.ended_s) for i in sandbox.recent]
        request_id = owner(line.time_s, spans)
        invocation = next((i for i in sandbox.recent if i.request_id == request_id), None)
        # Once REPORT is written the invocation's own log is closed: REPORT stays its last
        # line. Later output (a thread still printing) still reaches the sink, attributed.
        if invocation is not None and not invocation.log_done.is_set():
            invocation.add_log(line.text)
        sandbox.output_seen_s = max(sandbox.output_seen_s, line.time_s)
        sandbox.output_arrived.set()
        self._sink.emit(self._record(sandbox, invocation, line.text, line.stream, line.time_s))

    def _platform(self, sandbox: Sandbox, invocation: Invocation, text: str, time_s: float) -> None:
        invocation.add_log(text)
        record = self._record(sandbox, invocation, text, OutputStream.PLATFORM, time_s)
        self._sink.emit(record)

    @staticmethod
    def _record(
        sandbox: Sandbox, invocation: Invocation | None, text: str, stream: str, time_s: float
    ) -> LogRecord:
        return LogRecord(
            time_s=time_s,
            message=text,
            function=sandbox.function.name,
            container=(sandbox.container_id or "")[:12],
            stream=stream,
            request_id=invocation.request_id if invocation else None,
            trace_id=invocation.trace_id if invocation else None,
            # Only the invocation that paid for the cold start is a cold one.
            is_cold_start=invocation.init_ms is not None if invocation else sandbox.is_cold,
        )

    @staticmethod
    async def settled(invocation: Invocation, timeout_s: float) -> None:
        """Wait (bounded) until ``invocation``'s log is complete: its output, END and REPORT."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await invocation.log_done.wait()


async def _output_caught_up(sandbox: Sandbox, invocation: Invocation) -> None:
    """Wait until the engine has sent every line that belongs to ``invocation``: one stamped
    after its attribution window has arrived, or nothing arrived for :data:`OUTPUT_QUIET_S`
    (the quiet timeout ends the loop); at most :data:`OUTPUT_WAIT_S` in all."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(OUTPUT_WAIT_S):
            while not _is_stream_past(sandbox, invocation):
                sandbox.output_arrived.clear()
                async with asyncio.timeout(OUTPUT_QUIET_S):
                    await sandbox.output_arrived.wait()


def _window_end_s(sandbox: Sandbox, invocation: Invocation) -> float | None:
    """When the sandbox's next invocation started (None while none has)."""
    return window_end(invocation.started_s, [i.started_s for i in sandbox.recent])


def _log_end_s(sandbox: Sandbox, invocation: Invocation) -> float:
    """The time END and REPORT carry: now, but before the sandbox's next START when that
    invocation already began, so a log store sorted by time keeps each invocation whole."""
    window_end_s, now_s = _window_end_s(sandbox, invocation), time.time()
    return now_s if window_end_s is None else min(now_s, window_end_s - 2 * _TICK_S)


def _is_stream_past(sandbox: Sandbox, invocation: Invocation) -> bool:
    """Whether a line stamped after ``invocation``'s window has arrived: the engine sends
    lines in order, so none of its own is still to come."""
    if invocation not in sandbox.recent:
        return True  # too old for any line to be attributed to it
    window_end_s = _window_end_s(sandbox, invocation)
    return window_end_s is not None and sandbox.output_seen_s >= window_end_s
