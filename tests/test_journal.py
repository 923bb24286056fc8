"""The function log without an engine: START / END / REPORT around each invocation, each
line a container prints attributed to its invocation, and END waiting for late lines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from edgelambda import journal
from edgelambda.invocation import Invocation, InvocationResult
from edgelambda.journal import Journal, is_stream_past, log_end_s
from edgelambda.logs import InvocationLog, LogRecord, OutputLine, RecordingSink, SandboxOutput
from edgelambda.sandbox import Sandbox
from edgelambda.tasks import TaskSet
from tests.fakes import FakeBackend, function_spec


class LiveOutput(FakeBackend):
    """A container whose output the test writes line by line while the journal follows."""

    def __init__(self) -> None:
        super().__init__()
        self.printed: asyncio.Queue[OutputLine | None] = asyncio.Queue()

    async def output(self, container_id: str, since_s: float) -> AsyncIterator[OutputLine]:
        while (line := await self.printed.get()) is not None:
            yield line

    def print(self, text: str, *, time_s: float | None = None) -> None:
        self.printed.put_nowait(OutputLine(time_s or time.time(), "stdout", text))


class Box:
    """A journal with one sandbox, its records, and the tasks it started."""

    def __init__(self, backend: LiveOutput | None = None) -> None:
        self.backend = backend or LiveOutput()
        self.sink = RecordingSink()
        self.tasks = TaskSet()
        self.journal = Journal(backend=self.backend, sink=self.sink, tasks=self.tasks)
        self.sandbox = Sandbox(function_spec(), now_s=0.0)
        self.sandbox.container_id = "c1"
        self.follower = self.tasks.spawn(self.journal.follow(self.sandbox, "c1", since_s=0.0))

    def answer(self, invocation: Invocation) -> None:
        invocation.settle(InvocationResult(b"{}"))
        self.journal.conclude(self.sandbox, invocation)

    async def finished(self, invocation: Invocation) -> None:
        await asyncio.wait_for(invocation.log.done.wait(), timeout=2)

    async def close(self) -> None:
        self.backend.printed.put_nowait(None)
        await asyncio.gather(*self.tasks.running())

    def lines(self, request_id: str | None) -> list[str]:
        return [r.message for r in self.sink.records if r.request_id == request_id]

    def records(self, message_start: str) -> list[LogRecord]:
        return [r for r in self.sink.records if r.message.startswith(message_start)]


async def test_an_invocation_s_log_is_start_its_output_end_report() -> None:
    box = Box()
    invocation = Invocation(payload=b"{}", trace_id="Root=1-abc")

    box.journal.begin(box.sandbox, invocation)
    box.backend.print("hello from the handler")
    await asyncio.sleep(0.01)
    box.answer(invocation)
    await box.finished(invocation)

    rid = invocation.request_id
    assert box.lines(rid)[:3] == [
        f"START RequestId: {rid} Version: $LATEST",
        "hello from the handler",
        f"END RequestId: {rid}",
    ]
    report = box.lines(rid)[3]
    assert report.startswith(f"REPORT RequestId: {rid}\tDuration: ")
    assert "Memory Size: 128 MB\tMax Memory Used: 42 MB\t" in report  # the fake's peak
    assert "Init Duration" not in report  # a warm invocation
    assert invocation.log.lines == box.lines(rid)  # what X-Amz-Log-Type: Tail shows
    assert {r.trace_id for r in box.sink.records if r.request_id == rid} == {"Root=1-abc"}
    await box.close()


async def test_only_the_invocation_that_paid_for_the_cold_start_reports_it() -> None:
    box = Box()
    box.journal.initialised(box.sandbox, init_ms=250.5)
    first, second = Invocation(payload=b"1"), Invocation(payload=b"2")

    for invocation in (first, second):
        box.journal.begin(box.sandbox, invocation)
        box.answer(invocation)
        await box.finished(invocation)

    assert "Init Duration: 250.50 ms" in first.log.lines[-1]
    assert "Init Duration" not in second.log.lines[-1]
    assert [r.is_cold_start for r in box.records("START")] == [True, False]
    await box.close()


async def test_output_before_any_invocation_is_the_init_phase_s() -> None:
    box = Box()

    box.backend.print("loading the model")
    await asyncio.sleep(0.01)

    [record] = box.sink.records
    assert (record.message, record.request_id, record.is_cold_start) == (
        "loading the model",
        None,
        True,
    )
    await box.close()


async def test_end_waits_for_a_line_the_engine_delivers_after_the_answer() -> None:
    box = Box()
    invocation = Invocation(payload=b"{}")
    box.journal.begin(box.sandbox, invocation)
    printed_s = time.time()  # printed while the invocation ran ...

    box.answer(invocation)
    await asyncio.sleep(0.02)  # ... but delivered by the engine after it was answered
    box.backend.print("the last words", time_s=printed_s)
    await box.finished(invocation)

    body = invocation.log.lines[1:-2]
    assert body == ["the last words"]
    assert invocation.log.lines[-2].startswith("END RequestId:")
    await box.close()


def memory_known(box: Box) -> None:
    """The sandbox's peak memory was just asked: END waits only for output (a timer)."""
    box.sandbox.output.memory_checked_s = time.monotonic()


async def test_end_comes_as_soon_as_a_line_past_the_invocation_arrives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(journal, "OUTPUT_QUIET_S", 30.0)  # only the line can end the wait
    box = Box()
    memory_known(box)
    first, second = Invocation(payload=b"1"), Invocation(payload=b"2")
    box.journal.begin(box.sandbox, first)
    box.answer(first)
    box.journal.begin(box.sandbox, second)
    await asyncio.sleep(0.01)
    assert not first.log.done.is_set()

    box.backend.print("printed by the second")  # stamped after the second began
    await box.finished(first)

    assert first.log.lines[-2] == f"END RequestId: {first.request_id}"
    await box.close()


async def test_end_gives_up_waiting_while_output_keeps_coming(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(journal, "OUTPUT_WAIT_S", 0.3)
    box = Box()
    memory_known(box)
    invocation = Invocation(payload=b"{}")
    box.journal.begin(box.sandbox, invocation)
    box.answer(invocation)
    started_s = time.monotonic()

    while not invocation.log.done.is_set():  # never quiet, and never past it
        box.backend.print("still printing")
        await asyncio.sleep(0.01)
        assert time.monotonic() - started_s < 2.0

    assert time.monotonic() - started_s >= 0.29
    assert invocation.log.lines[-2] == f"END RequestId: {invocation.request_id}"
    assert invocation.log.lines[1] == "still printing"
    await box.close()


async def test_drain_returns_once_every_concluded_log_is_closed() -> None:
    box = Box()
    memory_known(box)
    invocations = [Invocation(payload=b"{}") for _ in range(3)]
    for invocation in invocations:
        box.journal.begin(box.sandbox, invocation)
        box.answer(invocation)

    await asyncio.wait_for(box.journal.drain(), timeout=2)

    assert all(invocation.log.done.is_set() for invocation in invocations)
    assert len(box.records("REPORT")) == 3
    await box.close()


class SlowMemory(LiveOutput):
    """An engine that takes its time over a container's peak memory."""

    async def memory_peak_mb(self, container_id: str) -> int | None:
        await asyncio.sleep(0.2)
        return 64


async def test_drain_waits_for_a_log_whose_memory_is_still_asked() -> None:
    box = Box(SlowMemory())
    invocation = Invocation(payload=b"{}")
    box.journal.begin(box.sandbox, invocation)
    box.answer(invocation)  # a first invocation: its peak memory is due

    await asyncio.wait_for(box.journal.drain(), timeout=2)

    assert invocation.log.done.is_set()
    assert "Max Memory Used: 64 MB" in invocation.log.lines[-1]
    await box.close()


async def test_a_line_after_report_reaches_the_sink_but_not_the_closed_log() -> None:
    box = Box()
    invocation = Invocation(payload=b"{}")
    box.journal.begin(box.sandbox, invocation)
    box.answer(invocation)
    await box.finished(invocation)
    lines_at_report = list(invocation.log.lines)

    box.backend.print("a thread still printing")
    await asyncio.sleep(0.01)

    assert invocation.log.lines == lines_at_report  # REPORT stays its last line
    assert box.lines(invocation.request_id)[-1] == "a thread still printing"
    await box.close()


async def test_an_invocation_is_concluded_once_and_only_where_it_began() -> None:
    box = Box()
    elsewhere = Invocation(payload=b"{}")
    box.journal.conclude(box.sandbox, elsewhere)  # never began in this sandbox
    invocation = Invocation(payload=b"{}")
    box.journal.begin(box.sandbox, invocation)

    box.answer(invocation)
    box.journal.conclude(box.sandbox, invocation)
    await box.finished(invocation)
    await asyncio.gather(*box.tasks.running() - {box.follower})

    assert len(box.records("REPORT")) == 1
    assert box.lines(elsewhere.request_id) == []
    await box.close()


async def test_settled_gives_up_after_its_timeout() -> None:
    invocation = Invocation(payload=b"{}")  # its log is never completed

    started_s = time.monotonic()
    await Journal.settled(invocation, timeout_s=0.05)

    assert 0.04 <= time.monotonic() - started_s < 1.0


def ran(request_id: str, started_s: float, ended_s: float | None) -> InvocationLog:
    return InvocationLog(request_id, trace_id=None, started_s=started_s, ended_s=ended_s)


def test_end_is_stamped_before_the_next_start_so_invocations_stay_whole() -> None:
    output = SandboxOutput()
    first, second = ran("a", 10.0, 11.0), ran("b", 11.5, None)
    output.recent.extend([first, second])

    assert log_end_s(output, first, now_s=12.0) < 11.5  # the next one already began
    assert log_end_s(output, second, now_s=12.0) == 12.0


def test_the_stream_is_past_an_invocation_once_a_later_line_arrived() -> None:
    output = SandboxOutput()
    first, second = ran("a", 10.0, 11.0), ran("b", 11.5, None)
    output.recent.extend([first, second])

    output.seen_s = 11.2  # a line from inside the first window: more may come
    assert not is_stream_past(output, first)
    output.seen_s = 11.6  # a line stamped in the next window
    assert is_stream_past(output, first)
    assert not is_stream_past(output, second)  # the latest: no later window yet
    assert is_stream_past(output, ran("old", 1.0, 2.0))  # gone from recent: nothing to wait for
