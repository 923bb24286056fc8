"""A Swarm for the Swarm backend's tests: the host engine as a single-node manager for the
test's duration (left again afterwards, unless it was one already), with an attachable
overlay network of the test's own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiodocker


@asynccontextmanager
async def single_node_swarm(docker: aiodocker.Docker) -> AsyncIterator[str]:
    """The name of an overlay network to create (the backend creates it), removed after."""
    info = await docker.system.info()
    was_active = info["Swarm"]["LocalNodeState"] == "active"
    if not was_active:
        await docker.swarm.init(advertise_addr="127.0.0.1")
    network = f"elswarm-{uuid.uuid4().hex[:8]}"
    try:
        yield network
    finally:
        for net in await docker.networks.list(filters={"name": network}):
            await (await docker.networks.get(net["Id"])).delete()
        if not was_active:
            await docker.swarm.leave(force=True)
            # The bridge Swarm made for its tasks' way out; a later init makes it anew.
            for net in await docker.networks.list(filters={"name": "docker_gwbridge"}):
                await (await docker.networks.get(net["Id"])).delete()
