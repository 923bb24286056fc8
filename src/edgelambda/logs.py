"""Function logs: what containers print, attributed to invocations, plus Lambda's own
START / END / REPORT lines. Pure helpers; the pool feeds them and a sink ships records."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog

TAIL_BYTES = 4096  # what X-Amz-Log-Type: Tail returns, as on AWS


class OutputStream:
    STDOUT = "stdout"
    STDERR = "stderr"
    PLATFORM = "platform"  # lines the gateway writes: START, END, REPORT


@dataclass(frozen=True)
class OutputLine:
    """One line a container printed, with the engine's timestamp of it."""

    time_s: float
    stream: str
    text: str


@dataclass(frozen=True)
class LogRecord:
    """One structured log record of a function."""

    time_s: float
    message: str
    function: str
    container: str
    stream: str
    request_id: str | None = None
    trace_id: str | None = None
    is_cold_start: bool | None = None


class LogSink(Protocol):
    """Where log records go (the gateway's stdout, or a log store)."""

    def emit(self, record: LogRecord) -> None: ...


class StdoutSink:
    """Records as structured log events of the gateway itself."""

    def __init__(self) -> None:
        self._log = structlog.get_logger("edgelambda.function")

    def emit(self, record: LogRecord) -> None:
        self._log.info(
            record.message,
            function=record.function,
            container_name=record.container,
            stream=record.stream,
            aws_request_id=record.request_id,
            trace_id=record.trace_id,
            cold_start=record.is_cold_start,
        )


def parse_docker_line(line: str) -> tuple[float, str]:
    """``2026-11-28T19:29:44.734938699Z text\\n`` (the engine's ``timestamps=1`` format) ->
    (epoch seconds, text)."""
    stamp, _, text = line.partition(" ")
    return _rfc3339_s(stamp), text.rstrip("\n")


def _rfc3339_s(stamp: str) -> float:
    # Python parses at most microseconds; the engine writes nanoseconds.
    head, _, fraction = stamp.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(head + "+00:00").timestamp()
    return seconds + (float(f"0.{fraction}") if fraction else 0.0)


def start_line(request_id: str) -> str:
    return f"START RequestId: {request_id} Version: $LATEST"


def end_line(request_id: str) -> str:
    return f"END RequestId: {request_id}"


def report_line(
    request_id: str,
    *,
    duration_ms: float,
    memory_mb: int,
    max_memory_used_mb: int | None,
    init_duration_ms: float | None,
) -> str:
    """Lambda's REPORT line; billed duration is the duration rounded up to the ms."""
    parts = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {max(1, math.ceil(duration_ms))} ms",
        f"Memory Size: {memory_mb} MB",
    ]
    if max_memory_used_mb is not None:
        parts.append(f"Max Memory Used: {max_memory_used_mb} MB")
    if init_duration_ms is not None:
        parts.append(f"Init Duration: {init_duration_ms:.2f} ms")
    return "\t".join(parts) + "\t"


@dataclass(frozen=True)
class Span:
    """When an invocation ran in its sandbox (epoch seconds); ``end_s`` None while running."""

    request_id: str
    start_s: float
    end_s: float | None


def owner(time_s: float, spans: Sequence[Span]) -> str | None:
    """The request id a line printed at ``time_s`` belongs to: the latest invocation that had
    started by then (output after a response still belongs to it, as on Lambda), or None
    for output before any invocation (the init phase)."""
    started = [span for span in spans if span.start_s <= time_s]
    return max(started, key=lambda span: span.start_s).request_id if started else None


def tail(lines: Iterable[str], limit_bytes: int = TAIL_BYTES) -> bytes:
    """The last ``limit_bytes`` of the lines, newline-terminated, as X-Amz-Log-Result has it."""
    text = "".join(f"{line}\n" for line in lines).encode()
    return text[-limit_bytes:]
