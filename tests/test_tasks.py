"""Background loops report an unexpected end when it happens."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from edgelambda.tasks import LoopRegistry, TaskSet, start_loop


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


async def test_the_registry_names_a_loop_that_died_and_not_a_cancelled_one() -> None:
    async def broken() -> None:
        raise OSError("inotify watch limit reached")

    async def returns() -> None:
        return

    loops = LoopRegistry()
    died = start_loop(broken(), "reload watcher", loops)
    ended = start_loop(returns(), "scheduler", loops)
    cancelled = start_loop(asyncio.sleep(60), "idle reaper", loops)
    running = start_loop(asyncio.sleep(60), "event worker", loops)
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(died, ended, cancelled, return_exceptions=True)

    assert loops.dead() == {
        "reload watcher": "OSError: inotify watch limit reached",
        "scheduler": "returned",
    }
    assert loops.names() == ["event worker", "idle reaper", "reload watcher", "scheduler"]
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


async def test_a_restarted_loop_replaces_the_dead_one() -> None:
    async def broken() -> None:
        raise RuntimeError("engine gone")

    loops = LoopRegistry()
    await asyncio.gather(start_loop(broken(), "exit watcher", loops), return_exceptions=True)
    again = start_loop(asyncio.sleep(60), "exit watcher", loops)

    assert loops.dead() == {}
    again.cancel()
    await asyncio.gather(again, return_exceptions=True)
