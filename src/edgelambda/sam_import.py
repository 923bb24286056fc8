"""An AWS SAM template as a routing document (pure).

:func:`convert` turns a template (read by :mod:`edgelambda.cfn_yaml`) into the plain document
``routing.yaml`` holds (functions, routes, resources) and a list of warnings: what a local box
cannot serve (queues, topics, state machines, authorizers, IAM...) is skipped with one warning
per resource, and a value without a local value (``Fn::ImportValue``) leaves its variable
unset with a warning naming it. Nothing here fails on what AWS would deploy; a template that
could not be deployed either (no Resources, a function without a handler) raises
:class:`~edgelambda.errors.RoutingConfigError` naming the key. Functions are read by
:mod:`edgelambda.sam_functions`, their events by :mod:`edgelambda.sam_events`.

SAM's own rules followed here come from the AWS SAM specification
(docs.aws.amazon.com/serverless-application-model/latest/developerguide/): the Globals
sections and their merge, SimpleTable's ``id``/String default key, and names of resources
that give none (``<stack>-<LogicalId>``, without CloudFormation's random suffix).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgelambda.aws import ACCOUNT_ID
from edgelambda.cfn_intrinsics import Scope, pseudo_parameters, resolve, test_condition
from edgelambda.errors import RoutingConfigError, Unresolvable
from edgelambda.routing import BUCKET_NAME, FUNCTION_NAME, TABLE_NAME
from edgelambda.sam_events import EventReader
from edgelambda.sam_functions import FunctionReader, Layers
from edgelambda.sam_values import TemplateValues, mapping, properties_of, text_of, type_of

__all__ = [
    "SAM_TRANSFORM",
    "Conversion",
    "ImportOptions",
    "convert",
    "is_sam_text",
    "lambda_architecture",
    "parse_overrides",
    "render",
]

SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
FUNCTION = "AWS::Serverless::Function"
LAYER = "AWS::Serverless::LayerVersion"
REST_API = "AWS::Serverless::Api"
HTTP_API = "AWS::Serverless::HttpApi"
SIMPLE_TABLE = "AWS::Serverless::SimpleTable"
TABLE = "AWS::DynamoDB::Table"
BUCKET = "AWS::S3::Bucket"
_SERVED = frozenset({FUNCTION, LAYER, REST_API, HTTP_API, SIMPLE_TABLE, TABLE, BUCKET})
_GLOBALS_SECTIONS = frozenset(
    {
        "Function",
        "Api",
        "HttpApi",
        "SimpleTable",
        "StateMachine",
        "LayerVersion",
        "CapacityProvider",
    }
)
# CreateTable's own shape: what the box passes to DynamoDB (Alternator).
_TABLE_KEYS = (
    "KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes", "LocalSecondaryIndexes",
    "BillingMode", "ProvisionedThroughput",
)  # fmt: skip
_INDEX_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")
_ANY_NAME = re.compile(r".+")  # a layer's ARN: made here, never refused
_STREAM_KEYS = ("StreamSpecification", "KinesisStreamSpecification")
_KEY_TYPES = {"String": "S", "Number": "N", "Binary": "B"}
# A template's top-level keys (a routing file's are lower-case), in YAML or JSON.
_TEMPLATE_KEY = re.compile(
    r"""^\s*\{?\s*["']?(?:Resources|AWSTemplateFormatVersion|Transform)["']?\s*:""", re.MULTILINE
)


@dataclass(frozen=True)
class ImportOptions:
    """What a template leaves to its deployment: the stack's name, region and account (for
    pseudo-parameters), parameter values, and this machine's architecture."""

    stack: str = "sam-app"
    region: str = "us-east-1"
    account_id: str = ACCOUNT_ID
    parameter_overrides: Mapping[str, str] = field(default_factory=dict)
    host_architecture: str = "x86_64"


@dataclass(frozen=True)
class Conversion:
    """The routing document (routing.yaml's shape) and what could not be carried over."""

    document: dict[str, Any]
    warnings: tuple[str, ...]


def is_sam_text(text: str) -> bool:
    """Whether YAML (or JSON) text is a CloudFormation/SAM template rather than a routing
    file: it has one of a template's top-level keys."""
    return _TEMPLATE_KEY.search(text) is not None


def lambda_architecture(machine: str) -> str:
    """Lambda's name (``x86_64``, ``arm64``) for a machine as ``platform.machine()`` says it."""
    return "arm64" if machine.lower() in {"aarch64", "arm64"} else "x86_64"


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """``K=V`` items, or SAM CLI's ``ParameterKey=K,ParameterValue=V``, as a mapping;
    ValueError names an item that is neither."""
    overrides = {}
    for item in items:
        long_form = re.fullmatch(r"ParameterKey=([^,]+),ParameterValue=(.*)", item, re.DOTALL)
        key, equals, value = (
            (long_form.group(1), "=", long_form.group(2)) if long_form else item.partition("=")
        )
        if not equals or not key.strip():
            raise ValueError(f"{item!r} is not KEY=VALUE")
        overrides[key.strip()] = value
    return overrides


def convert(
    template: Mapping[str, Any],
    *,
    source: str,
    template_dir: Path,
    base_dir: Path,
    options: ImportOptions,
) -> Conversion:
    """The routing document for ``template`` (read from ``source`` in ``template_dir``);
    paths in it are relative to ``base_dir``, where the routing document will live."""
    try:
        return _Import(template, source, template_dir, base_dir, options).run()
    except RoutingConfigError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
        # A shape no rule above expected: still the template's error, named as one.
        raise RoutingConfigError(source, None, "(template)", f"cannot be read: {exc!r}") from exc


def render(conversion: Conversion, *, source: str) -> str:
    """The routing document as routing.yaml text, headed by where it came from and what
    could not be carried over."""
    header = [f"# Converted from the SAM template {source} by `edgelambda import-sam`."]
    if conversion.warnings:
        header.append("# Not carried over:")
        header.extend(f"#   {warning}" for warning in conversion.warnings)
    body = yaml.safe_dump(conversion.document, sort_keys=False, allow_unicode=True, width=100)
    return "\n".join(header) + "\n" + body


# --- the import -------------------------------------------------------------------------------


class _Import:
    """One template's conversion: the scope, then the resources, layers, functions and their
    events, then a warning for each resource that is not served."""

    def __init__(
        self,
        template: Mapping[str, Any],
        source: str,
        template_dir: Path,
        base_dir: Path,
        options: ImportOptions,
    ) -> None:
        self._template = template
        self._source = source
        self._template_dir = template_dir
        self._base_dir = base_dir
        self._options = options
        self._resources = self._section("Resources")
        self._globals = self._read_globals()
        self._values = TemplateValues(Scope(values={}))

    def run(self) -> Conversion:
        if not self._resources:
            raise RoutingConfigError(self._source, None, "Resources", "a template needs resources")
        self._values.scope = self._build_scope()
        present = {name: r for name, r in self._resources.items() if self._is_present(name, r)}
        tables = [table for name, r in present.items() if (table := self._table(name, r))]
        buckets = [bucket for name, r in present.items() if (bucket := self._bucket(name, r))]
        functions = FunctionReader(
            self._values,
            self._source,
            mapping(self._globals.get("Function")),
            self._layers(present),
            self._relative,
            self._options.host_architecture,
        )
        events = EventReader(self._values, _apis(present), self._globals)
        specs = {}
        for name, resource in present.items():
            if type_of(resource) == FUNCTION and (
                spec := self._function(name, resource, functions, events)
            ):
                specs[name] = spec
        for name, resource in present.items():
            self._warn_if_unserved(name, resource)
        document: dict[str, Any] = {"functions": specs, "routes": events.routes}
        resources = {"buckets": buckets, "tables": dict(tables)}
        if tables or buckets:
            document["resources"] = {kind: items for kind, items in resources.items() if items}
        return Conversion(document, tuple(self._values.warnings))

    def _section(self, name: str) -> dict[str, Any]:
        value = self._template.get(name)
        if value is not None and not isinstance(value, dict):
            raise RoutingConfigError(self._source, None, name, "must be a mapping")
        return mapping(value)

    def _read_globals(self) -> dict[str, Any]:
        """Globals: known sections, each a mapping (SAM refuses others)."""
        sections = self._section("Globals")
        for name, section in sections.items():
            if name not in _GLOBALS_SECTIONS:
                raise RoutingConfigError(
                    self._source, None, f"Globals.{name}", "not a Globals section"
                )
            if not isinstance(section, dict):
                raise RoutingConfigError(self._source, None, f"Globals.{name}", "must be a mapping")
        return sections

    # -- scope: parameters, conditions, what each resource's Ref gives --------------------------

    def _build_scope(self) -> Scope:
        options = self._options
        values = pseudo_parameters(
            stack=options.stack, region=options.region, account_id=options.account_id
        )
        unknown = self._parameters(values)
        base = Scope(
            values=values,
            unknown=unknown,
            conditions=self._section("Conditions"),
            mappings=self._section("Mappings"),
        )
        refs: dict[str, object] = {}
        attributes: dict[tuple[str, str], object] = {}
        for name, resource in self._resources.items():
            try:
                ref = self._reference(name, type_of(resource), properties_of(resource), base)
            except Unresolvable as exc:
                unknown[name] = f"{name} has no local name: {exc}"
                continue
            if ref is None:
                unknown[name] = f"{name} ({type_of(resource)}) has no local value"
                continue
            refs[name] = ref
            attributes.update(
                {(name, k): v for k, v in self._attributes(name, type_of(resource), ref).items()}
            )
        return Scope(values, refs, attributes, unknown, base.conditions, base.mappings)

    def _parameters(self, values: dict[str, object]) -> dict[str, str]:
        """Put each parameter's value (override, else default) in ``values``; the reasons
        the others have none."""
        declared = self._section("Parameters")
        overrides = self._options.parameter_overrides
        unknown = {}
        for name in sorted(overrides.keys() - declared.keys()):
            self._values.warn(
                f"parameter override {name}", "the template has no such parameter; ignored"
            )
        for name, spec in declared.items():
            raw = overrides.get(name, mapping(spec).get("Default"))
            if raw is None:
                unknown[name] = f"parameter {name} has no value (no Default, no override)"
                self._values.warn(
                    f"Parameters.{name}",
                    "no value (no Default, no override); what uses it is left unset",
                )
                continue
            kind = str(mapping(spec).get("Type", "String"))
            is_list = kind == "CommaDelimitedList" or kind.startswith("List<")
            values[name] = (
                [item.strip() for item in text_of(raw).split(",")] if is_list else text_of(raw)
            )
        return unknown

    def _reference(
        self, name: str, kind: str, properties: Mapping[str, Any], base: Scope
    ) -> str | None:
        """What ``Ref`` of resource ``name`` gives locally (None: nothing)."""
        stack = self._options.stack
        if kind == FUNCTION:
            return name
        if kind in (SIMPLE_TABLE, TABLE):
            return text_of(resolve(properties.get("TableName"), base) or f"{stack}-{name}")
        if kind == BUCKET:
            given = resolve(properties.get("BucketName"), base)
            return text_of(given) if given else _bucket_name(f"{stack}-{name}")
        if kind == LAYER:
            layer = resolve(properties.get("LayerName"), base) or name
            return (
                f"arn:aws:lambda:{self._options.region}:{self._options.account_id}:layer:{layer}:1"
            )
        return None

    def _attributes(self, name: str, kind: str, ref: str) -> dict[str, str]:
        region, account = self._options.region, self._options.account_id
        if kind == FUNCTION:
            return {"Arn": f"arn:aws:lambda:{region}:{account}:function:{name}"}
        if kind in (SIMPLE_TABLE, TABLE):
            return {"Arn": f"arn:aws:dynamodb:{region}:{account}:table/{ref}"}
        if kind == BUCKET:
            return {
                "Arn": f"arn:aws:s3:::{ref}",
                "DomainName": f"{ref}.s3.amazonaws.com",
                "RegionalDomainName": f"{ref}.s3.{region}.amazonaws.com",
            }
        return {"Arn": ref} if kind == LAYER else {}

    def _is_present(self, name: str, resource: Any) -> bool:
        """Whether the resource exists: it is a mapping, and its ``Condition`` holds."""
        if not isinstance(resource, dict):
            raise RoutingConfigError(self._source, None, f"Resources.{name}", "must be a mapping")
        condition = resource.get("Condition")
        if condition is None:
            return True
        try:
            return test_condition(str(condition), self._values.scope)
        except Unresolvable as exc:
            self._values.warn(f"Resources.{name}.Condition", f"{exc}; the resource is skipped")
            return False

    # -- tables, buckets, layers, functions ------------------------------------------------------

    def _table(self, name: str, resource: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        kind = type_of(resource)
        if kind not in (SIMPLE_TABLE, TABLE):
            return None
        table_name = self._local_name(name, TABLE_NAME, "a DynamoDB table name")
        if table_name is None:
            return None
        key = f"Resources.{name}.Properties"
        properties = self._values.resolved(key, properties_of(resource))
        if kind == SIMPLE_TABLE:
            merged = {**mapping(self._globals.get("SimpleTable")), **properties}
            table = _simple_table(merged)
            if table is None:
                self._values.warn(f"{key}.PrimaryKey", "needs Name and Type; the table is skipped")
            return (table_name, table) if table else None
        for stream in _STREAM_KEYS:
            if stream in properties:
                self._values.warn(
                    f"{key}.{stream}", "table streams are not served locally; ignored"
                )
        return table_name, _table_properties(properties)

    def _bucket(self, name: str, resource: dict[str, Any]) -> str | None:
        if type_of(resource) != BUCKET:
            return None
        return self._local_name(name, BUCKET_NAME, "an S3 bucket name")

    def _local_name(self, name: str, rule: re.Pattern[str], what: str) -> str | None:
        """The name resource ``name`` has here (what its ``Ref`` gives); None, warned, when
        it has none or it breaks the service's naming ``rule``."""
        scope = self._values.scope
        if name not in scope.refs:
            self._values.warn(f"Resources.{name}", f"{scope.unknown[name]}; skipped")
            return None
        local = str(scope.refs[name])
        if not rule.fullmatch(local):
            self._values.warn(f"Resources.{name}", f"{local!r} is not {what}; skipped")
            return None
        return local

    def _layers(self, present: Mapping[str, Any]) -> Layers:
        """The local layers by ARN (their path), and why each other layer was skipped."""
        paths: dict[str, str] = {}
        skipped: dict[str, str] = {}
        for name, resource in present.items():
            if type_of(resource) != LAYER:
                continue
            arn = self._local_name(name, _ANY_NAME, "an ARN")
            if arn is None:
                continue
            key = f"Resources.{name}.Properties.ContentUri"
            content = self._values.value(key, properties_of(resource).get("ContentUri"), "skipped")
            if not isinstance(content, str) or not content.strip() or content.startswith("s3://"):
                skipped[arn] = f"layer {name} has no local ContentUri"
                self._values.warn(key, "not a local directory or .zip file; the layer is skipped")
                continue
            build = mapping(resource.get("Metadata")).get("BuildMethod")
            if build is not None:
                self._values.warn(
                    f"Resources.{name}.Metadata.BuildMethod",
                    f"{build}: `sam build` would build the layer; its directory is used as it is",
                )
            paths[arn] = self._relative(content)
        return Layers(paths, skipped)

    def _function(
        self, name: str, resource: dict[str, Any], functions: FunctionReader, events: EventReader
    ) -> dict[str, Any] | None:
        if not FUNCTION_NAME.fullmatch(name):
            self._values.warn(
                f"Resources.{name}", "a function name is 1-64 letters, digits, - or _; skipped"
            )
            return None
        read = functions.read(name, resource)
        if read is None:
            return None
        spec, raw_events = read
        schedules = events.read(name, f"Resources.{name}.Properties.Events", raw_events)
        return spec | ({"schedule": schedules} if schedules else {})

    def _warn_if_unserved(self, name: str, resource: dict[str, Any]) -> None:
        kind = type_of(resource)
        if kind in _SERVED:
            return
        events = mapping(properties_of(resource).get("Events"))
        also = f" (with its events: {', '.join(events)})" if events else ""
        self._values.warn(f"Resources.{name}", f"{kind} is not served locally; skipped{also}")

    def _relative(self, path: str) -> str:
        """A path of the template (relative to its directory) relative to ``base_dir``."""
        absolute = os.path.normpath(self._template_dir / path)
        return Path(os.path.relpath(absolute, self._base_dir)).as_posix()


# --- pure helpers ---------------------------------------------------------------------------------


def _apis(present: Mapping[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """The template's APIs by name: the event type of their routes, and their properties."""
    kinds = {REST_API: "Api", HTTP_API: "HttpApi"}
    return {
        name: (kinds[type_of(resource)], properties_of(resource))
        for name, resource in present.items()
        if type_of(resource) in kinds
    }


def _bucket_name(text: str) -> str:
    """An S3 bucket name made from ``text``: lower case, S3's alphabet, at most 63 long."""
    name = re.sub(r"[^a-z0-9.-]+", "-", text.lower())[:63]
    return name.strip(".-")


def _simple_table(properties: Mapping[str, Any]) -> dict[str, Any] | None:
    """CreateTable's properties for a SimpleTable (key ``id`` String by default); None when
    its PrimaryKey is not one."""
    key = properties.get("PrimaryKey", {})
    if not isinstance(key, dict) or str(key.get("Type", "String")) not in _KEY_TYPES:
        return None
    key_name, key_type = str(key.get("Name", "id")), _KEY_TYPES[str(key.get("Type", "String"))]
    table: dict[str, Any] = {
        "KeySchema": [{"AttributeName": key_name, "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": key_name, "AttributeType": key_type}],
    }
    throughput = properties.get("ProvisionedThroughput")
    if isinstance(throughput, dict):
        return table | {"BillingMode": "PROVISIONED", "ProvisionedThroughput": throughput}
    return table | {"BillingMode": "PAY_PER_REQUEST"}


def _table_properties(properties: Mapping[str, Any]) -> dict[str, Any]:
    """CreateTable's own properties of an ``AWS::DynamoDB::Table``; indexes keep only
    CreateTable's keys."""
    table = {key: properties[key] for key in _TABLE_KEYS if key in properties}
    for indexes in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if isinstance(table.get(indexes), list):
            table[indexes] = [_index(index) for index in table[indexes]]
    return table


def _index(index: Any) -> Any:
    return (
        {key: index[key] for key in _INDEX_KEYS if key in index}
        if isinstance(index, dict)
        else index
    )
