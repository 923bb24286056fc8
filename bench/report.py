"""The report's arithmetic, pure: bench.py's JSON trimmed to the figures compared, the ratios
between the sides, and the acceptance bound each ratio is held to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def trimmed(result: dict[str, Any]) -> dict[str, Any]:
    """The useful part of one bench.py report: warm latency, load and the ten sleeps."""
    out: dict[str, Any] = {}
    if warm := result.get("warm_sequential"):
        out["warm_ms"] = {
            name: _sequential(warm[name]) for name in ("hello", "echo") if name in warm
        }
    if load := result.get("throughput"):
        out["load"] = [_load_run(run) for run in load.get("runs", [])]
    if sleep := result.get("sleep_concurrency"):
        keys = ("wall_s", "ok", "errors", "effective_parallelism", "verdict")
        out["ten_1s_sleeps"] = {key: sleep.get(key) for key in keys}
    phases = ("warm_sequential", "throughput", "sleep_concurrency")
    failures = {p: result[p]["exception"] for p in phases if "exception" in result.get(p, {})}
    if failures:
        out["exceptions"] = failures
    return out


def _sequential(phase: dict[str, Any]) -> dict[str, Any]:
    latency = phase["latency_ms"]
    return {
        **{key: latency.get(key) for key in ("p50", "p90", "p99", "n")},
        "errors": phase["errors"],
        **({"error_kinds": phase["error_kinds"]} if "error_kinds" in phase else {}),
    }


def _load_run(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "clients": run["concurrency"],
        "rps": run["rps_ok"],
        "p50_ms": run["latency_ms"].get("p50"),
        "p99_ms": run["latency_ms"].get("p99"),
        "errors": run["errors"],
        **({"error_kinds": run["error_kinds"]} if "error_kinds" in run else {}),
    }


# -- ratios ----------------------------------------------------------------------------------


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def warm_hello_ms(side: dict[str, Any], key: str) -> float | None:
    value: float | None = side.get("warm_ms", {}).get("hello", {}).get(key)
    return value


def rps_at(side: dict[str, Any], clients: int) -> float | None:
    runs = [run["rps"] for run in side.get("load", []) if run["clients"] == clients]
    return runs[0] if runs else None


def ratios(report: dict[str, Any]) -> dict[str, float | None]:
    thin, gateway, jwt = report["thinnest"], report["gateway"], report["gateway_jwt_logs"]
    raw, cold, scale = report["raw"], report["cold"], report["scale"]
    return {
        "warm_p50_gateway_vs_thinnest": ratio(
            warm_hello_ms(gateway, "p50"), warm_hello_ms(thin, "p50")
        ),
        "warm_p99_gateway_vs_thinnest": ratio(
            warm_hello_ms(gateway, "p99"), warm_hello_ms(thin, "p99")
        ),
        **{
            f"rps_{clients}_clients_{name}_vs_thinnest": ratio(
                rps_at(side, clients), rps_at(thin, clients)
            )
            for name, side in (("gateway", gateway), ("gateway_jwt_logs", jwt))
            for clients in (8, 32)
        },
        "ten_cold_requests_vs_ten_raw": ratio(
            cold["ten_simultaneous_first_requests_less_sleep_ms"]["median"],
            raw["ten_concurrent_create_start_ready_ms"]["median"],
        ),
        "single_cold_request_vs_raw": ratio(
            cold["first_request_ms"]["median"], raw["create_start_ready_ms"]["median"]
        ),
        "routes_1000_vs_routes_10_p50": ratio(
            scale["routes_1000"]["p50"], scale["routes_10"]["p50"]
        ),
        "frozen_first_request_vs_engine_unpause": ratio(
            report["engine"]["frozen_standby_first_request_ms"]["median"],
            report["engine"]["unpause_ms"]["median"],
        ),
    }


# -- targets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A ratio's acceptance bound: at most ``bound`` (``is_upper``), else at least."""

    ratio: str
    bound: float
    is_upper: bool

    def verdict(self, value: float | None) -> dict[str, Any]:
        """The bound as text, and whether ``value`` keeps it (None: not measured)."""
        if value is None:
            holds = None
        else:
            holds = value <= self.bound if self.is_upper else value >= self.bound
        return {"bound": f"{'<=' if self.is_upper else '>='} {self.bound}", "holds": holds}


TARGETS = (
    Target("warm_p50_gateway_vs_thinnest", 1.1, is_upper=True),
    Target("rps_8_clients_gateway_vs_thinnest", 0.85, is_upper=False),
    Target("rps_32_clients_gateway_vs_thinnest", 0.85, is_upper=False),
    Target("rps_8_clients_gateway_jwt_logs_vs_thinnest", 0.75, is_upper=False),
    Target("rps_32_clients_gateway_jwt_logs_vs_thinnest", 0.75, is_upper=False),
    Target("ten_cold_requests_vs_ten_raw", 1.3, is_upper=True),
    Target("single_cold_request_vs_raw", 1.1, is_upper=True),
    Target("routes_1000_vs_routes_10_p50", 1.1, is_upper=True),
    Target("frozen_first_request_vs_engine_unpause", 3.0, is_upper=True),
    Target("frozen_standby_first_request_ms", 15.0, is_upper=True),  # absolute, in ms
)


def targets(measured: dict[str, float | None]) -> dict[str, dict[str, Any]]:
    """Each bounded ratio, its bound and whether it holds (None: not measured)."""
    verdicts = {}
    for target in TARGETS:
        value = measured.get(target.ratio)
        verdicts[target.ratio] = {"ratio": value, **target.verdict(value)}
    return verdicts
