"""Function logs: what containers print, attributed to invocations, plus Lambda's own
START / END / REPORT lines. Pure helpers, the records the journal keeps per invocation and
per sandbox, and the sinks records go to; :mod:`edgelambda.journal` feeds them."""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
import sys
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, TextIO

import orjson

TAIL_BYTES = 4096  # what X-Amz-Log-Type: Tail returns, as on AWS


class OutputStream(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"
    PLATFORM = "platform"  # lines the gateway writes: START, END, REPORT


@dataclass(frozen=True, slots=True)
class OutputLine:
    """One line a container printed, with the engine's timestamp of it."""

    time_s: float
    stream: str
    text: str


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One structured log record: a function's line, a START/END/REPORT line, or an access
    log line of the gateway (``stream`` "access", details in ``fields``)."""

    time_s: float
    message: str
    function: str
    container: str
    stream: str
    request_id: str | None = None
    trace_id: str | None = None
    is_cold_start: bool | None = None
    level: str | None = None  # None: parsed from the message
    fields: Mapping[str, object] = field(default_factory=dict)


_LEVEL_WORD = re.compile(
    r"\[?(TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|CRITICAL|FATAL)\]?(?:\s|:|$)", re.IGNORECASE
)
_JSON_LEVEL_KEYS = ("level", "levelname", "log_level", "severity")
_LEVEL_ALIASES = {"warning": "warn", "critical": "fatal", "notice": "info"}


def parse_level(message: str) -> str:
    """The level of a log line: a JSON line's ``level`` (or levelname, log_level, severity),
    or a leading level word (``ERROR ...``, ``[ERROR] ...`` as the runtime writes it);
    ``info`` otherwise."""
    level = _json_level(message) or _word_level(message) or "info"
    level = level.lower()
    return _LEVEL_ALIASES.get(level, level)


def json_object(text: str | bytes) -> dict[str, Any] | None:
    """``text`` read as a JSON object (a log line, a LogsQL answer's line), or None."""
    try:
        document = json.loads(text)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _json_level(message: str) -> str | None:
    if not message.lstrip().startswith("{"):
        return None
    document = json_object(message)
    if document is None:
        return None
    found = next((document[k] for k in _JSON_LEVEL_KEYS if isinstance(document.get(k), str)), None)
    return found if isinstance(found, str) else None


def _word_level(message: str) -> str | None:
    match = _LEVEL_WORD.match(message.lstrip())
    return match.group(1) if match else None


def jsonline(record: LogRecord) -> dict[str, object]:
    """The record as VictoriaLogs ingests it through ``/insert/jsonline``."""
    # Written out field by field: four records per invocation come through here.
    line: dict[str, object] = {
        "_time": _rfc3339(record.time_s),
        "_msg": record.message,
        "level": record.level or parse_level(record.message),
        "function": record.function,
        "container_name": record.container,
        "stream": record.stream,
    }
    if record.request_id is not None:
        line["aws_request_id"] = record.request_id
    if record.trace_id is not None:
        line["trace_id"] = record.trace_id
    if record.is_cold_start is not None:
        line["cold_start"] = record.is_cold_start
    if record.fields:
        line.update(record.fields)
    return line


def encode_jsonline(record: LogRecord) -> bytes:
    """One JSON line of :func:`jsonline` (non-ASCII as UTF-8, not escaped), without newline;
    a field that JSON cannot hold is written as its ``str``."""
    return orjson.dumps(jsonline(record), default=str, option=orjson.OPT_NON_STR_KEYS)


def _rfc3339(time_s: float) -> str:
    second, nanos = int(time_s), round((time_s % 1) * 1e9)
    if nanos == 1_000_000_000:  # .9999999996 rounds up into the next second
        second, nanos = second + 1, 0
    return f"{_whole_second(second)}.{nanos:09d}Z"


@functools.lru_cache(maxsize=8)  # records come in bursts of the same few seconds
def _whole_second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")


STDOUT_FLUSH_S = 0.05  # how long a line to stdout may wait to share a write with others
STDOUT_FLUSH_LINES = 256  # ... and how many may wait


class LogSink(Protocol):
    """Where log records go (the gateway's stdout, or a log store). ``emit`` never blocks;
    ``close`` writes out what is still held, at shutdown."""

    def emit(self, record: LogRecord) -> None: ...

    async def close(self) -> None: ...


class StdoutSink:
    """Records as JSON lines on the gateway's stdout (no log store configured): the same
    shape VictoriaLogs would get. An invocation makes several records (START, END, REPORT,
    the access record) and stdout is unbuffered in the gateway's image, so lines are held
    for up to :data:`STDOUT_FLUSH_S` (or :data:`STDOUT_FLUSH_LINES` lines) and go out in one
    write: under load one write carries many invocations' lines, not a few."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._pending: list[bytes] = []  # encoded lines, decoded once per write
        self._timer: asyncio.TimerHandle | None = None

    def emit(self, record: LogRecord) -> None:
        line = encode_jsonline(record)
        if not self._pending:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop (a command, a test): write it now
                self._stream.write(line.decode() + "\n")
                return
            self._timer = loop.call_later(STDOUT_FLUSH_S, self.flush)
        self._pending.append(line)
        if len(self._pending) >= STDOUT_FLUSH_LINES:
            self.flush()

    def flush(self) -> None:
        """Write what is pending."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            lines, self._pending = self._pending, []
            self._stream.write((b"\n".join(lines) + b"\n").decode())

    async def close(self) -> None:
        self.flush()


class RecordingSink:
    """Keeps records in memory (tests, and anything that wants to look at recent records)."""

    def __init__(self) -> None:
        self.records: list[LogRecord] = []

    def emit(self, record: LogRecord) -> None:
        self.records.append(record)

    async def close(self) -> None:
        pass  # nothing held


def logsql_query(
    function: str, *, since: str, request_id: str | None, is_follow: bool = False
) -> str:
    """The LogsQL query for one function's lines, oldest first (live tailing takes no time
    range and no sorting: lines come as they arrive)."""
    filters = [f"function:={json.dumps(function)}"]
    if request_id:
        filters.append(f"aws_request_id:={json.dumps(request_id)}")
    if is_follow:
        return " ".join(filters)
    return " ".join([f"_time:{since}", *filters]) + " | sort by (_time)"


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


@dataclass(frozen=True, slots=True)
class Span:
    """When an invocation ran in its sandbox (epoch seconds); ``end_s`` None while running."""

    request_id: str
    start_s: float
    end_s: float | None


MAX_LOG_LINES = 256  # an invocation's own lines kept: what a 4 KB tail can show, plus slack


@dataclass(eq=False, slots=True)
class InvocationLog:
    """What the function log knows of one invocation: when it ran (wall-clock epoch s, to
    line up with the engine's stamps), the cold start it paid for, and its own lines for
    ``X-Amz-Log-Type: Tail``. Only the journal writes it."""

    request_id: str
    trace_id: str | None
    started_s: float = 0.0
    ended_s: float | None = None
    init_ms: float | None = None  # the cold start it paid for, for the REPORT line
    lines: list[str] = field(default_factory=list)  # START..REPORT, bounded
    done: asyncio.Event = field(default_factory=asyncio.Event)  # REPORT written

    @property
    def span(self) -> Span:
        return Span(self.request_id, self.started_s, self.ended_s)

    def add(self, line: str) -> None:
        self.lines.append(line)
        if len(self.lines) > MAX_LOG_LINES:  # long-running chatty functions stay bounded
            del self.lines[: len(self.lines) - MAX_LOG_LINES]


@dataclass(eq=False)
class SandboxOutput:
    """What the function log knows of one sandbox: its latest invocations (to attribute
    output that arrives late), how far the engine's stream of its output has got, and its
    peak memory as last asked. Only the journal writes it."""

    recent: deque[InvocationLog] = field(default_factory=lambda: deque(maxlen=4))
    seen_s: float = 0.0  # engine time of the latest output line received
    line_arrived_at: float = float("-inf")  # loop time it arrived
    pending_init_ms: float | None = None  # cold start to report on the next REPORT
    memory_peak_mb: int | None = None
    memory_checked_s: float = float("-inf")  # monotonic time of that question


def owner(time_s: float, spans: Sequence[Span]) -> str | None:
    """The request id a line printed at ``time_s`` belongs to: the latest invocation that had
    started by then (output after a response still belongs to it, as on Lambda), or None
    for output before any invocation (the init phase)."""
    started = [span for span in spans if span.start_s <= time_s]
    return max(started, key=lambda span: span.start_s).request_id if started else None


def window_end(start_s: float, starts_s: Iterable[float]) -> float | None:
    """When the attribution window of the invocation that started at ``start_s`` ends: the
    next start among ``starts_s`` (its sandbox's invocations), None while none followed.
    The counterpart of :func:`owner`."""
    return min((s for s in starts_s if s > start_s), default=None)


def tail(lines: Iterable[str], limit_bytes: int = TAIL_BYTES) -> bytes:
    """The last ``limit_bytes`` of the lines, newline-terminated, as X-Amz-Log-Result has it."""
    text = "".join(f"{line}\n" for line in lines).encode()
    return text[-limit_bytes:]
