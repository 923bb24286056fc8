"""Fakes shared by the unit tests: a function spec, a container backend that records what
the pool asks of the engine, and a clock the tests move by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from edgelambda.containers import ContainerExit, ContainerSpec, StartedContainer
from edgelambda.logs import OutputLine
from edgelambda.routing import FunctionSpec


def function_spec(
    max_concurrency: int = 2, timeout_s: float = 30.0, min_warm: int = 0
) -> FunctionSpec:
    return FunctionSpec(
        name="fn",
        handler="app.handler",
        code_dir=Path("/nonexistent"),
        runtime="python3.12",
        image="fake:1",
        environment={},
        timeout_s=timeout_s,
        memory_mb=128,
        max_concurrency=max_concurrency,
        min_warm=min_warm,
        idle_timeout_s=None,
        schedules=(),
    )


class FakeBackend:
    """Records what the pool asks of the engine; containers get 10.0.0.N addresses."""

    def __init__(self) -> None:
        self.started: list[ContainerSpec] = []
        self.stopped: list[str] = []
        self.restarted: list[str] = []
        self.removed: list[str] = []
        self.exit_events: asyncio.Queue[ContainerExit] = asyncio.Queue()
        self.lines: dict[str, list[OutputLine]] = {}  # what each container "prints"
        self._addresses = 1

    def _address(self) -> str:
        self._addresses += 1
        return f"10.0.0.{self._addresses}"

    async def network_gateway(self, network: str) -> str:
        return "10.0.0.1"

    async def function_image(self, function: FunctionSpec, base_image: str) -> str:
        return "fake:1"

    async def start(self, spec: ContainerSpec) -> StartedContainer:
        self.started.append(spec)
        return StartedContainer(id=f"c{len(self.started)}", address=self._address())

    async def stop(self, container_id: str) -> None:
        self.stopped.append(container_id)

    async def restart(self, container_id: str) -> str:
        self.restarted.append(container_id)
        return self._address()

    async def remove(self, container_id: str) -> None:
        self.removed.append(container_id)

    async def remove_stack(self, stack: str) -> int:
        return 0

    async def running_containers(self, stack: str) -> set[str]:
        return {f"c{n}" for n in range(1, len(self.started) + 1)} - set(self.removed)

    async def output(self, container_id: str, since_s: float) -> AsyncIterator[OutputLine]:
        for line in self.lines.get(container_id, []):
            yield line

    async def memory_peak_mb(self, container_id: str) -> int | None:
        return 42

    async def exits(self, stack: str) -> AsyncIterator[ContainerExit]:
        while True:
            yield await self.exit_events.get()


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s
