"""The frozen standby against the real engine: an idle container is paused with its
runtime's poll open, resumes for the next request in the same process with its whole
deadline, and is stopped as before once its idle timeout passes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiodocker
import pytest
from aiohttp.test_utils import TestClient

from edgelambda.gateway import SERVER_KEY
from tests.conftest import GatewayFactory, lifecycle_routing, report, stack_containers

pytestmark = pytest.mark.docker


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"not true within {timeout_s} s"
        await asyncio.sleep(0.1)


async def engine_state(docker: aiodocker.Docker, container_id: str) -> dict[str, object]:
    state: dict[str, object] = (await docker.containers.container(container_id).show())["State"]
    return state


async def health_containers(client: TestClient) -> dict[str, int]:
    response = await client.get("/health")
    containers: dict[str, int] = (await response.json())["containers"]
    return containers


async def test_an_idle_container_is_frozen_and_resumes_in_the_same_process(
    gateway: GatewayFactory, docker: aiodocker.Docker
) -> None:
    client = await gateway(lifecycle_routing(timeout=3, freeze_after=0.5), reap_interval_s=0.1)
    first = await report(client)
    container = str(first["container"])

    async def is_paused() -> bool:
        return (await engine_state(docker, container))["Paused"] is True

    await eventually(is_paused, timeout_s=5)
    assert await health_containers(client) == {"frozen": 1}
    metrics = await (await client.get("/metrics")).text()
    assert 'edgelambda_containers{function="fn",state="frozen"} 1.0' in metrics
    await asyncio.sleep(2)  # frozen for longer than most of the timeout

    resumed = await report(client)

    assert resumed["container"] == first["container"]
    assert resumed["invocations"] == 2  # the same process: its poll outlived the freeze
    # The deadline started after the unpause: the 2 s frozen are not on it.
    assert isinstance(resumed["remaining_ms"], int)
    assert resumed["remaining_ms"] > 2500
    state = await engine_state(docker, container)
    assert (state["Running"], state["Paused"]) == (True, False)

    async def is_ready() -> bool:  # its runtime polls again just after answering
        return await health_containers(client) == {"ready": 1}

    await eventually(is_ready, timeout_s=5)


async def test_a_frozen_container_stops_at_its_idle_timeout_and_warm_starts(
    gateway: GatewayFactory, docker: aiodocker.Docker
) -> None:
    client = await gateway(
        lifecycle_routing(idle_timeout=2.5, freeze_after=0.3), reap_interval_s=0.1
    )
    first = await report(client)
    container = str(first["container"])

    async def is_paused() -> bool:
        return (await engine_state(docker, container))["Paused"] is True

    async def is_stopped() -> bool:
        state = await engine_state(docker, container)
        return state["Running"] is False

    await eventually(is_paused, timeout_s=5)
    await eventually(is_stopped, timeout_s=8)
    assert await health_containers(client) == {"stopped": 1}

    restarted = await report(client)
    assert restarted["container"] == first["container"]  # a warm start of the same container
    assert restarted["invocations"] == 1  # ...with a new process


async def test_frozen_containers_of_a_busy_function_are_thawed_not_replaced(
    gateway: GatewayFactory, docker: aiodocker.Docker
) -> None:
    client = await gateway(
        lifecycle_routing(freeze_after=0.5, max_concurrency=3), reap_interval_s=0.1
    )
    first = await asyncio.gather(*(report(client, "?action=sleep&s=0.5") for _ in range(3)))
    containers = {str(body["container"]) for body in first}
    assert len(containers) == 3

    async def all_paused() -> bool:
        states = [await engine_state(docker, c) for c in containers]
        return all(state["Paused"] is True for state in states)

    await eventually(all_paused, timeout_s=5)
    again = await asyncio.gather(*(report(client, "?action=sleep&s=0.5") for _ in range(3)))

    assert {str(body["container"]) for body in again} == containers
    assert sorted(int(str(body["invocations"])) for body in again) == [2, 2, 2]


async def test_a_gateway_shutting_down_removes_its_frozen_containers(
    gateway: GatewayFactory, docker: aiodocker.Docker
) -> None:
    client = await gateway(lifecycle_routing(freeze_after=0.3), reap_interval_s=0.1)
    stack = client.app[SERVER_KEY].settings.stack
    container = str((await report(client))["container"])

    async def is_paused() -> bool:
        return (await engine_state(docker, container))["Paused"] is True

    await eventually(is_paused, timeout_s=5)
    await client.close()  # the gateway shuts down

    assert await stack_containers(docker, stack) == []
