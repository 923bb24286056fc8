"""What the benchmarks share: an ``edgelambda serve`` process on 127.0.0.1 with its own stack
label and network, counting its containers, removing them afterwards, and the arithmetic of
the reports. ``make bench`` (side_by_side.py) and ``make soak`` (soak.py) import it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from aiohttp import web

from edgelambda.containers import LABEL_STACK

BASE_IMAGE = os.environ.get("EDGELAMBDA_BENCH_BASE_IMAGE", "edgelambda/runtime-python:local")
STOP_TIMEOUT_S = 60.0

ContainerCount = Callable[[], Awaitable[int]]


def progress(message: str) -> None:
    """Progress goes to stderr; stdout carries only the report."""
    print(f"[make bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- arithmetic ------------------------------------------------------------------------------


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def p50_p99_ms(samples: list[float]) -> dict[str, Any]:
    return {
        "p50": ms(percentile(samples, 0.5)),
        "p99": ms(percentile(samples, 0.99)),
        "n": len(samples),
    }


def median_ms(samples: list[float]) -> dict[str, Any]:
    return {"median": ms(statistics.median(samples)), "samples": [ms(s) for s in samples]}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return -1.0


# -- the gateway, as a separate process ------------------------------------------------------


@dataclass(frozen=True)
class Gateway:
    url: str
    pid: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def serve_posts(
    routes: Mapping[str, Callable[[web.Request], Awaitable[web.StreamResponse]]],
) -> tuple[web.AppRunner, str]:
    """A stand-in taking POSTs of any size at ``routes`` on 127.0.0.1 (a free port): its
    runner (to clean up, or to listen on more addresses) and its URL."""
    app = web.Application(client_max_size=1024**3)
    for path, handler in routes.items():
        app.router.add_post(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


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


async def stop_process(
    process: asyncio.subprocess.Process, timeout_s: float = STOP_TIMEOUT_S
) -> None:
    """SIGTERM, and SIGKILL if it has not exited within ``timeout_s``."""
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), timeout=timeout_s)
    except TimeoutError:
        progress(f"process {process.pid} ignored SIGTERM for {timeout_s:.0f} s: killed")
        process.kill()
        await process.wait()


@asynccontextmanager
async def gateway_process(env: dict[str, str], log_path: Path) -> AsyncIterator[Gateway]:
    """``edgelambda serve`` with ``env`` (see :func:`serve_env`), healthy, stopped on exit."""
    process = await start_serve(env, log_path)
    try:
        url = f"http://127.0.0.1:{env['EDGELAMBDA_PORT']}"
        await wait_healthy(url, process, timeout_s=60)
        yield Gateway(url, process.pid)
    finally:
        await stop_process(process)


# -- its containers --------------------------------------------------------------------------


def container_counter(docker: aiodocker.Docker, stack: str, function: str) -> ContainerCount:
    """Counts the live containers of ``function`` under the stack label ``stack``: running,
    or paused (a gateway that freezes idle containers keeps them for the next request)."""
    filters = json.dumps(
        {"label": [f"{LABEL_STACK}={stack}", f"edgelambda.function={function}"],
         "status": ["running", "paused"]}
    )  # fmt: skip

    async def count() -> int:
        return len(await docker.containers.list(filters=filters))

    return count


async def cleanup(network: str, stack: str) -> None:
    """Removes every container labelled ``stack`` and the network ``network``."""
    docker = aiodocker.Docker()
    try:
        filters = json.dumps({"label": [f"{LABEL_STACK}={stack}"]})
        for container in await docker.containers.list(all=True, filters=filters):
            await container.delete(force=True)
        for net in await docker.networks.list(filters={"name": network}):
            if net["Name"] == network:  # the filter matches name prefixes too
                await delete_network(docker, net["Id"])
    finally:
        await docker.close()


async def delete_network(docker: aiodocker.Docker, network_id: str) -> None:
    """Removes a network, retrying while the engine still holds an endpoint (10 s at most)."""
    # The engine releases the endpoints of just-removed containers a moment later. Now and
    # then (20.10, after dozens of containers came and went) it keeps one until it restarts:
    # that leaves the network behind, named, but does not cost the report.
    for attempt in range(20):
        try:
            await (await docker.networks.get(network_id)).delete()
            return
        except aiodocker.DockerError as exc:
            if attempt == 19:
                progress(f"network {network_id[:12]} left behind: {exc.message}")
                return
            await asyncio.sleep(0.5)
