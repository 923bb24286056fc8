"""Routes and functions as frozen values, and route matching (pure).

:mod:`edgelambda.routing_file` reads ``routing.yaml`` into these values; everything else
imports them from here. A :class:`RoutingTable` matches a request to the most specific route.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from edgelambda.cors import CorsPolicy
from edgelambda.errors import MethodNotAllowed, RouteNotFound

__all__ = [
    "ANY_METHOD",
    "BUCKET_NAME",
    "DEFAULT_ROUTE",
    "ENV_NAME",
    "FUNCTION_NAME",
    "HTTP_METHODS",
    "IMAGE_DIR_PREFIXES",
    "TABLE_NAME",
    "AuthMode",
    "CorsPolicy",
    "FunctionSpec",
    "PayloadVersion",
    "Resources",
    "Route",
    "RouteMatch",
    "RoutingTable",
    "TableSpec",
]

ANY_METHOD = "ANY"
# HTTP API's catch-all route: it serves every request that no other route takes, whatever
# the path and method (API Gateway developer guide, "Working with routes for HTTP APIs").
DEFAULT_ROUTE = "$default"
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
# What routing.yaml accepts as names, shared by what reads it and what writes it (the SAM
# import): AWS's function-name alphabet and environment-key pattern, S3's and DynamoDB's
# naming rules, and the prefixes that make an `image` a directory rather than a reference
# (an image reference never starts with "." or "/").
FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
ENV_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
IMAGE_DIR_PREFIXES = ("./", "../", "/")
_PARAM_SEGMENT = re.compile(r"\{([A-Za-z0-9_.-]+)(\+?)\}")


class AuthMode(Enum):
    """How a route authenticates callers."""

    JWT = "jwt"
    NONE = "none"


class PayloadVersion(Enum):
    """The API Gateway event/result format a route speaks."""

    V1 = "1.0"  # REST API proxy integration
    V2 = "2.0"  # HTTP API / function URL


@dataclass(frozen=True)
class FunctionSpec:
    """One function from routing.yaml with every default applied."""

    name: str
    handler: str  # "module.function"; "" when an image's own CMD names it
    # The code, packed into an image on the runtime's base; with `dockerfile`, the Docker
    # build directory of an image function, built as it is.
    code_dir: Path
    runtime: str
    image: str | None  # an image the user built; None: the gateway builds one from code_dir
    environment: Mapping[str, str]
    timeout_s: float
    memory_mb: int
    max_concurrency: int
    min_warm: int
    idle_timeout_s: float | None  # None: use the global IDLE_TIMEOUT_MINUTES
    schedules: tuple[str, ...]  # raw "rate(...)" / "cron(...)" expressions
    # The functions its sandboxes may invoke through the Invoke API; None: not set, so the
    # mode decides (any in development, none in production).
    can_invoke: frozenset[str] | None = None
    # Idle seconds before its ready containers are paused; 0: never; None: the global
    # EDGELAMBDA_FREEZE_AFTER_S.
    freeze_after_s: float | None = None
    # Directories or .zip files laid out under /opt in this order (a later one's file wins).
    layers: tuple[Path, ...] = ()
    # The Dockerfile (a path inside code_dir) of an image function the gateway builds from
    # code_dir; None: code_dir is code, packed onto the runtime's base image.
    dockerfile: str | None = None
    # The handler's module written out in full (SAM's InlineCode); code_dir is then unused.
    inline_code: str | None = None
    # Swarm placement constraints of its sandboxes (node labels as Swarm writes them).
    placement: tuple[str, ...] = ()

    @property
    def source_paths(self) -> tuple[Path, ...]:
        """The directories and files the function's image is built from: a change in any of
        them means new code."""
        return (*(() if self.inline_code is not None else (self.code_dir,)), *self.layers)


@dataclass(frozen=True)
class Route:
    """One entry of ``routes``: a path template, its methods and the function serving it."""

    path: str
    methods: frozenset[str]  # upper-case; frozenset({"ANY"}) for any method
    function: str
    auth: AuthMode = AuthMode.JWT
    payload: PayloadVersion = PayloadVersion.V1
    cors: CorsPolicy | None = None  # None: no CORS headers, preflights are not answered


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The route chosen for a request and the path parameters it bound."""

    route: Route
    path_parameters: Mapping[str, str]


class _SegmentKind(Enum):
    # Values order specificity: a lower value is more specific.
    LITERAL = 0
    PARAM = 1
    GREEDY = 2


@dataclass(frozen=True)
class _Segment:
    kind: _SegmentKind
    text: str  # the literal, or the parameter's name


@dataclass(frozen=True)
class _CompiledRoute:
    route: Route
    segments: tuple[_Segment, ...]

    @property
    def specificity(self) -> tuple[int, ...]:
        return tuple(segment.kind.value for segment in self.segments)


@dataclass(frozen=True)
class TableSpec:
    """A DynamoDB table to create at start: its name and CreateTable's own properties
    (KeySchema, AttributeDefinitions, GlobalSecondaryIndexes, BillingMode...)."""

    name: str
    properties: Mapping[str, object]


@dataclass(frozen=True)
class Resources:
    """S3 buckets and DynamoDB tables the functions expect; created when missing."""

    buckets: tuple[str, ...] = ()
    tables: tuple[TableSpec, ...] = ()


@dataclass(frozen=True)
class RoutingTable:
    """Functions by name and the routes that reach them; :meth:`match` picks a route."""

    functions: Mapping[str, FunctionSpec]
    routes: tuple[Route, ...]
    resources: Resources = field(default_factory=Resources)
    # What the source could not carry over (a SAM template's warnings), for the operator.
    notes: tuple[str, ...] = field(default=(), compare=False)
    # Derived from routes once (the table is frozen): the routes whose first segment is a
    # literal, by that literal, and the others (a parameter or greedy first, or "/"), which
    # any path may fit. A request only tries the routes it could fit: matching costs the
    # same with 10 routes or 1,000.
    _by_first: Mapping[str, tuple[_CompiledRoute, ...]] = field(
        init=False, repr=False, compare=False
    )
    _anywhere: tuple[_CompiledRoute, ...] = field(init=False, repr=False, compare=False)
    # The routes made of literals only, by their segments: nothing a path fits is more
    # specific, so when one of them takes the method no other route needs trying.
    _literal: Mapping[tuple[str, ...], tuple[_CompiledRoute, ...]] = field(
        init=False, repr=False, compare=False
    )
    _default: Route | None = field(init=False, repr=False, compare=False)  # the $default route

    def __post_init__(self) -> None:
        by_first: dict[str, list[_CompiledRoute]] = {}
        anywhere: list[_CompiledRoute] = []
        literal: dict[tuple[str, ...], list[_CompiledRoute]] = {}
        default = None
        for route in self.routes:
            if route.path == DEFAULT_ROUTE:
                default = route
                continue
            compiled = _CompiledRoute(route, compile_path(route.path))
            first = compiled.segments[0] if compiled.segments else None
            if first is not None and first.kind is _SegmentKind.LITERAL:
                by_first.setdefault(first.text, []).append(compiled)
            else:
                anywhere.append(compiled)
            if all(segment.kind is _SegmentKind.LITERAL for segment in compiled.segments):
                literal.setdefault(tuple(s.text for s in compiled.segments), []).append(compiled)
        object.__setattr__(self, "_by_first", {k: tuple(v) for k, v in by_first.items()})
        object.__setattr__(self, "_anywhere", tuple(anywhere))
        object.__setattr__(self, "_literal", {k: tuple(v) for k, v in literal.items()})
        object.__setattr__(self, "_default", default)

    def match(self, method: str, path: str) -> RouteMatch:
        """The most specific route for ``method`` and the decoded request ``path``.

        Segments compare left to right: a literal beats ``{param}``, which beats ``{proxy+}``,
        whatever the order in the file. ``HEAD`` is served by ``GET`` routes. Raises
        :class:`RouteNotFound` for an unknown path and :class:`MethodNotAllowed` (with the
        methods that would have matched) for a known path with another method.
        """
        parts = _split_request_path(path)
        method = method.upper()
        exact = None if parts is None else _best_for(self._literal.get(tuple(parts), ()), method)
        if exact is not None:
            return RouteMatch(exact.route, {})
        fitting = (*self._by_first.get(parts[0], ()), *self._anywhere) if parts else self._anywhere
        candidates = [
            (compiled, params)
            for compiled in fitting
            if parts is not None and (params := _bind(compiled.segments, parts)) is not None
        ]
        if not candidates:
            if self._default is not None:
                return RouteMatch(self._default, {})
            raise RouteNotFound(f"no route for {path}")
        ranked = [
            ((compiled.specificity, rank), RouteMatch(compiled.route, params))
            for compiled, params in candidates
            if (rank := _method_rank(compiled.route.methods, method)) is not None
        ]
        if not ranked:
            if self._default is not None:
                return RouteMatch(self._default, {})
            allowed: set[str] = set().union(*(c.route.methods for c, _ in candidates))
            raise MethodNotAllowed(allowed=_allow_header_methods(allowed))
        return min(ranked, key=lambda entry: entry[0])[1]

    def preflight(
        self, path: str, requested_method: str
    ) -> tuple[CorsPolicy, frozenset[str]] | None:
        """The CORS policy for a preflight of ``requested_method`` on ``path``, and its methods.

        The policy is that of the route :meth:`match` would pick for the real request. The
        methods (for ``Access-Control-Allow-Methods``) are the standard methods whose route on
        ``path`` has that same policy: advertising a method served by a route without CORS
        would let browsers send cross-origin requests that route never opted into. None when
        no route serves the request, it has no CORS, or the method is not a standard one.
        """
        if requested_method.upper() not in HTTP_METHODS:
            return None  # ANY means the standard methods; never echo an arbitrary token
        policy = self._cors_policy(requested_method, path)
        if policy is None:
            return None
        methods = frozenset(m for m in HTTP_METHODS if self._cors_policy(m, path) == policy)
        return policy, methods

    def _cors_policy(self, method: str, path: str) -> CorsPolicy | None:
        try:
            return self.match(method, path).route.cors
        except (RouteNotFound, MethodNotAllowed):
            return None


# --- matching ---------------------------------------------------------------------------------


def _split_request_path(path: str) -> list[str] | None:
    """Segments of a decoded request path; one trailing slash is ignored, as API Gateway does."""
    if not path.startswith("/"):
        return None
    trimmed = path[1:-1] if path.endswith("/") else path[1:]
    return trimmed.split("/") if trimmed else []


def _bind(segments: tuple[_Segment, ...], parts: list[str]) -> dict[str, str] | None:
    """Path parameters if ``parts`` fit the template ``segments``, else None."""
    params: dict[str, str] = {}
    for index, segment in enumerate(segments):
        if segment.kind is _SegmentKind.GREEDY:
            rest = parts[index:]
            if not rest:  # {proxy+} needs at least one segment, as in API Gateway
                return None
            params[segment.text] = "/".join(rest)
            return params
        if index >= len(parts) or not _segment_fits(segment, parts[index]):
            return None
        if segment.kind is _SegmentKind.PARAM:
            params[segment.text] = parts[index]
    return params if len(parts) == len(segments) else None


def _segment_fits(segment: _Segment, part: str) -> bool:
    if segment.kind is _SegmentKind.LITERAL:
        return part == segment.text
    return part != ""


def _best_for(routes: tuple[_CompiledRoute, ...], method: str) -> _CompiledRoute | None:
    """The first of ``routes`` that takes ``method`` best, or None."""
    best, best_rank = None, None
    for compiled in routes:
        rank = _method_rank(compiled.route.methods, method)
        if rank is not None and (best_rank is None or rank < best_rank):
            best, best_rank = compiled, rank
    return best


def _method_rank(methods: frozenset[str], method: str) -> int | None:
    """How well a route's methods accept ``method`` (lower is better), or None."""
    if method in methods:
        return 0
    if ANY_METHOD in methods:
        return 1
    if method == "HEAD" and "GET" in methods:
        return 2
    return None


def _allow_header_methods(methods: set[str]) -> frozenset[str]:
    if "GET" in methods:
        methods = methods | {"HEAD"}
    return frozenset(methods)


def compile_path(path: str) -> tuple[_Segment, ...]:
    """Template segments of a route path; ValueError says what is wrong with it."""
    if not path.startswith("/"):
        raise ValueError('must start with "/"')
    if path == "/":
        return ()
    segments = tuple(_compile_segment(part) for part in path[1:].split("/"))
    check_params(segments)
    return segments


def _compile_segment(text: str) -> _Segment:
    if not text:
        raise ValueError("must not contain an empty segment (// or a trailing /)")
    param = _PARAM_SEGMENT.fullmatch(text)
    if param is not None:
        kind = _SegmentKind.GREEDY if param.group(2) else _SegmentKind.PARAM
        return _Segment(kind, param.group(1))
    if "{" in text or "}" in text:
        raise ValueError(
            f"bad parameter syntax in {text!r}; a segment is a literal, {{name}} or {{name+}}"
        )
    return _Segment(_SegmentKind.LITERAL, text)


def check_params(segments: tuple[_Segment, ...]) -> None:
    seen: set[str] = set()
    for index, segment in enumerate(segments):
        if segment.kind is _SegmentKind.LITERAL:
            continue
        if segment.text in seen:
            raise ValueError(f"parameter {{{segment.text}}} appears twice")
        seen.add(segment.text)
        if segment.kind is _SegmentKind.GREEDY and index != len(segments) - 1:
            raise ValueError(f"{{{segment.text}+}} must be the last segment")


def route_shape(path: str) -> tuple[object, ...]:
    """What two route paths must share to match the same requests ("/a/{x}" == "/a/{y}");
    ``$default`` has a shape of its own. ValueError says what is wrong with the path."""
    return (DEFAULT_ROUTE,) if path == DEFAULT_ROUTE else path_shape(compile_path(path))


def path_shape(segments: tuple[_Segment, ...]) -> tuple[tuple[_SegmentKind, str], ...]:
    """What two templates must share to match the same requests ("/a/{x}" == "/a/{y}")."""
    return tuple((s.kind, s.text if s.kind is _SegmentKind.LITERAL else "") for s in segments)
