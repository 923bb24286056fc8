"""Background loops: each owned by the object that starts it and awaited by its ``close``.
A loop only ends by cancellation; any other end stops a part of the gateway, so it is logged
when it happens, not found at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

log = structlog.get_logger(__name__)


def start_loop(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    task = asyncio.create_task(coro, name=name)
    task.add_done_callback(_report_exit)
    return task


def _report_exit(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("background loop stopped", loop=task.get_name(),
                  error=f"{type(exc).__name__}: {exc}")  # fmt: skip
