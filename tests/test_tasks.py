"""Background loops report an unexpected end when it happens."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from edgelambda.tasks import backoff_s, start_loop


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


def test_back_off_takes_the_delays_in_turn_then_repeats_the_last() -> None:
    delays_s = (0.5, 1.0, 5.0)

    pauses = [backoff_s(delays_s, failures) for failures in range(1, 6)]

    assert pauses == [0.5, 1.0, 5.0, 5.0, 5.0]


def test_back_off_before_any_failure_is_the_first_delay() -> None:
    assert backoff_s((2.0, 4.0), 0) == 2.0
