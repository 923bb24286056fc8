"""The pool's hands on the container engine.

:class:`SandboxEngine` creates, restarts, stops and removes the containers of sandboxes,
knows which sandbox runs in which container and at which address (the Runtime API knows its
callers by their address), and follows the containers' exits. It decides nothing:
:mod:`edgelambda.lifecycle` says what to do, and is told when a container exits on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import structlog

from edgelambda.backoff import backoff_s
from edgelambda.config import Settings
from edgelambda.containers import (
    BackendAbilities,
    ContainerBackend,
    ContainerExit,
    container_spec,
)
from edgelambda.errors import EngineUnavailable
from edgelambda.sandbox import Sandbox

log = structlog.get_logger(__name__)

WATCH_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)  # reconnect delays after the engine's event stream ends


@dataclass(frozen=True)
class Running:
    """A sandbox's container runs: its address, and when it was started (epoch s, where
    following its output begins)."""

    address: str
    since_s: float


class SandboxEngine:
    """Sandboxes' containers on the engine, and where each one is."""

    def __init__(
        self,
        *,
        backend: ContainerBackend,
        settings: Settings,
        runtime_api: str,
        aws_env: Mapping[str, str],
    ) -> None:
        self._backend = backend
        self._settings = settings
        self._runtime_api = runtime_api
        self._aws_env = dict(aws_env)
        self._by_address: dict[str, Sandbox] = {}
        self._by_token: dict[str, Sandbox] = {}
        self._by_container: dict[str, Sandbox] = {}
        self._registered = asyncio.Condition()
        self.images: dict[str, str] = {}  # the image each function's last container ran

    @property
    def abilities(self) -> BackendAbilities:
        return self._backend.abilities

    # -- containers ---------------------------------------------------------------------

    async def create(self, sandbox: Sandbox) -> Running:
        """Build (or reuse) the function's image and start a new container for ``sandbox``.
        Raises :class:`~edgelambda.errors.EdgeLambdaError` when the engine cannot."""
        function, settings = sandbox.function, self._settings
        image = function.image or await self._backend.function_image(
            function, settings.base_image_for(function.runtime)
        )
        self.images[function.name] = image
        spec = container_spec(
            function,
            image=image,
            instance=sandbox.instance,
            stack=settings.stack,
            network=settings.docker_network,
            runtime_api=self._runtime_api,
            region=settings.region,
            host_cpus=os.cpu_count() or 1,
            aws_env=self._aws_env,
            token=sandbox.token,
        )
        since_s = time.time()
        # Known before the container runs: its runtime may call before `start` returns.
        self._by_token[sandbox.token] = sandbox
        try:
            started = await self._backend.start(spec)
        except BaseException:
            del self._by_token[sandbox.token]
            raise
        sandbox.container_id = started.id
        self._by_container[started.id] = sandbox
        return Running(started.address, since_s)

    async def restart(self, sandbox: Sandbox) -> Running:
        """Start ``sandbox``'s kept container again (a warm start)."""
        assert sandbox.container_id is not None
        since_s = time.time()
        return Running(await self._backend.restart(sandbox.container_id), since_s)

    async def stop(self, sandbox: Sandbox) -> bool:
        """Stop ``sandbox``'s container, keeping it; whether the engine did."""
        return await self._ask(self._backend.stop, sandbox, "stop")

    async def pause(self, sandbox: Sandbox) -> bool:
        """Freeze ``sandbox``'s container; whether the engine did."""
        return await self._ask(self._backend.pause, sandbox, "pause")

    async def unpause(self, sandbox: Sandbox) -> bool:
        """Let ``sandbox``'s frozen container run again; whether the engine did."""
        return await self._ask(self._backend.unpause, sandbox, "unpause")

    @staticmethod
    async def _ask(call: Callable[[str], Awaitable[None]], sandbox: Sandbox, what: str) -> bool:
        assert sandbox.container_id is not None
        try:
            await call(sandbox.container_id)
        except EngineUnavailable as exc:
            log.warning(
                f"container {what} failed", container=sandbox.container_id[:12], error=str(exc)
            )
            return False
        return True

    async def remove_stack(self) -> int:
        """Remove every container of this stack, ours or a previous run's; how many."""
        return await self._backend.remove_stack(self._settings.stack)

    async def remove(self, sandbox: Sandbox) -> None:
        assert sandbox.container_id is not None
        self._by_container.pop(sandbox.container_id, None)
        self._by_token.pop(sandbox.token, None)
        try:
            await self._backend.remove(sandbox.container_id)
        except EngineUnavailable as exc:
            log.warning(
                "container removal failed", container=sandbox.container_id[:12], error=str(exc)
            )

    # -- addresses ----------------------------------------------------------------------

    async def register(self, sandbox: Sandbox, address: str) -> None:
        """``sandbox``'s container answers at ``address`` (until :meth:`forget_address`)."""
        sandbox.address = address
        async with self._registered:
            self._by_address[address] = sandbox
            self._registered.notify_all()

    def forget_address(self, sandbox: Sandbox) -> None:
        if sandbox.address is not None and self._by_address.get(sandbox.address) is sandbox:
            del self._by_address[sandbox.address]
        sandbox.address = None

    def at(self, address: str) -> Sandbox | None:
        return self._by_address.get(address)

    def caller(self, address: str, token: str) -> Sandbox | None:
        """The sandbox whose token is ``token``, if it is registered at ``address``."""
        found = self._by_token.get(token)
        return found if found is not None and found.address == address else None

    async def identify(self, address: str, token: str, wait_s: float) -> Sandbox | None:
        """The sandbox whose token is ``token``, if it is the one at ``address``: a caller
        must know the secret and call from its sandbox's address. A runtime may call before
        its sandbox's address is registered: wait up to ``wait_s`` for that."""
        found = self._by_token.get(token)
        if found is None:
            return None
        if found.address is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s), self._registered:
                    await self._registered.wait_for(lambda: found.address is not None)
        return found if found.address == address else None

    async def wait_for(self, address: str, wait_s: float) -> Sandbox | None:
        """The sandbox at ``address``, waiting up to ``wait_s`` for it to be registered."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s), self._registered:
                await self._registered.wait_for(lambda: address in self._by_address)
        return self._by_address.get(address)

    # -- exits --------------------------------------------------------------------------

    async def watch_exits(self, on_exit: Callable[[Sandbox, ContainerExit], None]) -> None:
        """Tell ``on_exit`` of every sandbox container that stops; after the engine's event
        stream ends (engine restart), reconnect with back-off and report what died while
        nobody was listening."""
        failures = 0
        while True:
            try:
                await self.reconcile(on_exit)
                async for exit in self._backend.exits(self._settings.stack):
                    failures = 0
                    if (sandbox := self._by_container.get(exit.container_id)) is not None:
                        on_exit(sandbox, exit)
            except EngineUnavailable as exc:
                log.warning("engine events lost", error=str(exc))
            failures += 1
            await asyncio.sleep(backoff_s(WATCH_BACKOFF_S, failures))

    async def reconcile(self, on_exit: Callable[[Sandbox, ContainerExit], None]) -> None:
        """Tell ``on_exit`` of every sandbox container expected to run that does not."""
        running = await self._backend.running_containers(self._settings.stack)
        for container_id, sandbox in list(self._by_container.items()):
            # A sandbox without an address is still being (re)started: not yet expected to run.
            is_expected_running = sandbox.state.is_running and sandbox.address is not None
            if is_expected_running and container_id not in running:
                on_exit(sandbox, ContainerExit(container_id, exit_code=-1, is_oom=False))
