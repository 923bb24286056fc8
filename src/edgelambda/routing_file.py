"""Reading ``routing.yaml`` into a :class:`~edgelambda.routing.RoutingTable`.

Pure but for two reads: :func:`load_routing` reads the one file, and code directories' paths
are resolved (symlinks followed) to check they stay inside it. Every problem in the file raises
:class:`~edgelambda.errors.RoutingConfigError` naming the file, the 1-based line and the dotted
key (``routing.yaml:12: functions.hello.timeout: must be a positive number``). Line numbers come
from the composed YAML node tree, which also reveals duplicate keys that PyYAML's loader would
silently collapse.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from yaml.nodes import MappingNode, Node, SequenceNode

from edgelambda.cors import ANY_ORIGIN, CorsPolicy, normalize_origin
from edgelambda.errors import RoutingConfigError, ScheduleError
from edgelambda.routing import (
    ANY_METHOD,
    HTTP_METHODS,
    AuthMode,
    FunctionSpec,
    PayloadVersion,
    Resources,
    Route,
    RoutingTable,
    TableSpec,
    compile_path,
    path_shape,
)
from edgelambda.schedule import parse_schedule
from edgelambda.yaml_reader import (
    Item,
    Reader,
    compose,
    first,
    is_null,
    line_of,
    listing,
    node_at,
    optional,
)

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MEMORY_MB",
    "DEFAULT_RUNTIME",
    "DEFAULT_TIMEOUT_S",
    "load_routing",
    "parse_routing",
]

DEFAULT_RUNTIME = "python3.12"
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MEMORY_MB = 256
DEFAULT_MAX_CONCURRENCY = 10

_TOP_KEYS = frozenset({"defaults", "functions", "routes", "resources"})
_LIMIT_KEYS = frozenset({"timeout", "memory", "max_concurrency", "idle_timeout", "freeze_after"})
_SETTING_KEYS = _LIMIT_KEYS | {"runtime", "environment"}
_DEFAULT_KEYS = _SETTING_KEYS
_FUNCTION_KEYS = _SETTING_KEYS | {"handler", "code", "image", "min_warm", "schedule", "can_invoke"}
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


def parse_routing(text: str, *, source: str, base_dir: Path) -> RoutingTable:
    """Parse and validate routing.yaml text.

    ``source`` names the file in error messages; relative ``code`` paths (and the default
    ``functions/<name>``) resolve against ``base_dir``, which should be absolute.
    """
    reader = Reader(source)
    root = compose(text, source)
    if root is not None and not isinstance(root, MappingNode):
        raise reader.error(
            root, "(top level)", "must be a mapping of defaults, functions and routes"
        )
    top = reader.mapping(root, "", _TOP_KEYS)
    resources = _read_resources(reader, node_at(top, "resources"))
    default_items = reader.mapping(node_at(top, "defaults"), "defaults", _DEFAULT_KEYS)
    defaults = _read_settings(reader, default_items)
    functions = _read_functions(reader, node_at(top, "functions"), defaults, base_dir)
    routes = _read_routes(reader, node_at(top, "routes"), functions)
    return RoutingTable(functions=functions, routes=routes, resources=resources)


def load_routing(path: Path) -> RoutingTable:
    """Read and parse a routing file; code paths resolve against the file's directory."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RoutingConfigError(str(path), None, "(file)", f"cannot read: {exc}") from exc
    return parse_routing(text, source=str(path), base_dir=path.absolute().parent)


def _read_environment(reader: Reader, item: Item) -> dict[str, str]:
    entries = reader.mapping(item.node, item.key)
    return {name: _env_value(reader, name, entry) for name, entry in entries.items()}


def _env_value(reader: Reader, name: str, entry: Item) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise reader.error(
            entry.key_node, entry.key, "must be letters, digits and _, not first a digit"
        )
    if name in _RESERVED_ENV:
        raise reader.error(entry.key_node, entry.key, "is reserved; the gateway sets it")
    value = reader.scalar(entry.node, entry.key)
    if isinstance(value, bool):  # AWS (CloudFormation) turns YAML booleans into "true"
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise reader.error(entry.node, entry.key, "must be a string, number or boolean")


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
    freeze_after_s: float | None


def _read_settings(reader: Reader, items: Mapping[str, Item]) -> _Settings:
    return _Settings(
        runtime=optional(items, "runtime", reader.string),
        environment=optional(items, "environment", lambda item: _read_environment(reader, item))
        or {},
        timeout_s=optional(items, "timeout", reader.positive_number),
        memory_mb=optional(items, "memory", reader.positive_int),
        max_concurrency=optional(items, "max_concurrency", reader.positive_int),
        idle_timeout_s=optional(items, "idle_timeout", reader.positive_number),
        freeze_after_s=optional(items, "freeze_after", reader.non_negative_number),
    )


def _read_functions(
    reader: Reader, node: Node | None, defaults: _Settings, base_dir: Path
) -> dict[str, FunctionSpec]:
    entries = reader.mapping(node, "functions")
    functions = {
        name: _read_function(reader, name, item, defaults, base_dir)
        for name, item in entries.items()
    }
    for item in entries.values():
        _check_can_invoke(reader, reader.mapping(item.node, item.key), functions)
    return functions


def _read_function(
    reader: Reader, name: str, item: Item, defaults: _Settings, base_dir: Path
) -> FunctionSpec:
    if not _FUNCTION_NAME.fullmatch(name):
        raise reader.error(item.key_node, item.key, "name must be 1-64 letters, digits, - or _")
    items = reader.mapping(item.node, item.key, _FUNCTION_KEYS)
    own = _read_settings(reader, items)
    handler = optional(items, "handler", lambda i: _read_handler(reader, i))
    image = optional(items, "image", reader.string)
    if handler is None and image is None:
        raise reader.error(item.key_node, item.key, "needs a handler (module.function) or an image")
    max_concurrency = first(
        own.max_concurrency, defaults.max_concurrency, default=DEFAULT_MAX_CONCURRENCY
    )
    return FunctionSpec(
        name=name,
        handler=handler or "",
        code_dir=_read_code_dir(reader, item, items, base_dir),
        runtime=first(own.runtime, defaults.runtime, default=DEFAULT_RUNTIME),
        image=image,
        environment={**defaults.environment, **own.environment},
        timeout_s=first(own.timeout_s, defaults.timeout_s, default=DEFAULT_TIMEOUT_S),
        memory_mb=first(own.memory_mb, defaults.memory_mb, default=DEFAULT_MEMORY_MB),
        max_concurrency=max_concurrency,
        min_warm=_read_min_warm(reader, items, max_concurrency),
        idle_timeout_s=first(own.idle_timeout_s, defaults.idle_timeout_s, default=None),
        freeze_after_s=first(own.freeze_after_s, defaults.freeze_after_s, default=None),
        schedules=_read_schedules(reader, items),
        can_invoke=_read_can_invoke(reader, items),
    )


def _read_handler(reader: Reader, item: Item) -> str:
    handler = reader.string(item)
    if not _HANDLER.fullmatch(handler):
        raise reader.error(item.node, item.key, f"{handler!r} is not module.function")
    return handler


def _read_code_dir(
    reader: Reader, function: Item, items: Mapping[str, Item], base_dir: Path
) -> Path:
    """The function's code directory, which must lie inside ``base_dir``, also once its
    symlinks are followed: its whole tree is packed into an image that functions can read,
    so a path out of the routing file's directory could ship any file of the machine."""
    item = items.get("code")
    if item is None:  # the default is checked too: functions/<name> may be a symlink
        name = function.key.rpartition(".")[2]
        where = Item(f"{function.key}.code", function.key_node, function.key_node)
        code = f"functions/{name}"
    else:
        where, code = item, reader.string(item)
    # Joining keeps an absolute `code` as it is and anchors a relative one at base_dir.
    code_dir = base_dir / code
    problem = _escape(code_dir, base_dir)
    if problem is not None:
        raise reader.error(where.node, where.key, f"{code!r} {problem}")
    return code_dir


def _escape(code_dir: Path, base_dir: Path) -> str | None:
    """Why ``code_dir`` is not inside ``base_dir`` (by its path, then through symlinks),
    or None when it is. A directory that does not exist yet is judged by its path alone."""
    inside = f"must be inside the routing file's directory ({base_dir})"
    if not Path(os.path.normpath(code_dir)).is_relative_to(os.path.normpath(base_dir)):
        return inside
    resolved = code_dir.resolve()
    if not resolved.is_relative_to(base_dir.resolve()):
        return f"resolves through a symlink to {resolved}; it {inside}"
    return None


def _read_can_invoke(reader: Reader, items: Mapping[str, Item]) -> frozenset[str] | None:
    item = items.get("can_invoke")
    if item is None:
        return None
    if isinstance(item.node, SequenceNode) and not item.node.value:
        return frozenset()  # explicitly none
    return frozenset(name for name, _ in reader.strings(item))


def _check_can_invoke(
    reader: Reader, items: Mapping[str, Item], functions: Mapping[str, FunctionSpec]
) -> None:
    """Each name in ``can_invoke`` must be a function of this file."""
    item = items.get("can_invoke")
    if item is None or (isinstance(item.node, SequenceNode) and not item.node.value):
        return
    for name, node in reader.strings(item):
        if name not in functions:
            raise reader.error(node, item.key, f"no function named {name!r}")


def _read_min_warm(reader: Reader, items: Mapping[str, Item], max_concurrency: int) -> int:
    item = items.get("min_warm")
    if item is None:
        return 0
    min_warm = reader.integer(item, minimum=0)
    if min_warm > max_concurrency:
        raise reader.error(
            item.node, item.key, f"must not exceed max_concurrency ({max_concurrency})"
        )
    return min_warm


def _read_schedules(reader: Reader, items: Mapping[str, Item]) -> tuple[str, ...]:
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
_INDEX_KEYS = frozenset({"GlobalSecondaryIndexes", "LocalSecondaryIndexes"})
_CAPACITY_KEYS = frozenset({"BillingMode", "ProvisionedThroughput"})
_TABLE_KEYS = _INDEX_KEYS | _CAPACITY_KEYS | {"KeySchema", "AttributeDefinitions"}
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")  # S3's naming rules
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")  # DynamoDB's


def _read_resources(reader: Reader, node: Node | None) -> Resources:
    items = reader.mapping(node, "resources", _RESOURCE_KEYS)
    buckets = []
    if "buckets" in items:
        for name, bucket_node in reader.strings(items["buckets"]):
            if not _BUCKET_NAME.fullmatch(name):
                raise reader.error(
                    bucket_node, "resources.buckets", f"{name!r} is not a valid bucket name"
                )
            buckets.append(name)
    tables = reader.mapping(node_at(items, "tables"), "resources.tables")
    return Resources(
        buckets=tuple(buckets),
        tables=tuple(_read_table(reader, name, item) for name, item in tables.items()),
    )


def _read_table(reader: Reader, name: str, item: Item) -> TableSpec:
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
    reader: Reader, node: Node | None, functions: Mapping[str, FunctionSpec]
) -> tuple[Route, ...]:
    if node is None or is_null(node):
        return ()
    if not isinstance(node, SequenceNode):
        raise reader.error(node, "routes", "must be a list")
    routes: list[tuple[Route, Item]] = []
    for index, route_node in enumerate(node.value):
        route, path_item = _read_route(reader, f"routes[{index}]", route_node, functions)
        _check_conflict(reader, route, path_item, routes)
        routes.append((route, path_item))
    return tuple(route for route, _ in routes)


def _read_route(
    reader: Reader, key: str, node: Node, functions: Mapping[str, FunctionSpec]
) -> tuple[Route, Item]:
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
        auth=optional(items, "auth", lambda i: _read_auth(reader, i)) or AuthMode.JWT,
        payload=optional(items, "payload", lambda i: _read_payload(reader, i)) or PayloadVersion.V1,
        cors=optional(items, "cors", lambda i: _read_cors(reader, i)),
    )
    return route, items["path"]


def _read_route_path(reader: Reader, item: Item) -> str:
    path = reader.string(item)
    try:
        compile_path(path)
    except ValueError as exc:
        raise reader.error(item.node, item.key, f"{path!r} {exc}") from exc
    return path


def _read_methods(reader: Reader, item: Item) -> frozenset[str]:
    methods = set()
    for value, node in reader.strings(item):
        method = value.strip().upper()
        if method != ANY_METHOD and method not in HTTP_METHODS:
            choices = listing(HTTP_METHODS | {ANY_METHOD})
            raise reader.error(node, item.key, f"{value!r} is not one of {choices}")
        methods.add(method)
    if ANY_METHOD in methods and len(methods) > 1:
        raise reader.error(item.node, item.key, "ANY already covers every method; list it alone")
    return frozenset(methods)


def _read_function_ref(reader: Reader, item: Item, functions: Mapping[str, FunctionSpec]) -> str:
    name = reader.string(item)
    if name not in functions:
        raise reader.error(item.node, item.key, f"no function named {name!r} under functions")
    return name


def _read_auth(reader: Reader, item: Item) -> AuthMode:
    value = reader.scalar(item.node, item.key)
    for mode in AuthMode:
        if value == mode.value:
            return mode
    raise reader.error(item.node, item.key, 'must be "jwt" or "none"')


def _read_payload(reader: Reader, item: Item) -> PayloadVersion:
    value = reader.scalar(item.node, item.key)
    # YAML reads an unquoted 1.0 as a float; accept it like the quoted string.
    if isinstance(value, float):
        value = str(value)
    for version in PayloadVersion:
        if value == version.value:
            return version
    raise reader.error(item.node, item.key, 'must be "1.0" or "2.0"')


_CORS_SHAPE = 'must be true, false, or an origin (scheme://host[:port]) or "*", or a list of them'


def _read_cors(reader: Reader, item: Item) -> CorsPolicy | None:
    if isinstance(item.node, SequenceNode):
        return CorsPolicy(_read_origins(reader, item))
    value = reader.scalar(item.node, item.key)
    if isinstance(value, bool):
        return CorsPolicy(frozenset({ANY_ORIGIN})) if value else None
    if isinstance(value, str):  # one origin, as `method` takes one method or a list
        return CorsPolicy(_read_origins(reader, item))
    raise reader.error(item.node, item.key, _CORS_SHAPE)


def _read_origins(reader: Reader, item: Item) -> frozenset[str]:
    nodes = item.node.value if isinstance(item.node, SequenceNode) else [item.node]
    if not nodes:
        raise reader.error(item.node, item.key, "must not be an empty list; use false for no CORS")
    origins = frozenset(_read_origin(reader, item.key, node) for node in nodes)
    if ANY_ORIGIN in origins and len(origins) > 1:
        raise reader.error(item.node, item.key, '"*" already allows every origin; list it alone')
    return origins


def _read_origin(reader: Reader, key: str, node: Node) -> str:
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
    reader: Reader, route: Route, path_item: Item, earlier: list[tuple[Route, Item]]
) -> None:
    """Reject a route that would compete with an earlier one for the same requests."""
    shape = path_shape(compile_path(route.path))
    for other, other_item in earlier:
        if path_shape(compile_path(other.path)) != shape:
            continue
        common = _overlap(route.methods, other.methods)
        if common:
            raise reader.error(
                path_item.node,
                path_item.key,
                f"{route.path!r} {common} conflicts with {other.path!r} "
                f"({other_item.key}, line {line_of(other_item.node)})",
            )


def _overlap(first: frozenset[str], second: frozenset[str]) -> str:
    """The methods two routes both claim, as text; empty when they are disjoint.

    ANY beside explicit methods is no conflict: as in API Gateway, the explicit method wins
    and ANY serves the rest. Two ANY routes on one shape are.
    """
    return ", ".join(sorted(first & second))
