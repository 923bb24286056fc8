"""The Docker backend's reading of the engine's answers, without an engine."""

from __future__ import annotations

from typing import Any

import pytest

from edgelambda.docker_backend import DockerBackend


class StatsAnswer:
    """Stands in for aiodocker's client: every JSON query answers ``answer``."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    async def _query_json(self, path: str, params: dict[str, str]) -> Any:
        return self.answer


@pytest.mark.parametrize(
    "answer",
    [None, {}, {"memory_stats": None}, {"memory_stats": {}}],
    ids=["null", "empty", "null-memory", "empty-memory"],
)
async def test_a_container_without_stats_has_no_known_peak(answer: Any) -> None:
    # The engine answers so for a container that has just crashed or been OOM-killed.
    backend = DockerBackend(StatsAnswer(answer))  # type: ignore[arg-type]

    assert await backend.memory_peak_mb("c1") is None


async def test_the_peak_is_in_mb() -> None:
    answer = {"memory_stats": {"max_usage": 50 * 1024 * 1024}}
    backend = DockerBackend(StatsAnswer(answer))  # type: ignore[arg-type]

    assert await backend.memory_peak_mb("c1") == 50
