"""`make bench`: the gateway's costs against the raw costs they are built on, measured side
by side in one run and printed as one JSON report with ratios.

Raw (no edgelambda code on the path): container create + start + runtime ready, timed with
bare aiodocker calls and a minimal Runtime API server; and a warm Runtime API round trip
through that minimal server. Gateway: `edgelambda serve` as a separate process, driven over
HTTP on 127.0.0.1: cold first request, warm restart after an idle stop, warm sequential
p50/p99, throughput with 1/8/32 clients, 10 concurrent 1 s sleeps with max_concurrency 10
vs 1, and the gateway's RSS. The warm round trips, raw and through the gateway, are measured
in alternating rounds while both containers are up, so that the machine's load weighs on
both alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from aiohttp import web

from edgelambda.containers import LABEL_STACK, container_spec
from edgelambda.docker_backend import DockerBackend, engine_config
from edgelambda.routing_file import parse_routing

HERE = Path(__file__).parent
BASE_IMAGE = os.environ.get("EDGELAMBDA_BENCH_BASE_IMAGE", "edgelambda/runtime-python:local")
WARM_REQUESTS = int(os.environ.get("EDGELAMBDA_BENCH_WARM_REQUESTS", "1000"))
SIDE_BY_SIDE_ROUNDS = 10
COLD_SAMPLES = 5
THROUGHPUT_S = 3.0
WARM_UP_ROUNDS = 15
EVENT = json.dumps({"path": "/bench", "httpMethod": "GET"}).encode()

ROUTING = {
    "functions": {
        "trivial": {"handler": "app.trivial", "code": "functions/bench", "max_concurrency": 32},
        "idle": {"handler": "app.trivial", "code": "functions/bench", "idle_timeout": 1},
        "sleep10": {"handler": "app.sleep", "code": "functions/bench", "max_concurrency": 10},
        "sleep1": {"handler": "app.sleep", "code": "functions/bench", "max_concurrency": 1},
    },
    "routes": [
        {"path": f"/{name}", "method": "GET", "function": name, "auth": "none"}
        for name in ("trivial", "idle", "sleep10", "sleep1")
    ],
}


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def p50_p99(samples: list[float]) -> dict[str, Any]:
    return {
        "p50": ms(percentile(samples, 0.5)),
        "p99": ms(percentile(samples, 0.99)),
        "n": len(samples),
    }


# -- raw: bare aiodocker and a minimal Runtime API ------------------------------------------


class MinimalRuntimeApi:
    """The least a Runtime API can do: hand out events from a queue, collect responses."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple[str, asyncio.Future[bytes]]] = asyncio.Queue()
        self.pending: dict[str, asyncio.Future[bytes]] = {}
        self.first_poll: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/2018-06-01/runtime/invocation/next", self.next)
        app.router.add_post("/2018-06-01/runtime/invocation/{id}/response", self.response)
        return app

    async def next(self, request: web.Request) -> web.Response:
        if not self.first_poll.done():
            self.first_poll.set_result(time.perf_counter())
        request_id, future = await self.events.get()
        self.pending[request_id] = future
        headers = {
            "Lambda-Runtime-Aws-Request-Id": request_id,
            "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 30_000),
            "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:0:function:raw",
        }
        return web.Response(body=EVENT, headers=headers, content_type="application/json")

    async def response(self, request: web.Request) -> web.Response:
        self.pending.pop(request.match_info["id"]).set_result(await request.read())
        return web.json_response({"status": "OK"}, status=202)

    async def invoke(self) -> bytes:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        await self.events.put((str(uuid.uuid4()), future))
        return await future


@asynccontextmanager
async def raw_runtime(
    backend: DockerBackend, docker: aiodocker.Docker, network: str, stack: str
) -> AsyncIterator[tuple[MinimalRuntimeApi, float]]:
    """A container of the bench function polling a minimal Runtime API, and the seconds its
    create + start + first poll took (the container configuration is the gateway's own, for a
    like-for-like comparison). Removed on exit."""
    host = await backend.network_gateway(network)
    table = parse_routing(json.dumps(ROUTING), source="bench", base_dir=HERE)
    function = table.functions["trivial"]
    image = await backend.function_image(function, BASE_IMAGE)
    api = MinimalRuntimeApi()
    runner = web.AppRunner(
        api.app(), access_log=None, shutdown_timeout=0.5, handler_cancellation=True
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, 0)
        await site.start()
        spec = container_spec(
            function,
            image=image,
            instance=uuid.uuid4().hex,
            stack=stack,
            network=network,
            runtime_api=f"{host}:{runner.addresses[0][1]}",
            region="us-east-1",
            host_cpus=os.cpu_count() or 1,
        )
        started = time.perf_counter()
        container = await docker.containers.create(engine_config(spec), name=spec.name)
        try:
            await container.start()
            ready = await asyncio.wait_for(api.first_poll, timeout=30)
            yield api, ready - started
        finally:
            await container.delete(force=True)
    finally:
        await runner.cleanup()


async def raw_create_start_ready(network: str, stack: str) -> dict[str, Any]:
    """Create + start + runtime ready with no edgelambda code on the path."""
    backend = await DockerBackend.connect()
    docker = aiodocker.Docker()
    try:
        samples = []
        for _ in range(COLD_SAMPLES):
            async with raw_runtime(backend, docker, network, stack) as (_, ready_s):
                samples.append(ready_s)
        return {"create_start_ready_ms": summary(samples)}
    finally:
        await docker.close()
        await backend.close()


async def timed_invoke(api: MinimalRuntimeApi) -> float:
    started = time.perf_counter()
    await api.invoke()
    return time.perf_counter() - started


async def side_by_side(
    session: aiohttp.ClientSession, url: str, network: str, stack: str
) -> tuple[list[float], list[float]]:
    """Warm round trips through the minimal Runtime API and through the gateway, in
    alternating rounds, so that the machine's drifting load weighs on both alike."""
    backend = await DockerBackend.connect()
    docker = aiodocker.Docker()
    raw: list[float] = []
    gateway: list[float] = []
    try:
        async with raw_runtime(backend, docker, network, stack) as (api, _):
            for _ in range(50):  # warm up both
                await api.invoke()
                await timed_get(session, url)
            for _ in range(SIDE_BY_SIDE_ROUNDS):
                raw += [await timed_invoke(api) for _ in range(per_round())]
                gateway += [await timed_get(session, url) for _ in range(per_round())]
    finally:
        await docker.close()
        await backend.close()
    return raw, gateway


def per_round() -> int:
    return max(1, WARM_REQUESTS // SIDE_BY_SIDE_ROUNDS)


# -- the gateway, as a separate process ----------------------------------------------------


def gateway_log(stack: str) -> Path:
    # Outside the watched routing directory, so the gateway's own writes do not wake it.
    return Path(tempfile.gettempdir()) / f"edgelambda-{stack}-gateway.log"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_env(
    routing: Path, *, port: int, stack: str, network: str, **settings: str
) -> dict[str, str]:
    """The environment of a benchmark's ``edgelambda serve``: on 127.0.0.1, with its own stack
    and network, the runtime base image and JSON logs; ``settings`` on top."""
    return {
        **os.environ,
        "ROUTING_CONFIG_PATH": str(routing),
        "EDGELAMBDA_HOST": "127.0.0.1",
        "EDGELAMBDA_PORT": str(port),
        "EDGELAMBDA_RUNTIME_API_PORT": "0",
        "DOCKER_NETWORK": network,
        "EDGELAMBDA_STACK": stack,
        "EDGELAMBDA_RUNTIME_IMAGES": f"python3.12={BASE_IMAGE}",
        "EDGELAMBDA_LOG_FORMAT": "json",
        **settings,
    }


async def start_serve(
    env: dict[str, str], log_path: Path, *, mode: str = "a"
) -> asyncio.subprocess.Process:
    """``edgelambda serve`` as its own process, its output in ``log_path``."""
    with log_path.open(mode) as log_file:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edgelambda", "serve",
            env=env, stdout=log_file, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip


@asynccontextmanager
async def gateway_process(
    routing: Path, network: str, stack: str
) -> AsyncIterator[tuple[str, int]]:
    port = free_port()
    env = serve_env(
        routing,
        port=port,
        stack=stack,
        network=network,
        EDGELAMBDA_REAP_INTERVAL_S="0.2",
        # Ten cold starts beside 32 warm containers can take long on two cores.
        EDGELAMBDA_QUEUE_WAIT_S="120",
        EDGELAMBDA_INIT_TIMEOUT_S="60",
    )
    # Appended and kept on failure, for the post-mortem.
    process = await start_serve(env, gateway_log(stack))
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, process)
        yield url, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=30)


async def wait_healthy(
    url: str, process: asyncio.subprocess.Process, timeout_s: float = 15.0
) -> None:
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise RuntimeError("the gateway exited during start-up")
            try:
                async with session.get(f"{url}/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("the gateway did not become healthy")


async def timed_get(session: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with session.get(url) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}")
    return time.perf_counter() - started


async def throughput(
    session: aiohttp.ClientSession, url: str, clients: int, count_containers: Counter
) -> float:
    """Requests per second with ``clients`` concurrent clients for THROUGHPUT_S, after a
    warm-up that lasts until the pool has a container per client or has stopped growing
    for two rounds (bounded): cold starts under load take longer than one round."""
    history: list[int] = []
    for _ in range(WARM_UP_ROUNDS):
        await _load(session, url, clients, duration_s=1.0)
        history.append(await count_containers())
        if history[-1] >= clients or history[-3:] == [history[-1]] * 3:
            break
    started = time.perf_counter()
    count = await _load(session, url, clients, duration_s=THROUGHPUT_S)
    return round(count / (time.perf_counter() - started), 1)


async def _load(session: aiohttp.ClientSession, url: str, clients: int, duration_s: float) -> int:
    deadline = time.perf_counter() + duration_s
    count = 0

    async def client() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await timed_get(session, url)
            count += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    return count


async def concurrent_sleeps(session: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(timed_get(session, f"{url}?s=1") for _ in range(10)))
    return round(time.perf_counter() - started, 3)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return -1.0


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError("condition not reached")
        await asyncio.sleep(0.1)


def summary(samples: list[float]) -> dict[str, Any]:
    return {"median": ms(statistics.median(samples)), "samples": [ms(s) for s in samples]}


async def cold_requests(routing: Path, network: str, stack: str) -> list[float]:
    """First request after a gateway start (which removes the previous run's containers)."""
    colds = []
    for _ in range(COLD_SAMPLES):
        async with (
            gateway_process(routing, network, stack) as (url, _pid),
            aiohttp.ClientSession() as session,
        ):
            colds.append(await timed_get(session, f"{url}/trivial"))
    return colds


Counter = Callable[[], Awaitable[int]]


def container_counter(docker: aiodocker.Docker, stack: str, function: str) -> Counter:
    filters = json.dumps(
        {"label": [f"{LABEL_STACK}={stack}", f"edgelambda.function={function}"],
         "status": ["running"]}
    )  # fmt: skip

    async def count() -> int:
        return len(await docker.containers.list(filters=filters))

    return count


async def restart_requests(session: aiohttp.ClientSession, url: str, stack: str) -> list[float]:
    """A request to a function whose container the reaper stopped: a warm start."""
    filters = json.dumps(
        {"label": [f"{LABEL_STACK}={stack}", "edgelambda.function=idle"], "status": ["running"]}
    )
    restarts = []
    async with aiodocker.Docker() as docker:

        async def idle_stopped() -> bool:
            return not await docker.containers.list(filters=filters)

        for _ in range(3):
            await timed_get(session, f"{url}/idle")
            await until(idle_stopped, timeout_s=10)
            restarts.append(await timed_get(session, f"{url}/idle"))
    return restarts


async def gateway_costs(routing: Path, network: str, stack: str) -> dict[str, Any]:
    colds = await cold_requests(routing, network, stack)
    async with (
        gateway_process(routing, network, stack) as (url, pid),
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session,
    ):
        restarts = await restart_requests(session, url, stack)
        raw, warm = await side_by_side(session, f"{url}/trivial", network, stack)
        async with aiodocker.Docker() as docker:
            count = container_counter(docker, stack, "trivial")
            rates: dict[str, float] = {
                f"{n}_clients": await throughput(session, f"{url}/trivial", n, count)
                for n in (1, 8, 32)
            }
            rates["containers_after"] = await count()
        sleeps = {
            "max_concurrency_10_cold_s": await concurrent_sleeps(session, f"{url}/sleep10"),
            "max_concurrency_10_s": await concurrent_sleeps(session, f"{url}/sleep10"),
            "max_concurrency_1_s": await concurrent_sleeps(session, f"{url}/sleep1"),
        }
        rss = rss_mb(pid)
    return {
        "raw_round_trip_ms": p50_p99(raw),
        "cold_first_request_ms": summary(colds),
        "warm_restart_request_ms": summary(restarts),
        "warm_sequential_ms": p50_p99(warm),
        "throughput_rps": rates,
        "ten_concurrent_1s_sleeps_wall_s": sleeps,
        "gateway_rss_mb": rss,
    }


async def main() -> None:
    stack = f"bench-{uuid.uuid4().hex[:8]}"
    network = f"edgelambda-{stack}"
    routing = HERE / f".routing-{stack}.yaml"
    routing.write_text(json.dumps(ROUTING))
    started = time.perf_counter()
    try:
        raw = await raw_create_start_ready(network, stack)
        gateway = await gateway_costs(routing, network, stack)
        raw["runtime_round_trip_ms"] = gateway.pop("raw_round_trip_ms")
    finally:
        routing.unlink()
        await cleanup(network, stack)
    gateway_log(stack).unlink()  # kept only when the run failed
    raw_ready = raw["create_start_ready_ms"]["median"]
    raw_rtt = raw["runtime_round_trip_ms"]["p50"]
    report = {
        "raw": raw,
        "gateway": gateway,
        "ratios": {
            "cold_first_request_vs_raw_create_start_ready": round(
                gateway["cold_first_request_ms"]["median"] / raw_ready, 3
            ),
            "warm_restart_vs_cold_first_request": round(
                gateway["warm_restart_request_ms"]["median"]
                / gateway["cold_first_request_ms"]["median"],
                3,
            ),
            "warm_p50_vs_raw_round_trip_p50": round(
                gateway["warm_sequential_ms"]["p50"] / raw_rtt, 3
            ),
            "warm_p50_minus_raw_round_trip_p50_ms": round(
                gateway["warm_sequential_ms"]["p50"] - raw_rtt, 3
            ),
            "sleeps_max_concurrency_1_vs_10": round(
                gateway["ten_concurrent_1s_sleeps_wall_s"]["max_concurrency_1_s"]
                / gateway["ten_concurrent_1s_sleeps_wall_s"]["max_concurrency_10_s"],
                3,
            ),
        },
        "targets": {
            "warm_p50_within_1_5_ms_of_raw": gateway["warm_sequential_ms"]["p50"] - raw_rtt <= 1.5,
            "cold_within_1_3x_raw": gateway["cold_first_request_ms"]["median"] <= 1.3 * raw_ready,
        },
        "bench_wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2))


async def cleanup(network: str, stack: str) -> None:
    docker = aiodocker.Docker()
    try:
        filters = json.dumps({"label": [f"{LABEL_STACK}={stack}"]})
        for container in await docker.containers.list(all=True, filters=filters):
            await container.delete(force=True)
        for net in await docker.networks.list(filters={"name": network}):
            await _delete_network(docker, net["Id"])
    finally:
        await docker.close()


async def _delete_network(docker: aiodocker.Docker, network_id: str) -> None:
    # The engine releases the endpoints of just-removed containers a moment later. Now and
    # then (20.10, after dozens of containers came and went) it keeps one until it restarts:
    # that leaves the network behind, named, but does not cost the report.
    for attempt in range(20):
        try:
            await (await docker.networks.get(network_id)).delete()
            return
        except aiodocker.DockerError as exc:
            if attempt == 19:
                print(f"bench: network {network_id[:12]} left behind: {exc.message}",
                      file=sys.stderr)  # fmt: skip
                return
            await asyncio.sleep(0.5)


if __name__ == "__main__":
    asyncio.run(main())
