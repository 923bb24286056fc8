"""Streamed responses through the HTTP request path, without an engine (see
`tests.gateway_box`): the function's stream reaches the client as it comes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from edgelambda import gateway as gateway_module
from tests.gateway_box import GatewayFactory, RawHttp, open_gateways, route

# Lambda's streamed HTTP response: a JSON prelude, eight NUL bytes, then the body.
HTTP_INTEGRATION = "application/vnd.awslambda.http-integration-response"
PRELUDE_END = b"\0" * 8


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    """A factory of gateways with a fake engine (see :func:`tests.gateway_box.open_gateways`)."""
    async with open_gateways(tmp_path) as start:
        yield start


# -- streamed responses ---------------------------------------------------------------------


async def test_a_streamed_response_reaches_the_client_chunk_by_chunk(
    gateway: GatewayFactory,
) -> None:
    box = await gateway(route())
    sent = box.send("GET", "/items/1")
    delivered = await box.delivered()
    more = asyncio.Event()
    prelude = {"statusCode": 201, "headers": {"Content-Type": "text/plain"}, "cookies": ["a=1"]}

    async def body() -> AsyncIterator[bytes]:
        yield json.dumps(prelude).encode() + PRELUDE_END + b"first"
        await more.wait()
        yield b"second"

    posting = asyncio.create_task(
        box.runtime.stream(delivered.request_id, body(), HTTP_INTEGRATION)
    )
    response = await sent

    assert response.status == 201
    assert response.headers["Content-Type"] == "text/plain"
    assert response.headers["Set-Cookie"] == "a=1"
    assert await response.content.readexactly(5) == b"first"  # the function still streams
    more.set()
    assert await response.read() == b"second"
    assert (await posting).status == 202


async def test_a_stream_of_another_content_type_is_its_body(gateway: GatewayFactory) -> None:
    box = await gateway(route())
    sent = box.send("GET", "/items/1")
    delivered = await box.delivered()

    async def body() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        yield b"data: 2\n\n"

    await box.runtime.stream(delivered.request_id, body(), "text/event-stream")
    response = await sent

    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert await response.read() == b"data: 1\n\ndata: 2\n\n"


async def test_a_stream_ending_before_its_prelude_is_502(gateway: GatewayFactory) -> None:
    box = await gateway(route())
    sent = box.send("GET", "/items/1")
    delivered = await box.delivered()

    async def body() -> AsyncIterator[bytes]:
        yield b'{"statusCode": 200}'  # and no separator

    await box.runtime.stream(delivered.request_id, body(), HTTP_INTEGRATION)
    response = await sent

    assert response.status == 502
    assert await response.json() == {"message": "Internal server error"}
    assert response.headers["x-amzn-ErrorType"] == "Runtime.StreamBroken"


async def test_a_stream_broken_after_its_first_bytes_cuts_the_connection(
    gateway: GatewayFactory,
) -> None:
    box = await gateway(route())
    sent = box.send("GET", "/items/1")
    delivered = await box.delivered()

    await box.runtime.break_stream(delivered.request_id, b"partial", "text/plain")
    response = await sent

    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()


async def test_a_streamed_preludes_framing_headers_never_frame_the_response(
    gateway: GatewayFactory,
) -> None:
    box = await gateway(route())
    prelude = {"statusCode": 200, "headers": {"Content-Length": "5", "Connection": "close"}}
    connection = await RawHttp.open(box.client)
    try:
        for n in (1, 2):  # the second request rides the same kept-alive connection
            connection.send("GET", f"/items/{n}")
            delivered = await box.delivered()

            async def body() -> AsyncIterator[bytes]:
                yield json.dumps(prelude).encode() + PRELUDE_END + b"hello "
                yield b"world"

            await box.runtime.stream(delivered.request_id, body(), HTTP_INTEGRATION)
            status, headers, received = await connection.receive()

            assert (status, received) == (200, b"hello world")
            assert "Connection" not in headers
    finally:
        await connection.close()


async def test_a_stream_over_its_limit_cuts_the_connection(
    gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway_module, "MAX_STREAMED_RESULT_BYTES", 10)
    box = await gateway(route())
    sent = box.send("GET", "/items/1")
    delivered = await box.delivered()

    async def body() -> AsyncIterator[bytes]:
        yield b"0123456789"  # exactly the limit
        yield b"!"

    posting = asyncio.create_task(box.runtime.stream(delivered.request_id, body(), "text/plain"))
    response = await sent

    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
    await posting
