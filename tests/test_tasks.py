"""Background loops report an unexpected end when it happens."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from edgelambda.tasks import TaskSet, start_loop


async def test_a_loop_that_fails_is_logged_with_its_name() -> None:
    async def broken() -> None:
        raise OSError("inotify watch limit reached")

    with capture_logs() as logs:
        task = start_loop(broken(), "reload watcher")
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)  # done callbacks run on the next loop step

    assert logs == [
        {
            "event": "background loop stopped",
            "loop": "reload watcher",
            "error": "OSError: inotify watch limit reached",
            "log_level": "error",
        }
    ]


async def test_a_cancelled_loop_is_not_reported() -> None:
    with capture_logs() as logs:
        task = start_loop(asyncio.sleep(60), "idle reaper")
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)

    assert logs == []


async def test_a_short_task_that_fails_is_logged_with_its_error() -> None:
    async def buggy() -> None:
        raise RuntimeError("a bug")

    tasks = TaskSet()
    with capture_logs() as logs:
        task = tasks.spawn(buggy())
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)  # done callbacks run on the next loop step

    [entry] = logs
    assert (entry["event"], entry["log_level"]) == ("background task failed", "error")
    assert isinstance(entry["exc_info"], RuntimeError)
    assert len(tasks) == 0  # and it is no longer counted as running
