"""Production mode through `make up` (stand-ins): a default secret stops it before anything
starts, naming each; with every secret set, the stack is healthy, the data services answer
on 127.0.0.1 only, the Invoke API refuses unsigned and wrongly signed calls and serves a
boto3 call signed with the box's keys, and no default credential works anywhere."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import boto3
import botocore.exceptions
import pytest

from edgelambda.config import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY
from tests.compose_stack import (
    DEV_LOGIN,
    STACK_RESULT,
    data_client,
    login,
    remove_stack,
    run_command,
    stack_project_env,
    stack_result,
)

pytestmark = pytest.mark.docker

SECRETS = {
    "JWT_SECRET_KEY": "a-production-secret-of-at-least-32-bytes",
    "X_API_KEY": "a-production-api-key",
    "AUTH_PASS": "a-production-password",
    "EDGELAMBDA_AWS_ACCESS_KEY_ID": "boxkey",
    "EDGELAMBDA_AWS_SECRET_ACCESS_KEY": "box-secret-access-key",
}
BOX_KEY, BOX_SECRET = (
    SECRETS["EDGELAMBDA_AWS_ACCESS_KEY_ID"],
    SECRETS["EDGELAMBDA_AWS_SECRET_ACCESS_KEY"],
)
DATA_PORTS = {
    "rustfs": ("EDGELAMBDA_S3_PORT", "EDGELAMBDA_S3_CONSOLE_PORT"),
    "scylladb": ("EDGELAMBDA_DYNAMODB_PORT",),
    "victorialogs": ("EDGELAMBDA_VICTORIALOGS_PORT",),
}
GATEWAY_ADDRESS = "127.0.0.2"  # another loopback address: the data services must not be on it


@pytest.fixture
async def production_env(tmp_path: Path, docker: aiodocker.Docker) -> AsyncIterator[dict[str, str]]:
    """`make up` in production mode with a project, network and ports of its own; the
    gateway published on 127.0.0.2, the data services left to production's default."""
    env = stack_project_env(tmp_path)
    env |= {"EDGELAMBDA_PRODUCTION": "true", "EDGELAMBDA_BIND_ADDRESS": GATEWAY_ADDRESS}
    for name in (*SECRETS, "EDGELAMBDA_DATA_BIND_ADDRESS", "EDGELAMBDA_ENV_FILE"):
        env.pop(name, None)
    try:
        yield env
    finally:
        await remove_stack(env, docker)


async def make_up_fails(env: dict[str, str]) -> str:
    process = await asyncio.create_subprocess_exec(
        "make", "up", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=600)
    assert process.returncode != 0
    return output.decode(errors="replace")


async def published_addresses(docker: aiodocker.Docker, project: str) -> dict[str, set[str]]:
    """Host addresses each service of the project publishes its ports on."""
    filters = json.dumps({"label": [f"com.docker.compose.project={project}"]})
    addresses: dict[str, set[str]] = {}
    for container in await docker.containers.list(filters=filters):
        info = await container.show()
        service = info["Config"]["Labels"]["com.docker.compose.service"]
        bindings = info["HostConfig"]["PortBindings"] or {}
        addresses[service] = {b["HostIp"] for binding in bindings.values() for b in binding}
    return addresses


def refuses_connection(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def lambda_client(gateway: str, key: str, secret: str) -> Any:
    return boto3.client(
        "lambda", endpoint_url=gateway, region_name="us-east-1",
        aws_access_key_id=key, aws_secret_access_key=secret,
    )  # fmt: skip


def invoke(client: Any) -> dict[str, Any]:
    response = client.invoke(FunctionName="stack", Payload=b"{}")
    return {"status": response["StatusCode"], "payload": json.loads(response["Payload"].read())}


def refused_invoke(client: Any) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        client.invoke(FunctionName="stack", Payload=b"{}")
    return str(refused.value.response["Error"]["Code"])


async def test_production_refuses_default_secrets_naming_each(
    production_env: dict[str, str],
) -> None:
    env = {**production_env, "JWT_SECRET_KEY": SECRETS["JWT_SECRET_KEY"]}

    output = await make_up_fails(env)

    for name in set(SECRETS) - {"JWT_SECRET_KEY"}:
        assert name in output
    assert "JWT_SECRET_KEY" not in output.split("configuration error:")[-1]


async def test_production_box_with_its_own_secrets(
    production_env: dict[str, str], docker: aiodocker.Docker, tmp_path: Path
) -> None:
    # The secrets come from an env file, as an operator's `.env` would give them.
    env_file = tmp_path / "production.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in SECRETS.items()))
    env = {**production_env, "EDGELAMBDA_ENV_FILE": str(env_file)}
    await run_command("make", "up", env=env)
    project = env["COMPOSE_PROJECT_NAME"]
    gateway = f"http://{GATEWAY_ADDRESS}:{env['EDGELAMBDA_HTTP_PORT']}"

    addresses = await published_addresses(docker, project)
    assert addresses["gateway"] == {GATEWAY_ADDRESS}
    for service, ports in DATA_PORTS.items():
        assert addresses[service] == {"127.0.0.1"}, service
        for port in ports:
            assert refuses_connection(GATEWAY_ADDRESS, int(env[port])), port
            socket.create_connection(("127.0.0.1", int(env[port])), timeout=5).close()
    s3 = data_client("s3", env, BOX_KEY, BOX_SECRET)
    assert "uploads" in [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]
    default_s3 = data_client("s3", env, DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY)
    with pytest.raises(botocore.exceptions.ClientError, match="InvalidAccessKeyId"):
        default_s3.list_buckets()

    async with aiohttp.ClientSession() as session:
        invocations = f"{gateway}/2015-03-31/functions/stack/invocations"
        for authorization in ({}, {"Authorization": "AWS4-HMAC-SHA256 x"}):  # the call
            async with session.post(invocations, headers=authorization) as unsigned:
                assert unsigned.status == 403
        seed = {
            "AuthParameters": {"USERNAME": DEV_LOGIN["user"], "PASSWORD": DEV_LOGIN["password"]}
        }
        for api_key in (DEV_LOGIN["api_key"], SECRETS["X_API_KEY"]):  # no default works
            async with session.post(
                f"{gateway}/user/auth/ver1.0", headers={"x-api-key": api_key}, json=seed
            ) as refused:
                assert refused.status == 401
        token = await login(
            session, gateway, api_key=SECRETS["X_API_KEY"], user=DEV_LOGIN["user"],
            password=SECRETS["AUTH_PASS"],
        )  # fmt: skip
        async with session.get(f"{gateway}/stack", headers={"Authorization": token}) as response:
            assert response.status == 200
            assert stack_result(await response.json()) == STACK_RESULT

    wrong = lambda_client(gateway, BOX_KEY, "a-guessed-secret")
    assert await asyncio.to_thread(refused_invoke, wrong) == "AccessDeniedException"
    default = lambda_client(gateway, DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY)
    assert await asyncio.to_thread(refused_invoke, default) == "AccessDeniedException"
    right = lambda_client(gateway, BOX_KEY, BOX_SECRET)
    result = await asyncio.to_thread(invoke, right)
    assert result["status"] == 200
    assert stack_result(json.loads(result["payload"]["body"])) == STACK_RESULT
