"""Functions and clients misbehaving toward the platform, on the real engine: a handler polling
its own Runtime API, Client-Context that is no JSON object or spans lines, and results around
Lambda's 6,291,556-byte limit. Every wait is bounded, so a regression fails instead of hanging."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest
from aiohttp.test_utils import TestClient
from botocore.exceptions import ClientError

from edgelambda.gateway import SERVER_KEY
from edgelambda.logs import RecordingSink
from tests.conftest import TEST_FUNCTIONS, GatewayFactory, routing_text

pytestmark = pytest.mark.docker

POLL_TIMEOUT_S = 3  # the poller's function timeout
# How much later than its function's timeout a caller may be answered (the pool's last-resort
# bound is 5 s; the rest is the container's round trips).
ANSWER_BOUND_S = 8
MAX_RESULT_BYTES = 6_291_556  # Lambda's limit for a function's result
CREDENTIALS = {"aws_access_key_id": "dummy", "aws_secret_access_key": "dummy"}
TOO_LARGE = {
    "errorType": "Function.ResponseSizeTooLarge",
    "errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
}


def lambda_client(client: TestClient, *, read_timeout_s: float) -> Any:
    """boto3 for the gateway's Invoke API; one attempt, so a lost answer is a ReadTimeoutError
    after ``read_timeout_s`` rather than a retry."""
    config = botocore.config.Config(
        retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=read_timeout_s
    )
    return boto3.client(
        "lambda",
        endpoint_url=str(client.make_url("")),
        region_name="us-east-1",
        config=config,
        **CREDENTIALS,
    )


async def invoke(client: TestClient, *, within_s: float = 60, **kwargs: Any) -> dict[str, Any]:
    """One Invoke API call through boto3, answered within ``within_s`` or failing."""
    sdk = lambda_client(client, read_timeout_s=within_s)
    return await asyncio.wait_for(asyncio.to_thread(_invoke, sdk, **kwargs), timeout=within_s + 5)


def _invoke(sdk: Any, **kwargs: Any) -> dict[str, Any]:
    # The payload is read here too: read on the event loop, a large one would block the
    # in-process gateway that is sending it.
    response: dict[str, Any] = sdk.invoke(**kwargs)
    if "Payload" in response:
        response["Body"] = response.pop("Payload").read()
    return response


@pytest.fixture
def faults(tmp_path: Path) -> str:
    """The `faults` test function's code, copied beside the gateway fixture's routing file
    (``tmp_path``), since ``code:`` must lie inside the routing file's directory."""
    code = tmp_path / "faults-code"
    shutil.copytree(TEST_FUNCTIONS / "faults", code)
    return str(code)


def runs(client: TestClient, tag: str) -> int:
    """How often the in-process gateway's function log shows the poller ran event ``tag``."""
    sink = client.app[SERVER_KEY].sink
    assert isinstance(sink, RecordingSink)
    return sum(record.message == f"handling {tag}" for record in sink.records)


# 1. A handler polling its own Runtime API while it holds an invocation.


def poller(code: str) -> str:
    spec = {"handler": "app.poll_self", "code": code, "timeout": POLL_TIMEOUT_S}
    return routing_text({"poller": spec}, [])


async def test_a_handler_polling_its_runtime_api_still_answers_its_caller(
    gateway: GatewayFactory, faults: str
) -> None:
    client = await gateway(poller(faults))
    await invoke(client, FunctionName="poller", Payload=b'{"poll": false}')  # a warm container

    started = time.monotonic()
    response = await invoke(
        client, within_s=POLL_TIMEOUT_S + ANSWER_BOUND_S, FunctionName="poller", Payload=b"{}"
    )

    assert time.monotonic() - started < POLL_TIMEOUT_S + ANSWER_BOUND_S
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response, response["Body"]
    # The poll is refused: a sandbox holding an invocation is never given another.
    assert json.loads(response["Body"]) == {"polled": True, "status": 400}


async def test_an_event_polling_its_runtime_api_ends_and_frees_its_worker(
    gateway: GatewayFactory, faults: str, tmp_path: Path
) -> None:
    # One Event worker slot: an Event invocation that never ended would hold it for good.
    client = await gateway(poller(faults), event_concurrency=1)
    await invoke(client, FunctionName="poller", Payload=b'{"poll": false}')  # a warm container

    polling = await invoke(
        client, FunctionName="poller", InvocationType="Event", Payload=b'{"tag": "polling"}'
    )
    after = await invoke(
        client,
        FunctionName="poller",
        InvocationType="Event",
        Payload=b'{"tag": "after", "poll": false}',
    )

    assert (polling["StatusCode"], after["StatusCode"]) == (202, 202)
    deadline = time.monotonic() + POLL_TIMEOUT_S + ANSWER_BOUND_S + 10
    while not (runs(client, "after") and await stored_events(tmp_path) == (0, 0)):
        assert time.monotonic() < deadline, "the Event after the polling one never ran or ended"
        await asyncio.sleep(0.1)
    # Each ran once and was acked: neither retried nor dead-lettered.
    assert (runs(client, "polling"), runs(client, "after")) == (1, 1)


async def stored_events(tmp_path: Path) -> tuple[int, int]:
    """(events queued or running, dead letters) in the in-process gateway's event store."""
    return await asyncio.to_thread(_count_stored_events, tmp_path / "data" / "events.sqlite3")


def _count_stored_events(path: Path) -> tuple[int, int]:
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5) as db:
        (events,) = db.execute("SELECT count(*) FROM events").fetchone()
        (dead,) = db.execute("SELECT count(*) FROM dead_letters").fetchone()
    db.close()
    return events, dead


# 2. Client-Context: base64 of a JSON object, else 400 InvalidRequestContentException.


def client_context(code: str) -> str:
    return routing_text({"context": {"handler": "app.client_context", "code": code}}, [])


@pytest.mark.parametrize(
    "decoded", [b'[{"custom": {"k": "v"}}]', b"not json at all"], ids=["array", "not-json"]
)
async def test_client_context_that_is_no_json_object_is_invalid_request_content(
    gateway: GatewayFactory, faults: str, decoded: bytes
) -> None:
    client = await gateway(client_context(faults))

    with pytest.raises(ClientError) as raised:
        await invoke(
            client,
            within_s=30,
            FunctionName="context",
            Payload=b"{}",
            ClientContext=base64.b64encode(decoded).decode(),
        )

    error = raised.value.response
    assert error["Error"]["Code"] == "InvalidRequestContentException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400


async def test_client_context_spanning_lines_reaches_the_function(
    gateway: GatewayFactory, faults: str
) -> None:
    client = await gateway(client_context(faults))
    await invoke(client, FunctionName="context", Payload=b"{}")  # a warm container
    # JSON allows CR/LF between its tokens; a Runtime API header line does not.
    decoded = b'{\r\n  "custom": {"k": "v"},\r\n  "env": {"e": "1"}\r\n}\r\n'

    response = await invoke(
        client,
        within_s=30,
        FunctionName="context",
        Payload=b"{}",
        ClientContext=base64.b64encode(decoded).decode(),
    )

    assert response["StatusCode"] == 200
    assert "FunctionError" not in response, response["Body"]
    assert json.loads(response["Body"]) == {
        "client_context": {"custom": {"k": "v"}, "env": {"e": "1"}}
    }


# 3. A result over Lambda's 6,291,556-byte limit.

SIZED_TIMEOUT_S = 30  # a result refused at the socket used to wait this long
WELL_UNDER_S = 20  # an oversized result is answered well before that
# One byte over the limit, and far over it (beyond what the Runtime API reads of a request).
OVER_LIMIT_BYTES = pytest.mark.parametrize(
    "size", [MAX_RESULT_BYTES + 1, 7_000_000], ids=["one-byte-over", "far-over"]
)


def sized(code: str) -> str:
    return routing_text(
        {"sized": {"handler": "app.sized", "code": code, "timeout": SIZED_TIMEOUT_S}},
        [{"path": "/sized", "method": "GET", "function": "sized", "auth": "none"}],
    )


@OVER_LIMIT_BYTES
async def test_a_route_result_over_6_mb_is_502_response_size_too_large(
    gateway: GatewayFactory, faults: str, size: int
) -> None:
    client = await gateway(sized(faults))
    warm = await client.get("/sized?bytes=1000")  # a warm container
    assert warm.status == 200, await warm.text()

    started = time.monotonic()
    async with asyncio.timeout(WELL_UNDER_S):
        response = await client.get(f"/sized?bytes={size}")
        await response.read()

    assert time.monotonic() - started < WELL_UNDER_S
    assert response.status == 502
    assert response.headers["x-amzn-ErrorType"] == "Function.ResponseSizeTooLarge"


async def test_a_route_result_just_under_6_mb_is_served(
    gateway: GatewayFactory, faults: str
) -> None:
    client = await gateway(sized(faults))
    size = MAX_RESULT_BYTES - 4096

    async with asyncio.timeout(60):
        response = await client.get(f"/sized?bytes={size}")
        body = await response.read()

    assert response.status == 200, body[:200]
    # The function fills its result's JSON with the body (see app.sized).
    assert body == b"x" * (size - len(json.dumps({"statusCode": 200, "body": ""})))


@OVER_LIMIT_BYTES
async def test_an_invoke_result_over_6_mb_is_the_functions_error(
    gateway: GatewayFactory, faults: str, size: int
) -> None:
    client = await gateway(sized(faults))
    await invoke(client, FunctionName="sized", Payload=b'{"bytes": 1000}')  # a warm container

    started = time.monotonic()
    response = await invoke(
        client,
        within_s=WELL_UNDER_S,
        FunctionName="sized",
        Payload=json.dumps({"bytes": size}),
    )

    assert time.monotonic() - started < WELL_UNDER_S
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert json.loads(response["Body"]) == TOO_LARGE


async def test_an_invoke_result_just_under_6_mb_is_returned(
    gateway: GatewayFactory, faults: str
) -> None:
    client = await gateway(sized(faults))
    size = MAX_RESULT_BYTES - 4096

    response = await invoke(client, FunctionName="sized", Payload=json.dumps({"bytes": size}))

    assert response["StatusCode"] == 200
    assert "FunctionError" not in response, response["Body"][:200]
    assert len(response["Body"]) == size
    assert json.loads(response["Body"]) == "x" * (size - 2)
