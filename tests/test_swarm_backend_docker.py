"""The Swarm backend's engine half against a real single-node swarm (the host engine as
its manager, left again afterwards): a sandbox is a hardened one-task service on an
attachable overlay network, its output and its exit are seen, and what Swarm cannot do
(restart, pause) says so."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import uuid
from collections.abc import AsyncIterator

import aiodocker
import pytest

from edgelambda.containers import LABEL_STACK, ContainerBackend, ContainerSpec
from edgelambda.errors import EngineUnavailable
from edgelambda.swarm_backend import SwarmBackend
from tests.conftest import BASE_IMAGE
from tests.swarm_cluster import single_node_swarm, stack_services

pytestmark = pytest.mark.docker

PROBE = """
import os, sys, time
print("uid", os.getuid(), flush=True)
try:
    open("/probe", "w")
except OSError as exc:
    print("root", exc.strerror, flush=True)
open("/tmp/probe", "w").write("ok")
print("tmp ok", flush=True)
print("hosts", open("/etc/hosts").read().split("runtime-")[-1].split()[0], flush=True)
sys.exit(int(sys.argv[1])) if len(sys.argv) > 1 else time.sleep(600)
"""


@pytest.fixture
async def swarm(docker: aiodocker.Docker) -> AsyncIterator[str]:
    async with single_node_swarm(docker) as network:
        yield network


@pytest.fixture
async def backend(swarm: str) -> AsyncIterator[SwarmBackend]:
    backend = await SwarmBackend.connect()
    try:
        yield backend
    finally:
        await backend.close()


def probe_spec(network: str, stack: str, *args: str) -> ContainerSpec:
    return ContainerSpec(
        name=f"{stack}-probe-{uuid.uuid4().hex[:6]}",
        image=BASE_IMAGE,
        entrypoint=("python3", "-c", PROBE),
        command=args,
        env={"AWS_LAMBDA_FUNCTION_NAME": "probe"},
        labels={LABEL_STACK: stack},
        network=network,
        memory_mb=128,
        cpus=1.0,
        extra_hosts=("runtime-secret:10.9.8.7",),
    )


async def output_until(
    backend: SwarmBackend, service_id: str, count: int, timeout_s: float = 30
) -> list[str]:
    lines: list[str] = []

    async def read() -> None:
        async with contextlib.aclosing(backend.output(service_id, since_s=0)) as output:
            async for line in output:
                lines.append(line.text)
                if len(lines) >= count:
                    return

    await asyncio.wait_for(read(), timeout=timeout_s)
    return lines


async def test_a_sandbox_is_a_hardened_task_on_the_overlay(
    backend: SwarmBackend, swarm: str, docker: aiodocker.Docker
) -> None:
    typed: ContainerBackend = backend  # the Protocol the pool uses
    stack = f"st{uuid.uuid4().hex[:8]}"
    await typed.network_gateway(swarm)

    started = await typed.start(probe_spec(swarm, stack))
    try:
        network = await (await docker.networks.get(swarm)).show()
        subnet = ipaddress.ip_network(network["IPAM"]["Config"][0]["Subnet"])
        assert ipaddress.ip_address(started.address) in subnet
        assert await typed.running_containers(stack) == {started.id}
        lines = await output_until(backend, started.id, 4)
        assert lines == ["uid 993", "root Read-only file system", "tmp ok", "hosts secret"]
        (container,) = await docker.containers.list(filters={"label": [f"{LABEL_STACK}={stack}"]})
        host = (await container.show())["HostConfig"]
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"]
        assert (host["Memory"], host["PidsLimit"], host["NanoCpus"]) == (128 * 2**20, 1024, 10**9)
    finally:
        await typed.remove(started.id)
    assert await typed.running_containers(stack) == set()
    assert await stack_services(docker, stack) == []


async def test_an_ended_task_is_an_exit_with_its_code(backend: SwarmBackend, swarm: str) -> None:
    stack = f"st{uuid.uuid4().hex[:8]}"
    await backend.network_gateway(swarm)
    started = await backend.start(probe_spec(swarm, stack, "3"))
    try:
        exits = backend.exits(stack)
        exit = await asyncio.wait_for(anext(exits), timeout=30)
        await exits.aclose()
        assert (exit.container_id, exit.exit_code) == (started.id, 3)
    finally:
        assert await backend.remove_stack(stack) == 1


async def test_a_task_that_cannot_run_fails_the_start_and_leaves_nothing(
    backend: SwarmBackend, swarm: str, docker: aiodocker.Docker
) -> None:
    stack = f"st{uuid.uuid4().hex[:8]}"
    await backend.network_gateway(swarm)
    spec = probe_spec(swarm, stack)
    missing = ContainerSpec(**{**spec.__dict__, "image": "edgelambda/no-such-image:1"})

    with pytest.raises(EngineUnavailable, match="its task"):
        await backend.start(missing)
    assert await stack_services(docker, stack) == []


async def test_what_swarm_cannot_do_says_so(backend: SwarmBackend) -> None:
    for call in (backend.restart, backend.pause, backend.unpause):
        with pytest.raises(EngineUnavailable):
            await call("any")
    assert await backend.memory_peak_mb("any") is None
