"""The Docker-in-Docker box (`make dind`): the parent image builds offline from local images,
starts with the capability list instead of `privileged` on this machine, its inner stack comes
up, a routed request through the parent's port 8000 runs a function in a nested container, and
stopping the parent stops everything inside it within its grace period."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest
import yaml

from edgelambda.config import Settings
from tests.compose_stack import (
    DEV_LOGIN,
    STACK_ROUTING,
    add_route_in_place,
    compose_command,
    compose_env,
    declared_resources,
    get_json,
    original_client_flow,
    project_dir,
    run_command,
)

pytestmark = pytest.mark.docker

PARENT = "onpre-app-root"
# cgroup v2's unified hierarchy has this file at its root; v1's per-controller mounts do not.
CGROUP_V2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
DIND_FILES = ["-f", "compose/docker-compose.dind.yml", "-f", "compose/docker-compose.dind-caps.yml"]


def routing() -> str:
    """The stack test's routing plus `who`, which reports the container that served it."""
    spec = yaml.safe_load(STACK_ROUTING)
    spec["functions"]["who"] = {"handler": "app.handler", "code": "functions/lifecycle"}
    spec["routes"].append({"path": "/who", "method": "GET", "function": "who", "auth": "none"})
    return yaml.safe_dump(spec)


async def parent_or_none(docker: aiodocker.Docker) -> aiodocker.containers.DockerContainer | None:
    try:
        return await docker.containers.get(PARENT)
    except aiodocker.DockerError:
        return None


@pytest.fixture
async def box_env(tmp_path: Path, docker: aiodocker.Docker) -> AsyncIterator[dict[str, str]]:
    """Environment for `make dind` (offline build, stand-ins) with ports of its own."""
    left = await parent_or_none(docker)
    if left is not None:
        project = left["Config"]["Labels"].get("com.docker.compose.project", "")
        assert project.startswith("eltest"), f"a {PARENT} not made by these tests is running"
        await left.delete(force=True)
    project = f"eltest{uuid.uuid4().hex[:8]}"
    env = compose_env(project, *project_dir(tmp_path, routing(), ["stack", "lifecycle"]))
    env |= {"EDGELAMBDA_OFFLINE": "1", "EDGELAMBDA_DIND_PRIVILEGED": "0"}
    try:
        yield env
    finally:
        await run_command(
            *await compose_command(env), "-p", project, *DIND_FILES, "down", "-v", env=env
        )


async def parent_log(parent: aiodocker.containers.DockerContainer) -> str:
    lines = await parent.log(stdout=True, stderr=True)
    return "".join(lines)


async def test_the_box_runs_functions_in_nested_containers_and_stops_cleanly(
    box_env: dict[str, str], docker: aiodocker.Docker
) -> None:
    await run_command("make", "dind", env=box_env, timeout_s=900)
    parent = await docker.containers.get(PARENT)
    host_config = parent["HostConfig"]
    assert host_config["Privileged"] is False
    assert "SYS_ADMIN" in host_config["CapAdd"]
    assert "SYS_RESOURCE" not in host_config["CapAdd"]
    gateway = f"http://127.0.0.1:{box_env['EDGELAMBDA_HTTP_PORT']}"

    served_by = (await get_json(f"{gateway}/who"))["container"]

    nested = await run_command(
        "docker", "exec", PARENT, "docker", "ps", "--no-trunc", "--quiet",
        "--filter", "label=edgelambda.function=who", env=box_env,
    )  # fmt: skip
    assert any(line.startswith(served_by) for line in nested.split()), nested
    on_host = await docker.containers.list(all=True)
    assert not any(container.id.startswith(served_by) for container in on_host)

    await original_client_flow(
        gateway, f"http://127.0.0.1:{box_env['EDGELAMBDA_VICTORIALOGS_PORT']}", **DEV_LOGIN
    )
    # routing.yaml reaches the inner gateway through two file mounts; an edit still reloads.
    again = {"path": "/again", "method": "GET", "function": "who", "auth": "none"}
    add_route_in_place(Path(box_env["EDGELAMBDA_ROUTING"]), again)
    assert (await get_json(f"{gateway}/again", within_s=15))["container"] == served_by
    buckets, tables = await asyncio.to_thread(declared_resources, box_env)
    assert "uploads" in buckets
    assert "orders" in tables

    log = await parent_log(parent)
    assert '"event": "gateway listening"' in log
    assert '"function": "who"' in log  # the gateway's own log lines about the nested start

    # On cgroup v1 the box keeps nothing frozen: a task frozen there outlives SIGKILL, and the
    # parent killed below could then never finish exiting. Idle past the default freeze_after.
    if not CGROUP_V2:
        await asyncio.sleep(Settings().freeze_after_s + 3)
        paused = await run_command(
            "docker", "exec", PARENT, "docker", "ps", "-q", "--filter", "status=paused",
            env=box_env,
        )  # fmt: skip
        assert paused.split() == []
        assert "frozen standby off" in log

    # A parent killed outright (no clean-up inside) starts again and serves.
    await parent.kill()
    await parent.start()
    assert (await get_json(f"{gateway}/who", within_s=60))["invocations"] == 1  # a new container

    grace_s = parent["Config"]["StopTimeout"]
    assert grace_s == 90
    started = time.monotonic()
    await parent.stop(t=grace_s)
    stopped_in = time.monotonic() - started

    state = (await docker.containers.get(PARENT))["State"]
    assert state["Running"] is False
    assert state["ExitCode"] == 0, await parent_log(parent)  # not killed at the grace's end
    assert stopped_in < grace_s
    log = await parent_log(parent)
    assert '"event": "shutting down"' in log
    assert '"reason": "shutdown"' in log  # the gateway retired its function containers
    assert "edgelambda-dind: inner engine stopped" in log
