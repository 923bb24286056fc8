"""The engine restarts under a running gateway: it notices its dead containers and serves
again without a restart of its own.

This kills and restarts dockerd, so it runs only where the test run owns the engine:
`make test` (and so CI) sets EDGELAMBDA_TEST_ENGINE_RESTART=1 after ensuring the engine.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import REPO_ROOT, GatewayFactory, lifecycle_routing, report

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(
        os.environ.get("EDGELAMBDA_TEST_ENGINE_RESTART") != "1",
        reason="restarts dockerd: set EDGELAMBDA_TEST_ENGINE_RESTART=1 (make test does)",
    ),
]


def restart_engine() -> None:
    # A graceful stop (as systemctl restart does): dockerd stops every container on its way
    # out. (SIGKILL can leave the engine's network store unreadable for the next daemon.)
    subprocess.run(["pkill", "-TERM", "-x", "dockerd"], check=True)
    deadline = time.monotonic() + 60
    while subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "dockerd did not die"
        time.sleep(0.1)
    subprocess.run(["bash", str(REPO_ROOT / "scripts" / "ensure-engine.sh")], check=True)


async def test_the_gateway_recovers_from_an_engine_restart(gateway: GatewayFactory) -> None:
    client = await gateway(lifecycle_routing())
    before = await report(client)

    await asyncio.to_thread(restart_engine)

    after = await first_answer_after_the_restart(client)
    assert after["container"] != before["container"]
    assert after["invocations"] == 1


async def first_answer_after_the_restart(client: TestClient) -> dict[str, object]:
    """Requests may fail while the gateway notices the restart (502, 503); then one must
    succeed, within 30 s. Its report."""
    deadline = time.monotonic() + 30
    while True:
        response = await client.get("/fn")
        if response.status == 200:
            body: dict[str, object] = await response.json()
            return body
        assert response.status in {502, 503}, await response.text()
        assert time.monotonic() < deadline, "the gateway did not recover"
        await asyncio.sleep(0.5)


async def test_frozen_containers_lost_in_an_engine_restart_are_replaced(
    gateway: GatewayFactory,
) -> None:
    client = await gateway(lifecycle_routing(freeze_after=0.3), reap_interval_s=0.1)
    before = await report(client)
    deadline = time.monotonic() + 5
    while (await (await client.get("/health")).json())["containers"] != {"frozen": 1}:
        assert time.monotonic() < deadline, "the container was not frozen"
        await asyncio.sleep(0.1)

    await asyncio.to_thread(restart_engine)

    after = await first_answer_after_the_restart(client)
    assert after["container"] != before["container"]
    assert after["invocations"] == 1
