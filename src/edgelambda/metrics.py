"""Prometheus metrics (``GET /metrics``), on the prometheus-client library with a registry of
the gateway's own (no global state); beside them, the console's recent activity."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edgelambda.activity import Activity, InvocationSummary
from edgelambda.invocation import (
    EXIT_ERROR_TYPE,
    INIT_TIMEOUT_ERROR_TYPE,
    OOM_ERROR_TYPE,
    TIMEOUT_ERROR_TYPE,
    InvocationResult,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
CRASH_TYPES = frozenset({EXIT_ERROR_TYPE, OOM_ERROR_TYPE, INIT_TIMEOUT_ERROR_TYPE})

# What the pool reports at scrape time: (function, state) -> containers, function -> queued.
PoolSnapshot = Callable[[], tuple[Mapping[tuple[str, str], int], Mapping[str, int]]]


def outcome(result: InvocationResult | None) -> str:
    """success | error (the handler raised) | timeout | crash (the runtime died)."""
    if result is None or not result.is_error:
        return "success" if result is not None else "crash"
    if result.error_type == TIMEOUT_ERROR_TYPE:
        return "timeout"
    if result.error_type in CRASH_TYPES:
        return "crash"
    return "error"


class Metrics:
    """The gateway's metrics; the pool and the log shipper are read at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.invocations = Counter(
            "edgelambda_invocations",
            "Invocations by function and outcome (success, error, timeout, crash).",
            ["function", "outcome"],
            registry=self.registry,
        )
        self.cold_starts = Counter(
            "edgelambda_cold_starts", "Invocations that paid for a cold start.", ["function"],
            registry=self.registry,
        )  # fmt: skip
        self.duration = Histogram(
            "edgelambda_invocation_duration_seconds",
            "Time from an invocation reaching its container to its answer.",
            ["function"],
            buckets=DURATION_BUCKETS_S,
            registry=self.registry,
        )

        # The labelled series, looked up once each: prometheus-client's ``labels`` checks and
        # locks on every call, and these are counted for every invocation.
        self._invocations_of: dict[tuple[str, str], Counter] = {}
        self._duration_of: dict[str, Histogram] = {}
        self.activity = Activity()  # the recent invocations the console shows

    def record_invocation(self, function: str, summary: InvocationSummary) -> None:
        """An invocation of ``function`` ended: count it here and in the console's
        :attr:`activity`."""
        key = (function, summary.outcome)
        invocations = self._invocations_of.get(key)
        if invocations is None:
            invocations = self._invocations_of[key] = self.invocations.labels(*key)
        invocations.inc()
        duration = self._duration_of.get(function)
        if duration is None:
            duration = self._duration_of[function] = self.duration.labels(function)
        duration.observe(summary.duration_ms / 1000)
        self.activity.record(function, summary)

    def watch_pool(self, snapshot: PoolSnapshot) -> None:
        self.registry.register(_PoolCollector(snapshot))

    def watch_dropped_logs(self, dropped: Callable[[], int]) -> None:
        self.registry.register(_DroppedLogsCollector(dropped))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _PoolCollector(Collector):
    def __init__(self, snapshot: PoolSnapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        containers, queued = self._snapshot()
        by_state = GaugeMetricFamily(
            "edgelambda_containers",
            "Containers by function and state.",
            labels=["function", "state"],
        )
        for (function, state), count in sorted(containers.items()):
            by_state.add_metric([function, state], count)
        depth = GaugeMetricFamily(
            "edgelambda_queue_depth", "Invocations waiting for a container.", labels=["function"]
        )
        for function, count in sorted(queued.items()):
            depth.add_metric([function], count)
        yield by_state
        yield depth


class _DroppedLogsCollector(Collector):
    def __init__(self, dropped: Callable[[], int]) -> None:
        self._dropped = dropped

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "edgelambda_log_records_dropped",
            "Log records dropped because the log store was unreachable and the buffer full.",
            value=self._dropped(),
        )
