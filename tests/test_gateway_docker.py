"""The walking skeleton end to end: HTTP request -> API Gateway event -> a real container
running the real awslambdaric -> HTTP response."""

from __future__ import annotations

import json
import uuid

import aiodocker
import pytest
from structlog.testing import capture_logs

from edgelambda.gateway import SERVER_KEY
from tests.conftest import (
    BOTH_BACKENDS,
    GatewayFactory,
    function_code,
    routing_text,
    sandboxes_left,
    stack_containers,
)
from tests.gateway_box import RawHttp

pytestmark = pytest.mark.docker

HELLO = routing_text(
    {
        "hello": {"handler": "app.handler", "code": function_code("hello")},
        "boom": {"handler": "app.handler", "code": function_code("boom")},
    },
    [
        {"path": "/hello/{name}", "method": "GET", "function": "hello", "auth": "none"},
        {"path": "/boom", "method": "GET", "function": "boom", "auth": "none"},
    ],
)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@BOTH_BACKENDS
async def test_request_runs_the_handler_in_a_container(gateway: GatewayFactory) -> None:
    client = await gateway(HELLO)

    response = await client.get("/hello/world")

    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["message"] == "Hello, world!"
    assert body["name"] == "world"  # the path parameter, as the handler saw it
    assert body["path"] == "/hello/world"
    assert body["function_name"] == "hello"
    assert _is_uuid(body["aws_request_id"])  # set by awslambdaric from our Runtime API
    assert response.headers["Content-Type"] == "application/json"
    assert _is_uuid(response.headers["x-amzn-RequestId"])


@BOTH_BACKENDS
async def test_warm_request_reuses_the_container(
    gateway: GatewayFactory, docker: aiodocker.Docker
) -> None:
    client = await gateway(HELLO)
    first = await (await client.get("/hello/one")).json()
    second = await (await client.get("/hello/two")).json()

    assert (first["name"], second["name"]) == ("one", "two")
    assert first["aws_request_id"] != second["aws_request_id"]
    stack = client.app[SERVER_KEY].settings.stack
    assert len(await stack_containers(docker, stack)) == 1


@BOTH_BACKENDS
async def test_handler_exception_is_a_502_and_is_logged(gateway: GatewayFactory) -> None:
    client = await gateway(HELLO)

    with capture_logs() as logs:
        response = await client.get("/boom")

    assert response.status == 502
    assert await response.json() == {"message": "Internal server error"}
    errors = [e for e in logs if e["event"] == "function error"]
    assert len(errors) == 1
    assert errors[0]["error_type"] == "BoomError"
    assert "boom for " in errors[0]["error"]  # the error JSON awslambdaric posted


@BOTH_BACKENDS
async def test_unknown_path_is_404_without_a_container(
    gateway: GatewayFactory, docker: aiodocker.Docker
) -> None:
    client = await gateway(HELLO)

    response = await client.get("/nowhere")

    assert response.status == 404
    assert await response.json() == {"message": "Not Found"}
    stack = client.app[SERVER_KEY].settings.stack
    assert await stack_containers(docker, stack) == []


@BOTH_BACKENDS
async def test_shutdown_removes_every_container(
    gateway: GatewayFactory, docker: aiodocker.Docker
) -> None:
    client = await gateway(HELLO)
    assert (await client.get("/hello/a")).status == 200
    stack = client.app[SERVER_KEY].settings.stack
    assert len(await stack_containers(docker, stack)) == 1

    await client.close()

    # None left: no Swarm service, and its task's container gone with it a moment later.
    assert await sandboxes_left(docker, stack) == []


@BOTH_BACKENDS
async def test_a_missing_base_image_is_a_clear_503(gateway: GatewayFactory) -> None:
    client = await gateway(HELLO, runtime_images={"python3.12": "edgelambda/does-not-exist:1"})

    with capture_logs() as logs:
        response = await client.get("/hello/world")

    assert response.status == 503
    assert await response.json() == {"message": "Service Unavailable"}
    failures = [e for e in logs if e["event"] == "cold start failed"]
    assert "edgelambda/does-not-exist:1" in failures[0]["error"]
    assert "make base-images" in failures[0]["error"]


WHO_AM_I = routing_text(
    {"me": {"handler": "app.handler", "code": function_code("responses")}},
    [
        {"path": "/me/v1", "method": "GET", "function": "me", "auth": "jwt"},
        {"path": "/me/v2", "method": "GET", "function": "me", "auth": "jwt", "payload": "2.0"},
    ],
)


@BOTH_BACKENDS
async def test_a_jwt_routes_handler_sees_the_user_as_cognito_did(gateway: GatewayFactory) -> None:
    client = await gateway(WHO_AM_I, auth_user="ada", auth_pass="analytical-engine")
    login = await client.post(
        "/user/auth/ver1.0",
        json={"AuthParameters": {"USERNAME": "ada", "PASSWORD": "analytical-engine"}},
        headers={"x-api-key": client.app[SERVER_KEY].settings.api_key},
    )
    token = (await login.json())["AuthenticationResult"]["IdToken"]
    bearer = {"Authorization": f"Bearer {token}"}

    v1 = await client.get("/me/v1?shape=echo", headers=bearer)
    v2 = await client.get("/me/v2?shape=echo", headers=bearer)

    assert (v1.status, v2.status) == (200, 200), await v1.text()
    authorizer = json.loads(await v1.text())["requestContext"]["authorizer"]
    jwt_claims = json.loads(await v2.text())["requestContext"]["authorizer"]["jwt"]["claims"]
    for claims in (authorizer["claims"], jwt_claims):
        assert claims["cognito:username"] == claims["username"] == claims["sub"] == "ada"
        assert all(isinstance(value, str) for value in claims.values())  # as API Gateway
    assert authorizer["cognito:username"] == authorizer["username"] == "ada"


FRAMING = routing_text(
    {"framing": {"handler": "app.handler", "code": function_code("framing")}},
    [
        {"path": "/framing/v1", "method": "GET", "function": "framing", "auth": "none"},
        {
            "path": "/framing/v2",
            "method": "GET",
            "function": "framing",
            "auth": "none",
            "payload": "2.0",
        },
    ],
)


@BOTH_BACKENDS
async def test_a_functions_framing_headers_never_frame_the_response(
    gateway: GatewayFactory,
) -> None:
    client = await gateway(FRAMING)
    connection = await RawHttp.open(client)
    try:
        # One kept-alive connection: a body framed by the function's headers would be cut
        # short (the rest read as the next response) or never end.
        for path in ("/framing/v1", "/framing/v2"):
            for case in ("chunked", "short", "chunked"):
                connection.send("GET", f"{path}?case={case}")

                status, headers, body = await connection.receive(timeout_s=60)

                assert (status, body) == (200, b"hello world"), (path, case)
                assert "Connection" not in headers
    finally:
        await connection.close()
