"""Function images through the registry the Swarm backend's nodes pull from: built on the
manager, pushed once, pulled by the node that runs the task. One node: the registry at a
loopback address, which engines trust without TLS (as each node's own mirror is)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiodocker
import aiohttp
import pytest
from aiohttp.test_utils import unused_port

from edgelambda.containers import LABEL_STACK, ContainerSpec
from edgelambda.swarm_backend import SwarmBackend
from tests.compose_stack import get_json, run_command
from tests.conftest import BASE_IMAGE, TEST_FUNCTIONS
from tests.fakes import function_spec
from tests.swarm_cluster import single_node_swarm

pytestmark = pytest.mark.docker

REGISTRY_IMAGE = "edgelambda/registry:local"  # the script's alias of what it built or found


@pytest.fixture
async def registry(docker: aiodocker.Docker) -> AsyncIterator[str]:
    """The box's registry image (built offline if missing) on a loopback port: host:port."""
    env = {**os.environ, "EDGELAMBDA_STACK_IMAGES": "registry", "EDGELAMBDA_SKIP_BASE_IMAGE": "1"}
    await run_command("bash", "scripts/build-stack-images.sh", env=env)
    port = unused_port()
    container = await docker.containers.run(
        {
            "Image": REGISTRY_IMAGE,
            "HostConfig": {
                "PortBindings": {"5000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
            },
        },
        name=f"elregistry-{uuid.uuid4().hex[:8]}",
    )
    try:
        assert await get_json(f"http://127.0.0.1:{port}/v2/", within_s=30) == {}
        yield f"127.0.0.1:{port}"
    finally:
        await container.delete(force=True)


async def test_an_image_is_pushed_once_and_the_node_pulls_it(
    docker: aiodocker.Docker, registry: str, tmp_path: Path
) -> None:
    function = replace(
        function_spec(), name=f"pushed{uuid.uuid4().hex[:6]}", image=None,
        code_dir=TEST_FUNCTIONS / "responses",
    )  # fmt: skip
    reference = None
    async with single_node_swarm(docker) as network:
        backend = await SwarmBackend.connect(registry=registry)
        try:
            await backend.network_gateway(network)
            both = await asyncio.gather(
                backend.function_image(function, BASE_IMAGE),
                backend.function_image(function, BASE_IMAGE),
            )
            reference = both[0]
            assert both == [reference, reference]  # concurrent cold starts share one push
            assert reference.startswith(f"{registry}/edgelambda-fn/{function.name}:")
            repository, _, tag = reference.removeprefix(f"{registry}/").rpartition(":")
            async with aiohttp.ClientSession() as session:
                listed = f"http://{registry}/v2/{repository}/tags/list"
                async with session.get(listed) as response:
                    assert (await response.json())["tags"] == [tag]

            await docker.images.delete(reference)  # so the node must pull it to run it
            stack = f"st{uuid.uuid4().hex[:8]}"
            started = await backend.start(
                ContainerSpec(
                    name=f"{stack}-pulled",
                    image=reference,
                    entrypoint=("python3", "-c", "import time; time.sleep(600)"),
                    command=(),
                    env={},
                    labels={LABEL_STACK: stack},
                    network=network,
                    memory_mb=128,
                    cpus=1.0,
                )
            )
            assert started.address
            assert await docker.images.inspect(reference)  # pulled back from the registry
            assert await backend.remove_stack(stack) == 1
        finally:
            await backend.close()
            if reference is not None:
                await docker.images.delete(reference, force=True)
