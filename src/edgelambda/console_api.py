"""The console's JSON documents: pure functions from the gateway's state (its routing table,
the pool's counts, the recent activity, the dead letters) to what ``/console/api`` answers,
and who may read them. The HTTP shell is :mod:`edgelambda.console`."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from edgelambda import __version__, auth
from edgelambda.activity import Activity
from edgelambda.async_events import DeadLetteredEvent
from edgelambda.config import Settings
from edgelambda.errors import BadRequest, Unauthorized
from edgelambda.logs import json_object
from edgelambda.routing import FunctionSpec, Route, RoutingTable
from edgelambda.service_checks import ServiceHealth

PAYLOAD_SHOWN_BYTES = 4096  # of a dead letter's payload and last error, in a listing
LISTED = 100  # dead letters listed unless asked for fewer or more
MAX_LISTED = 1000

# What the pool reports: (function, state) -> containers, function -> waiting invocations.
Counts = tuple[Mapping[tuple[str, str], int], Mapping[str, int]]


def check_access(headers: Mapping[str, str], settings: Settings, now_s: float) -> float | None:
    """The console's login: a JWT from the auth endpoint (``Authorization: Bearer``), or in
    development mode the API key (``x-api-key``) too. When the login ends: the token's
    expiry, None for the key. Raises :class:`Unauthorized`."""
    api_key = headers.get("x-api-key")
    if api_key is not None and not settings.is_production:
        if auth.is_api_key_valid(api_key, settings.api_key):
            return None
        raise Unauthorized("wrong x-api-key")
    token = auth.bearer_token(headers.get("Authorization"))
    return float(auth.verify_token(token, secret=settings.jwt_secret, now_s=now_s)["exp"])


def route_json(route: Route) -> dict[str, object]:
    return {
        "methods": sorted(route.methods),
        "path": route.path,
        "function": route.function,
        "auth": route.auth.value,
        "payload": route.payload.value,
        "cors": route.cors is not None,
    }


def routes_json(table: RoutingTable) -> list[dict[str, object]]:
    """The routes in the routing file's order."""
    return [route_json(route) for route in table.routes]


def code_hash(image: str | None) -> str | None:
    """The digest in a built function image's tag (``edgelambda-fn/<name>:<digest>``, see
    :func:`edgelambda.images.image_tag`), or a user's image as it is named."""
    if image is None:
        return None
    repository, _, tag = image.rpartition(":")
    return tag if repository.startswith("edgelambda-fn/") else image


def function_json(
    spec: FunctionSpec,
    routes: Sequence[Route],
    counts: Counts,
    image: str | None,
    settings: Settings,
) -> dict[str, object]:
    """A function's settings, routes and containers (without its activity)."""
    containers, queued = counts
    return {
        "name": spec.name,
        "runtime": spec.runtime,
        "handler": spec.handler,
        "image": spec.image,
        "code_hash": code_hash(image),
        "memory_mb": spec.memory_mb,
        "timeout_s": spec.timeout_s,
        "max_concurrency": spec.max_concurrency,
        "min_warm": spec.min_warm,
        "idle_timeout_s": spec.idle_timeout_s or settings.idle_timeout_s,
        "freeze_after_s": (
            settings.freeze_after_s if spec.freeze_after_s is None else spec.freeze_after_s
        ),
        "schedules": list(spec.schedules),
        "routes": [route_json(route) for route in routes if route.function == spec.name],
        "containers": {
            state: count for (name, state), count in containers.items() if name == spec.name
        },
        "queued": queued.get(spec.name, 0),
    }


def live_json(table: RoutingTable, counts: Counts, images: Mapping[str, str]) -> dict[str, object]:
    """What changes from second to second, for every function: containers by state,
    invocations waiting, and the code its containers run. The live feed sends this."""
    containers, queued = counts
    by_function: dict[str, dict[str, int]] = {name: {} for name in table.functions}
    for (name, state), count in containers.items():
        if name in by_function and count:
            by_function[name][state] = count
    return {
        name: {
            "containers": states,
            "queued": queued.get(name, 0),
            "code_hash": code_hash(images.get(name)),
        }
        for name, states in by_function.items()
    }


def activity_json(table: RoutingTable, activity: Activity, now_s: float) -> dict[str, object]:
    """Every function's per-minute series over the activity window."""
    return {name: activity.series(name, now_s) for name in table.functions}


def invocations_json(activity: Activity, function: str) -> list[dict[str, object]]:
    return [summary.as_json() for summary in activity.recent(function)]


def dead_letter_json(dead: DeadLetteredEvent) -> dict[str, object]:
    """A dead letter as the console lists it: its payload's first
    :data:`PAYLOAD_SHOWN_BYTES` (``edgelambda events dlq`` prints it whole)."""
    return {
        "id": dead.id,
        "function": dead.function,
        "attempts": dead.attempts,
        "enqueued_at": dead.enqueued_at_s,
        "dead_at": dead.dead_at_s,
        "reason": str(dead.reason),
        "last_error": (dead.last_error or "")[:PAYLOAD_SHOWN_BYTES] or None,
        "payload": dead.payload[:PAYLOAD_SHOWN_BYTES].decode("utf-8", "replace"),
        "payload_bytes": len(dead.payload),
    }


def limit_of(raw: str | None) -> int:
    """A listing's ``limit`` parameter: 1 to :data:`MAX_LISTED`, :data:`LISTED` by default."""
    if raw is None:
        return LISTED
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LISTED:
        raise BadRequest(f"limit={raw!r}", public_message=f"limit must be 1 to {MAX_LISTED}")
    return int(raw)


def box_json(
    *,
    settings: Settings,
    started_s: float,
    now_s: float,
    loops: Sequence[str],
    dead_loops: Mapping[str, str],
    engine_version: str,
    services: Sequence[ServiceHealth],
    log_shipper: tuple[int, int] | None,
    containers: Mapping[str, int],
    events: Mapping[str, object],
) -> dict[str, object]:
    """The box page: the gateway, its loops, the engine, the data services, the log shipper
    (records buffered and dropped, when logs are shipped) and the Event counts."""
    return {
        "version": __version__,
        "started": started_s,
        "uptime_s": round(now_s - started_s, 1),
        "mode": "production" if settings.is_production else "development",
        "loops": [
            {
                "name": name,
                "status": "dead" if name in dead_loops else "running",
                "detail": dead_loops.get(name),
            }
            for name in loops
        ],
        "engine": {"backend": settings.backend, "version": engine_version},
        "services": [service.as_json() for service in services],
        "log_shipper": None
        if log_shipper is None
        else {
            "url": settings.victorialogs_url,
            "buffered": log_shipper[0],
            "capacity": settings.log_buffer_records,
            "dropped": log_shipper[1],
        },
        "containers": dict(containers),
        "events": dict(events),
        "logs_ui": logs_ui_base(settings),
    }


def logs_ui_base(settings: Settings) -> str | None:
    """VictoriaLogs as a browser reaches it (see ``EDGELAMBDA_VICTORIALOGS_UI_URL``)."""
    return settings.victorialogs_ui_url or settings.victorialogs_url


def is_duration(text: str) -> bool:
    """Whether ``text`` is a LogsQL duration the console passes on (``15m``, ``2h``...)."""
    return re.fullmatch(r"[1-9][0-9]{0,5}(ms|s|m|h|d|w)", text) is not None


def logs_ui_url(base: str, query: str) -> str:
    """VictoriaLogs' own web UI (vmui, served at ``/select/vmui/``) opened on ``query``:
    its query goes in the fragment, ``#/?query=...`` (the form VictoriaMetrics issue #4604
    shows for vmui-logs)."""
    return f"{base.rstrip('/')}/select/vmui/#/?query={quote(query, safe='')}"


def log_line_json(raw: bytes) -> dict[str, Any] | None:
    """One JSON line of LogsQL's answer, as the console shows it (None for anything else)."""
    line = json_object(raw)
    if line is None:
        return None
    return {
        "time": line.get("_time"),
        "message": line.get("_msg", ""),
        "stream": line.get("stream"),
        "request_id": line.get("aws_request_id"),
        "container": line.get("container_name"),
    }
