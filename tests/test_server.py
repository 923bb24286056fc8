"""The gateway's shutdown order, without an engine."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from edgelambda.config import Settings
from edgelambda.logs import RecordingSink
from edgelambda.routing_file import parse_routing
from edgelambda.server import Server
from tests.fakes import FakeBackend


class Part:
    def __init__(self, closed: list[str], name: str, *, fails: bool = False) -> None:
        self._closed, self._name, self._fails = closed, name, fails

    async def close(self) -> None:
        self._closed.append(self._name)
        if self._fails:
            raise RuntimeError(f"{self._name} broke")


async def test_a_part_failing_to_close_does_not_stop_the_others(tmp_path: Path) -> None:
    table = parse_routing("functions: {}\nroutes: []\n", source="test", base_dir=tmp_path)
    gateway = Server(Settings(), table, FakeBackend(), sink=RecordingSink())
    closed: list[str] = []
    gateway._watcher = Part(closed, "watcher", fails=True)  # type: ignore[assignment]
    gateway._scheduler = Part(closed, "scheduler")  # type: ignore[assignment]
    gateway._events = Part(closed, "event store")  # type: ignore[assignment]

    with capture_logs() as logs:
        await gateway.close()

    assert closed == ["watcher", "scheduler", "event store"]  # in order, none skipped
    assert [(e["event"], e["part"]) for e in logs] == [("close failed", "watcher")]
