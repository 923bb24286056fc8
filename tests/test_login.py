"""The login endpoint over HTTP, without an engine: its body cap (413 before anything is
parsed or checked) and the throttling of failed logins per client address."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse

from edgelambda.config import Settings
from edgelambda.gateway import SERVER_KEY
from tests.gateway_box import GatewayFactory, open_gateways

PATH = Settings().auth_endpoint_path
API_KEY = Settings().api_key
GOOD = {"AuthParameters": {"USERNAME": Settings().auth_user, "PASSWORD": Settings().auth_pass}}
WRONG = {"AuthParameters": {"USERNAME": Settings().auth_user, "PASSWORD": "guess"}}


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    async with open_gateways(tmp_path) as start:
        yield start


async def post(client: Any, body: bytes | object, **headers: str) -> ClientResponse:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response: ClientResponse = await client.post(
        PATH, data=data, headers={"x-api-key": API_KEY, **headers}
    )
    await response.read()
    return response


async def test_a_body_over_the_cap_is_413_before_the_key_is_checked(
    gateway: GatewayFactory,
) -> None:
    box = await gateway(login_max_body_bytes=1024)
    padded = {**GOOD, "padding": "x" * 2000}

    wrong_key = await post(box.client, padded, **{"x-api-key": "wrong"})
    right_key = await post(box.client, padded)
    chunked = await box.client.post(
        PATH, data=_chunks(json.dumps(padded).encode()), headers={"x-api-key": "wrong"}
    )
    small = await post(box.client, GOOD)

    assert (wrong_key.status, await wrong_key.json()) == (413, {"message": "Request Too Long"})
    assert right_key.status == 413
    assert chunked.status == 413  # no Content-Length: the cap holds while reading
    assert small.status == 200


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 100):
        yield body[start : start + 100]


async def test_failed_logins_from_one_address_are_throttled_with_retry_after(
    gateway: GatewayFactory,
) -> None:
    box = await gateway(login_max_failures=3, login_failure_window_s=60)

    first = [await post(box.client, WRONG) for _ in range(3)]
    throttled = await post(box.client, GOOD)
    wrong_key = await post(box.client, GOOD, **{"x-api-key": "wrong"})

    assert [r.status for r in first] == [401, 401, 401]
    assert throttled.status == 429
    assert await throttled.json() == {"message": "Too Many Requests"}
    assert 0 < int(throttled.headers["Retry-After"]) <= 60
    assert wrong_key.status == 429  # throttled before anything is checked


async def test_other_addresses_are_not_throttled(gateway: GatewayFactory) -> None:
    box = await gateway(login_max_failures=2, login_failure_window_s=60)
    throttle = _throttle(box)
    throttle.record_failure("203.0.113.9", now_s=_now())
    throttle.record_failure("203.0.113.9", now_s=_now())

    response = await post(box.client, GOOD)  # from 127.0.0.1

    assert response.status == 200


async def test_a_success_resets_the_count(gateway: GatewayFactory) -> None:
    box = await gateway(login_max_failures=2, login_failure_window_s=60)

    failed = await post(box.client, WRONG)
    succeeded = await post(box.client, GOOD)
    failed_again = await post(box.client, WRONG)
    still_allowed = await post(box.client, GOOD)

    assert [failed.status, succeeded.status, failed_again.status, still_allowed.status] == [
        401,
        200,
        401,
        200,
    ]


def _throttle(box: Any) -> Any:
    return box.client.app[SERVER_KEY].login_throttle


def _now() -> float:
    return time.time()
