from __future__ import annotations

import asyncio
import io
import json

import pytest

from edgelambda.logs import (
    STDOUT_FLUSH_LINES,
    STDOUT_FLUSH_S,
    LogRecord,
    Span,
    StdoutSink,
    jsonline,
    owner,
    parse_docker_line,
    parse_level,
    report_line,
    tail,
    window_end,
)


def test_parse_docker_line_keeps_nanosecond_time() -> None:
    time_s, text = parse_docker_line("2026-11-28T19:29:44.734938699Z out 0\n")

    assert text == "out 0"
    assert time_s == pytest.approx(1795894184.734938699, abs=1e-6)


def test_report_line_has_lambdas_fields() -> None:
    line = report_line(
        "id-1", duration_ms=12.341, memory_mb=128, max_memory_used_mb=40, init_duration_ms=250.5
    )

    assert line == (
        "REPORT RequestId: id-1\tDuration: 12.34 ms\tBilled Duration: 13 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 40 MB\tInit Duration: 250.50 ms\t"
    )
    warm = report_line("id-2", duration_ms=0.2, memory_mb=128, max_memory_used_mb=None,
                       init_duration_ms=None)  # fmt: skip
    assert "Init Duration" not in warm
    assert "Billed Duration: 1 ms" in warm


def test_owner_is_the_latest_started_invocation() -> None:
    spans = [Span("a", 10.0, 11.0), Span("b", 12.0, None)]

    assert owner(9.0, spans) is None  # init output
    assert owner(10.5, spans) == "a"
    assert owner(11.5, spans) == "a"  # after its response, before the next one
    assert owner(12.5, spans) == "b"


def test_window_end_is_where_owner_moves_to_the_next_invocation() -> None:
    spans = [Span("a", 10.0, 11.0), Span("b", 12.0, 12.5), Span("c", 13.0, None)]
    starts = [span.start_s for span in spans]

    assert window_end(10.0, starts) == 12.0  # not its response at 11.0: late output is its own
    assert window_end(13.0, starts) is None  # nothing followed yet
    assert owner(12.0 - 1e-6, spans) == "a"
    assert owner(12.0, spans) == "b"


def test_tail_keeps_the_last_4_kb() -> None:
    lines = [f"line {n:04d}" for n in range(1000)]

    result = tail(lines)

    assert len(result) == 4096
    assert result.endswith(b"line 0999\n")
    assert tail(["short"]) == b"short\n"


@pytest.mark.parametrize(
    ("message", "level"),
    [
        ('{"level": "WARNING", "message": "x"}', "warn"),
        ('{"levelname": "ERROR"}', "error"),
        ("[ERROR] Runtime.ImportModuleError: no module", "error"),
        ("DEBUG details", "debug"),
        ("plain text", "info"),
        ('{"no": "level"}', "info"),
        ("INFORMATION is not a level word", "info"),
    ],
)
def test_parse_level(message: str, level: str) -> None:
    assert parse_level(message) == level


def test_jsonline_has_the_ingestion_fields() -> None:
    record = LogRecord(
        time_s=1795894184.5, message="hello", function="fn", container="abc", stream="stdout",
        request_id="r", trace_id="Root=1-x", is_cold_start=True,
    )  # fmt: skip

    line = jsonline(record)

    assert line == {
        "_time": "2026-11-28T19:29:44.500000000Z",
        "_msg": "hello",
        "level": "info",
        "function": "fn",
        "container_name": "abc",
        "stream": "stdout",
        "aws_request_id": "r",
        "trace_id": "Root=1-x",
        "cold_start": True,
    }


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def stdout_record(message: str) -> LogRecord:
    return LogRecord(
        time_s=1795894184.5, message=message, function="fn", container="c", stream="stdout"
    )


async def test_stdout_lines_go_out_together_within_the_flush_time() -> None:
    stream = CountingStream()
    sink = StdoutSink(stream)
    for message in ("START", "a line", "END"):
        sink.emit(stdout_record(message))
    await asyncio.sleep(0)
    assert stream.writes == 0  # held a moment, to share one write with later lines

    await asyncio.sleep(STDOUT_FLUSH_S * 2)

    assert stream.writes == 1
    assert [json.loads(line)["_msg"] for line in stream.getvalue().splitlines()] == [
        "START",
        "a line",
        "END",
    ]
    sink.emit(stdout_record("later"))
    await sink.close()  # as at shutdown: the line pending is written at once
    assert json.loads(stream.getvalue().splitlines()[-1])["_msg"] == "later"
    assert stream.writes == 2


async def test_stdout_lines_past_the_line_bound_go_out_at_once() -> None:
    stream = CountingStream()
    sink = StdoutSink(stream)

    for n in range(STDOUT_FLUSH_LINES):
        sink.emit(stdout_record(str(n)))

    assert stream.writes == 1
    assert len(stream.getvalue().splitlines()) == STDOUT_FLUSH_LINES
    await sink.close()
    assert stream.writes == 1  # nothing was left to write


def test_stdout_lines_without_an_event_loop_are_written_at_once() -> None:
    stream = CountingStream()
    StdoutSink(stream).emit(stdout_record("now"))
    assert stream.writes == 1
    assert json.loads(stream.getvalue())["_msg"] == "now"


def test_a_time_just_short_of_a_second_rounds_into_the_next() -> None:
    # (Only small times have nanoseconds to spare for this: a float near 1.8e9 has ~240 ns.)
    record = LogRecord(time_s=5.9999999999, message="m", function="f", container="c", stream="x")
    assert jsonline(record)["_time"] == "1970-01-01T00:00:06.000000000Z"
