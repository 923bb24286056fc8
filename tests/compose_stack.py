"""Shared by the tests of the compose stack (`make up`) and of the Docker-in-Docker box
(`make dind`): their environment, commands, and the stack function's expected results."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import yaml
from aiohttp.test_utils import unused_port

from tests.conftest import REPO_ROOT, TEST_FUNCTIONS

# The `stack` test function does S3 put/get/list/delete and DynamoDB put/get/update/query/
# delete with plain boto3 (no endpoint in its code) on the resources declared here.
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
  - {path: /stack, method: GET, function: stack, auth: none}
"""
STACK_RESULT = {
    "s3": {"body": "hello from a function", "listed": ["hello.txt"], "left": 0},
    "dynamodb": {"got": "5", "updated": "7", "queried": 1, "gone": True},
}


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


def declared_resources(env: dict[str, str]) -> tuple[list[str], list[str]]:
    """Bucket and table names, asked through the S3 and DynamoDB ports the stack publishes."""
    options = {"region_name": "us-east-1", "aws_access_key_id": "edgelambda",
               "aws_secret_access_key": "edgelambda"}  # fmt: skip
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{env['EDGELAMBDA_S3_PORT']}",
                      **options)  # fmt: skip
    dynamodb = boto3.client(
        "dynamodb", endpoint_url=f"http://127.0.0.1:{env['EDGELAMBDA_DYNAMODB_PORT']}", **options
    )
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
