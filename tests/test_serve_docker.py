"""`edgelambda serve` as a real process: leftovers of a killed run are removed at start-up,
and SIGTERM drains in-flight work before removing every container."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiodocker
import aiohttp
import pytest

from tests.conftest import BASE_IMAGE, TEST_FUNCTIONS, routing_text, stack_containers

pytestmark = pytest.mark.docker


class Server:
    def __init__(self, process: asyncio.subprocess.Process, port: int, stack: str) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.stack = stack


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def serve(
    tmp_path: Path, docker: aiodocker.Docker
) -> AsyncIterator[Callable[[], Awaitable[Server]]]:
    """Factory starting `python -m edgelambda serve` processes that share one stack."""
    stack = f"test-{uuid.uuid4().hex[:10]}"
    routing = tmp_path / "routing.yaml"
    spec = {
        "handler": "app.handler",
        "code": str(TEST_FUNCTIONS / "lifecycle"),
        "max_concurrency": 5,
    }
    route = {"path": "/fn", "method": "GET", "function": "fn", "auth": "none"}
    routing.write_text(routing_text({"fn": spec}, [route]))
    processes: list[asyncio.subprocess.Process] = []

    async def start() -> Server:
        port = _free_port()
        env = {
            **os.environ,
            "ROUTING_CONFIG_PATH": str(routing),
            "EDGELAMBDA_HOST": "127.0.0.1",
            "EDGELAMBDA_PORT": str(port),
            "EDGELAMBDA_RUNTIME_API_PORT": "0",
            "DOCKER_NETWORK": f"edgelambda-{stack}",
            "EDGELAMBDA_STACK": stack,
            "EDGELAMBDA_RUNTIME_IMAGES": f"python3.12={BASE_IMAGE}",
            "EDGELAMBDA_LOG_FORMAT": "json",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "edgelambda",
            "serve",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        processes.append(process)
        server = Server(process, port, stack)
        await _wait_healthy(server)
        return server

    yield start
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.wait()
    for container_id in await stack_containers(docker, stack):
        await docker.containers.container(container_id).delete(force=True)
    for net in await docker.networks.list(filters={"name": f"edgelambda-{stack}"}):
        await (await docker.networks.get(net["Id"])).delete()


async def _wait_healthy(server: Server, timeout_s: float = 20) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(int(timeout_s / 0.1)):
            assert server.process.returncode is None, "the gateway exited during start-up"
            try:
                async with session.get(f"{server.url}/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"gateway not healthy within {timeout_s} s")


async def _get(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


async def test_a_restart_removes_what_a_killed_gateway_left(
    serve: Callable[[], Awaitable[Server]], docker: aiodocker.Docker
) -> None:
    first = await serve()
    status, body = await _get(f"{first.url}/fn")
    assert status == 200
    left_behind = body["container"]
    first.process.kill()  # no clean-up at all
    await first.process.wait()
    all_ids = await _all_container_ids(docker)
    assert any(cid.startswith(str(left_behind)) for cid in all_ids)

    second = await serve()

    all_ids = await _all_container_ids(docker)
    assert not any(cid.startswith(str(left_behind)) for cid in all_ids)
    status, body = await _get(f"{second.url}/fn")
    assert status == 200
    assert body["container"] != left_behind
    second.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(second.process.wait(), timeout=20) == 0
    assert await stack_containers(docker, second.stack) == []


async def test_sigterm_drains_in_flight_work_and_removes_every_container(
    serve: Callable[[], Awaitable[Server]], docker: aiodocker.Docker
) -> None:
    server = await serve()
    calls = [asyncio.create_task(_get(f"{server.url}/fn?action=sleep&s=1")) for _ in range(5)]
    await asyncio.sleep(0.5)  # all five are in flight (cold starts included)

    server.process.send_signal(signal.SIGTERM)
    results = await asyncio.gather(*calls)

    assert [status for status, _ in results] == [200] * 5
    assert await asyncio.wait_for(server.process.wait(), timeout=20) == 0
    assert len({body["container"] for _, body in results}) == 5
    assert await stack_containers(docker, server.stack) == []


async def _all_container_ids(docker: aiodocker.Docker) -> list[str]:
    return [c.id for c in await docker.containers.list(all=True, filters=json.dumps({}))]
