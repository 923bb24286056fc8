"""A stand-in of VictoriaLogs for machines where its image cannot be pulled.

It speaks the part of VictoriaLogs' HTTP API that edgelambda uses:

- ``POST /insert/jsonline``: JSON lines, with the ``_msg_field``, ``_time_field`` and
  ``_stream_fields`` query parameters; lines are kept in memory (the newest
  ``RECORDER_MAX_LINES``) and appended to ``$RECORDER_DATA_DIR/lines.jsonl``.
- ``GET|POST /select/logsql/query``: stored lines as JSON lines. Only a small LogsQL subset
  is understood: ``field:="exact"``, ``field:value`` (substring), bare words and
  ``"phrases"`` (substring of ``_msg``), ``*``; ``_time:...`` filters are ignored; after a
  ``|``, ``sort by (field)`` [desc] and ``limit N`` are honoured, other pipes ignored.
  The ``limit`` parameter is honoured too.
- ``GET|POST /select/logsql/tail``: lines that arrive from now on and match the query,
  streamed as JSON lines until the client goes away.
- ``GET /health``: ``OK``.
- Test helpers (not VictoriaLogs API): ``GET /recorder/lines`` returns every stored line as
  one JSON array, ``DELETE /recorder/lines`` forgets them.

Environment: ``RECORDER_HOST`` (0.0.0.0), ``RECORDER_PORT`` (9428), ``RECORDER_DATA_DIR``
(/data; unwritable means memory only), ``RECORDER_MAX_LINES`` (100000). VictoriaLogs'
``-httpListenAddr=[host]:port`` and ``-storageDataPath=DIR`` flags override them, so the
recorder can take the real service's command line; other flags are ignored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shlex
import sys
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

Line = dict[str, Any]
Predicate = Callable[[Line], bool]

log = logging.getLogger("log-recorder")
LINES_KEY = web.AppKey("lines", deque)
STATE_KEY = web.AppKey("state", dict)


def _now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _normalise(raw: Line, params: Any) -> Line:
    """Rename the message and time fields as VictoriaLogs does and add ``_stream``."""
    line = dict(raw)
    for param, name in (("_msg_field", "_msg"), ("_time_field", "_time")):
        for source in (params.get(param) or "").split(","):
            source = source.strip()
            if source and source != name and source in line:
                line[name] = line.pop(source)
                break
    if not line.get("_time"):
        line["_time"] = _now_rfc3339()
    fields = [f.strip() for f in (params.get("_stream_fields") or "").split(",") if f.strip()]
    stream = ",".join(f"{f}={json.dumps(str(line[f]))}" for f in fields if f in line)
    line.setdefault("_stream", "{" + stream + "}")
    return line


def _field_text(line: Line, name: str) -> str:
    value = line.get(name)
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _term_predicate(term: str) -> Predicate | None:
    """One LogsQL filter term of the supported subset; None means 'matches everything'."""
    if term in ("*", ""):
        return None
    match = re.fullmatch(r"([A-Za-z0-9_.\-]+):(=?)(.*)", term, flags=re.S)
    if match is None:
        word = term.lower()
        return lambda line: word in _field_text(line, "_msg").lower()
    name, exact, value = match.groups()
    if name == "_time":
        return None
    if exact:
        return lambda line: _field_text(line, name) == value
    if value == "*":
        return lambda line: name in line
    low = value.lower()
    return lambda line: low in _field_text(line, name).lower()


def parse_query(query: str) -> tuple[list[Predicate], list[str]]:
    """Filters (all must match) and the raw pipe texts of a LogsQL query."""
    head, *pipes = query.split("|")
    try:
        terms = shlex.split(head)  # unquotes "..." so field:="x" arrives as field:=x
    except ValueError:
        terms = head.split()
    predicates: list[Predicate] = []
    for term in terms:
        if term.upper() == "AND":
            continue
        predicate = _term_predicate(term)
        if predicate is not None:
            predicates.append(predicate)
    return predicates, [p.strip() for p in pipes if p.strip()]


def select(lines: Iterable[Line], query: str, limit: int | None) -> list[Line]:
    predicates, pipes = parse_query(query)
    found = [line for line in lines if all(p(line) for p in predicates)]
    for pipe in pipes:
        sort = re.fullmatch(r"sort\s+by\s*\(\s*([^)\s,]+)[^)]*\)\s*(desc)?", pipe, flags=re.I)
        if sort:
            field, desc = sort.group(1), bool(sort.group(2))
            found.sort(key=lambda line, f=field: _field_text(line, f), reverse=desc)
            continue
        cut = re.fullmatch(r"(?:limit|head)\s+(\d+)", pipe, flags=re.I)
        if cut:
            found = found[: int(cut.group(1))]
    if limit is not None and limit > 0:
        found = found[:limit]
    return found


async def _params(request: web.Request) -> dict[str, str]:
    params = dict(request.query)
    if request.method == "POST":
        params.update({k: str(v) for k, v in (await request.post()).items()})
    return params


async def insert(request: web.Request) -> web.Response:
    lines: deque[Line] = request.app[LINES_KEY]
    state = request.app[STATE_KEY]
    body = await request.read()
    accepted: list[Line] = []
    for raw in body.splitlines():
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            state["rejected"] += 1
            continue
        if isinstance(value, dict):
            accepted.append(_normalise(value, request.query))
        else:
            state["rejected"] += 1
    lines.extend(accepted)
    sink = state.get("sink")
    if sink is not None and accepted:
        try:
            sink.write("".join(json.dumps(line) + "\n" for line in accepted))
            sink.flush()
        except OSError as exc:
            log.warning("cannot append to the data file: %s", exc)
    async with state["arrived"]:
        state["arrived"].notify_all()
    return web.Response(status=200)


async def query(request: web.Request) -> web.StreamResponse:
    params = await _params(request)
    limit = int(params["limit"]) if params.get("limit", "").isdigit() else None
    found = select(list(request.app[LINES_KEY]), params.get("query", "*"), limit)
    body = "".join(json.dumps(line) + "\n" for line in found)
    return web.Response(text=body, content_type="application/stream+json")


async def tail(request: web.Request) -> web.StreamResponse:
    params = await _params(request)
    predicates, _ = parse_query(params.get("query", "*"))
    lines: deque[Line] = request.app[LINES_KEY]
    arrived: asyncio.Condition = request.app[STATE_KEY]["arrived"]
    response = web.StreamResponse(headers={"Content-Type": "application/stream+json"})
    await response.prepare(request)
    seen = request.app[STATE_KEY]["total"]()
    while request.transport is not None and not request.transport.is_closing():
        async with arrived:
            try:
                await asyncio.wait_for(arrived.wait(), timeout=1.0)
            except TimeoutError:
                continue
        total = request.app[STATE_KEY]["total"]()
        fresh = list(lines)[-(total - seen) :] if total > seen else []
        seen = total
        for line in fresh:
            if all(p(line) for p in predicates):
                await response.write((json.dumps(line) + "\n").encode())
    return response


async def health(request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def all_lines(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[LINES_KEY]))


async def forget(request: web.Request) -> web.Response:
    request.app[LINES_KEY].clear()
    return web.Response(status=204)


def make_app(data_dir: Path | None, max_lines: int) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    counter = {"n": 0}  # lines ever accepted, so /tail finds the new ones

    class CountingDeque(deque):  # type: ignore[type-arg]
        def extend(self, items: Iterable[Line]) -> None:
            items = list(items)
            counter["n"] += len(items)
            super().extend(items)

    lines = CountingDeque(maxlen=max_lines)
    sink = None
    if data_dir is not None:
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            sink = (data_dir / "lines.jsonl").open("a", encoding="utf-8")
        except OSError as exc:
            log.warning("keeping lines in memory only (%s)", exc)
    app[LINES_KEY] = lines
    app[STATE_KEY] = {
        "rejected": 0,
        "sink": sink,
        "arrived": asyncio.Condition(),
        "total": lambda: counter["n"],
    }
    app.router.add_post("/insert/jsonline", insert)
    app.router.add_route("*", "/select/logsql/query", query)
    app.router.add_route("*", "/select/logsql/tail", tail)
    app.router.add_get("/health", health)
    app.router.add_get("/recorder/lines", all_lines)
    app.router.add_delete("/recorder/lines", forget)
    return app


def _flags(argv: list[str]) -> dict[str, str]:
    """VictoriaLogs-style ``-name=value`` (or ``--name=value``) flags."""
    flags = {}
    for arg in argv:
        name, sep, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and sep:
            flags[name] = value
    return flags


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="log-recorder: %(message)s")
    flags = _flags(sys.argv[1:])
    host = os.environ.get("RECORDER_HOST", "0.0.0.0")
    port = os.environ.get("RECORDER_PORT", "9428")
    if "httpListenAddr" in flags:
        listen_host, _, port = flags["httpListenAddr"].rpartition(":")
        host = listen_host or host
    data = flags.get("storageDataPath", os.environ.get("RECORDER_DATA_DIR", "/data"))
    app = make_app(
        Path(data) if data else None, int(os.environ.get("RECORDER_MAX_LINES", "100000"))
    )
    log.info("listening on %s:%s, data in %s", host, port, data or "memory only")
    # run_app stops on SIGTERM and SIGINT, so `docker stop` is prompt even as PID 1.
    web.run_app(
        app,
        host=host,
        port=int(port),
        shutdown_timeout=1.0,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
