"""The compose stack with its stand-ins (moto for S3 and DynamoDB, a log recorder for
VictoriaLogs): one command brings it up, a function using plain boto3 reaches S3 and
DynamoDB through it, the declared resources exist, and `make down` leaves no container."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import aiohttp
import boto3
import pytest
from aiohttp.test_utils import unused_port

from tests.conftest import REPO_ROOT, TEST_FUNCTIONS, stack_containers

pytestmark = pytest.mark.docker

ROUTING = """
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
  - {path: /stack, method: GET, function: stack, auth: none}
"""


async def run(*command: str, env: dict[str, str], timeout_s: float = 600) -> str:
    process = await asyncio.create_subprocess_exec(
        *command, cwd=REPO_ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), timeout=timeout_s)
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"{' '.join(command)} failed:\n{text[-3000:]}"
    return text


@pytest.fixture
async def stack_env(tmp_path: Path, docker: aiodocker.Docker) -> AsyncIterator[dict[str, str]]:
    """Environment for `make up` / `make down` with a project, network and ports of its own."""
    project = f"eltest{uuid.uuid4().hex[:8]}"
    (tmp_path / "functions").mkdir()
    shutil.copytree(TEST_FUNCTIONS / "stack", tmp_path / "functions" / "stack")
    (tmp_path / "routing.yaml").write_text(ROUTING)
    env = {
        **os.environ,
        "EDGELAMBDA_STANDINS": "1",
        "COMPOSE_PROJECT_NAME": project,
        "EDGELAMBDA_NETWORK": f"{project}_net",
        "EDGELAMBDA_STACK": project,
        "EDGELAMBDA_BIND_ADDRESS": "127.0.0.1",
        "EDGELAMBDA_ROUTING": str(tmp_path / "routing.yaml"),
        "EDGELAMBDA_FUNCTIONS": str(tmp_path / "functions"),
        **{
            name: str(unused_port())
            for name in (
                "EDGELAMBDA_HTTP_PORT", "EDGELAMBDA_S3_PORT", "EDGELAMBDA_S3_CONSOLE_PORT",
                "EDGELAMBDA_DYNAMODB_PORT", "EDGELAMBDA_VICTORIALOGS_PORT",
            )
        },
    }  # fmt: skip
    try:
        yield env
    finally:
        compose = (await run("bash", "scripts/ensure-compose.sh", env=env)).strip().splitlines()[-1]
        files = ["-f", "compose/docker-compose.yml", "-f", "compose/docker-compose.standins.yml"]
        await run(*compose.split(), *files, "down", "-v", "--remove-orphans", env=env)
        for container_id in await stack_containers(docker, project):
            await docker.containers.container(container_id).delete(force=True)


async def test_the_stack_serves_boto3_functions_on_s3_and_dynamodb(
    stack_env: dict[str, str], docker: aiodocker.Docker
) -> None:
    await run("make", "up", env=stack_env)
    gateway = f"http://127.0.0.1:{stack_env['EDGELAMBDA_HTTP_PORT']}"

    async with aiohttp.ClientSession() as session, session.get(f"{gateway}/stack") as response:
        body = await response.text()
    assert response.status == 200, body
    result = json.loads(body)
    assert result["s3"] == {"body": "hello from a function", "listed": ["hello.txt"], "left": 0}
    assert result["dynamodb"] == {"got": "5", "updated": "7", "queried": 1, "gone": True}

    def resources() -> tuple[list[str], list[str]]:
        options = {"region_name": "us-east-1", "aws_access_key_id": "edgelambda",
                   "aws_secret_access_key": "edgelambda"}  # fmt: skip
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{stack_env['EDGELAMBDA_S3_PORT']}",
                          **options)  # fmt: skip
        dynamodb = boto3.client(
            "dynamodb", endpoint_url=f"http://127.0.0.1:{stack_env['EDGELAMBDA_DYNAMODB_PORT']}",
            **options,
        )  # fmt: skip
        buckets = [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]
        return buckets, dynamodb.list_tables()["TableNames"]

    buckets, tables = await asyncio.to_thread(resources)
    assert "uploads" in buckets
    assert "orders" in tables

    await run("make", "down", env=stack_env)
    project = stack_env["COMPOSE_PROJECT_NAME"]
    left = await docker.containers.list(
        all=True, filters=json.dumps({"label": [f"com.docker.compose.project={project}"]})
    )
    assert left == []
    assert await stack_containers(docker, project) == []  # the functions' containers too


@pytest.mark.parametrize(
    "files",
    [["compose/docker-compose.yml"],
     ["compose/docker-compose.yml", "compose/docker-compose.standins.yml"]],
    ids=["stack", "stack-with-stand-ins"],
)  # fmt: skip
async def test_compose_files_are_valid(files: list[str]) -> None:
    env = dict(os.environ)
    compose = (await run("bash", "scripts/ensure-compose.sh", env=env)).strip().splitlines()[-1]
    arguments = [part for name in files for part in ("-f", name)]

    config = await run(*compose.split(), *arguments, "config", env=env)

    assert "gateway:" in config
    assert "9001" not in config.split("gateway:")[1].split("rustfs:")[0]  # Runtime API unpublished
