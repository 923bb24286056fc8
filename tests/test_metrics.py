"""The Prometheus metrics, read back from their text exposition: counters, the duration
histogram, and the gauges and counters read from the pool and the log shipper at scrape
time."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.parser import text_string_to_metric_families

from edgelambda.invocation import (
    EXIT_ERROR_TYPE,
    INIT_TIMEOUT_ERROR_TYPE,
    OOM_ERROR_TYPE,
    TIMEOUT_ERROR_TYPE,
    InvocationResult,
)
from edgelambda.metrics import CONTENT_TYPE, Metrics, outcome


class FakePool:
    """What the pool reports at scrape time; tests change it between scrapes."""

    def __init__(self) -> None:
        self.containers: dict[tuple[str, str], int] = {}
        self.queued: dict[str, int] = {}

    def snapshot(self) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
        return dict(self.containers), dict(self.queued)


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    """The value of one sample of the exposition, or None when it is not there."""
    for family in text_string_to_metric_families(metrics.render().decode()):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return None


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (InvocationResult(b"{}"), "success"),
        (InvocationResult(b"{}", "ValueError"), "error"),
        (InvocationResult(b"{}", TIMEOUT_ERROR_TYPE), "timeout"),
        (InvocationResult(b"{}", EXIT_ERROR_TYPE), "crash"),
        (InvocationResult(b"{}", OOM_ERROR_TYPE), "crash"),
        (InvocationResult(b"{}", INIT_TIMEOUT_ERROR_TYPE), "crash"),
        (None, "crash"),  # no answer at all: the runtime went away
    ],
)
def test_outcome_names_how_an_invocation_ended(
    result: InvocationResult | None, expected: str
) -> None:
    assert outcome(result) == expected


def test_invocations_are_counted_by_function_and_outcome() -> None:
    metrics = Metrics()

    metrics.invocations.labels("fn", "success").inc()
    metrics.invocations.labels("fn", "success").inc()
    metrics.invocations.labels("fn", "timeout").inc()
    metrics.invocations.labels("other", "success").inc()

    assert sample(metrics, "edgelambda_invocations_total", function="fn", outcome="success") == 2
    assert sample(metrics, "edgelambda_invocations_total", function="fn", outcome="timeout") == 1
    assert sample(metrics, "edgelambda_invocations_total", function="fn", outcome="error") is None
    assert sample(metrics, "edgelambda_invocations_total", function="other", outcome="success") == 1


def test_cold_starts_are_counted_by_function() -> None:
    metrics = Metrics()

    metrics.cold_starts.labels("fn").inc()
    metrics.cold_starts.labels("fn").inc()

    assert sample(metrics, "edgelambda_cold_starts_total", function="fn") == 2
    assert sample(metrics, "edgelambda_cold_starts_total", function="other") is None


def test_durations_fall_into_lambda_sized_buckets() -> None:
    metrics = Metrics()

    for duration_s in (0.03, 2.0, 1000.0):
        metrics.duration.labels("fn").observe(duration_s)

    name = "edgelambda_invocation_duration_seconds"
    assert sample(metrics, f"{name}_bucket", function="fn", le="0.025") == 0
    assert sample(metrics, f"{name}_bucket", function="fn", le="0.05") == 1
    assert sample(metrics, f"{name}_bucket", function="fn", le="2.5") == 2
    assert sample(metrics, f"{name}_bucket", function="fn", le="900.0") == 2  # Lambda's maximum
    assert sample(metrics, f"{name}_bucket", function="fn", le="+Inf") == 3
    assert sample(metrics, f"{name}_count", function="fn") == 3
    assert sample(metrics, f"{name}_sum", function="fn") == pytest.approx(1002.03)


def test_the_bucket_bounds_span_five_ms_to_fifteen_minutes() -> None:
    metrics = Metrics()
    metrics.duration.labels("fn").observe(1.0)

    (family,) = [
        family
        for family in text_string_to_metric_families(metrics.render().decode())
        if family.name == "edgelambda_invocation_duration_seconds"
    ]

    bounds = [s.labels["le"] for s in family.samples if s.name.endswith("_bucket")]
    assert bounds == [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0",
        "2.5", "5.0", "10.0", "30.0", "60.0", "300.0", "900.0", "+Inf",
    ]  # fmt: skip


def test_containers_and_queues_are_read_from_the_pool_at_scrape_time() -> None:
    pool = FakePool()
    metrics = Metrics()
    metrics.watch_pool(pool.snapshot)

    pool.containers = {("fn", "ready"): 1, ("fn", "busy"): 2, ("other", "stopped"): 3}
    pool.queued = {"fn": 4, "other": 0}

    assert sample(metrics, "edgelambda_containers", function="fn", state="ready") == 1
    assert sample(metrics, "edgelambda_containers", function="fn", state="busy") == 2
    assert sample(metrics, "edgelambda_containers", function="other", state="stopped") == 3
    assert sample(metrics, "edgelambda_queue_depth", function="fn") == 4
    assert sample(metrics, "edgelambda_queue_depth", function="other") == 0

    pool.containers[("fn", "busy")] = 5
    pool.queued["fn"] = 0

    assert sample(metrics, "edgelambda_containers", function="fn", state="busy") == 5
    assert sample(metrics, "edgelambda_queue_depth", function="fn") == 0


def test_dropped_log_records_are_read_from_the_shipper_at_scrape_time() -> None:
    dropped = [0]
    metrics = Metrics()
    metrics.watch_dropped_logs(lambda: dropped[0])

    assert sample(metrics, "edgelambda_log_records_dropped_total") == 0
    dropped[0] = 7
    assert sample(metrics, "edgelambda_log_records_dropped_total") == 7


def test_the_exposition_is_prometheus_text_with_help_and_types() -> None:
    pool = FakePool()
    pool.containers = {("fn", "busy"): 2}
    pool.queued = {"fn": 1}
    metrics = Metrics()
    metrics.watch_pool(pool.snapshot)
    metrics.watch_dropped_logs(lambda: 3)
    metrics.invocations.labels("fn", "success").inc()

    lines = metrics.render().decode().splitlines()

    assert CONTENT_TYPE == CONTENT_TYPE_PLAIN_0_0_4  # the format render() writes
    assert "# TYPE edgelambda_invocations_total counter" in lines
    assert "# TYPE edgelambda_cold_starts_total counter" in lines
    assert "# TYPE edgelambda_invocation_duration_seconds histogram" in lines
    assert "# TYPE edgelambda_containers gauge" in lines
    assert "# HELP edgelambda_containers Containers by function and state." in lines
    assert "# TYPE edgelambda_queue_depth gauge" in lines
    assert "# TYPE edgelambda_log_records_dropped_total counter" in lines
    assert 'edgelambda_invocations_total{function="fn",outcome="success"} 1.0' in lines
    assert 'edgelambda_containers{function="fn",state="busy"} 2.0' in lines
    assert 'edgelambda_queue_depth{function="fn"} 1.0' in lines
    assert "edgelambda_log_records_dropped_total 3.0" in lines


def test_each_gateway_has_its_own_registry() -> None:
    # A second Metrics() would raise "Duplicated timeseries" on a shared registry.
    first, second = Metrics(), Metrics()

    first.invocations.labels("fn", "success").inc()

    assert sample(first, "edgelambda_invocations_total", function="fn", outcome="success") == 1
    assert sample(second, "edgelambda_invocations_total", function="fn", outcome="success") is None
    assert b"edgelambda_" not in generate_latest(REGISTRY)
