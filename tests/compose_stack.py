"""Shared by the tests of the compose stack (`make up`) and of the Docker-in-Docker box
(`make dind`): their environment, commands, and the stack function's expected results."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import boto3
import yaml
from aiohttp.test_utils import unused_port

from edgelambda.config import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_API_KEY,
    DEFAULT_AUTH_PASS,
    DEFAULT_SECRET_ACCESS_KEY,
    Settings,
)
from edgelambda.tracing import trace_root
from tests.conftest import REPO_ROOT, TEST_FUNCTIONS, stack_containers

# The `stack` test function does S3 put/get/list/delete and DynamoDB put/get/update/query/
# delete with plain boto3 (no endpoint in its code) on the resources declared here, behind
# the JWT of the original client's auth endpoint.
STACK_ROUTING = """
resources:
  buckets: [uploads]
  tables:
    orders:
      KeySchema: [{AttributeName: id, KeyType: HASH}]
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
functions:
  stack:
    handler: app.handler
    code: functions/stack
    timeout: 60
routes:
  - {path: /stack, method: GET, function: stack, auth: jwt}
"""
STACK_RESULT = {
    "s3": {"body": "hello from a function", "listed": ["hello.txt"], "left": 0},
    "dynamodb": {"got": "5", "updated": "7", "queried": 1, "gone": True},
}
# The seed's development credentials of the auth endpoint.
DEV_LOGIN = {"api_key": DEFAULT_API_KEY, "user": Settings.auth_user, "password": DEFAULT_AUTH_PASS}


def stack_result(body: dict[str, Any]) -> dict[str, Any]:
    """What the stack function did with S3 and DynamoDB (without its per-call fields)."""
    return {"s3": body["s3"], "dynamodb": body["dynamodb"]}


async def login(
    session: aiohttp.ClientSession, gateway: str, *, api_key: str, user: str, password: str
) -> str:
    """A token from the original client's endpoint, as its client asks for one."""
    credentials = {"AuthParameters": {"USERNAME": user, "PASSWORD": password}}
    async with session.post(
        f"{gateway}/user/auth/ver1.0", headers={"x-api-key": api_key}, json=credentials
    ) as response:
        assert response.status == 200, await response.text()
        token: str = (await response.json())["AuthenticationResult"]["IdToken"]
    return token


async def original_client_flow(gateway: str, logs_url: str, **login_as: str) -> None:
    """The original client's flow with auth on: log in, call the JWT-protected route, whose
    function puts and reads back an S3 object and a DynamoDB item and sees the user, then
    find its log line by request id with `edgelambda logs`, attributed and traced."""
    trace = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=1"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{gateway}/stack") as refused:
            assert refused.status == 401
        token = await login(session, gateway, **login_as)
        headers = {"Authorization": f"Bearer {token}", "X-Amzn-Trace-Id": trace}
        async with session.get(f"{gateway}/stack", headers=headers) as response:
            assert response.status == 200, await response.text()
            body = await response.json()
    assert stack_result(body) == STACK_RESULT
    assert body["user"] == login_as["user"]  # requestContext.authorizer.claims, as ported
    said = f"stack: s3 and dynamodb used by {body['request_id']}"
    records = await logged(logs_url, "stack", body["request_id"], said)
    line = next(record for record in records if said in record["_msg"])
    assert line["function"] == "stack"
    assert line["aws_request_id"] == body["request_id"]
    assert trace_root(line["trace_id"]) == trace_root(trace)


async def logged(
    logs_url: str, function: str, request_id: str, text: str, within_s: float = 30
) -> list[dict[str, Any]]:
    """An invocation's records through `edgelambda logs --request-id --json`, once one of
    them says ``text`` (shipping is batched) or the wait is over."""
    env = {**os.environ, "EDGELAMBDA_VICTORIALOGS_URL": logs_url}
    command = [sys.executable, "-m", "edgelambda", "logs", function, "--request-id", request_id]
    deadline = time.monotonic() + within_s
    while True:
        output = await run_command(*command, "--json", env=env)
        records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        if any(text in record.get("_msg", "") for record in records):
            return records
        assert time.monotonic() < deadline, f"no line saying {text!r} in {records}"
        await asyncio.sleep(1)


def project_dir(root: Path, routing: str, functions: list[str]) -> tuple[Path, Path]:
    """A routing.yaml and a functions/ directory holding the named test functions."""
    (root / "functions").mkdir()
    for name in functions:
        shutil.copytree(TEST_FUNCTIONS / name, root / "functions" / name)
    (root / "routing.yaml").write_text(routing)
    return root / "routing.yaml", root / "functions"


PUBLISHED_PORTS = (
    "EDGELAMBDA_HTTP_PORT", "EDGELAMBDA_S3_PORT", "EDGELAMBDA_S3_CONSOLE_PORT",
    "EDGELAMBDA_DYNAMODB_PORT", "EDGELAMBDA_VICTORIALOGS_PORT",
)  # fmt: skip


def compose_env(project: str, routing: Path, functions: Path) -> dict[str, str]:
    """Environment for the Makefile's compose targets: a project of its own, its stand-ins,
    and free ports on 127.0.0.1 for everything the stack publishes."""
    return {
        **os.environ,
        "EDGELAMBDA_STANDINS": "1",
        "COMPOSE_PROJECT_NAME": project,
        "EDGELAMBDA_BIND_ADDRESS": "127.0.0.1",
        "EDGELAMBDA_ROUTING": str(routing),
        "EDGELAMBDA_FUNCTIONS": str(functions),
        **{name: str(unused_port()) for name in PUBLISHED_PORTS},
    }


def stack_project_env(root: Path) -> dict[str, str]:
    """`make up` / `make down` with the stack function, and a project, network, stack label
    and ports of its own."""
    project = f"eltest{uuid.uuid4().hex[:8]}"
    env = compose_env(project, *project_dir(root, STACK_ROUTING, ["stack"]))
    return env | {"EDGELAMBDA_NETWORK": f"{project}_net", "EDGELAMBDA_STACK": project}


async def remove_stack(env: dict[str, str], docker: aiodocker.Docker) -> None:
    """Everything a stack test's project started: the stack, its volumes, its functions."""
    project = env["COMPOSE_PROJECT_NAME"]
    files = ["-f", "compose/docker-compose.yml", "-f", "compose/docker-compose.standins.yml"]
    await run_command(
        *await compose_command(env), "-p", project, *files,
        "down", "-v", "--remove-orphans", env=env,
    )  # fmt: skip
    for container_id in await stack_containers(docker, project):
        await docker.containers.container(container_id).delete(force=True)


async def run_command(*command: str, env: dict[str, str], timeout_s: float = 600) -> str:
    """Run a command from the repository root; its combined output, asserting it succeeded."""
    process = await asyncio.create_subprocess_exec(
        *command, cwd=REPO_ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), timeout=timeout_s)
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"{' '.join(command)} failed:\n{text[-3000:]}"
    return text


async def compose_command(env: dict[str, str]) -> list[str]:
    """`docker compose` or `docker-compose`, as scripts/ensure-compose.sh picks it."""
    output = await run_command("bash", "scripts/ensure-compose.sh", env=env)
    return output.strip().splitlines()[-1].split()


def data_client(service: str, env: dict[str, str], key: str, secret: str) -> Any:
    """A boto3 client of the stack's S3 or DynamoDB port on 127.0.0.1."""
    port = env["EDGELAMBDA_S3_PORT" if service == "s3" else "EDGELAMBDA_DYNAMODB_PORT"]
    return boto3.client(
        service, endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
        aws_access_key_id=key, aws_secret_access_key=secret,
    )  # fmt: skip


def declared_resources(env: dict[str, str]) -> tuple[list[str], list[str]]:
    """Bucket and table names, asked through the S3 and DynamoDB ports the stack publishes."""
    s3 = data_client("s3", env, DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY)
    dynamodb = data_client("dynamodb", env, DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY)
    buckets = [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]
    return buckets, dynamodb.list_tables()["TableNames"]


def add_route_in_place(routing: Path, route: dict[str, str]) -> None:
    """Add a route by rewriting routing.yaml in place (the same inode), the edit a file
    bind-mounted into the gateway's container shows."""
    spec = yaml.safe_load(routing.read_text())
    spec["routes"].append(route)
    routing.write_text(yaml.safe_dump(spec))


async def get_json(url: str, *, within_s: float = 0) -> Any:
    """GET a 200 JSON answer, retrying other answers and refused or dropped connections for
    up to `within_s` seconds (while a reload lands, while a stack starts)."""
    deadline = time.monotonic() + within_s
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    status, body = response.status, await response.text()
            except aiohttp.ClientError as exc:
                status, body = 0, repr(exc)
            if status == 200 or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.5)
    assert status == 200, body
    return json.loads(body)
