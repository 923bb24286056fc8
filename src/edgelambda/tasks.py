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


def start_loop(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    task = asyncio.create_task(coro, name=name)
    task.add_done_callback(_report_exit)
    return task


def _report_exit(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("background loop stopped", loop=task.get_name(),
                  error=f"{type(exc).__name__}: {exc}")  # fmt: skip


def _report_failure(task: asyncio.Task[None]) -> None:
    """A short task should handle its own errors: one that escapes is a bug, logged when it
    happens with its traceback (nobody else would see it)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("background task failed", task=task.get_name(), exc_info=exc)
