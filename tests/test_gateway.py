"""The HTTP request path, without an engine: the real gateway, pool and Runtime API on
127.0.0.1, a fake container backend, and a fake runtime playing the function."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from edgelambda.auth import issue_token
from edgelambda.config import Settings
from edgelambda.cors import CorsPolicy
from edgelambda.gateway import SERVER_KEY, create_app
from edgelambda.logs import RecordingSink
from edgelambda.routing import AuthMode, FunctionSpec, PayloadVersion, Route, RoutingTable
from tests.fakes import Delivered, FakeBackend, FakeRuntime, function_spec

LOOPBACK = "127.0.0.1"  # where the fake runtime calls the Runtime API from
TRACE = "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=1"
ORIGIN = "https://app.example.com"
# Lambda's streamed HTTP response: a JSON prelude, eight NUL bytes, then the body.
HTTP_INTEGRATION = "application/vnd.awslambda.http-integration-response"
PRELUDE_END = b"\0" * 8
JWT_SECRET = Settings().jwt_secret


def route(
    path: str = "/items/{id}",
    methods: str = "GET",
    *,
    auth: AuthMode = AuthMode.NONE,
    payload: PayloadVersion = PayloadVersion.V1,
    cors: CorsPolicy | None = None,
) -> Route:
    return Route(path, frozenset(methods.split()), "fn", auth=auth, payload=payload, cors=cors)


@dataclass(frozen=True)
class Gateway:
    """A gateway serving one function ``fn``, its fake engine, the runtime of ``fn``, and
    where the gateway's logs go."""

    client: TestClient[web.Request, web.Application]
    backend: FakeBackend
    runtime: FakeRuntime
    sink: RecordingSink

    def send(self, method: str, path: str, **kwargs: Any) -> asyncio.Task[ClientResponse]:
        async def request() -> ClientResponse:
            return await self.client.request(method, path, **kwargs)

        return asyncio.create_task(request())

    async def delivered(self) -> Delivered:
        """The next invocation, taken by the runtime once a container has been started."""
        await self.backend.wait_started()
        return await self.runtime.next()

    async def call(
        self, method: str, path: str, result: object, **kwargs: Any
    ) -> tuple[ClientResponse, Delivered]:
        """Send a request, let the function answer ``result``; the response (read) and the
        invocation as the function received it."""
        sent = self.send(method, path, **kwargs)
        delivered = await self.delivered()
        await self.runtime.respond(delivered.request_id, result)
        response = await sent
        await response.read()
        return response, delivered


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    """Factory: ``await gateway(route, ..., function=spec, **settings)`` -> a started
    gateway whose containers get 127.0.0.1, so the fake runtime is their runtime; one sandbox
    at most unless ``function`` says otherwise. Teardown shuts it down."""
    opened: list[tuple[TestClient[web.Request, web.Application], FakeRuntime]] = []

    async def start(
        *routes: Route, function: FunctionSpec | None = None, **settings: Any
    ) -> Gateway:
        backend, sink = FakeBackend(address=LOOPBACK), RecordingSink()
        table = RoutingTable(
            functions={"fn": function or function_spec(max_concurrency=1)}, routes=routes
        )
        base = Settings(
            runtime_api_host=LOOPBACK,
            runtime_api_port=0,
            data_dir=tmp_path,
            is_reload_enabled=False,
            shutdown_grace_s=0.1,
            reap_interval_s=3600,
        )
        app = create_app(replace(base, **settings), table, backend, sink)
        client = TestClient(TestServer(app))
        await client.start_server()
        runtime = FakeRuntime(app[SERVER_KEY].runtime_api)
        opened.append((client, runtime))
        return Gateway(client, backend, runtime, sink)

    yield start
    for client, runtime in opened:
        await client.close()
        await runtime.close()


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
