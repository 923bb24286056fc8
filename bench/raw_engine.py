"""The engine's own costs, with no edgelambda code on the timed path: a function's container
created and started with bare aiodocker calls until its runtime first polls a minimal Runtime
API (one, and ten at once), and the engine's unpause of a paused container.

The container configuration is the gateway's own (``container_spec``, ``engine_config``) and
the image is the one the gateway builds for the function, so the comparison with the
gateway's cold starts is like for like.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import aiodocker
from aiohttp import web
from harness import BASE_IMAGE

from edgelambda.containers import container_spec
from edgelambda.docker_backend import DockerBackend, engine_config
from edgelambda.routing import FunctionSpec

READY_TIMEOUT_S = 60.0
PAUSED_S = 0.2  # how long a container stays paused before it is unpaused
EVENT = json.dumps({"path": "/hello", "httpMethod": "GET"}).encode()


class MinimalRuntimeApi:
    """The least a Runtime API can do: hand out events from a queue, collect responses, and
    note when the runtime first polled."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple[str, asyncio.Future[bytes]]] = asyncio.Queue()
        self.pending: dict[str, asyncio.Future[bytes]] = {}
        self.first_poll: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.address = ""  # host:port, once it listens

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/2018-06-01/runtime/invocation/next", self.next)
        app.router.add_post("/2018-06-01/runtime/invocation/{id}/response", self.response)
        return app

    async def next(self, request: web.Request) -> web.Response:
        if not self.first_poll.done():
            self.first_poll.set_result(time.perf_counter())
        request_id, future = await self.events.get()
        self.pending[request_id] = future
        headers = {
            "Lambda-Runtime-Aws-Request-Id": request_id,
            "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 30_000),
            "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:0:function:raw",
        }
        return web.Response(body=EVENT, headers=headers, content_type="application/json")

    async def response(self, request: web.Request) -> web.Response:
        self.pending.pop(request.match_info["id"]).set_result(await request.read())
        return web.json_response({"status": "OK"}, status=202)

    async def invoke(self) -> bytes:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        await self.events.put((str(uuid.uuid4()), future))
        return await future


class RawEngine:
    """Containers of one function on ``network``, labelled ``stack``, driven by bare aiodocker
    calls. Resolves the network and the function's image once, in :meth:`start`."""

    def __init__(self, function: FunctionSpec, network: str, stack: str) -> None:
        self.function = function
        self.network = network
        self.stack = stack
        self._backend: DockerBackend | None = None
        self._docker: aiodocker.Docker | None = None
        self._host = ""
        self._image = ""

    async def start(self) -> None:
        self._backend = await DockerBackend.connect()
        self._docker = aiodocker.Docker()
        # A new client asks the engine for its API version on its first call: done here, not
        # inside the first create measured.
        await self._docker.version()
        self._host = await self._backend.network_gateway(self.network)
        self._image = await self._backend.function_image(self.function, BASE_IMAGE)

    async def close(self) -> None:
        if self._docker is not None:
            await self._docker.close()
        if self._backend is not None:
            await self._backend.close()

    async def create_start_ready_s(self) -> float:
        """Seconds from create to the runtime's first poll, for one container."""
        async with self._runtime_api() as api:
            started = time.perf_counter()
            container = await self._create_start(api)
            try:
                ready = await asyncio.wait_for(api.first_poll, timeout=READY_TIMEOUT_S)
                return ready - started
            finally:
                await container.delete(force=True)

    async def concurrent_create_start_ready_s(self, count: int) -> float:
        """Wall seconds from ``count`` simultaneous creates to the last first poll."""
        async with AsyncExitStack() as stack:
            apis = [await stack.enter_async_context(self._runtime_api()) for _ in range(count)]
            started = time.perf_counter()
            containers = await asyncio.gather(*(self._create_start(api) for api in apis))
            try:
                polls = (api.first_poll for api in apis)
                ready = await asyncio.wait_for(asyncio.gather(*polls), timeout=READY_TIMEOUT_S)
                return max(ready) - started
            finally:
                await asyncio.gather(*(c.delete(force=True) for c in containers))

    async def unpause_s(self, samples: int) -> tuple[list[float], list[float]]:
        """``POST /containers/{id}/unpause`` of a paused container whose runtime waits for
        work; and unpause followed by one invocation answered, each ``samples`` times."""
        unpause: list[float] = []
        unpause_invoke: list[float] = []
        async with self._runtime_api() as api:
            container = await self._create_start(api)
            try:
                await asyncio.wait_for(api.first_poll, timeout=READY_TIMEOUT_S)
                await api.invoke()  # the runtime has loaded the handler and polls again
                for _ in range(samples):
                    unpause.append(await _paused_then(container, container.unpause))
                    unpause_invoke.append(
                        await _paused_then(container, container.unpause, api.invoke)
                    )
            finally:
                await container.delete(force=True)
        return unpause, unpause_invoke

    @asynccontextmanager
    async def _runtime_api(self) -> AsyncIterator[MinimalRuntimeApi]:
        api = MinimalRuntimeApi()
        runner = web.AppRunner(
            api.app(), access_log=None, shutdown_timeout=0.5, handler_cancellation=True
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, 0).start()
            api.address = f"{self._host}:{runner.addresses[0][1]}"
            yield api
        finally:
            await runner.cleanup()

    async def _create_start(self, api: MinimalRuntimeApi) -> aiodocker.containers.DockerContainer:
        assert self._docker is not None, "start() first"
        spec = container_spec(
            self.function,
            image=self._image,
            instance=uuid.uuid4().hex,
            stack=self.stack,
            network=self.network,
            runtime_api=api.address,
            region="us-east-1",
            host_cpus=os.cpu_count() or 1,
        )
        container = await self._docker.containers.create(engine_config(spec), name=spec.name)
        await container.start()
        return container


async def _paused_then(
    container: aiodocker.containers.DockerContainer, *steps: Callable[[], Awaitable[object]]
) -> float:
    """Pauses ``container``, then times ``steps``, run one after the other."""
    await container.pause()
    await asyncio.sleep(PAUSED_S)
    started = time.perf_counter()
    for step in steps:
        await step()
    return time.perf_counter() - started
