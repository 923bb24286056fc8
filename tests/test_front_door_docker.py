"""The front door through real containers: response shapes, streaming, auth, CORS, limits,
trace ids and hot reload."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import shutil
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from edgelambda.gateway import SERVER_KEY
from tests.conftest import TEST_FUNCTIONS, GatewayFactory, function_code, one_function, routing_text

pytestmark = pytest.mark.docker

RESPONSES = function_code("responses")
API_KEY = "dev-api-key-change-in-production"


def table(**route: object) -> str:
    function = {"handler": "app.handler", "code": RESPONSES}
    return routing_text(
        {"fn": function},
        [{"path": "/r", "method": "ANY", "function": "fn", "auth": "none", **route}],
    )


async def test_two_cookies_via_multi_value_headers(gateway: GatewayFactory) -> None:
    client = await gateway(table())

    response = await client.get("/r?shape=cookies")

    assert response.status == 200
    assert response.headers.getall("Set-Cookie") == ["a=1; Path=/", "b=2; HttpOnly"]
    assert await response.text() == "two cookies"


async def test_base64_png_arrives_as_bytes(gateway: GatewayFactory) -> None:
    client = await gateway(table())

    response = await client.get("/r?shape=png")

    assert response.status == 200
    assert response.headers["Content-Type"] == "image/png"
    body = await response.read()
    assert body.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(body) == 70


async def test_plain_text_is_byte_exact(gateway: GatewayFactory) -> None:
    client = await gateway(table())

    response = await client.get("/r?shape=text")

    assert await response.read() == b'"quoted" text'
    assert response.headers["Content-Type"] == "text/plain"


async def test_created_with_custom_headers(gateway: GatewayFactory) -> None:
    client = await gateway(table())

    response = await client.post("/r?shape=created", data=b"{}")

    assert response.status == 201
    assert response.headers["Location"] == "/items/7"
    assert response.headers["X-Custom"] == "yes"
    assert response.headers["Content-Type"] == "application/json"
    assert await response.json() == {"id": 7}


@pytest.mark.parametrize("shape", ["malformed", "string"])
async def test_malformed_results_are_502(gateway: GatewayFactory, shape: str) -> None:
    client = await gateway(table())

    response = await client.get(f"/r?shape={shape}")

    assert response.status == 502
    assert await response.json() == {"message": "Internal server error"}


async def test_v2_plain_json_result_is_200(gateway: GatewayFactory) -> None:
    client = await gateway(table(payload="2.0"))

    response = await client.get("/r?shape=string")

    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert await response.read() == b"not an API Gateway result"  # a JSON string is its value


async def test_the_event_carries_the_request(gateway: GatewayFactory) -> None:
    client = await gateway(table())

    response = await client.post(
        "/r?shape=echo&tag=a&tag=b", data=b"\x00\x01binary", headers={"Content-Type": "image/png"}
    )

    event = await response.json()
    assert event["httpMethod"] == "POST"
    assert event["multiValueQueryStringParameters"]["tag"] == ["a", "b"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\x00\x01binary"
    assert event["requestContext"]["requestId"] == response.headers["x-amzn-RequestId"]


async def test_bodies_over_6_mb_are_413_without_a_container(gateway: GatewayFactory) -> None:
    client = await gateway(table())

    response = await client.post("/r", data=io.BytesIO(b"x" * (6 * 1024 * 1024 + 1)))

    assert response.status == 413
    assert await response.json() == {"message": "Request Too Long"}
    assert client.app[SERVER_KEY].pool._pools["fn"].sandboxes == set()


async def test_trace_ids_are_kept_or_created(gateway: GatewayFactory) -> None:
    client = await gateway(table())
    given = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"

    kept = await client.get("/r?shape=trace", headers={"X-Amzn-Trace-Id": given})
    created = await client.get("/nowhere")

    assert kept.headers["X-Amzn-Trace-Id"] == given
    assert await kept.text() == given  # the function saw it as _X_AMZN_TRACE_ID
    assert re.fullmatch(
        r"Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0",
        created.headers["X-Amzn-Trace-Id"],
    )


async def test_health(gateway: GatewayFactory) -> None:
    client = await gateway(table())

    response = await client.get("/health")

    assert response.status == 200
    assert (await response.json())["status"] == "healthy"


# -- streaming ---------------------------------------------------------------------------


async def test_a_streamed_response_reaches_the_client_chunk_by_chunk(
    gateway: GatewayFactory,
) -> None:
    function = {
        "runtime": "provided.al2023",
        "code": function_code("streaming"),
        "handler": "bootstrap.none",
    }
    route = {"path": "/stream", "method": "GET", "function": "stream", "auth": "none"}
    client = await gateway(routing_text({"stream": function}, [route]))

    response = await client.get("/stream")
    first_arrived_at = None
    body = b""
    while chunk := await response.content.readany():
        first_arrived_at = first_arrived_at or time.time()
        body += chunk

    assert response.status == 201
    assert response.headers["Content-Type"] == "text/plain"
    assert response.headers.getall("Set-Cookie") == ["a=1", "b=2"]
    lines = body.decode().splitlines()
    assert [line.split(" sent at ")[0] for line in lines] == [f"chunk {n}" for n in range(5)]
    last_sent_at = float(lines[-1].split(" sent at ")[1])
    assert first_arrived_at is not None
    assert first_arrived_at < last_sent_at - 0.5  # the first chunk came ~0.8 s before the last


# -- auth ---------------------------------------------------------------------------------


def jwt_table() -> str:
    function = {"handler": "app.handler", "code": RESPONSES}
    return routing_text({"fn": function}, [{"path": "/private", "method": "GET", "function": "fn"}])


async def _login(client: TestClient, body: object, api_key: str | None = API_KEY):  # type: ignore[no-untyped-def]
    headers = {"x-api-key": api_key} if api_key else {}
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post("/user/auth/ver1.0", data=payload, headers=headers)


CREDENTIALS = {"AuthParameters": {"USERNAME": "onpremise-user", "PASSWORD": "onpremise-pass"}}


async def test_login_then_call_a_protected_route(gateway: GatewayFactory) -> None:
    client = await gateway(jwt_table())

    login = await _login(client, CREDENTIALS)
    assert login.status == 200
    assert login.headers["PADMA_USER_AUTHORIZED"] == "true"
    token = (await login.json())["AuthenticationResult"]["IdToken"]

    denied = await client.get("/private?shape=echo")
    allowed = await client.get("/private?shape=echo", headers={"Authorization": f"Bearer {token}"})
    bare = await client.get("/private?shape=echo", headers={"Authorization": token})

    assert denied.status == 401
    assert await denied.json() == {"message": "Unauthorized"}
    assert allowed.status == 200
    assert bare.status == 200
    claims = (await allowed.json())["requestContext"]["authorizer"]["claims"]
    assert claims["sub"] == "onpremise-user"


@pytest.mark.parametrize(
    ("body", "api_key", "status", "has_padma_header"),
    [
        (CREDENTIALS, None, 401, False),
        (CREDENTIALS, "wrong-key", 401, False),
        (
            {"AuthParameters": {"USERNAME": "onpremise-user", "PASSWORD": "nope"}},
            API_KEY,
            401,
            True,
        ),
        (b"not json", API_KEY, 400, False),
        ({"AuthParameters": {"USERNAME": "onpremise-user"}}, API_KEY, 400, False),
    ],
    ids=["no-key", "wrong-key", "wrong-password", "not-json", "no-password"],
)
async def test_login_failures(
    gateway: GatewayFactory, body: object, api_key: str | None, status: int, has_padma_header: bool
) -> None:
    client = await gateway(jwt_table())

    response = await _login(client, body, api_key)

    assert response.status == status
    assert ("PADMA_USER_AUTHORIZED" in response.headers) is has_padma_header
    assert "message" in await response.json()


# -- CORS ---------------------------------------------------------------------------------


async def test_cors_preflight_is_answered_without_invoking(gateway: GatewayFactory) -> None:
    client = await gateway(table(cors=["https://app.example.com"]))

    preflight = await client.options(
        "/r",
        headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"},
    )
    actual = await client.get("/r?shape=text", headers={"Origin": "https://app.example.com"})

    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert actual.headers["Access-Control-Allow-Origin"] == "https://app.example.com"


# -- hot reload ---------------------------------------------------------------------------


async def _eventually_status(client: TestClient, path: str, status: int) -> None:
    deadline = time.monotonic() + 10
    while (await client.get(path)).status != status:
        assert time.monotonic() < deadline, f"{path} never answered {status}"
        await asyncio.sleep(0.1)


async def test_routing_edits_reload_and_broken_edits_are_rejected(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    client = await gateway(table())
    routing = tmp_path / "routing.yaml"
    function = {"handler": "app.handler", "code": RESPONSES}
    route = {"path": "/r", "method": "ANY", "function": "fn", "auth": "none"}

    routing.write_text(routing_text({"fn": function}, [route, {**route, "path": "/added"}]))
    await _eventually_status(client, "/added?shape=text", 200)

    with capture_logs() as logs:
        routing.write_text("functions:\n  fn:\n    handler: [not, a, string]\n")
        for _ in range(100):  # the broken edit has been read, and rejected
            if any(e["event"].startswith("routing reload rejected") for e in logs):
                break
            await asyncio.sleep(0.1)
    rejected = next(e for e in logs if e["event"].startswith("routing reload rejected"))
    assert "functions.fn.handler" in rejected["error"]
    assert (await client.get("/added?shape=text")).status == 200  # the old table serves on


async def test_code_edits_are_picked_up_by_the_next_request(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    shutil.copytree(TEST_FUNCTIONS / "responses", code)
    client = await gateway(one_function(code, path="/r"))
    assert await (await client.get("/r?shape=text")).text() == '"quoted" text'

    source = (code / "app.py").read_text().replace("'\"quoted\" text'", "'edited text'")
    (code / "app.py").write_text(source)

    deadline = time.monotonic() + 15
    while await (await client.get("/r?shape=text")).text() != "edited text":
        assert time.monotonic() < deadline, "the edit was never served"
        await asyncio.sleep(0.2)
