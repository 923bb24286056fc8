"""What every section of `make bench` shares: the run (its files, stack label and scale
counts, the gateways it starts), the reference function's endpoints and the routing files
that serve them, and the requests the sections make."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from harness import (
    ContainerCount,
    Gateway,
    cleanup,
    container_counter,
    free_port,
    gateway_process,
    serve_env,
)
from perf_reference import PerfReference

from edgelambda.routing import FunctionSpec
from edgelambda.routing_file import parse_routing

CONTAINERS_PER_FUNCTION = 10
WARM_UP_ROUNDS = 10
WARM_UP_PAUSE_S = 1.0
SCALE_ROUTES = (10, 1000)
SCALE_CONTAINERS_SETTING = "EDGELAMBDA_BENCH_SCALE_CONTAINERS"
SCALE_FUNCTIONS_SETTING = "EDGELAMBDA_BENCH_SCALE_FUNCTIONS"
BASE_CONTAINERS = 10  # what the scaled container count is compared with
ACCEPTANCE_CONTAINERS = 300  # issue 14's counts, the defaults
ACCEPTANCE_FUNCTIONS = 50
CONTAINERS_PER_SCALED_FUNCTION = 2
# How long each request of a burst holds its container: long enough that the burst's last
# request arrives before its first container is free again.
CONTAINER_HOLD_S = 5.0
FUNCTION_HOLD_S = 3.0
# The ten cold requests' sleep: long enough that the first container up cannot take a second
# request before the tenth is up (ten bare starts at once take about 2 s on two cores).
TEN_COLD_SLEEP_S = 3.0
CODE_DIR = "fn"
AUTH_PATH = "/user/auth/ver1.0"
API_KEY = "bench-api-key"
USER, PASSWORD = "bench-user", "bench-pass"


@dataclass(frozen=True)
class Endpoint:
    """One of the reference function's handlers, and the route that serves it."""

    function: str
    handler: str
    method: str
    path: str
    query: str = ""

    @property
    def target(self) -> str:
        return self.path + self.query


HELLO = Endpoint("hello", "app.handler", "GET", "/hello")
ECHO = Endpoint("echo", "app.echo", "POST", "/echo")
SLEEP = Endpoint("sleep", "app.sleep", "GET", "/sleep", "?s=1")
TEN_COLD_SLEEP = Endpoint("sleep", "app.sleep", "GET", "/sleep", f"?s={TEN_COLD_SLEEP_S}")
ENDPOINTS = (HELLO, ECHO, SLEEP)
# The container scale's one function runs the reference's sleep handler: ``?s=0`` answers at
# once (the requests measured), a longer sleep holds a container (the bursts that start them).
SCALED = Endpoint("hello", "app.sleep", "GET", "/hello", "?s=0")
SCALED_HOLD = Endpoint("hello", "app.sleep", "GET", "/hello", f"?s={CONTAINER_HOLD_S}")


def held_functions(count: int) -> tuple[Endpoint, ...]:
    """``count`` functions of the same code, a route each, called with a sleep that holds
    their containers."""
    return tuple(
        Endpoint(f"f{i}", "app.sleep", "GET", f"/f{i}", f"?s={FUNCTION_HOLD_S}")
        for i in range(count)
    )


def document_of(
    endpoints: tuple[Endpoint, ...], max_concurrency: int, auth: str = "none"
) -> dict[str, Any]:
    """A routing file with a function and a route per endpoint (JSON is YAML)."""
    functions = {
        e.function: {"handler": e.handler, "code": CODE_DIR, "max_concurrency": max_concurrency}
        for e in endpoints
    }
    routes = [
        {"path": e.path, "method": e.method, "function": e.function, "auth": auth}
        for e in endpoints
    ]
    return {"functions": functions, "routes": routes}


def routing_document(*, auth: str = "none", routes: int = len(ENDPOINTS)) -> dict[str, Any]:
    """The gateway's routing file for the reference function: its three routes, and up to
    ``routes`` in all with extra ones to ``hello``."""
    document = document_of(ENDPOINTS, CONTAINERS_PER_FUNCTION, auth)
    extra = [
        {"path": extra_path(i), "method": "GET", "function": HELLO.function, "auth": "none"}
        for i in range(routes - len(ENDPOINTS))
    ]
    return {**document, "routes": document["routes"] + extra}


def extra_path(index: int) -> str:
    # Literal, parameter and greedy shapes, as a real table has; none matches the three paths.
    return (f"/r{index}", f"/r{index}/items/{{id}}", f"/r{index}/{{proxy+}}")[index % 3]


def network_of(stack: str) -> str:
    return f"edgelambda-{stack}"


async def remove_stacks(*stacks: str) -> None:
    """Every container labelled with one of ``stacks``, and their networks."""
    for label in stacks:
        await cleanup(network_of(label), label)


@dataclass(frozen=True)
class ScaleCounts:
    """The counts of the container and function scale sections: the acceptance's unless
    development asks for fewer."""

    containers: int = ACCEPTANCE_CONTAINERS
    functions: int = ACCEPTANCE_FUNCTIONS

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ScaleCounts:
        return cls(
            containers=_count(env, SCALE_CONTAINERS_SETTING, cls.containers),
            functions=_count(env, SCALE_FUNCTIONS_SETTING, cls.functions),
        )

    def note(self) -> str:
        return (
            f"containers: one function with {self.containers} live containers against one"
            f" with {BASE_CONTAINERS} ({SCALE_CONTAINERS_SETTING}); functions:"
            f" {self.functions} functions with {CONTAINERS_PER_SCALED_FUNCTION} live"
            f" containers each ({SCALE_FUNCTIONS_SETTING}); the acceptance's counts are"
            f" {ACCEPTANCE_CONTAINERS} and {ACCEPTANCE_FUNCTIONS}; a gateway short of its"
            " live containers (live_containers < wanted_containers) leaves its target unjudged"
        )


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise SystemExit(f"make bench: {name} must be a positive whole number, not {text!r}")
    return int(text)


@dataclass(frozen=True)
class BenchRun:
    """One run's files (``work``: routing files beside the function's code, the gateways'
    data and logs), the stack label of the containers it makes and the scale counts."""

    perf: PerfReference
    work: Path
    stack: str
    counts: ScaleCounts

    @property
    def routing_dir(self) -> Path:
        return self.work / "routing"

    @property
    def scale_stacks(self) -> tuple[str, ...]:
        # Two gateways run at once there, each with its own label and network.
        return tuple(f"{self.stack}-routes{n}" for n in SCALE_ROUTES)

    @property
    def container_stacks(self) -> tuple[str, ...]:
        return (f"{self.stack}-containers-base", f"{self.stack}-containers-scaled")

    @property
    def functions_stack(self) -> str:
        return f"{self.stack}-functions"

    @property
    def jwt_stack(self) -> str:
        # Up beside the plain gateway: a gateway removes its stack's containers at start.
        return f"{self.stack}-jwt"

    @property
    def console_stacks(self) -> tuple[str, str]:
        """The console's page-load gateway and its load gateway."""
        return (f"{self.stack}-console", f"{self.stack}-console-load")

    @property
    def all_stacks(self) -> tuple[str, ...]:
        return (
            self.stack,
            self.jwt_stack,
            *self.scale_stacks,
            *self.container_stacks,
            self.functions_stack,
            *self.console_stacks,
        )

    def function(self, name: str) -> FunctionSpec:
        table = parse_routing(
            json.dumps(routing_document()), source="bench", base_dir=self.routing_dir
        )
        return table.functions[name]

    def gateway(
        self, name: str, document: dict[str, Any], stack: str = "", **settings: str
    ) -> AbstractAsyncContextManager[Gateway]:
        """``edgelambda serve`` with ``document`` as its routing file, healthy."""
        routing = self.routing_dir / f"{name}.yaml"
        routing.write_text(json.dumps(document))
        stack = stack or self.stack
        env = serve_env(
            routing,
            port=free_port(),
            stack=stack,
            network=network_of(stack),
            EDGELAMBDA_DATA_DIR=str(self.work / f"data-{name}"),
            # Ten cold starts beside other work can take long on two cores; ``settings`` may
            # ask for longer still.
            **{"EDGELAMBDA_INIT_TIMEOUT_S": "60", "EDGELAMBDA_QUEUE_WAIT_S": "120", **settings},
        )
        return gateway_process(env, self.work / f"{name}.log")


# -- requests --------------------------------------------------------------------------------


def client_session(limit: int = 128, timeout_s: float = 300.0) -> aiohttp.ClientSession:
    """At most ``limit`` connections at once; a request may take ``timeout_s``."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit),
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    )


async def call(
    session: aiohttp.ClientSession,
    url: str,
    endpoint: Endpoint,
    headers: dict[str, str] | None = None,
) -> float:
    """Seconds one request took; anything but 200 is an error."""
    body = b"warm-up" if endpoint.method == "POST" else None
    started = time.perf_counter()
    async with session.request(
        endpoint.method, url + endpoint.target, data=body, headers=headers
    ) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{endpoint.method} {endpoint.target}: HTTP {response.status}")
    return time.perf_counter() - started


async def burst(
    session: aiohttp.ClientSession,
    url: str,
    endpoints: tuple[Endpoint, ...],
    clients: int,
    headers: dict[str, str] | None = None,
) -> None:
    """``clients`` simultaneous requests to each endpoint; the first failure is raised once
    every request has been answered."""
    failures = await tolerant_burst(session, url, endpoints, clients, headers)
    if failures:
        raise failures[0]


async def tolerant_burst(
    session: aiohttp.ClientSession,
    url: str,
    endpoints: tuple[Endpoint, ...],
    clients: int,
    headers: dict[str, str] | None = None,
) -> list[Exception]:
    """``clients`` simultaneous requests to each endpoint, every one answered; the failures."""
    results = await asyncio.gather(
        *(call(session, url, e, headers) for e in endpoints for _ in range(clients)),
        return_exceptions=True,
    )
    return [result for result in results if isinstance(result, Exception)]


async def warm_up(
    session: aiohttp.ClientSession,
    url: str,
    endpoints: tuple[Endpoint, ...] = ENDPOINTS,
    *,
    headers: dict[str, str] | None = None,
    counters: dict[str, ContainerCount] | None = None,
) -> dict[str, int]:
    """The same warm-up on every side: ten simultaneous requests to each endpoint; then,
    where containers can be counted, bursts until each function has ten running (bounded).
    The counts reached."""
    await burst(session, url, endpoints, CONTAINERS_PER_FUNCTION, headers)
    if counters is None:
        return {}
    counts = {e.function: await counters[e.function]() for e in endpoints}
    for _ in range(WARM_UP_ROUNDS):
        short = tuple(e for e in endpoints if counts[e.function] < CONTAINERS_PER_FUNCTION)
        if not short:
            break
        await burst(session, url, short, 2 * CONTAINERS_PER_FUNCTION, headers)
        # A burst of quick requests is over in milliseconds: the containers it started need
        # a moment before they count.
        await asyncio.sleep(WARM_UP_PAUSE_S)
        counts = {e.function: await counters[e.function]() for e in endpoints}
    return counts


def counters_of(docker: aiodocker.Docker, stack: str) -> dict[str, ContainerCount]:
    return {e.function: container_counter(docker, stack, e.function) for e in ENDPOINTS}


async def login(session: aiohttp.ClientSession, url: str) -> str:
    """A JWT from the gateway's auth endpoint, as the original client logs in."""
    body = {"AuthParameters": {"USERNAME": USER, "PASSWORD": PASSWORD}}
    headers = {"x-api-key": API_KEY}
    async with session.post(url + AUTH_PATH, json=body, headers=headers) as response:
        if response.status != 200:
            raise RuntimeError(f"login: HTTP {response.status}")
        answer = await response.json(content_type=None)
    token: str = answer["AuthenticationResult"]["IdToken"]
    return token


async def container_states(session: aiohttp.ClientSession, url: str) -> dict[str, int]:
    """``/health``'s containers by state."""
    async with session.get(f"{url}/health") as response:
        states: dict[str, int] = (await response.json())["containers"]
    return states
