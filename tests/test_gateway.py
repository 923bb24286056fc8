"""The HTTP request path, without an engine: the real gateway, pool and Runtime API on
127.0.0.1, a fake container backend, and a fake runtime playing the function. Streamed
responses are in `test_gateway_streaming`."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from edgelambda.auth import issue_token
from edgelambda.config import Settings
from edgelambda.containers import ContainerSpec, StartedContainer
from edgelambda.cors import CorsPolicy
from edgelambda.errors import EngineUnavailable
from edgelambda.invocation import MAX_RESPONSE_BYTES
from edgelambda.routing import AuthMode, PayloadVersion
from tests.fakes import function_spec
from tests.gateway_box import LOOPBACK, GatewayFactory, RawHttp, open_gateways, route

TRACE = "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=1"
ORIGIN = "https://app.example.com"
JWT_SECRET = Settings().jwt_secret


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    """A factory of gateways with a fake engine (see :func:`tests.gateway_box.open_gateways`)."""
    async with open_gateways(tmp_path) as start:
        yield start


def token(*, secret: str = JWT_SECRET, issued_s: float | None = None) -> str:
    return issue_token(
        "alice",
        secret=secret,
        now_s=time.time() if issued_s is None else issued_s,
        expires_s=60,
        token_id="t1",
    )


# -- the event the function receives ----------------------------------------------------------


async def test_a_v1_route_sends_a_rest_api_event(gateway: GatewayFactory) -> None:
    box = await gateway(route(methods="POST"))

    response, delivered = await box.call(
        "POST",
        "/items/42?tag=a&tag=b",
        {"statusCode": 200},
        data=b'{"n": 1}',
        headers={"Content-Type": "application/json", "X-Custom": "one", "X-Amzn-Trace-Id": TRACE},
    )

    event = delivered.event()
    assert event["resource"] == "/items/{id}"
    assert (event["httpMethod"], event["path"]) == ("POST", "/items/42")
    assert event["pathParameters"] == {"id": "42"}
    assert event["queryStringParameters"] == {"tag": "b"}
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"]}
    assert event["headers"]["X-Custom"] == "one"
    assert (event["body"], event["isBase64Encoded"]) == ('{"n": 1}', False)
    context = event["requestContext"]
    assert context["path"] == "/prod/items/42"
    assert context["identity"]["sourceIp"] == LOOPBACK
    assert context["authorizer"] is None
    # The gateway's request id and trace id are the function's.
    assert context["requestId"] == response.headers["x-amzn-RequestId"]
    assert delivered.headers["Lambda-Runtime-Trace-Id"] == TRACE
    assert response.headers["X-Amzn-Trace-Id"] == TRACE


async def test_a_v2_route_sends_an_http_api_event(gateway: GatewayFactory) -> None:
    box = await gateway(route(payload=PayloadVersion.V2))

    _, delivered = await box.call(
        "GET", "/items/42?tag=a&tag=b", {"statusCode": 200}, headers={"Cookie": "a=1; b=2"}
    )

    event = delivered.event()
    assert (event["version"], event["routeKey"]) == ("2.0", "GET /items/{id}")
    assert (event["rawPath"], event["rawQueryString"]) == ("/items/42", "tag=a&tag=b")
    assert event["queryStringParameters"] == {"tag": "a,b"}
    assert event["pathParameters"] == {"id": "42"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert "cookie" not in event["headers"]
    assert "body" not in event
    http = event["requestContext"]["http"]
    assert (http["method"], http["path"], http["sourceIp"]) == ("GET", "/items/42", LOOPBACK)


async def test_a_jwt_routes_function_sees_the_callers_claims(gateway: GatewayFactory) -> None:
    box = await gateway(route(auth=AuthMode.JWT))

    response, delivered = await box.call(
        "GET", "/items/1", {"statusCode": 200}, headers={"Authorization": f"Bearer {token()}"}
    )

    assert response.status == 200
    authorizer = delivered.event()["requestContext"]["authorizer"]
    assert authorizer["claims"]["sub"] == "alice"
    assert authorizer["cognito:username"] == "alice"


AUTHORIZATIONS: dict[str, Callable[[], str | None]] = {
    "missing": lambda: None,
    "garbage": lambda: "Bearer not-a-token",
    "wrong-secret": lambda: f"Bearer {token(secret='another-secret-of-at-least-32-bytes!')}",
    "expired": lambda: f"Bearer {token(issued_s=time.time() - 3600)}",
}


@pytest.mark.parametrize("kind", AUTHORIZATIONS)
async def test_a_jwt_route_without_a_valid_token_is_401_without_a_container(
    gateway: GatewayFactory, kind: str
) -> None:
    box = await gateway(route(auth=AuthMode.JWT))
    authorization = AUTHORIZATIONS[kind]()
    headers = {} if authorization is None else {"Authorization": authorization}

    response = await box.client.get("/items/1", headers=headers)

    assert response.status == 401
    assert await response.json() == {"message": "Unauthorized"}
    assert box.backend.started == []


# -- the function's result becomes the response -----------------------------------------------


async def test_a_v1_result_becomes_the_response(gateway: GatewayFactory) -> None:
    box = await gateway(route())
    png = b"\x89PNG\r\n\x1a\n\x00\xff"

    response, _ = await box.call(
        "GET",
        "/items/1",
        {
            "statusCode": 201,
            "headers": {"Content-Type": "image/png", "X-One": "1"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"], "X-Many": ["x", "y"]},
            "body": base64.b64encode(png).decode(),
            "isBase64Encoded": True,
        },
    )

    assert response.status == 201
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["X-One"] == "1"
    assert response.headers.getall("Set-Cookie") == ["a=1", "b=2"]
    assert response.headers.getall("X-Many") == ["x", "y"]
    assert await response.read() == png


@pytest.mark.parametrize(
    ("result", "status", "cookies", "body"),
    [
        (
            {"statusCode": 202, "cookies": ["a=1", "b=2"], "body": "done"},
            202,
            ["a=1", "b=2"],
            b"done",
        ),
        ("Hello from Lambda!", 200, [], b"Hello from Lambda!"),
        ({"k": "v"}, 200, [], b'{"k": "v"}'),
    ],
    ids=["structured", "string", "object"],
)
async def test_a_v2_result_becomes_the_response(
    gateway: GatewayFactory, result: object, status: int, cookies: list[str], body: bytes
) -> None:
    box = await gateway(route(payload=PayloadVersion.V2))

    response, _ = await box.call("GET", "/items/1", result)

    assert response.status == status
    assert response.headers.getall("Set-Cookie", []) == cookies
    assert await response.read() == body


@pytest.mark.parametrize(
    "result",
    [
        b"not json",
        ["a", "list"],
        {"statusCode": 700},
        {"statusCode": 200, "body": 5},
        {"statusCode": 200, "headers": {"X-Split": "a\r\nb"}},
        {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
    ],
    ids=["not-json", "not-an-object", "bad-status", "body-not-text", "line-break", "bad-base64"],
)
async def test_a_malformed_result_is_502(gateway: GatewayFactory, result: object) -> None:
    box = await gateway(route())

    response, _ = await box.call("GET", "/items/1", result)

    assert response.status == 502
    assert await response.json() == {"message": "Internal server error"}
    assert response.headers["x-amzn-ErrorType"] == "MalformedResult"


@pytest.mark.parametrize(
    ("payload", "framing"),
    [
        (PayloadVersion.V1, {"Transfer-Encoding": "chunked"}),
        (PayloadVersion.V1, {"Content-Length": "5"}),
        (PayloadVersion.V2, {"Transfer-Encoding": "chunked"}),
        (PayloadVersion.V2, {"Content-Length": "5", "Connection": "close"}),
    ],
    ids=["v1-chunked", "v1-short-length", "v2-chunked", "v2-short-length-close"],
)
async def test_a_functions_framing_headers_never_frame_the_response(
    gateway: GatewayFactory, payload: PayloadVersion, framing: dict[str, str]
) -> None:
    box = await gateway(route(payload=payload))
    result = {"statusCode": 200, "headers": framing, "body": "hello world"}
    connection = await RawHttp.open(box.client)
    try:
        for n in (1, 2):  # the second request rides the same kept-alive connection
            connection.send("GET", f"/items/{n}")
            delivered = await box.delivered()
            await box.runtime.respond(delivered.request_id, result)

            status, headers, body = await connection.receive()

            assert (status, body) == (200, b"hello world")
            assert "Connection" not in headers
    finally:
        await connection.close()


async def test_a_result_over_lambdas_limit_is_502(gateway: GatewayFactory) -> None:
    box = await gateway(route())
    over = {"statusCode": 200, "body": "x" * MAX_RESPONSE_BYTES}

    response, _ = await box.call("GET", "/items/1", over)

    assert response.status == 502
    assert await response.json() == {"message": "Internal server error"}
    assert response.headers["x-amzn-ErrorType"] == "Function.ResponseSizeTooLarge"


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "body", "allow"),
    [
        ("GET", "/nowhere", 404, {"message": "Not Found"}, None),
        ("DELETE", "/items/1", 405, {"message": "Method Not Allowed"}, "GET, HEAD"),
    ],
)
async def test_a_request_no_route_serves_is_refused_without_a_container(
    gateway: GatewayFactory,
    method: str,
    path: str,
    status: int,
    body: dict[str, str],
    allow: str | None,
) -> None:
    box = await gateway(route())

    response = await box.client.request(method, path)

    assert response.status == status
    assert await response.json() == body
    assert response.headers.get("Allow") == allow
    assert box.backend.started == []


async def test_every_request_leaves_an_access_record(gateway: GatewayFactory) -> None:
    box = await gateway(route())

    response = await box.client.get("/nowhere", headers={"X-Amzn-Trace-Id": TRACE})

    (record,) = [r for r in box.sink.records if r.stream == "access"]
    assert record.message.startswith("GET /nowhere 404 ")
    assert record.request_id == response.headers["x-amzn-RequestId"]
    assert record.trace_id == TRACE
    assert (record.fields["status"], record.level) == (404, "info")


async def test_a_handler_error_is_502_naming_its_type_not_its_message(
    gateway: GatewayFactory,
) -> None:
    box = await gateway(route())
    sent = box.send("GET", "/items/1")
    delivered = await box.delivered()

    await box.runtime.fail(delivered.request_id, "ValueError", "secret detail")
    response = await sent

    assert response.status == 502
    assert await response.json() == {"message": "Internal server error"}
    assert response.headers["x-amzn-ErrorType"] == "ValueError"


async def test_an_init_error_is_502_naming_its_type(gateway: GatewayFactory) -> None:
    box = await gateway(route())
    sent = box.send("GET", "/items/1")
    await box.backend.wait_started()

    await box.runtime.init_error("Runtime.ImportModuleError", "No module named 'app'")
    response = await sent

    assert response.status == 502
    assert response.headers["x-amzn-ErrorType"] == "Runtime.ImportModuleError"


async def test_a_function_past_its_timeout_is_504_and_its_late_answer_refused(
    gateway: GatewayFactory,
) -> None:
    box = await gateway(route(), function=function_spec(max_concurrency=1, timeout_s=0.05))
    sent = box.send("GET", "/items/1")
    delivered = await box.delivered()  # and never answered in time

    response = await sent

    assert response.status == 504
    assert await response.json() == {"message": "Endpoint request timed out"}
    late = await box.runtime.respond(delivered.request_id, {"statusCode": 200})
    assert late.status == 403  # the timed-out sandbox is gone


async def test_a_full_queue_is_429(gateway: GatewayFactory) -> None:
    box = await gateway(route(), queue_size=1)
    first = box.send("GET", "/items/1")
    await box.backend.wait_started()  # the first call waits in the queue for the runtime

    second = await box.client.get("/items/2")

    assert second.status == 429
    assert await second.json() == {"message": "Too Many Requests"}
    await box.runtime.answer({"statusCode": 200, "body": "first"})
    assert (await first).status == 200


# -- CORS ------------------------------------------------------------------------------------


async def test_a_preflight_is_answered_without_invoking(gateway: GatewayFactory) -> None:
    box = await gateway(route(cors=CorsPolicy(frozenset({ORIGIN}))))
    preflight = {"Access-Control-Request-Method": "GET"}

    allowed = await box.client.options("/items/1", headers={**preflight, "Origin": ORIGIN})
    refused = await box.client.options(
        "/items/1", headers={**preflight, "Origin": "https://evil.example"}
    )

    assert allowed.status == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert allowed.headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS"
    assert "Authorization" in allowed.headers["Access-Control-Allow-Headers"]
    assert allowed.headers["Access-Control-Max-Age"] == "600"
    assert allowed.headers["Vary"] == "Origin"
    assert refused.status == 204
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert box.backend.started == []


@pytest.mark.parametrize(
    ("result_headers", "allow_origin"),
    [({}, ORIGIN), ({"Access-Control-Allow-Origin": "https://own.example"}, "https://own.example")],
    ids=["added", "functions-own"],
)
async def test_a_cors_routes_response_carries_its_origin(
    gateway: GatewayFactory, result_headers: dict[str, str], allow_origin: str
) -> None:
    box = await gateway(route(cors=CorsPolicy(frozenset({ORIGIN}))))

    response, _ = await box.call(
        "GET",
        "/items/1",
        {"statusCode": 200, "headers": result_headers},
        headers={"Origin": ORIGIN},
    )

    assert response.headers.getall("Access-Control-Allow-Origin") == [allow_origin]


async def test_an_invoke_the_engine_cannot_run_keeps_the_engine_s_words_to_the_log(
    gateway: GatewayFactory,
) -> None:
    box = await gateway(route())

    async def unreachable(spec: ContainerSpec) -> StartedContainer:
        raise EngineUnavailable("Cannot connect to the Docker daemon at unix:///run/docker.sock")

    box.backend.start = unreachable  # type: ignore[method-assign]
    api_key = Settings().api_key
    response = await box.client.post(
        "/2015-03-31/functions/fn/invocations", data=b"{}", headers={"x-api-key": api_key}
    )

    assert response.status == 500
    assert await response.json() == {
        "Type": "Service",
        "message": "The function could not be run: the box is unavailable",
    }
