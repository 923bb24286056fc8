"""Background work, always owned: a loop is started by the object that awaits it in its
``close`` (a loop only ends by cancellation; any other end stops a part of the gateway, so it
is logged when it happens, not found at shutdown), and short tasks live in their owner's
:class:`TaskSet` until they finish."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class TaskSet:
    """The short tasks one owner started: each is kept until it finishes, so the owner can
    count, wait for or cancel what is still running (uvicorn's task set)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_report_failure)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    def running(self) -> set[asyncio.Task[None]]:
        """A copy of the running tasks, to wait for or cancel."""
        return set(self._tasks)


class LoopRegistry:
    """The background loops of one gateway by name, for ``/health``: a loop that ended other
    than by cancellation has died, and the part of the gateway it drove has stopped. A loop
    started again under the same name replaces the one before it."""

    def __init__(self) -> None:
        self._loops: dict[str, asyncio.Task[None]] = {}

    def add(self, task: asyncio.Task[None]) -> None:
        self._loops[task.get_name()] = task

    def names(self) -> list[str]:
        return sorted(self._loops)

    def dead(self) -> dict[str, str]:
        """Each loop that died, by name, with how it ended."""
        return {
            name: _how_it_ended(task)
            for name, task in sorted(self._loops.items())
            if task.done() and not task.cancelled()
        }


def start_loop(
    coro: Coroutine[Any, Any, None], name: str, loops: LoopRegistry | None = None
) -> asyncio.Task[None]:
    """Run ``coro`` as the loop ``name``; ``loops`` (the gateway's) watches it for /health."""
    task = asyncio.create_task(coro, name=name)
    task.add_done_callback(_report_exit)
    if loops is not None:
        loops.add(task)
    return task


def _how_it_ended(task: asyncio.Task[None]) -> str:
    exc = task.exception()
    return "returned" if exc is None else f"{type(exc).__name__}: {exc}"


def _report_exit(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("background loop stopped", loop=task.get_name(),
                  error=f"{type(exc).__name__}: {exc}")  # fmt: skip


def _report_failure(task: asyncio.Task[None]) -> None:
    """A short task should handle its own errors: one that escapes is a bug, logged when it
    happens with its traceback (nobody else would see it)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("background task failed", task=task.get_name(), exc_info=exc)
