"""The report's arithmetic, pure: bench.py's JSON trimmed to the figures compared, the ratios
between the sides, and the acceptance bound each ratio is held to."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
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


def paired_ratios(
    numerators: list[dict[str, Any]], denominators: list[dict[str, Any]], clients: Sequence[int]
) -> dict[str, Any]:
    """Rounds measured in pairs (trimmed bench.py reports): per client count, each pair's
    req/s ratio, and their median."""
    out: dict[str, Any] = {}
    for count in clients:
        each = [
            value
            for top, bottom in zip(numerators, denominators, strict=True)
            if (value := ratio(rps_at(top, count), rps_at(bottom, count))) is not None
        ]
        out[str(count)] = {"median": statistics.median(each) if each else None, "rounds": each}
    return out


def ratios(report: dict[str, Any]) -> dict[str, float | None]:
    """The ratios between the sides; each only when the sections it compares were measured
    (a run can measure some sections alone)."""
    out: dict[str, float | None] = {}
    for sections, compare in _COMPARISONS:
        if all(name in report for name in sections):
            out.update(compare(report))
    return out


def _warm_ratios(report: dict[str, Any]) -> dict[str, float | None]:
    thin, gateway = report["thinnest"], report["gateway"]
    return {
        f"warm_{key}_gateway_vs_thinnest": ratio(
            warm_hello_ms(gateway, key), warm_hello_ms(thin, key)
        )
        for key in ("p50", "p99")
    }


def _rps_ratios(side: str) -> Callable[[dict[str, Any]], dict[str, float | None]]:
    def compare(report: dict[str, Any]) -> dict[str, float | None]:
        return {
            f"rps_{clients}_clients_{side}_vs_thinnest": ratio(
                rps_at(report[side], clients), rps_at(report["thinnest"], clients)
            )
            for clients in (8, 32)
        }

    return compare


def _ten_cold_ratios(report: dict[str, Any]) -> dict[str, float | None]:
    raw, cold = report["raw"], report["cold"]
    return {
        "ten_cold_requests_vs_ten_raw": ratio(
            cold["ten_simultaneous_first_requests_less_sleep_ms"]["median"],
            raw["ten_concurrent_create_start_ready_ms"]["median"],
        ),
    }


def _single_cold_ratios(report: dict[str, Any]) -> dict[str, float | None]:
    cold = report["cold"]
    return {
        "single_cold_request_vs_raw": ratio(
            cold["first_request_ms"]["median"], cold["raw_create_start_ready_ms"]["median"]
        ),
    }


def _route_ratios(report: dict[str, Any]) -> dict[str, float | None]:
    scale = report["scale"]
    return {
        "routes_1000_vs_routes_10_p50": ratio(
            scale["routes_1000"]["p50"], scale["routes_10"]["p50"]
        )
    }


def _container_ratios(report: dict[str, Any]) -> dict[str, float | None]:
    base, scaled = report["containers"]["containers_10"], report["containers"]["containers_scaled"]
    names = {key: f"containers_300_vs_containers_10_{key}" for key in ("p50", "p99")}
    if not (is_full(base) and is_full(scaled)):
        return dict.fromkeys(names.values())
    return {name: ratio(scaled[key], base[key]) for key, name in names.items()}


def is_full(side: dict[str, Any]) -> bool:
    """Whether a scale section's gateway reached the live containers it was to have (short
    of them, its figures do not answer the target)."""
    return bool(side["live_containers"] >= side["wanted_containers"])


def _unpause_ratios(report: dict[str, Any]) -> dict[str, float | None]:
    return {
        "frozen_first_request_vs_engine_unpause": ratio(
            report["engine"]["frozen_standby_first_request_ms"]["median"],
            report["engine"]["unpause_ms"]["median"],
        )
    }


def _console_ratios(report: dict[str, Any]) -> dict[str, float | None]:
    paired = report["console"]["live_feed_load"]["paired_ratios"]
    return {
        f"rps_{clients}_clients_five_consoles_vs_none": paired[str(clients)]["median"]
        for clients in (8, 32)
    }


# The sections each comparison needs, and the comparison.
_COMPARISONS: tuple[
    tuple[tuple[str, ...], Callable[[dict[str, Any]], dict[str, float | None]]], ...
] = (
    (("thinnest", "gateway"), _warm_ratios),
    (("thinnest", "gateway"), _rps_ratios("gateway")),
    (("thinnest", "gateway_jwt_logs"), _rps_ratios("gateway_jwt_logs")),
    (("raw", "cold"), _ten_cold_ratios),
    (("cold",), _single_cold_ratios),
    (("scale",), _route_ratios),
    (("containers",), _container_ratios),
    (("engine",), _unpause_ratios),
    (("console",), _console_ratios),
)


def absolutes(report: dict[str, Any]) -> dict[str, float | None]:
    """The figures held to an absolute bound rather than compared, of the sections
    measured."""
    out: dict[str, float | None] = {}
    if "engine" in report:
        frozen = report["engine"]["frozen_standby_first_request_ms"]["median"]
        out["frozen_standby_first_request_ms"] = frozen
    if "functions" in report:
        functions = report["functions"]
        rss = functions["rss_mb"] if is_full(functions) else None
        out["rss_mb_50_functions_100_containers"] = rss
    if "console" in report:
        pages = report["console"]["pages"]
        slowest = max(page["max"] for page in pages["page_load_ms"].values())
        out["console_page_load_ms_50_functions_100_containers"] = (
            slowest if is_full(pages) else None
        )
    return out


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
    Target("containers_300_vs_containers_10_p50", 1.1, is_upper=True),
    Target("frozen_first_request_vs_engine_unpause", 3.0, is_upper=True),
    Target("frozen_standby_first_request_ms", 15.0, is_upper=True),  # absolute, in ms
    Target("rss_mb_50_functions_100_containers", 100.0, is_upper=True),  # absolute, in MB
    # Issue 17: the console's slowest page load (ms), and the request path beside it.
    Target("console_page_load_ms_50_functions_100_containers", 1000.0, is_upper=True),
    Target("rps_8_clients_five_consoles_vs_none", 0.95, is_upper=False),
    Target("rps_32_clients_five_consoles_vs_none", 0.95, is_upper=False),
)


def targets(measured: dict[str, float | None]) -> dict[str, dict[str, Any]]:
    """Each bounded figure of ``measured``, its bound and whether it holds (None: its value
    is missing); a target whose figure a run left out is left out too."""
    return {
        target.ratio: {"ratio": measured[target.ratio], **target.verdict(measured[target.ratio])}
        for target in TARGETS
        if target.ratio in measured
    }
