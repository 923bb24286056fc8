"""The engine client is not capped at aiohttp's 100 connections: the gateway holds one open
per running container (its output follow), so a box past 100 containers would otherwise
wait for ever on its next engine call. The first two need no engine."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiodocker
import aiohttp
import pytest

from edgelambda.docker_backend import DockerBackend, close_engine_client, engine_client

FOLLOWS = 110  # more than aiohttp's default connector limit of 100


async def test_a_unix_socket_client_has_no_connection_limit() -> None:
    docker = await engine_client("unix:///run/nothing-here.sock")
    assert isinstance(docker.connector, aiohttp.UnixConnector)
    assert docker.connector.limit == 0
    assert docker.connector.path == "/run/nothing-here.sock"
    await close_engine_client(docker)
    assert docker.connector.closed


async def test_a_tcp_client_is_aiodockers_own() -> None:
    docker = await engine_client("tcp://127.0.0.1:2375")
    assert isinstance(docker.connector, aiohttp.TCPConnector)
    await docker.close()


@pytest.mark.docker
async def test_more_than_a_hundred_output_follows_leave_the_engine_reachable(
    docker: aiodocker.Docker,
) -> None:
    stack = f"test-{uuid.uuid4().hex[:10]}"
    container = await docker.containers.run(
        {
            "Image": "edgelambda/gateway:local",
            "Entrypoint": ["sleep", "60"],
            "Labels": {"edgelambda.stack": stack},
        }
    )
    backend = await DockerBackend.connect()
    follows = [
        asyncio.create_task(anext(backend.output(container.id, time.time()), None))
        for _ in range(FOLLOWS)
    ]
    try:
        await asyncio.sleep(1)  # every follow has its connection now
        assert not any(f.done() for f in follows)  # they wait for output

        running = await asyncio.wait_for(backend.running_containers(stack), timeout=10)

        assert running == {container.id}
    finally:
        for follow in follows:
            follow.cancel()
        await asyncio.gather(*follows, return_exceptions=True)
        await backend.close()
        await container.delete(force=True)
