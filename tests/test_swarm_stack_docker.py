"""`make swarm` / `make swarm-down`: the whole box (gateway, registry, and the stand-ins of
RustFS, ScyllaDB and VictoriaLogs) deployed as a stack on a single-node swarm that `make
swarm` initialises, a JWT route whose function uses S3 and DynamoDB across the overlay, and
nothing left afterwards, the swarm included."""

from __future__ import annotations

from pathlib import Path

import aiodocker
import aiohttp
import pytest
from aiohttp.test_utils import unused_port

from tests.compose_stack import (
    DEV_LOGIN,
    STACK_RESULT,
    login,
    run_command,
    stack_project_env,
    stack_result,
)
from tests.swarm_cluster import stack_services

pytestmark = pytest.mark.docker

STACK_SERVICES = {"gateway", "rustfs", "scylladb", "victorialogs"} | {
    "registry", "registry-reader", "mirror",
}  # fmt: skip


async def test_make_swarm_deploys_the_box_and_make_swarm_down_removes_it(
    tmp_path: Path, docker: aiodocker.Docker
) -> None:
    assert (await docker.system.info())["Swarm"]["LocalNodeState"] != "active"
    env = stack_project_env(tmp_path) | {"EDGELAMBDA_REGISTRY_PORT": str(unused_port())}
    project, registry = env["COMPOSE_PROJECT_NAME"], f"127.0.0.1:{env['EDGELAMBDA_REGISTRY_PORT']}"
    try:
        said = await run_command("make", "swarm", env=env)
        assert "initialising a single-node one" in said

        gateway = f"http://127.0.0.1:{env['EDGELAMBDA_HTTP_PORT']}"
        async with aiohttp.ClientSession() as session:
            token = await login(session, gateway, **DEV_LOGIN)
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(f"{gateway}/stack", headers=headers) as response:
                assert response.status == 200, await response.text()
                assert stack_result(await response.json()) == STACK_RESULT

        stack = await docker.services.list(
            filters={"label": f"com.docker.stack.namespace={project}"}
        )
        assert {s["Spec"]["Name"].removeprefix(f"{project}_") for s in stack} == STACK_SERVICES
        (sandbox,) = await stack_services(docker, project)
        image = sandbox["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        assert image.startswith(f"{registry}/edgelambda-fn/stack:")  # pushed, pulled by tag
    finally:
        try:
            down = await run_command("make", "swarm-down", env=env)
        finally:
            if (await docker.system.info())["Swarm"]["LocalNodeState"] == "active":
                await docker.swarm.leave(force=True)  # for the tests after this one
    assert "leaving the single-node swarm" in down
    assert await docker.networks.list(filters={"name": env["EDGELAMBDA_NETWORK"]}) == []
