"""`make soak`: a bounded run of mixed, partly hostile traffic against a real gateway on this
machine, printed as one JSON report (progress goes to stderr).

For the whole run, at once: sync routes and Invoke API calls to a function that answers and
to ones that crash, time out, exceed their memory, flood stdout with 20 MB and poll their own
Runtime API; Event invocations that succeed, fail always (dead-lettered) or fail at random
(retried); 1,500 slow clients from 127.0.0.2 holding half-sent requests (a child process);
password guessing from 127.0.0.3; ``/health`` every second. In the middle: a routing reload
(a new route, a changed setting) and an engine restart (``--no-engine-restart`` skips it; it
is skipped too while another pytest runs, since it kills their containers).

Every request is bounded by a client timeout longer than the gateway's own bound; one that
ends without an answer is lost. Answers echo a unique id, so a mismatched or doubled answer
is counted. Event outcomes are read from the event store (still queued, dead-lettered) and
from each successful run's own report: the function posts its id to the soak over the
functions' network, which does not depend on the engine's log stream (an engine restart can
cut that). Its log line of the same run, shipped by the gateway to a recorder standing in
for VictoriaLogs, is counted too, as a check of the log path. Exit status 1 when a
must-be-zero count is not zero or a budget is exceeded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from aiohttp import web
from harness import (
    cleanup,
    free_port,
    percentile,
    rss_mb,
    serve_env,
    serve_posts,
    start_serve,
    wait_healthy,
)

HERE = Path(__file__).parent
REPO = HERE.parent
API_KEY = "dev-api-key-change-in-production"
LOGIN = {"AuthParameters": {"USERNAME": "onpremise-user", "PASSWORD": "onpremise-pass"}}
LEGIT_ADDRESS, SLOW_ADDRESS, GUESSER_ADDRESS = "127.0.0.1", "127.0.0.2", "127.0.0.3"
FUNCTION_TIMEOUT_S = 2
QUEUE_WAIT_S = 30
INIT_TIMEOUT_S = 10
# The gateway answers every caller within queue wait + init timeout + timeout + 5 s (README,
# "Limits"); the engine restart may add a cold start. A client waits longer than all that.
CLIENT_TIMEOUT_S = 90
EVENT_DRAIN_S = 120
BUDGET_RSS_GROWTH_MB = 150
BUDGET_FDS_GROWTH = 100
BUDGET_HEALTH_P99_MS = 1000
EVENT_OK_MARK = re.compile(rb"soak-event-ok ([0-9a-f-]{36})")
FAULTS = ("crash", "timeout", "memory", "flood", "poll_next")

FUNCTIONS: dict[str, dict[str, Any]] = {
    "echo": {"handler": "app.echo", "max_concurrency": 6, "memory": 128},
    "crash": {"handler": "app.crash", "max_concurrency": 2, "memory": 128},
    "timeout": {"handler": "app.sleep_past_timeout", "max_concurrency": 2, "memory": 128},
    "memory": {"handler": "app.exceed_memory", "max_concurrency": 2, "memory": 128},
    "flood": {"handler": "app.flood_stdout", "max_concurrency": 2, "memory": 128},
    "poll_next": {"handler": "app.poll_next", "max_concurrency": 2, "memory": 128},
    "event_ok": {"handler": "app.event_ok", "max_concurrency": 4, "memory": 128},
    "event_fail": {"handler": "app.event_fail", "max_concurrency": 2, "memory": 128},
    "event_flaky": {"handler": "app.event_flaky", "max_concurrency": 4, "memory": 128},
}


def routing(*, reloaded: bool) -> str:
    """The soak's routing file; the reload adds a route and changes echo's memory."""
    functions = {
        name: {**spec, "code": "functions/soak", "timeout": FUNCTION_TIMEOUT_S}
        for name, spec in FUNCTIONS.items()
    }
    routes: list[dict[str, Any]] = [
        {"path": f"/soak/{name}", "method": method, "function": name, "auth": "none"}
        for name in ("echo", *FAULTS)
        for method in ("GET", "POST")
    ]
    if reloaded:
        functions["echo"]["memory"] = 160
        routes.append({"path": "/soak/added", "method": "GET", "function": "echo", "auth": "none"})
    return json.dumps({"functions": functions, "routes": routes}, indent=1)


def log(message: str) -> None:
    print(f"soak {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# -- what the clients saw --------------------------------------------------------------------


@dataclass
class Tally:
    """Everything the clients saw, by kind of request (``route:echo``, ``invoke:crash``...)."""

    sent: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    not_sent: Counter[str] = field(default_factory=Counter)
    mismatched: list[str] = field(default_factory=list)
    request_ids: set[str] = field(default_factory=set)
    doubled: list[str] = field(default_factory=list)
    # (second of the run, whether the connection cap refused it) per legitimate request.
    cap_refusals: list[tuple[int, bool]] = field(default_factory=list)
    # The first body seen per kind and status, to tell a 500 or a 503 from another.
    first_bodies: dict[str, str] = field(default_factory=dict)

    def answered(self, kind: str, status: int | str) -> None:
        self.by_status[str(status)] += 1
        self.by_kind.setdefault(kind, Counter())[str(status)] += 1

    def saw_ids(self, ids: set[str]) -> None:
        """The request ids one answer carries (header, echo): none may have come before."""
        ids.discard("")
        if ids & self.request_ids:
            self.doubled.extend(sorted(ids & self.request_ids))
        self.request_ids |= ids


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class Clients:
    """Legitimate traffic from 127.0.0.1: one new connection per request, so a connection cap
    that refuses new connections shows in what the clients see."""

    def __init__(self, url: str, tally: Tally, started: float) -> None:
        self.url = url
        self.tally = tally
        self.started = started
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
            timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S),
        )

    async def close(self) -> None:
        await self.session.close()

    async def request(self, kind: str, method: str, path: str, **kwargs: Any) -> Answer | None:
        """One request, counted: its status, or lost (no answer within the client timeout,
        or the connection dropped after the request went out)."""
        self.tally.sent += 1
        try:
            async with self.session.request(method, self.url + path, **kwargs) as response:
                answer = Answer(response.status, dict(response.headers), await response.read())
        except aiohttp.ClientConnectorError as exc:  # never reached the gateway
            self.tally.sent -= 1
            self.tally.not_sent[type(exc).__name__] += 1
            return None
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.tally.lost.append(f"{kind} {path}: {type(exc).__name__} {exc}"[:300])
            self.tally.answered(kind, f"lost:{type(exc).__name__}")
            return None
        self.tally.answered(kind, answer.status)
        self.tally.first_bodies.setdefault(
            f"{kind} {answer.status}", answer.body[:160].decode("utf-8", "replace")
        )
        is_cap = answer.status == 503 and b"Too many connections" in answer.body
        self.tally.cap_refusals.append((int(time.monotonic() - self.started), is_cap))
        return answer

    def check_echo(self, kind: str, answer: Answer | None, sent_id: str) -> None:
        """A 200 from an answering function must echo the id sent, exactly once."""
        if answer is None or answer.status != 200:
            return
        if "X-Amz-Function-Error" in answer.headers:  # the Invoke API's function error: no echo
            self.tally.answered(f"{kind}:function_error", answer.status)
            return
        ids = {answer.headers.get("x-amzn-RequestId", "")}
        try:
            echo = json.loads(answer.body)
        except ValueError:
            echo = {}
        if not isinstance(echo, dict) or echo.get("id") != sent_id:
            self.tally.mismatched.append(f"{kind}: sent {sent_id}, got {answer.body[:200]!r}")
            return
        self.tally.saw_ids(ids | {str(echo.get("request_id", ""))})


# -- the traffic -------------------------------------------------------------------------------


@dataclass
class Run:
    clients: Clients
    deadline: float
    report_to: str  # where Event runs post their success (Recorder.event_ok_url)
    reloaded: asyncio.Event = field(default_factory=asyncio.Event)
    events_accepted: set[str] = field(default_factory=set)
    events_refused: Counter[str] = field(default_factory=Counter)
    health_ms: list[float] = field(default_factory=list)
    health_at_s: list[float] = field(default_factory=list)  # when each answer came
    health_status: Counter[str] = field(default_factory=Counter)
    login: Counter[str] = field(default_factory=Counter)
    # What a handler polling its own Runtime API's `next` got (the README: 400).
    runtime_api_next: Counter[str] = field(default_factory=Counter)
    marks: dict[str, float] = field(default_factory=dict)

    def running(self) -> bool:
        return time.monotonic() < self.deadline


def invoke_path(function: str) -> str:
    return f"/2015-03-31/functions/{function}/invocations"


async def route_traffic(run: Run) -> None:
    """GET and POST to the answering function's routes, and to the reload's new route."""
    while run.running():
        caller_id = str(uuid.uuid4())
        if run.reloaded.is_set() and random.random() < 0.2:
            kind, answer = (
                "route:added",
                await run.clients.request("route:added", "GET", f"/soak/added?id={caller_id}"),
            )
        elif random.random() < 0.5:
            kind, answer = (
                "route:echo",
                await run.clients.request("route:echo", "GET", f"/soak/echo?id={caller_id}"),
            )
        else:
            kind, answer = (
                "route:echo",
                await run.clients.request(
                    "route:echo", "POST", "/soak/echo", json={"id": caller_id}
                ),
            )
        run.clients.check_echo(kind, answer, caller_id)
        await pause_after(answer, 0.05)


async def invoke_traffic(run: Run) -> None:
    while run.running():
        caller_id = str(uuid.uuid4())
        answer = await run.clients.request(
            "invoke:echo", "POST", invoke_path("echo"),
            json={"id": caller_id}, headers={"x-api-key": API_KEY},
        )  # fmt: skip
        run.clients.check_echo("invoke:echo", answer, caller_id)
        await pause_after(answer, 0.05)


async def fault_traffic(run: Run, *, through: str) -> None:
    """The misbehaving functions in turn, by route or Invoke API; a 20 MB flood at most
    every 30 s per client (each one is 20 MB of logs for the gateway to ship)."""
    last_flood = 0.0
    while run.running():
        fault = random.choice(FAULTS)
        if fault == "flood" and time.monotonic() - last_flood < 30:
            continue
        last_flood = time.monotonic() if fault == "flood" else last_flood
        caller_id = str(uuid.uuid4())
        kind = f"{through}:{fault}"
        if through == "route":
            answer = await run.clients.request(kind, "GET", f"/soak/{fault}?id={caller_id}")
        else:
            answer = await run.clients.request(
                kind, "POST", invoke_path(fault),
                json={"id": caller_id}, headers={"x-api-key": API_KEY},
            )  # fmt: skip
        if fault in ("flood", "poll_next"):
            run.clients.check_echo(kind, answer, caller_id)
        if (
            fault == "poll_next"
            and answer is not None
            and answer.status == 200
            and ("X-Amz-Function-Error" not in answer.headers)
        ):
            next_status = json.loads(answer.body).get("next_status")
            run.runtime_api_next[str(next_status)] += 1
        await pause_after(answer, 0.2)


async def event_traffic(run: Run) -> None:
    """Event invocations, about five a second: 3 succeed, 1 always fails, 1 fails at random."""
    functions = ("event_ok", "event_ok", "event_ok", "event_fail", "event_flaky")
    while run.running():
        caller_id = str(uuid.uuid4())
        answer = await run.clients.request(
            "invoke:event", "POST", invoke_path(random.choice(functions)),
            json={"id": caller_id, "report_to": run.report_to},
            headers={"x-api-key": API_KEY, "X-Amz-Invocation-Type": "Event"},
        )  # fmt: skip
        if answer is not None and answer.status == 202:
            run.events_accepted.add(caller_id)
        elif answer is not None:
            run.events_refused[str(answer.status)] += 1
        await pause_after(answer, 0.2)


async def pause_after(answer: Answer | None, pause_s: float) -> None:
    """Honour Retry-After as a well-behaved client does (the connection cap sends 1 s)."""
    retry_after = answer.headers.get("Retry-After") if answer is not None else None
    await asyncio.sleep(float(retry_after) if retry_after else pause_s)


async def health_poll(run: Run) -> None:
    while run.running():
        started = time.perf_counter()
        answer = await run.clients.request("health", "GET", "/health")
        if answer is not None:
            run.health_ms.append((time.perf_counter() - started) * 1000)
            run.health_at_s.append(round(time.monotonic() - run.clients.started, 1))
            run.health_status[str(answer.status)] += 1
        await asyncio.sleep(max(0.0, 1 - (time.perf_counter() - started)))


async def password_guessing(run: Run, url: str) -> None:
    """Wrong passwords from 127.0.0.3 twice a second; a right login from 127.0.0.1 every
    10 s must still work (the throttle is per address)."""
    connector = aiohttp.TCPConnector(force_close=True, local_addr=(GUESSER_ADDRESS, 0))
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    headers = {"x-api-key": API_KEY}
    wrong = {"AuthParameters": {"USERNAME": "onpremise-user", "PASSWORD": "guess"}}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as guesser:
        for attempt in range(10**9):
            if not run.running():
                return
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with guesser.post(f"{url}/user/auth/ver1.0", json=wrong,
                                        headers=headers) as response:  # fmt: skip
                    retry = "with Retry-After" if "Retry-After" in response.headers else ""
                    run.login[f"guess {response.status} {retry}".strip()] += 1
            if attempt % 20 == 0:
                answer = await run.clients.request(
                    "login:right", "POST", "/user/auth/ver1.0", json=LOGIN, headers=headers
                )
                run.login[f"right {answer.status if answer else 'none'}"] += 1
            await asyncio.sleep(0.5)


# -- slow clients: a child process, so their churn does not slow the measuring loop ----------


async def slow_clients(port: int, count: int, source: str) -> dict[str, Any]:
    """``count`` connections from ``source`` sending part of a request's headers and then a
    header line every 2 s, never the end; each reconnects about 1 s after it is closed."""
    stats: Counter[str] = Counter()
    held = 0
    most_held = 0

    stop = asyncio.Event()

    async def one() -> None:
        nonlocal held, most_held
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, local_addr=(source, 0)
                )
            except OSError as exc:
                stats[f"connect failed: {type(exc).__name__}"] += 1
                await asyncio.sleep(1 + random.random())
                continue
            stats["connections"] += 1
            held += 1
            most_held = max(most_held, held)
            try:
                stats[await hold(reader, writer)] += 1
            finally:
                held -= 1
                writer.close()
            await asyncio.sleep(0.5 + random.random())

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for task in tasks:
        task.cancel()
    # Bounded: a cancellation lost in a race must not keep the report from being printed.
    await asyncio.wait(tasks, timeout=5)
    return {"clients": count, "source_address": source, "most_open_at_once": most_held, **stats}


async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
    """Dribble headers until the gateway closes the connection; what it answered."""
    try:
        writer.write(b"GET /soak/echo HTTP/1.1\r\nHost: soak\r\n")
        while True:
            try:
                async with asyncio.timeout(2):
                    first = await reader.read(64)
            except TimeoutError:
                writer.write(b"X-Slow: 1\r\n")
                continue
            status = first.split(b" ", 2)[1].decode() if first.startswith(b"HTTP/") else ""
            return f"answered {status}" if status else "closed without an answer"
    except OSError as exc:
        return f"dropped: {type(exc).__name__}"


@asynccontextmanager
async def slow_client_process(port: int, count: int) -> AsyncIterator[dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--slow-clients", str(count), "--port", str(port),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    result: dict[str, Any] = {}
    try:
        yield result
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
            result.update(json.loads(out or b"{}"))
        except TimeoutError:
            process.kill()
            await process.wait()
            result["error"] = "the slow-client process did not stop within 60 s: killed"


# -- the gateway and what it stores ----------------------------------------------------------


class Recorder:
    """What the soak hears besides answers: on 127.0.0.1, a stand-in for VictoriaLogs'
    ``/insert/jsonline`` keeping the ids in successful Event runs' log lines
    (``soak-event-ok <id>``) and a count of bytes; on the functions' network (its gateway
    address, where the sandboxes reach the Runtime API too), ``/event-ok``, where each
    successful Event run posts its id itself."""

    def __init__(self) -> None:
        self.event_ok: Counter[str] = Counter()  # from the functions' own reports
        self.event_ok_logged: Counter[str] = Counter()  # from their shipped log lines
        self.bytes = 0
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.event_ok_url = ""

    async def start(self) -> None:
        routes = {"/insert/jsonline": self.insert, "/event-ok": self.report}
        self.runner, self.url = await serve_posts(routes)

    async def listen_on(self, network: str) -> None:
        """Take reports on ``network``'s gateway address, which its containers can reach."""
        assert self.runner is not None
        async with aiodocker.Docker() as docker:
            config = (await (await docker.networks.get(network)).show())["IPAM"]["Config"]
        address = next(c["Gateway"] for c in config if "." in c.get("Gateway", ""))
        port = free_port()
        await web.TCPSite(self.runner, address, port).start()
        self.event_ok_url = f"http://{address}:{port}/event-ok"

    async def insert(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bytes += len(body)
        self.event_ok_logged.update(m.decode() for m in EVENT_OK_MARK.findall(body))
        return web.Response(status=204)

    async def report(self, request: web.Request) -> web.Response:
        self.event_ok[(await request.json())["id"]] += 1
        return web.Response(status=204)

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@dataclass
class Gateway:
    url: str
    pid: int
    data_dir: Path
    routing: Path
    log_path: Path


@asynccontextmanager
async def gateway_process(stack: str, work: Path, logs_url: str) -> AsyncIterator[Gateway]:
    """``edgelambda serve`` as its own process, with the soak's settings."""
    port = free_port()
    routing_path = HERE / f".routing-{stack}.yaml"  # code: must be beside the routing file
    routing_path.write_text(routing(reloaded=False))
    env = serve_env(
        routing_path,
        port=port,
        stack=stack,
        network=f"edgelambda-{stack}",
        EDGELAMBDA_DATA_DIR=str(work / "data"),
        EDGELAMBDA_QUEUE_WAIT_S=str(QUEUE_WAIT_S),
        EDGELAMBDA_INIT_TIMEOUT_S=str(INIT_TIMEOUT_S),
        EDGELAMBDA_EVENT_RETRY_DELAYS_S="1,2",
        EDGELAMBDA_EVENT_MAX_AGE_S="60",
        EDGELAMBDA_VICTORIALOGS_URL=logs_url,
    )
    log_path = work / "gateway.log"
    process = await start_serve(env, log_path, mode="w")
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, process, timeout_s=60)
        yield Gateway(url, process.pid, work / "data", routing_path, log_path)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=60)
            except TimeoutError:
                process.kill()
                await process.wait()
        routing_path.unlink(missing_ok=True)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def stored_events(data_dir: Path) -> tuple[set[str], set[str]]:
    """Ids (from the payloads) still in the event store, and dead-lettered."""
    path = data_dir / "events.sqlite3"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        queued = {payload_id(row[0]) for row in db.execute("SELECT payload FROM events")}
        dead = {payload_id(row[0]) for row in db.execute("SELECT payload FROM dead_letters")}
    return queued, dead


def payload_id(payload: bytes) -> str:
    return str(json.loads(payload).get("id"))


async def drain_events(gateway: Gateway) -> tuple[set[str], set[str]]:
    """Wait (bounded) until no Event invocation is stored as queued or running."""
    deadline = time.monotonic() + EVENT_DRAIN_S
    while True:
        queued, dead = await asyncio.to_thread(stored_events, gateway.data_dir)
        if not queued or time.monotonic() > deadline:
            return queued, dead
        await asyncio.sleep(1)


async def scrape_metrics(url: str) -> dict[str, float]:
    wanted = ("edgelambda_log_records_dropped", "edgelambda_invocations_total")
    found: dict[str, float] = {}
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.get(f"{url}/metrics") as response,
        ):
            text = await response.text()
        for line in text.splitlines():
            if line.startswith(wanted):
                name, value = line.rsplit(" ", 1)
                found[name] = float(value)
    return found


# -- the scenario in the middle ----------------------------------------------------------------


def other_pytests() -> list[str]:
    found = subprocess.run(["pgrep", "-f", "pytest"], capture_output=True, text=True)
    return found.stdout.split()


async def until_no_pytest(run: Run, latest: float) -> list[str]:
    """Other engineers' Docker tests die with the engine: wait for a moment when none runs
    (until ``latest``); the pytest processes still running then."""
    while True:
        others = other_pytests()
        if not others or time.monotonic() >= latest:
            return others
        await asyncio.sleep(2)


def restart_engine() -> float:
    """SIGTERM dockerd, wait for it to go, start it again as scripts/ensure-engine.sh does;
    the seconds until it answered."""
    started = time.monotonic()
    subprocess.run(["pkill", "-TERM", "-x", "dockerd"], check=True)
    while subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True).returncode == 0:
        if time.monotonic() - started > 60:
            raise RuntimeError("dockerd did not stop within 60 s")
        time.sleep(0.1)
    subprocess.run(["bash", str(REPO / "scripts" / "ensure-engine.sh")], check=True)
    return round(time.monotonic() - started, 1)


async def until_echo_answers(run: Run) -> float:
    """Seconds until the answering function answers 200 again (bounded by the run)."""
    started = time.monotonic()
    while run.running():
        caller_id = str(uuid.uuid4())
        answer = await run.clients.request("probe", "GET", f"/soak/echo?id={caller_id}")
        if answer is not None and answer.status == 200:
            return round(time.monotonic() - started, 1)
        await asyncio.sleep(0.5)
    return -1.0


async def scenario(run: Run, gateway: Gateway, *, engine_restart: bool) -> dict[str, Any]:
    """A routing reload at 40% of the run, an engine restart at 50%."""
    total = run.deadline - time.monotonic()
    result: dict[str, Any] = {}
    await asyncio.sleep(total * 0.4)
    gateway.routing.write_text(routing(reloaded=True))
    log("routing file rewritten: route /soak/added, echo's memory 128 -> 160 MB")
    result["reload_answered_after_s"] = await until_added_route(run)
    run.reloaded.set()
    await asyncio.sleep(max(0.0, run.deadline - total * 0.5 - time.monotonic()))
    if not engine_restart:
        result["engine_restart"] = "not asked for (--no-engine-restart)"
        return result
    others = await until_no_pytest(run, latest=run.deadline - total * 0.3)
    if others:
        result["engine_restart"] = f"skipped: pytest processes running ({', '.join(others)})"
        log(result["engine_restart"])
        return result
    log("engine restart: SIGTERM dockerd")
    run.marks["engine_restart"] = time.monotonic()
    result["engine_down_and_up_s"] = await asyncio.to_thread(restart_engine)
    log(f"engine answers again after {result['engine_down_and_up_s']} s")
    result["echo_answered_200_after_engine_up_s"] = await until_echo_answers(run)
    log(f"traffic recovered {result['echo_answered_200_after_engine_up_s']} s later")
    return result


async def until_added_route(run: Run) -> float:
    started = time.monotonic()
    while run.running():
        answer = await run.clients.request("probe", "GET", f"/soak/added?id={uuid.uuid4()}")
        if answer is not None and answer.status == 200:
            log(f"reload: the new route answered after {time.monotonic() - started:.1f} s")
            return round(time.monotonic() - started, 1)
        await asyncio.sleep(0.5)
    return -1.0


# -- the report --------------------------------------------------------------------------------


def lockout(tally: Tally) -> dict[str, Any]:
    """Seconds in which every legitimate request was refused by the connection cap."""
    per_second: dict[int, list[bool]] = {}
    for second, was_refused in tally.cap_refusals:
        per_second.setdefault(second, []).append(was_refused)
    locked = sorted(s for s, flags in per_second.items() if all(flags))
    longest = run_length = 0
    for index, second in enumerate(locked):
        run_length = run_length + 1 if index and locked[index - 1] == second - 1 else 1
        longest = max(longest, run_length)
    refused = sum(1 for _, flag in tally.cap_refusals if flag)
    return {
        "legit_requests_refused_by_connection_cap_503": refused,
        "legit_requests_answered": len(tally.cap_refusals),
        "seconds_with_traffic": len(per_second),
        "seconds_fully_locked_out": len(locked),
        "longest_lockout_s": longest,
    }


def event_report(run: Run, recorder: Recorder, queued: set[str], dead: set[str]) -> dict[str, Any]:
    accepted = run.events_accepted
    ran_ok = set(recorder.event_ok) & accepted
    acked = ran_ok - dead - queued
    lost = accepted - acked - dead - queued
    return {
        "accepted_202": len(accepted),
        "refused": dict(run.events_refused),
        "acked": len(acked),
        "dead_lettered": len(dead & accepted),
        "still_stored": len(queued & accepted),
        "lost": len(lost),
        "lost_ids": sorted(lost)[:20],
        "successful_runs_seen_more_than_once": sum(1 for i in ran_ok if recorder.event_ok[i] > 1),
        # Runs that reported success but whose log line never reached the log store.
        "success_log_lines_missing": len(ran_ok - set(recorder.event_ok_logged)),
    }


def budgets(start: dict[str, float], end: dict[str, float], health_p99_ms: float) -> dict[str, Any]:
    return {
        f"rss_end_le_start_plus_{BUDGET_RSS_GROWTH_MB}_mb": (
            end["rss_mb"] <= start["rss_mb"] + BUDGET_RSS_GROWTH_MB
        ),
        f"fds_end_le_start_plus_{BUDGET_FDS_GROWTH}": (
            end["open_fds"] <= start["open_fds"] + BUDGET_FDS_GROWTH
        ),
        f"health_p99_le_{BUDGET_HEALTH_P99_MS}_ms": health_p99_ms <= BUDGET_HEALTH_P99_MS,
    }


def process_usage(pid: int) -> dict[str, float]:
    return {"rss_mb": rss_mb(pid), "open_fds": open_fds(pid)}


# -- the run -----------------------------------------------------------------------------------


async def soak(minutes: float, slow_count: int, *, engine_restart: bool) -> dict[str, Any]:
    stack = f"soak-{uuid.uuid4().hex[:8]}"
    recorder = Recorder()
    await recorder.start()
    work = Path(tempfile.mkdtemp(prefix=f"edgelambda-{stack}-"))
    try:
        async with gateway_process(stack, work, recorder.url) as gateway:
            log(f"gateway pid {gateway.pid} at {gateway.url}, log {gateway.log_path}")
            await recorder.listen_on(f"edgelambda-{stack}")
            report = await drive(gateway, recorder, minutes, slow_count, engine_restart)
    finally:
        await recorder.close()
        await cleanup(f"edgelambda-{stack}", stack)
    report["gateway_log"] = str(work / "gateway.log")  # kept for the post-mortem
    return report


async def drive(
    gateway: Gateway, recorder: Recorder, minutes: float, slow_count: int,
    engine_restart: bool,
) -> dict[str, Any]:  # fmt: skip
    tally = Tally()
    started = time.monotonic()
    clients = Clients(gateway.url, tally, started)
    run = Run(clients, deadline=started + minutes * 60, report_to=recorder.event_ok_url)
    usage_start = process_usage(gateway.pid)
    try:
        async with slow_client_process(int(gateway.url.rsplit(":", 1)[1]), slow_count) as slow:
            workers = [
                *(route_traffic(run) for _ in range(3)),
                *(invoke_traffic(run) for _ in range(2)),
                fault_traffic(run, through="route"),
                fault_traffic(run, through="invoke"),
                event_traffic(run),
                health_poll(run),
                password_guessing(run, gateway.url),
                progress(run),
            ]
            middle = asyncio.create_task(scenario(run, gateway, engine_restart=engine_restart))
            await asyncio.gather(*workers)
            middle_result = await middle
            log("traffic stopped; waiting for the slow clients to go")
        log("draining Event invocations")
        queued, dead = await drain_events(gateway)
        await asyncio.sleep(5)  # closed connections and finished containers settle
        usage_end = process_usage(gateway.pid)
        metrics = await scrape_metrics(gateway.url)
    finally:
        await clients.close()
    return assemble(
        run, tally, recorder, slow, middle_result, (queued, dead), (usage_start, usage_end),
        metrics, time.monotonic() - started,
    )  # fmt: skip


def assemble(
    run: Run, tally: Tally, recorder: Recorder, slow: dict[str, Any],
    middle: dict[str, Any], stored: tuple[set[str], set[str]],
    usage: tuple[dict[str, float], dict[str, float]], metrics: dict[str, float],
    wall_s: float,
) -> dict[str, Any]:  # fmt: skip
    events = event_report(run, recorder, *stored)
    health = sorted(run.health_ms)
    health_p99 = round(percentile(health, 0.99), 1) if health else -1.0
    checks = budgets(*usage, health_p99)
    must_be_zero = {
        "lost": len(tally.lost),
        "answered_twice_or_mismatched": len(tally.doubled) + len(tally.mismatched),
        "events_lost": events["lost"],
    }
    is_ok = not any(must_be_zero.values()) and all(checks.values())
    return {
        "ok": is_ok,
        "duration_s": round(wall_s, 1),
        "requests_sent": tally.sent,
        "answered_by_status": dict(sorted(tally.by_status.items())),
        **must_be_zero,
        "lost_examples": tally.lost[:10],
        "answered_twice_examples": (tally.doubled + tally.mismatched)[:10],
        "not_sent_connect_failed": dict(tally.not_sent),
        "by_kind": {k: dict(sorted(v.items())) for k, v in sorted(tally.by_kind.items())},
        "first_body_by_kind_and_status": {
            k: v for k, v in sorted(tally.first_bodies.items()) if not k.endswith(" 200")
        },
        "events": events,
        "health": {
            "polls": sum(run.health_status.values()),
            "by_status": dict(run.health_status),
            "p50_ms": round(percentile(health, 0.5), 1) if health else -1.0,
            "p99_ms": health_p99,
            "slowest": [  # [seconds into the run, ms], for the post-mortem
                [at_s, round(ms, 1)]
                for ms, at_s in sorted(zip(run.health_ms, run.health_at_s, strict=True))[-3:]
            ],
        },
        "slow_clients": slow,
        "connection_cap_effect_on_legit_clients": lockout(tally),
        "login": dict(run.login),
        "poll_next_handler_got_from_runtime_api": dict(run.runtime_api_next),
        "middle": middle,
        "gateway": {"start": usage[0], "end": usage[1]},
        "gateway_metrics_end": metrics,
        "log_bytes_shipped": recorder.bytes,
        "budgets": checks,
    }


async def progress(run: Run) -> None:
    while run.running():
        await asyncio.sleep(30)
        tally = run.clients.tally
        log(
            f"{tally.sent} sent, {dict(tally.by_status)}, events accepted "
            f"{len(run.events_accepted)}, lost {len(tally.lost)}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float,
                        default=float(os.environ.get("SOAK_MINUTES", "10")))  # fmt: skip
    parser.add_argument("--slow-clients", type=int, default=1500)
    parser.add_argument("--no-engine-restart", action="store_true")
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1,500 sockets and more
    if args.port is not None:
        stats = asyncio.run(slow_clients(args.port, args.slow_clients, SLOW_ADDRESS))
        print(json.dumps(stats))
        return 0
    report = asyncio.run(
        soak(args.minutes, args.slow_clients, engine_restart=not args.no_engine_restart)
    )
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
