"""The routing table: routing.yaml parsed and validated into frozen values, and route matching.

Pure: no I/O except :func:`load_routing` reading the one file. Every problem in the file raises
:class:`~edgelambda.errors.RoutingConfigError` naming the file, the 1-based line and the dotted
key (``routing.yaml:12: functions.hello.timeout: must be a positive number``). Line numbers come
from the composed YAML node tree, which also reveals duplicate keys that PyYAML's loader would
silently collapse.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TypeVar

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from edgelambda.cors import ANY_ORIGIN, CorsPolicy, normalize_origin
from edgelambda.errors import MethodNotAllowed, RouteNotFound, RoutingConfigError
from edgelambda.schedule import ScheduleError, parse_schedule

__all__ = [
    "ANY_METHOD",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MEMORY_MB",
    "DEFAULT_RUNTIME",
    "DEFAULT_TIMEOUT_S",
    "HTTP_METHODS",
    "AuthMode",
    "CorsPolicy",
    "FunctionSpec",
    "PayloadVersion",
    "Route",
    "RouteMatch",
    "RoutingTable",
    "load_routing",
    "parse_routing",
]

DEFAULT_RUNTIME = "python3.12"
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MEMORY_MB = 256
DEFAULT_MAX_CONCURRENCY = 10

ANY_METHOD = "ANY"
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

_TOP_KEYS = frozenset({"defaults", "functions", "routes", "resources"})
_SETTING_KEYS = frozenset(
    {"runtime", "environment", "timeout", "memory", "max_concurrency", "idle_timeout"}
)
_DEFAULT_KEYS = _SETTING_KEYS
_FUNCTION_KEYS = _SETTING_KEYS | {"handler", "code", "image", "min_warm", "schedule"}
_ROUTE_KEYS = frozenset({"path", "method", "function", "auth", "payload", "cors"})
_REQUIRED_ROUTE_KEYS = ("path", "method", "function")

_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # AWS's function-name alphabet
_ENV_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # AWS's environment-key pattern
# Variables the gateway sets to wire a container to its own sandbox; letting a user override
# them would break the runtime or point it at someone else's Runtime API.
_RESERVED_ENV = frozenset(
    {
        "_HANDLER",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_TIMEOUT",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_RUNTIME_DIR",
        "LAMBDA_TASK_ROOT",
    }
)
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
# awslambdaric splits on the last dot and accepts "/" or "." between package parts.
_HANDLER = re.compile(rf"{_IDENTIFIER}(?:[./]{_IDENTIFIER})*\.{_IDENTIFIER}")
_PARAM_SEGMENT = re.compile(r"\{([A-Za-z0-9_.-]+)(\+?)\}")

_T = TypeVar("_T")


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
    code_dir: Path
    runtime: str
    image: str | None
    environment: Mapping[str, str]
    timeout_s: float
    memory_mb: int
    max_concurrency: int
    min_warm: int
    idle_timeout_s: float | None  # None: use the global IDLE_TIMEOUT_MINUTES
    schedules: tuple[str, ...]  # raw "rate(...)" / "cron(...)" expressions


@dataclass(frozen=True)
class Route:
    """One entry of ``routes``: a path template, its methods and the function serving it."""

    path: str
    methods: frozenset[str]  # upper-case; frozenset({"ANY"}) for any method
    function: str
    auth: AuthMode = AuthMode.JWT
    payload: PayloadVersion = PayloadVersion.V1
    cors: CorsPolicy | None = None  # None: no CORS headers, preflights are not answered


@dataclass(frozen=True)
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
    _compiled: tuple[_CompiledRoute, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled = tuple(_CompiledRoute(r, _compile_path(r.path)) for r in self.routes)
        object.__setattr__(self, "_compiled", compiled)  # frozen: set once, derived from routes

    def match(self, method: str, path: str) -> RouteMatch:
        """The most specific route for ``method`` and the decoded request ``path``.

        Segments compare left to right: a literal beats ``{param}``, which beats ``{proxy+}``,
        whatever the order in the file. ``HEAD`` is served by ``GET`` routes. Raises
        :class:`RouteNotFound` for an unknown path and :class:`MethodNotAllowed` (with the
        methods that would have matched) for a known path with another method.
        """
        parts = _split_request_path(path)
        candidates = [
            (compiled, params)
            for compiled in self._compiled
            if parts is not None and (params := _bind(compiled.segments, parts)) is not None
        ]
        if not candidates:
            raise RouteNotFound(f"no route for {path}")
        method = method.upper()
        ranked = [
            ((compiled.specificity, rank), RouteMatch(compiled.route, params))
            for compiled, params in candidates
            if (rank := _method_rank(compiled.route.methods, method)) is not None
        ]
        if not ranked:
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


def parse_routing(text: str, *, source: str, base_dir: Path) -> RoutingTable:
    """Parse and validate routing.yaml text.

    ``source`` names the file in error messages; relative ``code`` paths (and the default
    ``functions/<name>``) resolve against ``base_dir``, which should be absolute.
    """
    reader = _Reader(source)
    root = _compose(text, source)
    if root is not None and not isinstance(root, MappingNode):
        raise reader.error(
            root, "(top level)", "must be a mapping of defaults, functions and routes"
        )
    top = reader.mapping(root, "", _TOP_KEYS)
    resources = _read_resources(reader, _node(top, "resources"))
    default_items = reader.mapping(_node(top, "defaults"), "defaults", _DEFAULT_KEYS)
    defaults = _read_settings(reader, default_items)
    functions = _read_functions(reader, _node(top, "functions"), defaults, base_dir)
    routes = _read_routes(reader, _node(top, "routes"), functions)
    return RoutingTable(functions=functions, routes=routes, resources=resources)


def load_routing(path: Path) -> RoutingTable:
    """Read and parse a routing file; code paths resolve against the file's directory."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RoutingConfigError(str(path), None, "(file)", f"cannot read: {exc}") from exc
    return parse_routing(text, source=str(path), base_dir=path.absolute().parent)


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


def _compile_path(path: str) -> tuple[_Segment, ...]:
    """Template segments of a route path; ValueError says what is wrong with it."""
    if not path.startswith("/"):
        raise ValueError('must start with "/"')
    if path == "/":
        return ()
    segments = tuple(_compile_segment(part) for part in path[1:].split("/"))
    _check_params(segments)
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


def _check_params(segments: tuple[_Segment, ...]) -> None:
    seen: set[str] = set()
    for index, segment in enumerate(segments):
        if segment.kind is _SegmentKind.LITERAL:
            continue
        if segment.text in seen:
            raise ValueError(f"parameter {{{segment.text}}} appears twice")
        seen.add(segment.text)
        if segment.kind is _SegmentKind.GREEDY and index != len(segments) - 1:
            raise ValueError(f"{{{segment.text}+}} must be the last segment")


def _shape(segments: tuple[_Segment, ...]) -> tuple[tuple[_SegmentKind, str], ...]:
    """What two templates must share to match the same requests ("/a/{x}" == "/a/{y}")."""
    return tuple((s.kind, s.text if s.kind is _SegmentKind.LITERAL else "") for s in segments)


# --- reading the YAML node tree ---------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    """A mapping entry: its dotted key and the nodes of the key and the value."""

    key: str
    key_node: Node
    node: Node


def _node(items: Mapping[str, _Item], name: str) -> Node | None:
    item = items.get(name)
    return item.node if item is not None else None


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _compose(text: str, source: str) -> Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise RoutingConfigError(source, line, "(syntax)", exc.problem or str(exc)) from exc
    except yaml.YAMLError as exc:
        raise RoutingConfigError(source, None, "(syntax)", str(exc)) from exc


def _is_null(node: Node | None) -> bool:
    return node is None or node.tag == "tag:yaml.org,2002:null"


class _Reader:
    """Typed access to a composed YAML tree; every failure names the file, line and key."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._constructor = SafeConstructor()

    def error(self, node: Node | None, key: str, problem: str) -> RoutingConfigError:
        """The error to raise for ``problem`` at ``node`` (the line) under ``key``."""
        line = _line(node) if node is not None else None
        return RoutingConfigError(self.source, line, key, problem)

    def scalar(self, node: Node, key: str) -> object:
        """The Python value of a scalar node; collections come back as None."""
        if not isinstance(node, ScalarNode):
            return None
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:  # e.g. an unknown explicit tag
            raise self.error(node, key, str(exc).splitlines()[0]) from exc

    def value(self, item: _Item) -> object:
        """The plain Python value of any node (lists and mappings included)."""
        try:
            return self._constructor.construct_object(item.node, deep=True)
        except yaml.YAMLError as exc:
            raise self.error(item.node, item.key, str(exc).splitlines()[0]) from exc

    def mapping(
        self, node: Node | None, key: str, allowed: frozenset[str] | None = None
    ) -> dict[str, _Item]:
        """Entries of a mapping (null counts as empty), rejecting duplicate and unknown keys."""
        if node is None or _is_null(node):
            return {}
        if not isinstance(node, MappingNode):
            raise self.error(node, key, "must be a mapping")
        items: dict[str, _Item] = {}
        for key_node, value_node in node.value:
            name = self._key_name(key, key_node)
            dotted = f"{key}.{name}" if key else name
            if name in items:
                first = _line(items[name].key_node)
                raise self.error(key_node, dotted, f"duplicate key (first defined on line {first})")
            if allowed is not None and name not in allowed:
                raise self.error(
                    key_node, dotted, f"unknown key; expected one of {_listing(allowed)}"
                )
            items[name] = _Item(dotted, key_node, value_node)
        return items

    def _key_name(self, parent: str, key_node: Node) -> str:
        name = self.scalar(key_node, parent or "(top level)")
        if not isinstance(name, str):
            # Unquoted `yes`, `1` or `null` as a key are not names in YAML; say so.
            raise self.error(key_node, parent or "(top level)", f"key {name!r} must be a string")
        return name

    def string(self, item: _Item) -> str:
        value = self.scalar(item.node, item.key)
        if not isinstance(value, str) or not value.strip():
            raise self.error(item.node, item.key, "must be a non-empty string")
        return value

    def positive_number(self, item: _Item) -> float:
        value = self.scalar(item.node, item.key)
        # bool is an int subclass; "timeout: yes" is a mistake, not 1 second.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(item.node, item.key, "must be a positive number")
        if not 0 < value < math.inf:  # also rules out YAML's .nan and .inf
            raise self.error(item.node, item.key, "must be a positive number")
        return float(value)

    def integer(self, item: _Item, *, minimum: int) -> int:
        value = self.scalar(item.node, item.key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise self.error(item.node, item.key, f"must be {wanted}")
        return value

    def positive_int(self, item: _Item) -> int:
        return self.integer(item, minimum=1)

    def strings(self, item: _Item) -> list[tuple[str, Node]]:
        """One string or a list of strings, each with its node for error lines."""
        nodes = item.node.value if isinstance(item.node, SequenceNode) else [item.node]
        if not nodes:
            raise self.error(item.node, item.key, "must not be an empty list")
        result = []
        for node in nodes:
            value = self.scalar(node, item.key)
            if not isinstance(value, str) or not value.strip():
                raise self.error(node, item.key, "must be a string or a list of strings")
            result.append((value, node))
        return result

    def environment(self, item: _Item) -> dict[str, str]:
        entries = self.mapping(item.node, item.key)
        return {name: self._env_value(name, entry) for name, entry in entries.items()}

    def _env_value(self, name: str, entry: _Item) -> str:
        if not _ENV_NAME.fullmatch(name):
            raise self.error(
                entry.key_node, entry.key, "must be letters, digits and _, not first a digit"
            )
        if name in _RESERVED_ENV:
            raise self.error(entry.key_node, entry.key, "is reserved; the gateway sets it")
        value = self.scalar(entry.node, entry.key)
        if isinstance(value, bool):  # AWS (CloudFormation) turns YAML booleans into "true"
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        raise self.error(entry.node, entry.key, "must be a string, number or boolean")


def _listing(names: frozenset[str]) -> str:
    return ", ".join(sorted(names))


def _optional(items: Mapping[str, _Item], name: str, read: Callable[[_Item], _T]) -> _T | None:
    item = items.get(name)
    return read(item) if item is not None else None


def _first(*values: _T | None, default: _T) -> _T:
    for value in values:
        if value is not None:
            return value
    return default


# --- functions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    """Function settings that ``defaults`` may also give; None means not given."""

    runtime: str | None
    environment: Mapping[str, str]
    timeout_s: float | None
    memory_mb: int | None
    max_concurrency: int | None
    idle_timeout_s: float | None


def _read_settings(reader: _Reader, items: Mapping[str, _Item]) -> _Settings:
    return _Settings(
        runtime=_optional(items, "runtime", reader.string),
        environment=_optional(items, "environment", reader.environment) or {},
        timeout_s=_optional(items, "timeout", reader.positive_number),
        memory_mb=_optional(items, "memory", reader.positive_int),
        max_concurrency=_optional(items, "max_concurrency", reader.positive_int),
        idle_timeout_s=_optional(items, "idle_timeout", reader.positive_number),
    )


def _read_functions(
    reader: _Reader, node: Node | None, defaults: _Settings, base_dir: Path
) -> dict[str, FunctionSpec]:
    entries = reader.mapping(node, "functions")
    return {
        name: _read_function(reader, name, item, defaults, base_dir)
        for name, item in entries.items()
    }


def _read_function(
    reader: _Reader, name: str, item: _Item, defaults: _Settings, base_dir: Path
) -> FunctionSpec:
    if not _FUNCTION_NAME.fullmatch(name):
        raise reader.error(item.key_node, item.key, "name must be 1-64 letters, digits, - or _")
    items = reader.mapping(item.node, item.key, _FUNCTION_KEYS)
    own = _read_settings(reader, items)
    handler = _optional(items, "handler", lambda i: _read_handler(reader, i))
    image = _optional(items, "image", reader.string)
    if handler is None and image is None:
        raise reader.error(item.key_node, item.key, "needs a handler (module.function) or an image")
    max_concurrency = _first(
        own.max_concurrency, defaults.max_concurrency, default=DEFAULT_MAX_CONCURRENCY
    )
    return FunctionSpec(
        name=name,
        handler=handler or "",
        code_dir=_read_code_dir(reader, items, name, base_dir),
        runtime=_first(own.runtime, defaults.runtime, default=DEFAULT_RUNTIME),
        image=image,
        environment={**defaults.environment, **own.environment},
        timeout_s=_first(own.timeout_s, defaults.timeout_s, default=DEFAULT_TIMEOUT_S),
        memory_mb=_first(own.memory_mb, defaults.memory_mb, default=DEFAULT_MEMORY_MB),
        max_concurrency=max_concurrency,
        min_warm=_read_min_warm(reader, items, max_concurrency),
        idle_timeout_s=_first(own.idle_timeout_s, defaults.idle_timeout_s, default=None),
        schedules=_read_schedules(reader, items),
    )


def _read_handler(reader: _Reader, item: _Item) -> str:
    handler = reader.string(item)
    if not _HANDLER.fullmatch(handler):
        raise reader.error(item.node, item.key, f"{handler!r} is not module.function")
    return handler


def _read_code_dir(reader: _Reader, items: Mapping[str, _Item], name: str, base_dir: Path) -> Path:
    code = _optional(items, "code", reader.string)
    # Joining keeps an absolute `code` as it is and anchors a relative one at base_dir.
    return base_dir / (code if code is not None else f"functions/{name}")


def _read_min_warm(reader: _Reader, items: Mapping[str, _Item], max_concurrency: int) -> int:
    item = items.get("min_warm")
    if item is None:
        return 0
    min_warm = reader.integer(item, minimum=0)
    if min_warm > max_concurrency:
        raise reader.error(
            item.node, item.key, f"must not exceed max_concurrency ({max_concurrency})"
        )
    return min_warm


def _read_schedules(reader: _Reader, items: Mapping[str, _Item]) -> tuple[str, ...]:
    item = items.get("schedule")
    if item is None:
        return ()
    schedules = []
    for expression, node in reader.strings(item):
        try:
            parse_schedule(expression.strip())
        except ScheduleError as error:
            raise reader.error(node, item.key, str(error)) from error
        schedules.append(expression.strip())
    return tuple(schedules)


# --- resources --------------------------------------------------------------------------------

_RESOURCE_KEYS = frozenset({"buckets", "tables"})
_TABLE_KEYS = frozenset(
    {
        "KeySchema",
        "AttributeDefinitions",
        "GlobalSecondaryIndexes",
        "LocalSecondaryIndexes",
        "BillingMode",
        "ProvisionedThroughput",
    }
)
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")  # S3's naming rules
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")  # DynamoDB's


def _read_resources(reader: _Reader, node: Node | None) -> Resources:
    items = reader.mapping(node, "resources", _RESOURCE_KEYS)
    buckets = []
    if "buckets" in items:
        for name, bucket_node in reader.strings(items["buckets"]):
            if not _BUCKET_NAME.fullmatch(name):
                raise reader.error(
                    bucket_node, "resources.buckets", f"{name!r} is not a valid bucket name"
                )
            buckets.append(name)
    tables = reader.mapping(_node(items, "tables"), "resources.tables")
    return Resources(
        buckets=tuple(buckets),
        tables=tuple(_read_table(reader, name, item) for name, item in tables.items()),
    )


def _read_table(reader: _Reader, name: str, item: _Item) -> TableSpec:
    if not _TABLE_NAME.fullmatch(name):
        raise reader.error(item.key_node, item.key, "is not a valid DynamoDB table name")
    properties = reader.mapping(item.node, item.key, _TABLE_KEYS)
    for required in ("KeySchema", "AttributeDefinitions"):
        if required not in properties:
            raise reader.error(item.node, f"{item.key}.{required}", "is required")
    values = {key: reader.value(entry) for key, entry in properties.items()}
    for key in ("KeySchema", "AttributeDefinitions"):
        if not isinstance(values[key], list) or not values[key]:
            raise reader.error(
                properties[key].node, properties[key].key, "must be a non-empty list"
            )
    return TableSpec(name, values)


# --- routes -----------------------------------------------------------------------------------


def _read_routes(
    reader: _Reader, node: Node | None, functions: Mapping[str, FunctionSpec]
) -> tuple[Route, ...]:
    if node is None or _is_null(node):
        return ()
    if not isinstance(node, SequenceNode):
        raise reader.error(node, "routes", "must be a list")
    routes: list[tuple[Route, _Item]] = []
    for index, route_node in enumerate(node.value):
        route, path_item = _read_route(reader, f"routes[{index}]", route_node, functions)
        _check_conflict(reader, route, path_item, routes)
        routes.append((route, path_item))
    return tuple(route for route, _ in routes)


def _read_route(
    reader: _Reader, key: str, node: Node, functions: Mapping[str, FunctionSpec]
) -> tuple[Route, _Item]:
    if not isinstance(node, MappingNode):
        raise reader.error(node, key, "must be a mapping with path, method and function")
    items = reader.mapping(node, key, _ROUTE_KEYS)
    for required in _REQUIRED_ROUTE_KEYS:
        if required not in items:
            raise reader.error(node, f"{key}.{required}", "is required")
    route = Route(
        path=_read_route_path(reader, items["path"]),
        methods=_read_methods(reader, items["method"]),
        function=_read_function_ref(reader, items["function"], functions),
        auth=_optional(items, "auth", lambda i: _read_auth(reader, i)) or AuthMode.JWT,
        payload=_optional(items, "payload", lambda i: _read_payload(reader, i))
        or PayloadVersion.V1,
        cors=_optional(items, "cors", lambda i: _read_cors(reader, i)),
    )
    return route, items["path"]


def _read_route_path(reader: _Reader, item: _Item) -> str:
    path = reader.string(item)
    try:
        _compile_path(path)
    except ValueError as exc:
        raise reader.error(item.node, item.key, f"{path!r} {exc}") from exc
    return path


def _read_methods(reader: _Reader, item: _Item) -> frozenset[str]:
    methods = set()
    for value, node in reader.strings(item):
        method = value.strip().upper()
        if method != ANY_METHOD and method not in HTTP_METHODS:
            choices = _listing(HTTP_METHODS | {ANY_METHOD})
            raise reader.error(node, item.key, f"{value!r} is not one of {choices}")
        methods.add(method)
    if ANY_METHOD in methods and len(methods) > 1:
        raise reader.error(item.node, item.key, "ANY already covers every method; list it alone")
    return frozenset(methods)


def _read_function_ref(reader: _Reader, item: _Item, functions: Mapping[str, FunctionSpec]) -> str:
    name = reader.string(item)
    if name not in functions:
        raise reader.error(item.node, item.key, f"no function named {name!r} under functions")
    return name


def _read_auth(reader: _Reader, item: _Item) -> AuthMode:
    value = reader.scalar(item.node, item.key)
    for mode in AuthMode:
        if value == mode.value:
            return mode
    raise reader.error(item.node, item.key, 'must be "jwt" or "none"')


def _read_payload(reader: _Reader, item: _Item) -> PayloadVersion:
    value = reader.scalar(item.node, item.key)
    # YAML reads an unquoted 1.0 as a float; accept it like the quoted string.
    if isinstance(value, float):
        value = str(value)
    for version in PayloadVersion:
        if value == version.value:
            return version
    raise reader.error(item.node, item.key, 'must be "1.0" or "2.0"')


_CORS_SHAPE = 'must be true, false, or an origin (scheme://host[:port]) or "*", or a list of them'


def _read_cors(reader: _Reader, item: _Item) -> CorsPolicy | None:
    if isinstance(item.node, SequenceNode):
        return CorsPolicy(_read_origins(reader, item))
    value = reader.scalar(item.node, item.key)
    if isinstance(value, bool):
        return CorsPolicy(frozenset({ANY_ORIGIN})) if value else None
    if isinstance(value, str):  # one origin, as `method` takes one method or a list
        return CorsPolicy(_read_origins(reader, item))
    raise reader.error(item.node, item.key, _CORS_SHAPE)


def _read_origins(reader: _Reader, item: _Item) -> frozenset[str]:
    nodes = item.node.value if isinstance(item.node, SequenceNode) else [item.node]
    if not nodes:
        raise reader.error(item.node, item.key, "must not be an empty list; use false for no CORS")
    origins = frozenset(_read_origin(reader, item.key, node) for node in nodes)
    if ANY_ORIGIN in origins and len(origins) > 1:
        raise reader.error(item.node, item.key, '"*" already allows every origin; list it alone')
    return origins


def _read_origin(reader: _Reader, key: str, node: Node) -> str:
    value = reader.scalar(node, key)
    if not isinstance(value, str):
        raise reader.error(node, key, _CORS_SHAPE)
    if value.strip() == ANY_ORIGIN:
        return ANY_ORIGIN
    origin = normalize_origin(value)
    if origin is None:
        raise reader.error(
            node, key, f'{value!r} is not an origin: scheme://host[:port], no path, or "*"'
        )
    return origin


def _check_conflict(
    reader: _Reader, route: Route, path_item: _Item, earlier: list[tuple[Route, _Item]]
) -> None:
    """Reject a route that would compete with an earlier one for the same requests."""
    shape = _shape(_compile_path(route.path))
    for other, other_item in earlier:
        if _shape(_compile_path(other.path)) != shape:
            continue
        common = _overlap(route.methods, other.methods)
        if common:
            raise reader.error(
                path_item.node,
                path_item.key,
                f"{route.path!r} {common} conflicts with {other.path!r} "
                f"({other_item.key}, line {_line(other_item.node)})",
            )


def _overlap(first: frozenset[str], second: frozenset[str]) -> str:
    """The methods two routes both claim, as text; empty when they are disjoint.

    ANY beside explicit methods is no conflict: as in API Gateway, the explicit method wins
    and ANY serves the rest. Two ANY routes on one shape are.
    """
    return ", ".join(sorted(first & second))
