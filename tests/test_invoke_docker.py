"""The AWS Invoke API through the real SDKs (boto3 and aiobotocore) and real containers."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import sys
import time
from typing import Any

import aiobotocore.session
import boto3
import botocore.config
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import GatewayFactory, function_code, ran_echo, routing_text

pytestmark = pytest.mark.docker

SDK = function_code("sdk")
FUNCTIONS = {
    "echo": {"handler": "app.echo", "code": SDK},
    "fail": {"handler": "app.fail", "code": SDK},
    "caller": {"handler": "app.caller", "code": SDK, "timeout": 20},
    "sleepy": {"handler": "app.sleepy", "code": SDK, "timeout": 1},
}
SDK_CONFIG = botocore.config.Config(retries={"max_attempts": 1}, read_timeout=30)
CREDENTIALS = {"aws_access_key_id": "dummy", "aws_secret_access_key": "dummy"}


def lambda_client(client: TestClient) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=str(client.make_url("")),
        region_name="us-east-1",
        config=SDK_CONFIG,
        **CREDENTIALS,
    )


async def invoke(client: TestClient, **kwargs: Any) -> dict[str, Any]:
    sdk = lambda_client(client)
    response: dict[str, Any] = await asyncio.to_thread(sdk.invoke, **kwargs)
    if "Payload" in response:
        response["Body"] = response.pop("Payload").read()
    return response


async def test_sync_invoke_returns_the_payload(gateway: GatewayFactory) -> None:
    client = await gateway(routing_text(FUNCTIONS, []))

    response = await invoke(client, FunctionName="echo", Payload=json.dumps({"n": 1}))

    assert response["StatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert json.loads(response["Body"])["echo"] == {"n": 1}
    assert "FunctionError" not in response


async def test_a_raising_function_is_unhandled_with_its_error(gateway: GatewayFactory) -> None:
    client = await gateway(routing_text(FUNCTIONS, []))

    response = await invoke(client, FunctionName="fail", Payload=b"{}")

    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    error = json.loads(response["Body"])
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "this function always fails"


async def test_tail_returns_the_invocations_log(gateway: GatewayFactory) -> None:
    client = await gateway(routing_text(FUNCTIONS, []))

    response = await invoke(client, FunctionName="echo", Payload=b"{}", LogType="Tail")

    log = base64.b64decode(response["LogResult"]).decode()
    request_id = response["ResponseMetadata"]["RequestId"]
    lines = log.splitlines()
    assert request_id  # botocore read x-amzn-RequestId
    assert lines[0].startswith(f"START RequestId: {request_id} ")  # one id, as on AWS
    assert any(line.startswith("echo handling ") for line in lines)
    assert f"END RequestId: {request_id}" in lines
    report = next(line for line in lines if line.startswith(f"REPORT RequestId: {request_id}"))
    assert "Duration: " in report
    assert "Init Duration: " in report  # the first call was a cold start


CHATTER = {"chatter": {"handler": "app.handler", "code": function_code("chatter"),
                       "max_concurrency": 4, "min_warm": 4}}  # fmt: skip


async def test_every_tail_is_start_output_end_report_under_load(gateway: GatewayFactory) -> None:
    client = await gateway(routing_text(CHATTER, []))
    await _ready(client, "chatter", 4)

    # Waves of four concurrent calls over the four warm containers. Each container's last
    # line is printed right before it returns, so it reaches the gateway after the response.
    tails = []
    for wave in range(8):
        tails += await asyncio.gather(
            *(_tail_of_call(client, n) for n in range(4 * wave, 4 * wave + 4))
        )

    misshapen = [
        (n, lines) for n, (request_id, lines) in enumerate(tails)
        if not _is_start_output_end_report(lines, request_id, n)
    ]  # fmt: skip
    assert misshapen == []


async def _ready(client: TestClient, function: str, count: int) -> None:
    ready = f'edgelambda_containers{{function="{function}",state="ready"}} {float(count)}'
    deadline = time.monotonic() + 30
    while ready not in await (await client.get("/metrics")).text():
        assert time.monotonic() < deadline, f"{count} warm containers never became ready"
        await asyncio.sleep(0.1)


async def _tail_of_call(client: TestClient, n: int) -> tuple[str, list[str]]:
    response = await client.post(
        "/2015-03-31/functions/chatter/invocations",
        json={"n": n, "pause_s": 0.01 * (n % 3)},
        headers={"x-api-key": "dev-api-key-change-in-production", "X-Amz-Log-Type": "Tail"},
    )
    assert response.status == 200, await response.text()
    log = base64.b64decode(response.headers["X-Amz-Log-Result"]).decode()
    return response.headers["x-amzn-RequestId"], log.splitlines()


def _is_start_output_end_report(lines: list[str], request_id: str, n: int) -> bool:
    output = [*(f"call {n} line {i}" for i in range(5)), f"call {n} done"]
    return (
        lines[:1] == [f"START RequestId: {request_id} Version: $LATEST"]
        and lines[1:-2] == output
        and lines[-2:-1] == [f"END RequestId: {request_id}"]
        and lines[-1].startswith(f"REPORT RequestId: {request_id}\t")
    )


async def test_payloads_over_6_mb_are_refused_as_aws_does(gateway: GatewayFactory) -> None:
    client = await gateway(routing_text(FUNCTIONS, []))

    response = await client.post(
        "/2015-03-31/functions/echo/invocations",
        data=io.BytesIO(b"x" * (6 * 1024 * 1024 + 1)),
        headers={"x-api-key": "dev-api-key-change-in-production"},
    )

    assert response.status == 413
    assert response.headers["x-amzn-ErrorType"] == "RequestTooLargeException"
    assert (await response.json())["message"].startswith("Request must be smaller than 6291456")


async def test_unknown_functions_raise_resource_not_found(gateway: GatewayFactory) -> None:
    client = await gateway(routing_text(FUNCTIONS, []))
    sdk = lambda_client(client)

    with pytest.raises(sdk.exceptions.ResourceNotFoundException):
        await asyncio.to_thread(sdk.invoke, FunctionName="nope", Payload=b"{}")


async def test_dry_run_is_204(gateway: GatewayFactory) -> None:
    client = await gateway(routing_text(FUNCTIONS, []))

    response = await invoke(client, FunctionName="echo", InvocationType="DryRun")

    assert response["StatusCode"] == 204


async def test_aiobotocore_invokes_too(gateway: GatewayFactory) -> None:
    client = await gateway(routing_text(FUNCTIONS, []))
    session = aiobotocore.session.get_session()

    async with session.create_client(
        "lambda",
        endpoint_url=str(client.make_url("")),
        region_name="us-east-1",
        config=SDK_CONFIG,
        **CREDENTIALS,
    ) as sdk:
        response = await sdk.invoke(FunctionName="echo", Payload=b'{"async": true}')
        body = await response["Payload"].read()

    assert json.loads(body)["echo"] == {"async": True}


async def test_calls_without_credentials_are_refused(gateway: GatewayFactory) -> None:
    client = await gateway(routing_text(FUNCTIONS, []))

    response = await client.post("/2015-03-31/functions/echo/invocations", data=b"{}")
    with_key = await client.post(
        "/2015-03-31/functions/echo/invocations",
        data=b"{}",
        headers={"x-api-key": "dev-api-key-change-in-production"},
    )

    assert response.status == 403
    assert response.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert with_key.status == 200


async def test_non_json_payloads_are_invalid_request_content(gateway: GatewayFactory) -> None:
    client = await gateway(routing_text(FUNCTIONS, []))
    sdk = lambda_client(client)

    with pytest.raises(sdk.exceptions.InvalidRequestContentException):
        await asyncio.to_thread(sdk.invoke, FunctionName="echo", Payload=b"not json")


async def test_a_function_invokes_another_through_the_sdk(gateway: GatewayFactory) -> None:
    client = await gateway(routing_text(FUNCTIONS, []), reachable_from_functions=True)
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"

    started = time.monotonic()
    response = await client.post(
        "/2015-03-31/functions/caller/invocations",
        data=b"{}",
        headers={"x-api-key": "dev-api-key-change-in-production", "X-Amzn-Trace-Id": trace},
    )

    assert response.status == 200, await response.text()
    result = await response.json()
    assert result["child"]["echo"] == {"from": "caller"}
    assert result["async_status"] == 202
    assert result["endpoint"].startswith("http://")
    # The child ran under the caller's trace root.
    assert result["child"]["trace"].startswith("Root=1-5759e988-bd862e3fe1be46a994272793")
    assert time.monotonic() - started < 20


async def test_an_event_invocation_is_202_and_runs(gateway: GatewayFactory) -> None:
    client = await gateway(routing_text(FUNCTIONS, []))

    response = await invoke(
        client, FunctionName="echo", InvocationType="Event", Payload=b'{"e": 1}'
    )
    deadline = time.monotonic() + 15
    while not ran_echo(client):
        assert time.monotonic() < deadline, "the event never ran"
        await asyncio.sleep(0.1)

    assert response["StatusCode"] == 202


async def test_client_context_reaches_the_function(gateway: GatewayFactory) -> None:
    client = await gateway(routing_text(FUNCTIONS, []))
    context = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()

    response = await invoke(client, FunctionName="echo", Payload=b"{}", ClientContext=context)

    assert json.loads(response["Body"])["client_context"] == {"k": "v"}


async def test_a_timeout_is_an_unhandled_function_error(gateway: GatewayFactory) -> None:
    client = await gateway(routing_text(FUNCTIONS, []))

    response = await invoke(client, FunctionName="sleepy", Payload=b'{"s": 5}')

    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert "Task timed out after 1.00 seconds" in json.loads(response["Body"])["errorMessage"]


async def test_the_cli_invokes_and_prints_the_log(gateway: GatewayFactory) -> None:
    client = await gateway(routing_text(FUNCTIONS, []))

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgelambda", "invoke", "echo", "--payload", '{"cli": 1}', "--log",
        env={**os.environ, "EDGELAMBDA_URL": str(client.make_url("")).rstrip("/")},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)

    assert process.returncode == 0, stderr.decode()
    assert json.loads(stdout)["echo"] == {"cli": 1}
    assert "REPORT RequestId: " in stderr.decode()
