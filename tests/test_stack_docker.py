"""The compose stack with its stand-ins (moto for S3 and DynamoDB, a log recorder for
VictoriaLogs): one command brings it up, a function using plain boto3 reaches S3 and
DynamoDB through it, the declared resources exist, and `make down` leaves no container."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import pytest
import yaml

from tests.compose_stack import (
    DEV_LOGIN,
    STACK_RESULT,
    add_route_in_place,
    compose_command,
    declared_resources,
    get_json,
    original_client_flow,
    remove_stack,
    run_command,
    stack_project_env,
    stack_result,
)
from tests.conftest import REPO_ROOT, stack_containers

pytestmark = pytest.mark.docker


@pytest.fixture
async def stack_env(tmp_path: Path, docker: aiodocker.Docker) -> AsyncIterator[dict[str, str]]:
    """Environment for `make up` / `make down` with a project, network and ports of its own."""
    env = stack_project_env(tmp_path)
    try:
        yield env
    finally:
        await remove_stack(env, docker)


async def test_the_stack_serves_boto3_functions_on_s3_and_dynamodb(
    stack_env: dict[str, str], docker: aiodocker.Docker
) -> None:
    await run_command("make", "up", env=stack_env)
    gateway = f"http://127.0.0.1:{stack_env['EDGELAMBDA_HTTP_PORT']}"
    logs = f"http://127.0.0.1:{stack_env['EDGELAMBDA_VICTORIALOGS_PORT']}"

    await original_client_flow(gateway, logs, **DEV_LOGIN)
    await console_sees_the_stack(gateway, stack_env["EDGELAMBDA_VICTORIALOGS_PORT"])
    # routing.yaml is a file mount in the gateway's container; an edit still reloads.
    again = {"path": "/again", "method": "GET", "function": "stack", "auth": "none"}
    add_route_in_place(Path(stack_env["EDGELAMBDA_ROUTING"]), again)
    assert stack_result(await get_json(f"{gateway}/again", within_s=15)) == STACK_RESULT

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


async def console_sees_the_stack(gateway: str, logs_port: str) -> None:
    """The console, served from the gateway's image, reaches the stack's data services and
    links to VictoriaLogs' UI on the console's own host, at its published port."""
    keyed = {"x-api-key": DEV_LOGIN["api_key"]}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{gateway}/console/static/console.js") as script:
            assert script.status == 200
        async with session.get(f"{gateway}/console/api/box", headers=keyed) as response:
            box = await response.json()
    assert {s["name"]: s["status"] for s in box["services"]} == {
        "S3 (RustFS)": "up",
        "DynamoDB (Alternator)": "up",
        "VictoriaLogs": "up",
    }
    assert box["logs_ui"] == f":{logs_port}"
    assert box["log_shipper"]["dropped"] == 0


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


def compose_services(path: str) -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((REPO_ROOT / path).read_text())["services"]
    return services


def test_stand_ins_replace_the_images_and_nothing_else() -> None:
    # The real services' command lines, ports, credentials and healthchecks stay in force.
    standins = compose_services("compose/docker-compose.standins.yml")
    real = compose_services("compose/docker-compose.yml")

    for service in ("rustfs", "scylladb", "victorialogs"):
        assert set(standins[service]) <= {"image", "entrypoint"}, service
        assert "healthcheck" in real[service]
    # The stand-ins rely on the real settings: Alternator bound where its health check looks,
    # RustFS ready (not merely live) before the gateway starts.
    assert "--alternator-address=0.0.0.0" in real["scylladb"]["command"]
    assert "/health/ready" in " ".join(real["rustfs"]["healthcheck"]["test"])


def env_example_names() -> list[str]:
    """Every variable `.env.example` names (as `#NAME=default`)."""
    text = (REPO_ROOT / ".env.example").read_text()
    return re.findall(r"^#([A-Z][A-Z0-9_]+)=", text, re.MULTILINE)


# Settings of the README's table that the stack fixes, and the variable that moves each.
FIXED_BY_THE_STACK = {
    "ROUTING_CONFIG_PATH": "EDGELAMBDA_ROUTING",
    "DOCKER_NETWORK": "EDGELAMBDA_NETWORK",
    "EDGELAMBDA_PORT": "EDGELAMBDA_HTTP_PORT",
    "EDGELAMBDA_HOST": "EDGELAMBDA_BIND_ADDRESS",
    "EDGELAMBDA_RUNTIME_API_HOST": None,  # the gateway's own address on the network
    "EDGELAMBDA_RUNTIME_API_PORT": None,  # never published
    "EDGELAMBDA_DATA_DIR": None,  # the gateway-data volume
    "EDGELAMBDA_URL": None,  # the CLI's, on the host
    "EDGELAMBDA_VICTORIALOGS_URL": None,  # the stack's VictoriaLogs
    "EDGELAMBDA_S3_ENDPOINT_URL": None,  # the stack's RustFS
    "EDGELAMBDA_DYNAMODB_ENDPOINT_URL": None,  # the stack's Alternator
    "EDGELAMBDA_LOG_FORMAT": None,  # json, for the log store
}


def test_every_readme_setting_can_be_set_for_make_up_and_make_dind() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme[readme.index("## Settings") :].split("\n## ")[0]
    in_table = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", table, re.MULTILINE))
    in_table |= set(re.findall(r"^\| `[A-Z0-9_]+` / `([A-Z][A-Z0-9_]+)`", table, re.MULTILINE))
    documented = set(env_example_names())
    gateway_env = compose_services("compose/docker-compose.yml")["gateway"]["environment"]
    parent_env = compose_services("compose/docker-compose.dind.yml")["onpre-app-root"][
        "environment"
    ]

    assert len(in_table) > 30
    for name in in_table - FIXED_BY_THE_STACK.keys():
        assert name in documented, f"{name} is missing from .env.example"
        assert gateway_env.get(name) == f"${{{name}:-}}", f"{name} does not reach the gateway"
        assert parent_env.get(name) == f"${{{name}:-}}", f"{name} does not reach the box"
    for moved_by in filter(None, FIXED_BY_THE_STACK.values()):
        assert moved_by in documented


@pytest.mark.parametrize(
    ("files", "service"),
    [(["compose/docker-compose.yml"], "gateway"),
     (["compose/docker-compose.dind.yml"], "onpre-app-root")],
)  # fmt: skip
async def test_an_env_file_reaches_the_gateway_and_the_box(
    tmp_path: Path, files: list[str], service: str
) -> None:
    env_file = tmp_path / "box.env"
    env_file.write_text("JWT_EXPIRES_DELTA=1234\nEDGELAMBDA_PRODUCTION=true\nAUTH_USER=alice\n")
    env = {k: v for k, v in os.environ.items() if k not in {"AUTH_USER", "JWT_EXPIRES_DELTA"}}
    arguments = [part for name in files for part in ("-f", name)]

    config = yaml.safe_load(
        await run_command(
            *await compose_command(env), "--env-file", str(env_file), *arguments, "config",
            env=env,
        )
    )  # fmt: skip

    environment = config["services"][service]["environment"]
    assert environment["JWT_EXPIRES_DELTA"] == "1234"
    assert environment["EDGELAMBDA_PRODUCTION"] == "true"
    assert environment["AUTH_USER"] == "alice"
