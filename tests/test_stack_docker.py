"""The compose stack with its stand-ins (moto for S3 and DynamoDB, a log recorder for
VictoriaLogs): one command brings it up, a function using plain boto3 reaches S3 and
DynamoDB through it, the declared resources exist, and `make down` leaves no container."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest
import yaml

from tests.compose_stack import (
    STACK_RESULT,
    STACK_ROUTING,
    add_route_in_place,
    compose_command,
    compose_env,
    declared_resources,
    get_json,
    project_dir,
    run_command,
)
from tests.conftest import stack_containers

pytestmark = pytest.mark.docker


@pytest.fixture
async def stack_env(tmp_path: Path, docker: aiodocker.Docker) -> AsyncIterator[dict[str, str]]:
    """Environment for `make up` / `make down` with a project, network and ports of its own."""
    project = f"eltest{uuid.uuid4().hex[:8]}"
    env = compose_env(project, *project_dir(tmp_path, STACK_ROUTING, ["stack"]))
    env |= {"EDGELAMBDA_NETWORK": f"{project}_net", "EDGELAMBDA_STACK": project}
    try:
        yield env
    finally:
        files = ["-f", "compose/docker-compose.yml", "-f", "compose/docker-compose.standins.yml"]
        await run_command(
            *await compose_command(env), "-p", project, *files,
            "down", "-v", "--remove-orphans", env=env,
        )  # fmt: skip
        for container_id in await stack_containers(docker, project):
            await docker.containers.container(container_id).delete(force=True)


async def test_the_stack_serves_boto3_functions_on_s3_and_dynamodb(
    stack_env: dict[str, str], docker: aiodocker.Docker
) -> None:
    await run_command("make", "up", env=stack_env)
    gateway = f"http://127.0.0.1:{stack_env['EDGELAMBDA_HTTP_PORT']}"

    assert await get_json(f"{gateway}/stack") == STACK_RESULT
    # routing.yaml is a file mount in the gateway's container; an edit still reloads.
    again = {"path": "/again", "method": "GET", "function": "stack", "auth": "none"}
    add_route_in_place(Path(stack_env["EDGELAMBDA_ROUTING"]), again)
    assert await get_json(f"{gateway}/again", within_s=15) == STACK_RESULT

    buckets, tables = await asyncio.to_thread(declared_resources, stack_env)
    assert "uploads" in buckets
    assert "orders" in tables

    await run_command("make", "down", env=stack_env)
    project = stack_env["COMPOSE_PROJECT_NAME"]
    left = await docker.containers.list(
        all=True, filters=json.dumps({"label": [f"com.docker.compose.project={project}"]})
    )
    assert left == []
    assert await stack_containers(docker, project) == []  # the functions' containers too


@pytest.mark.parametrize(
    ("files", "services"),
    [(["compose/docker-compose.yml"], ["gateway", "rustfs", "scylladb", "victorialogs"]),
     (["compose/docker-compose.yml", "compose/docker-compose.standins.yml"],
      ["gateway", "rustfs", "scylladb", "victorialogs"]),
     (["compose/docker-compose.dind.yml"], ["onpre-app-root"]),
     (["compose/docker-compose.dind.yml", "compose/docker-compose.dind-caps.yml"],
      ["onpre-app-root"])],
    ids=["stack", "stack-with-stand-ins", "dind", "dind-with-capability-list"],
)  # fmt: skip
async def test_compose_files_are_valid(files: list[str], services: list[str]) -> None:
    env = dict(os.environ)
    arguments = [part for name in files for part in ("-f", name)]

    config = yaml.safe_load(
        await run_command(*await compose_command(env), *arguments, "config", env=env)
    )

    assert sorted(config["services"]) == sorted(services)
    if "gateway" in services:  # the Runtime API (9001 in the network) is never published
        assert all("9001" not in str(port) for port in config["services"]["gateway"]["ports"])
    else:
        parent = config["services"]["onpre-app-root"]
        assert parent["container_name"] == "onpre-app-root"
        assert parent["privileged"] is (len(files) == 1)
