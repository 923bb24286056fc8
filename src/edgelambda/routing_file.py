"""Reading ``routing.yaml`` into a :class:`~edgelambda.routing.RoutingTable`.

Pure but for two reads: :func:`load_routing` reads the one file, and the paths of code
directories, layers and image directories are resolved (symlinks followed) to check they stay
inside the code root (the file's directory unless ``code_root`` names another); a layer that
exists is looked at to tell a directory from a .zip file. Every problem in the file raises
:class:`~edgelambda.errors.RoutingConfigError` naming the file, the 1-based line and the dotted
key (``routing.yaml:12: functions.hello.timeout: must be a positive number``). Line numbers come
from the composed YAML node tree, which also reveals duplicate keys that PyYAML's loader would
silently collapse.

The file may instead be an AWS SAM template: :mod:`edgelambda.sam_import` converts it into the
routing document it amounts to, which is then read as above.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from yaml.nodes import MappingNode, Node, SequenceNode

from edgelambda.cfn_yaml import load_template
from edgelambda.cors import ANY_ORIGIN, CorsPolicy, normalize_origin
from edgelambda.errors import RoutingConfigError, ScheduleError
from edgelambda.routing import (
    ANY_METHOD,
    BUCKET_NAME,
    DEFAULT_ROUTE,
    ENV_NAME,
    FUNCTION_NAME,
    HTTP_METHODS,
    IMAGE_DIR_PREFIXES,
    TABLE_NAME,
    AuthMode,
    FunctionSpec,
    PayloadVersion,
    Resources,
    Route,
    RoutingTable,
    TableSpec,
    route_shape,
)
from edgelambda.sam_import import ImportOptions, convert, is_sam_text, render
from edgelambda.schedule import parse_schedule

if TYPE_CHECKING:
    from edgelambda.config import Settings
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
_SETTING_KEYS = _LIMIT_KEYS | {"runtime", "environment", "layers"}
_DEFAULT_KEYS = _SETTING_KEYS
_FUNCTION_KEYS = _SETTING_KEYS | {
    "handler",
    "code",
    "inline_code",
    "placement",
    "image",
    "dockerfile",
    "min_warm",
    "schedule",
    "can_invoke",
}
DEFAULT_DOCKERFILE = "Dockerfile"
_ROUTE_KEYS = frozenset({"path", "method", "function", "auth", "payload", "cors"})
_REQUIRED_ROUTE_KEYS = ("path", "method", "function")

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
# A Swarm placement constraint (docker service create --constraint).
_CONSTRAINT = re.compile(r"[A-Za-z][\w.-]*\s*(?:==|!=)\s*\S.*")
# awslambdaric splits on the last dot and accepts "/" or "." between package parts.
_HANDLER = re.compile(rf"{_IDENTIFIER}(?:[./]{_IDENTIFIER})*\.{_IDENTIFIER}")


def parse_routing(
    text: str, *, source: str, base_dir: Path, code_root: Path | None = None
) -> RoutingTable:
    """Parse and validate routing.yaml text.

    ``source`` names the file in error messages; relative ``code``, ``layers`` and image
    directory paths (and the default ``functions/<name>``) resolve against ``base_dir``, and
    must lie inside ``code_root`` (None: ``base_dir``). Both should be absolute.
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
    roots = _Roots(base_dir, code_root)
    defaults = _read_settings(reader, default_items, roots)
    functions = _read_functions(reader, node_at(top, "functions"), defaults, roots)
    routes = _read_routes(reader, node_at(top, "routes"), functions)
    return RoutingTable(functions=functions, routes=routes, resources=resources)


def load_configured_routing(settings: Settings) -> RoutingTable:
    """The routing file (or SAM template) the settings name, read as the gateway reads it."""
    return load_routing(settings.routing_config_path, settings.code_root, settings.sam_options())


def load_routing(
    path: Path, code_root: Path | None = None, sam: ImportOptions | None = None
) -> RoutingTable:
    """Read and parse a routing file, or a SAM template (converted with ``sam``'s stack
    name, region and parameters; its warnings become the table's ``notes``); code paths
    resolve against the file's directory and must lie inside ``code_root`` (None: that
    directory)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RoutingConfigError(str(path), None, "(file)", f"cannot read: {exc}") from exc
    base_dir = path.absolute().parent
    root = code_root.absolute() if code_root is not None else None
    if not is_sam_text(text):
        return parse_routing(text, source=str(path), base_dir=base_dir, code_root=root)
    template = load_template(text, str(path))
    conversion = convert(
        template,
        source=str(path),
        template_dir=base_dir,
        base_dir=base_dir,
        options=sam or ImportOptions(),
    )
    # Read back as the routing file it amounts to: one validation for both kinds of file.
    table = parse_routing(
        render(conversion, source=path.name),
        source=f"{path} (as routing.yaml)",
        base_dir=base_dir,
        code_root=root,
    )
    return replace(table, notes=conversion.warnings)


def _read_environment(reader: Reader, item: Item) -> dict[str, str]:
    entries = reader.mapping(item.node, item.key)
    return {name: _env_value(reader, name, entry) for name, entry in entries.items()}


def _env_value(reader: Reader, name: str, entry: Item) -> str:
    if not ENV_NAME.fullmatch(name):
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
    layers: tuple[Path, ...] | None


@dataclass(frozen=True)
class _Roots:
    """Where relative paths start (the routing file's directory), and the directory that
    code, layers and image directories must lie inside (EDGELAMBDA_CODE_ROOT; None: the
    routing file's directory)."""

    base_dir: Path
    code_root: Path | None

    @property
    def root(self) -> Path:
        return self.base_dir if self.code_root is None else self.code_root

    @property
    def name(self) -> str:
        if self.code_root is None:
            return f"the routing file's directory ({self.base_dir})"
        return f"the code root ({self.code_root}, EDGELAMBDA_CODE_ROOT)"


def _read_settings(reader: Reader, items: Mapping[str, Item], roots: _Roots) -> _Settings:
    return _Settings(
        runtime=optional(items, "runtime", reader.string),
        environment=optional(items, "environment", lambda item: _read_environment(reader, item))
        or {},
        timeout_s=optional(items, "timeout", reader.positive_number),
        memory_mb=optional(items, "memory", reader.positive_int),
        max_concurrency=optional(items, "max_concurrency", reader.positive_int),
        idle_timeout_s=optional(items, "idle_timeout", reader.positive_number),
        freeze_after_s=optional(items, "freeze_after", reader.non_negative_number),
        layers=optional(items, "layers", lambda item: _read_layers(reader, item, roots)),
    )


def _read_functions(
    reader: Reader, node: Node | None, defaults: _Settings, roots: _Roots
) -> dict[str, FunctionSpec]:
    entries = reader.mapping(node, "functions")
    functions = {
        name: _read_function(reader, name, item, defaults, roots) for name, item in entries.items()
    }
    for item in entries.values():
        _check_can_invoke(reader, reader.mapping(item.node, item.key), functions)
    return functions


def _read_function(
    reader: Reader, name: str, item: Item, defaults: _Settings, roots: _Roots
) -> FunctionSpec:
    if not FUNCTION_NAME.fullmatch(name):
        raise reader.error(item.key_node, item.key, "name must be 1-64 letters, digits, - or _")
    items = reader.mapping(item.node, item.key, _FUNCTION_KEYS)
    own = _read_settings(reader, items, roots)
    handler = optional(items, "handler", lambda i: _read_handler(reader, i))
    source = _read_source(reader, item, items, roots)
    if handler is None and not source.is_image:
        raise reader.error(item.key_node, item.key, "needs a handler (module.function) or an image")
    max_concurrency = first(
        own.max_concurrency, defaults.max_concurrency, default=DEFAULT_MAX_CONCURRENCY
    )
    return FunctionSpec(
        name=name,
        handler=handler or "",
        code_dir=source.code_dir,
        runtime=first(own.runtime, defaults.runtime, default=DEFAULT_RUNTIME),
        image=source.image,
        environment={**defaults.environment, **own.environment},
        timeout_s=first(own.timeout_s, defaults.timeout_s, default=DEFAULT_TIMEOUT_S),
        memory_mb=first(own.memory_mb, defaults.memory_mb, default=DEFAULT_MEMORY_MB),
        max_concurrency=max_concurrency,
        min_warm=_read_min_warm(reader, items, max_concurrency),
        idle_timeout_s=first(own.idle_timeout_s, defaults.idle_timeout_s, default=None),
        freeze_after_s=first(own.freeze_after_s, defaults.freeze_after_s, default=None),
        schedules=_read_schedules(reader, items),
        can_invoke=_read_can_invoke(reader, items),
        layers=_function_layers(reader, items, source, own, defaults),
        dockerfile=source.dockerfile,
        inline_code=source.inline_code,
        placement=_read_placement(reader, items),
    )


def _read_placement(reader: Reader, items: Mapping[str, Item]) -> tuple[str, ...]:
    """Swarm placement constraints, ``<attribute> == <value>`` or ``!=`` (node.labels.zone,
    node.hostname, node.role, ...: Swarm's own syntax, passed on as written)."""
    item = items.get("placement")
    if item is None:
        return ()
    constraints = []
    for constraint, node in reader.strings(item):
        if not _CONSTRAINT.fullmatch(constraint.strip()):
            raise reader.error(node, item.key, f"{constraint!r} is not <attribute> == <value>")
        constraints.append(constraint.strip())
    return tuple(constraints)


def _read_handler(reader: Reader, item: Item) -> str:
    handler = reader.string(item)
    if not _HANDLER.fullmatch(handler):
        raise reader.error(item.node, item.key, f"{handler!r} is not module.function")
    return handler


@dataclass(frozen=True)
class _Source:
    """What a function's image is built from: code packed onto the runtime's base image, a
    directory with a Dockerfile (``dockerfile`` set), or nothing (``image``: one the user
    built)."""

    code_dir: Path
    image: str | None = None
    dockerfile: str | None = None
    inline_code: str | None = None

    @property
    def is_image(self) -> bool:
        """An image function: its image, not a runtime, runs it (so it has no layers)."""
        return self.image is not None or self.dockerfile is not None


def _read_source(
    reader: Reader, function: Item, items: Mapping[str, Item], roots: _Roots
) -> _Source:
    if "inline_code" in items:
        return _read_inline_code(reader, items, roots)
    image_item = items.get("image")
    image = None if image_item is None else reader.string(image_item)
    dockerfile_item = items.get("dockerfile")
    if image_item is None or image is None or not image.startswith(IMAGE_DIR_PREFIXES):
        if dockerfile_item is not None:
            raise reader.error(
                dockerfile_item.key_node,
                dockerfile_item.key,
                "names a Dockerfile in an image directory; it needs image: ./<directory>",
            )
        return _Source(_read_code_dir(reader, function, items, roots), image=image)
    if "code" in items:
        raise reader.error(
            items["code"].key_node,
            items["code"].key,
            "an image built from a directory takes its files from that directory (image)",
        )
    dockerfile = optional(items, "dockerfile", lambda i: _read_dockerfile(reader, i))
    return _Source(
        _read_path(reader, image_item, image, roots), dockerfile=dockerfile or DEFAULT_DOCKERFILE
    )


def _read_inline_code(reader: Reader, items: Mapping[str, Item], roots: _Roots) -> _Source:
    """A function whose code is given in the file (SAM's ``InlineCode``): the handler's
    module, written into the image; no code directory, no image of its own."""
    item = items["inline_code"]
    for other in ("code", "image", "dockerfile"):
        if other in items:
            raise reader.error(
                items[other].key_node, items[other].key, "inline_code is the function's code"
            )
    handler = items.get("handler")
    if handler is None or not str(reader.scalar(handler.node, handler.key)).startswith("index."):
        # CloudFormation writes inline code to a file named index (AWS::Lambda::Function
        # Code.ZipFile), and so does the gateway.
        raise reader.error(
            item.key_node, item.key, "is index.py: it needs handler: index.<function>"
        )
    runtime = items.get("runtime")
    if runtime is not None and not str(reader.scalar(runtime.node, runtime.key)).startswith(
        "python"
    ):
        raise reader.error(runtime.node, runtime.key, "inline_code is Python; use code instead")
    return _Source(roots.base_dir, inline_code=reader.string(item))


def _read_dockerfile(reader: Reader, item: Item) -> str:
    dockerfile = reader.string(item)
    path = PurePosixPath(dockerfile)
    if path.is_absolute() or ".." in path.parts:
        raise reader.error(
            item.node, item.key, f"{dockerfile!r} must be a relative path inside the directory"
        )
    return str(path)


def _read_code_dir(
    reader: Reader, function: Item, items: Mapping[str, Item], roots: _Roots
) -> Path:
    """The function's code directory (see :func:`_read_path`)."""
    item = items.get("code")
    if item is None:  # the default is checked too: functions/<name> may be a symlink
        name = function.key.rpartition(".")[2]
        where = Item(f"{function.key}.code", function.key_node, function.key_node)
        return _read_path(reader, where, f"functions/{name}", roots)
    return _read_path(reader, item, reader.string(item), roots)


def _read_path(reader: Reader, where: Item, value: str, roots: _Roots) -> Path:
    """``value`` anchored at the routing file's directory (an absolute path stays as it
    is), which must lie inside the code root, also once its symlinks are followed: its whole
    tree is packed into an image that functions can read, so a path out of the root could
    ship any file of the machine."""
    path = roots.base_dir / value
    problem = _escape(path, roots)
    if problem is not None:
        raise reader.error(where.node, where.key, f"{value!r} {problem}")
    return path


def _escape(path: Path, roots: _Roots) -> str | None:
    """Why ``path`` is not inside the code root (by its path, then through symlinks), or
    None when it is. A path that does not exist yet is judged by its path alone."""
    inside = f"must be inside {roots.name}"
    if not Path(os.path.normpath(path)).is_relative_to(os.path.normpath(roots.root)):
        return inside
    resolved = path.resolve()
    if not resolved.is_relative_to(roots.root.resolve()):
        return f"resolves through a symlink to {resolved}; it {inside}"
    return None


def _read_layers(reader: Reader, item: Item, roots: _Roots) -> tuple[Path, ...]:
    """``layers``: a path or a list of them (empty or null: none), each a directory or a
    .zip file inside the code root, anchored like ``code``."""
    if is_null(item.node):
        return ()
    nodes = item.node.value if isinstance(item.node, SequenceNode) else [item.node]
    return tuple(_read_layer(reader, Item(item.key, node, node), roots) for node in nodes)


def _read_layer(reader: Reader, item: Item, roots: _Roots) -> Path:
    value = reader.scalar(item.node, item.key)
    if not isinstance(value, str) or not value.strip():
        raise reader.error(
            item.node, item.key, "must be a path (a directory or a .zip file) or a list of them"
        )
    layer = _read_path(reader, item, value, roots)
    # One that does not exist yet is looked at when the image is built, as code is.
    if layer.is_file() and layer.suffix.lower() != ".zip":
        raise reader.error(
            item.node,
            item.key,
            f"{value!r} is a file but not a .zip; a layer is a directory or a .zip",
        )
    return layer


def _function_layers(
    reader: Reader, items: Mapping[str, Item], source: _Source, own: _Settings, defaults: _Settings
) -> tuple[Path, ...]:
    """The function's own layers, else the defaults'. An image function has none: as on
    AWS, its image brings its own /opt."""
    if not source.is_image:
        return first(own.layers, defaults.layers, default=())
    if own.layers:
        item = items["layers"]
        raise reader.error(
            item.key_node, item.key, "an image function cannot have layers; add them to its image"
        )
    return ()


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


def _read_resources(reader: Reader, node: Node | None) -> Resources:
    items = reader.mapping(node, "resources", _RESOURCE_KEYS)
    buckets = []
    if "buckets" in items:
        for name, bucket_node in reader.strings(items["buckets"]):
            if not BUCKET_NAME.fullmatch(name):
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
    if not TABLE_NAME.fullmatch(name):
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
    if route.path == DEFAULT_ROUTE and route.methods != {ANY_METHOD}:
        raise reader.error(items["method"].node, f"{key}.method", f"{DEFAULT_ROUTE} takes ANY")
    return route, items["path"]


def _read_route_path(reader: Reader, item: Item) -> str:
    path = reader.string(item)
    try:
        route_shape(path)
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
    shape = route_shape(route.path)
    for other, other_item in earlier:
        if route_shape(other.path) != shape:
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
