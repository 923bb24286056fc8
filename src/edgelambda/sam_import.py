"""An AWS SAM template as a routing document (pure).

:func:`convert` turns a template (read by :mod:`edgelambda.cfn_yaml`) into the plain document
``routing.yaml`` holds (functions, routes, resources) and a list of warnings: what a local box
cannot serve (queues, topics, state machines, authorizers, IAM...) is skipped with one warning
per resource, and a value without a local value (``Fn::ImportValue``) leaves its variable
unset with a warning naming it. Nothing here fails on what AWS would deploy; a template that
could not be deployed either (no Resources, a function without a handler) raises
:class:`~edgelambda.errors.RoutingConfigError` naming the key.

SAM's own rules followed here come from the AWS SAM specification
(docs.aws.amazon.com/serverless-application-model/latest/developerguide/): Globals
("primitives are replaced, maps merged, lists added"), the implicit ``ServerlessRestApi`` and
``ServerlessHttpApi``, ``Api`` events speaking payload 1.0 and ``HttpApi`` events 2.0 (with
``$default`` when Path and Method are absent), SimpleTable's ``id``/String default key; and
Lambda's defaults: 3 s timeout, 128 MB memory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgelambda.cfn_intrinsics import (
    Scope,
    is_intrinsic,
    pseudo_parameters,
    resolve,
    test_condition,
)
from edgelambda.errors import RoutingConfigError, ScheduleError, Unresolvable
from edgelambda.routing import ANY_METHOD, DEFAULT_ROUTE, HTTP_METHODS, route_shape
from edgelambda.schedule import parse_schedule

__all__ = [
    "DEFAULT_ROUTE",
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
LAMBDA_DEFAULT_TIMEOUT_S = 3
LAMBDA_DEFAULT_MEMORY_MB = 128
FUNCTION = "AWS::Serverless::Function"
LAYER = "AWS::Serverless::LayerVersion"
REST_API = "AWS::Serverless::Api"
HTTP_API = "AWS::Serverless::HttpApi"
SIMPLE_TABLE = "AWS::Serverless::SimpleTable"
TABLE = "AWS::DynamoDB::Table"
BUCKET = "AWS::S3::Bucket"
IMPLICIT_APIS = {"Api": "ServerlessRestApi", "HttpApi": "ServerlessHttpApi"}

# Properties with no local meaning that need no warning: deployment, IAM, tracing (the box
# traces every invocation), tags, descriptions.
_QUIET_FUNCTION_KEYS = frozenset(
    {
        "AutoPublishAlias", "AutoPublishCodeSha256", "AutoPublishAliasAllProperties",
        "CodeSigningConfigArn", "DeploymentPreference", "Description", "FunctionName",
        "KmsKeyArn", "LoggingConfig", "PermissionsBoundary", "Policies", "PropagateTags",
        "Role", "RolePath", "RuntimeManagementConfig", "SnapStart", "Tags", "Tracing",
        "VersionDescription", "VpcConfig", "EphemeralStorage", "AssumeRolePolicyDocument",
    }
)  # fmt: skip
_FUNCTION_KEYS = frozenset(
    {
        "Handler", "Runtime", "CodeUri", "InlineCode", "Timeout", "MemorySize", "Environment",
        "Architectures", "ReservedConcurrentExecutions", "ProvisionedConcurrencyConfig",
        "Layers", "PackageType", "ImageUri", "ImageConfig", "Events",
    }
)  # fmt: skip
_QUIET_API_KEYS = frozenset(
    {
        "StageName", "Name", "Description", "TracingEnabled", "OpenApiVersion", "Tags",
        "EndpointConfiguration", "MethodSettings", "AccessLogSetting", "AccessLogSettings",
        "CacheClusterEnabled", "CacheClusterSize", "CanarySetting", "FailOnWarnings",
        "DefaultRouteSettings", "RouteSettings", "StageVariables", "Variables",
        "PropagateTags", "MinimumCompressionSize", "Mode", "AlwaysDeploy",
        "DisableExecuteApiEndpoint",
    }
)  # fmt: skip
_API_KEYS = frozenset({"Auth", "Cors", "CorsConfiguration"})
_QUIET_AUTH_KEYS = frozenset(
    {
        "Authorizers", "DefaultAuthorizer", "AddDefaultAuthorizerToCorsPreflight",
        "ResourcePolicy", "InvokeRole", "EnableIamAuthorizer",
    }
)  # fmt: skip
# Where AWS would run an authorizer, the box asks for its own login: never open a route up.
_JWT_INSTEAD = "takes the box's JWT login instead"
# CreateTable's own shape: what the box passes to DynamoDB (Alternator).
_TABLE_KEYS = (
    "KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes", "LocalSecondaryIndexes",
    "BillingMode", "ProvisionedThroughput",
)  # fmt: skip
_INDEX_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")
_STREAM_KEYS = ("StreamSpecification", "KinesisStreamSpecification")
_KEY_TYPES = {"String": "S", "Number": "N", "Binary": "B"}
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ENV_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# The AWS services a function finds in the box (IAM action prefixes, SAM policy templates).
_SERVED_SERVICES = frozenset({"dynamodb", "s3", "lambda", "logs", "xray", "cloudwatch"})
_SERVED_POLICY_TEMPLATES = ("DynamoDB", "S3", "Lambda", "CloudWatch", "AWSXray")
_TEMPLATE_KEY = re.compile(r"^(?:Resources|AWSTemplateFormatVersion|Transform)\s*:", re.MULTILINE)
_SCHEDULE_EVENTS = {"Schedule": "Schedule", "ScheduleV2": "ScheduleExpression"}


@dataclass(frozen=True)
class ImportOptions:
    """What a template leaves to its deployment: the stack's name, region and account (for
    pseudo-parameters), parameter values, and this machine's architecture."""

    stack: str = "sam-app"
    region: str = "us-east-1"
    account_id: str = "123456789012"
    parameter_overrides: Mapping[str, str] = field(default_factory=dict)
    host_architecture: str = "x86_64"


@dataclass(frozen=True)
class Conversion:
    """The routing document (routing.yaml's shape) and what could not be carried over."""

    document: dict[str, Any]
    warnings: tuple[str, ...]


def is_sam_text(text: str) -> bool:
    """Whether YAML text is a CloudFormation/SAM template rather than a routing file: it has
    one of a template's top-level keys (a routing file's are lower-case)."""
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
    return _Import(template, source, template_dir, base_dir, options).run()


# --- the import ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Api:
    """What an API gives its routes: the auth mode, the CORS origins, the payload version."""

    auth: str  # "none", or "jwt" where AWS would run an authorizer or ask for an API key
    cors: list[str] | None
    payload: str


@dataclass(frozen=True)
class _FunctionGlobals:
    """Globals.Function: its environment and layers resolved, the rest as written."""

    properties: dict[str, Any]
    environment: dict[str, str]
    layers: list[str]

    def environment_with(self, own: Mapping[str, Any], resolved: dict[str, str]) -> dict[str, str]:
        """The function's environment: the global variables it does not set itself (even to
        a value without a local value), then its own ``resolved`` ones."""
        variables = (own.get("Environment") or {}).get("Variables") or {}
        return {**{k: v for k, v in self.environment.items() if k not in variables}, **resolved}


class _Import:
    """One template's conversion; collects the document's parts and the warnings."""

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
        self._warnings: list[str] = []
        self._resources = _mapping(template.get("Resources"), "Resources", source)
        self._globals = _mapping(template.get("Globals"), "Globals", source)
        self._scope = Scope(values={})
        self._layers: dict[str, str] = {}  # a local layer's ARN -> its path
        self._apis: dict[str, _Api] = {}
        self._routes: list[dict[str, Any]] = []
        self._shared = _FunctionGlobals({}, {}, [])
        self._claimed: list[tuple[tuple[object, ...], frozenset[str], str]] = []

    def warn(self, key: str, problem: str) -> None:
        self._warnings.append(f"{key}: {problem}")

    def run(self) -> Conversion:
        if not self._resources:
            raise RoutingConfigError(self._source, None, "Resources", "a template needs resources")
        self._scope = self._build_scope()
        present = [name for name in self._resources if self._is_present(name)]
        tables = [table for name in present if (table := self._table(name)) is not None]
        buckets = [bucket for name in present if (bucket := self._bucket(name)) is not None]
        for name in present:
            self._read_layer_or_api(name)
        self._shared = self._read_function_globals()
        functions = {name: spec for name in present if (spec := self._function(name)) is not None}
        for name in present:
            self._warn_if_unserved(name)
        document: dict[str, Any] = {"functions": functions, "routes": self._routes}
        if tables or buckets:
            document["resources"] = {
                **({"buckets": buckets} if buckets else {}),
                **({"tables": dict(tables)} if tables else {}),
            }
        return Conversion(document, tuple(self._warnings))

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
            conditions=_mapping(self._template.get("Conditions"), "Conditions", self._source),
            mappings=_mapping(self._template.get("Mappings"), "Mappings", self._source),
        )
        refs: dict[str, object] = {}
        attributes: dict[tuple[str, str], object] = {}
        for name, resource in self._resources.items():
            self._describe(name, resource, base, refs, attributes, unknown)
        return Scope(
            values=values,
            refs=refs,
            attributes=attributes,
            unknown=unknown,
            conditions=base.conditions,
            mappings=base.mappings,
        )

    def _parameters(self, values: dict[str, object]) -> dict[str, str]:
        """Put each parameter's value (override, else default) in ``values``; the reasons
        the others have none."""
        declared = _mapping(self._template.get("Parameters"), "Parameters", self._source)
        overrides = self._options.parameter_overrides
        unknown = {}
        for name in overrides.keys() - declared.keys():
            self.warn(f"parameter override {name}", "the template has no such parameter; ignored")
        for name, spec in declared.items():
            raw = overrides.get(name, spec.get("Default") if isinstance(spec, dict) else None)
            if raw is None:
                unknown[name] = f"parameter {name} has no value (no Default, no override)"
                self.warn(
                    f"Parameters.{name}",
                    "no value (no Default, no override); what uses it is left unset",
                )
                continue
            kind = str(spec.get("Type", "String")) if isinstance(spec, dict) else "String"
            values[name] = _parameter_value(raw, kind)
        return unknown

    def _describe(
        self,
        name: str,
        resource: Any,
        base: Scope,
        refs: dict[str, object],
        attributes: dict[tuple[str, str], object],
        unknown: dict[str, str],
    ) -> None:
        """What ``Ref`` and ``Fn::GetAtt`` of resource ``name`` give locally."""
        kind = _type_of(resource)
        try:
            value = self._reference(name, kind, _properties(resource), base)
        except Unresolvable as exc:
            unknown[name] = f"{name} has no local name: {exc}"
            return
        if value is None:
            unknown[name] = f"{name} ({kind}) has no local value"
            return
        refs[name] = value
        attributes.update(
            {(name, key): item for key, item in self._attributes(name, kind, value).items()}
        )

    def _reference(
        self, name: str, kind: str, properties: Mapping[str, Any], base: Scope
    ) -> str | None:
        options = self._options
        if kind == FUNCTION:
            return name
        if kind in (SIMPLE_TABLE, TABLE):
            return str(resolve(properties.get("TableName"), base) or f"{options.stack}-{name}")
        if kind == BUCKET:
            given = resolve(properties.get("BucketName"), base)
            return str(given) if given else _bucket_name(f"{options.stack}-{name}")
        if kind == LAYER:
            layer_name = resolve(properties.get("LayerName"), base) or name
            return f"arn:aws:lambda:{options.region}:{options.account_id}:layer:{layer_name}:1"
        return None

    def _attributes(self, name: str, kind: str, value: str) -> dict[str, str]:
        region, account = self._options.region, self._options.account_id
        if kind == FUNCTION:
            return {"Arn": f"arn:aws:lambda:{region}:{account}:function:{name}"}
        if kind in (SIMPLE_TABLE, TABLE):
            return {"Arn": f"arn:aws:dynamodb:{region}:{account}:table/{value}"}
        if kind == BUCKET:
            return {
                "Arn": f"arn:aws:s3:::{value}",
                "DomainName": f"{value}.s3.amazonaws.com",
                "RegionalDomainName": f"{value}.s3.{region}.amazonaws.com",
            }
        if kind == LAYER:
            return {"Arn": value}
        return {}

    def _is_present(self, name: str) -> bool:
        """Whether the resource exists: its ``Condition`` (if any) holds."""
        condition = (
            self._resources[name].get("Condition")
            if isinstance(self._resources[name], dict)
            else None
        )
        if condition is None:
            return True
        try:
            return test_condition(str(condition), self._scope)
        except Unresolvable as exc:
            self.warn(f"Resources.{name}.Condition", f"{exc}; the resource is skipped")
            return False

    # -- tables and buckets ---------------------------------------------------------------------

    def _table(self, name: str) -> tuple[str, dict[str, Any]] | None:
        kind = _type_of(self._resources[name])
        if kind not in (SIMPLE_TABLE, TABLE) or name not in self._scope.refs:
            if kind in (SIMPLE_TABLE, TABLE):
                self.warn(f"Resources.{name}", f"{self._scope.unknown[name]}; the table is skipped")
            return None
        table_name = str(self._scope.refs[name])
        if not _TABLE_NAME.fullmatch(table_name):
            self.warn(f"Resources.{name}", f"{table_name!r} is not a DynamoDB table name; skipped")
            return None
        properties = self._resolved(
            f"Resources.{name}.Properties", _properties(self._resources[name])
        )
        if properties is None:
            return None
        if kind == SIMPLE_TABLE:
            merged = _merge_globals(self._globals.get("SimpleTable"), properties)
            return table_name, _simple_table(merged)
        for key in _STREAM_KEYS:
            if key in properties:
                self.warn(
                    f"Resources.{name}.Properties.{key}",
                    "table streams are not served locally; ignored",
                )
        return table_name, _table_properties(properties)

    def _bucket(self, name: str) -> str | None:
        if _type_of(self._resources[name]) != BUCKET:
            return None
        if name not in self._scope.refs:
            self.warn(f"Resources.{name}", f"{self._scope.unknown[name]}; the bucket is skipped")
            return None
        bucket = str(self._scope.refs[name])
        if not _BUCKET_NAME.fullmatch(bucket):
            self.warn(f"Resources.{name}", f"{bucket!r} is not an S3 bucket name; skipped")
            return None
        return bucket

    # -- layers and APIs -------------------------------------------------------------------------

    def _read_layer_or_api(self, name: str) -> None:
        kind = _type_of(self._resources[name])
        if kind == LAYER:
            self._read_layer(name)
        elif kind in (REST_API, HTTP_API):
            event_type = "Api" if kind == REST_API else "HttpApi"
            self._apis[name] = self._api(name, event_type, _properties(self._resources[name]))

    def _read_layer(self, name: str) -> None:
        key = f"Resources.{name}.Properties.ContentUri"
        content = self._value(key, _properties(self._resources[name]).get("ContentUri"))
        if not _is_local_path(content):
            self.warn(key, "not a local directory or .zip file; the layer is skipped")
            return
        self._layers[str(self._scope.refs[name])] = self._relative(str(content))

    def _api(self, name: str, event_type: str, own: Mapping[str, Any]) -> _Api:
        """The settings of API ``name`` (explicit or implicit) that its routes take."""
        key = f"Resources.{name}.Properties"
        merged = _merge_globals(self._globals.get(event_type), own)
        for unknown in sorted(merged.keys() - _QUIET_API_KEYS - _API_KEYS):
            self.warn(f"{key}.{unknown}", "not applied locally")
        auth = self._api_auth(f"{key}.Auth", merged.get("Auth"))
        if event_type == "Api":
            cors = self._value(f"{key}.Cors", merged.get("Cors"))
            return _Api(auth, self._rest_cors(f"{key}.Cors", cors), "1.0")
        cors = self._value(f"{key}.CorsConfiguration", merged.get("CorsConfiguration"))
        return _Api(auth, self._http_cors(f"{key}.CorsConfiguration", cors), "2.0")

    def _api_auth(self, key: str, auth: Any) -> str:
        if not isinstance(auth, dict):
            return "none"
        for unknown in sorted(auth.keys() - _QUIET_AUTH_KEYS - {"ApiKeyRequired"}):
            self.warn(f"{key}.{unknown}", "not applied locally")
        default = auth.get("DefaultAuthorizer")
        if default not in (None, "NONE"):
            self.warn(
                f"{key}.DefaultAuthorizer",
                f"authorizer {default} is not run locally; each of its routes {_JWT_INSTEAD}",
            )
            return "jwt"
        if auth.get("ApiKeyRequired") is True:
            self.warn(f"{key}.ApiKeyRequired", f"no API keys locally; each route {_JWT_INSTEAD}")
            return "jwt"
        return "none"

    def _rest_cors(self, key: str, cors: Any) -> list[str] | None:
        """A REST API's ``Cors``: the origin, as SAM writes it (in single quotes)."""
        origin = cors.get("AllowOrigin") if isinstance(cors, dict) else cors
        if origin is None:
            return None
        if isinstance(cors, dict):
            self._warn_cors_extras(key, cors.keys() - {"AllowOrigin"})
        return [str(origin).strip().strip("'")]

    def _http_cors(self, key: str, cors: Any) -> list[str] | None:
        """An HTTP API's ``CorsConfiguration``: true (any origin) or its AllowOrigins."""
        if cors is True:
            return ["*"]
        if not isinstance(cors, dict) or not cors.get("AllowOrigins"):
            return None
        self._warn_cors_extras(key, cors.keys() - {"AllowOrigins", "AllowMethods"})
        return [str(origin) for origin in cors["AllowOrigins"]]

    def _warn_cors_extras(self, key: str, extras: Iterable[str]) -> None:
        if extras:
            names = ", ".join(sorted(extras))
            self.warn(key, f"only the origins are applied; {names} take the box's CORS defaults")

    def _api_of(self, event_type: str, reference: Any) -> _Api:
        """The API an ``Api`` or ``HttpApi`` event names (its implicit one when none)."""
        name = reference.get("Ref") if isinstance(reference, dict) else reference
        name = str(name) if name is not None else IMPLICIT_APIS[event_type]
        if name not in self._apis:
            self._apis[name] = self._api(name, event_type, {})
        return self._apis[name]

    # -- functions --------------------------------------------------------------------------------

    def _function(self, name: str) -> dict[str, Any] | None:
        resource = self._resources[name]
        if _type_of(resource) != FUNCTION:
            return None
        key = f"Resources.{name}.Properties"
        if not _FUNCTION_NAME.fullmatch(name):
            self.warn(
                f"Resources.{name}", "a function name is 1-64 letters, digits, - or _; skipped"
            )
            return None
        own = _properties(resource)
        properties = _merge_globals(self._shared.properties, own)
        for unknown in sorted(properties.keys() - _FUNCTION_KEYS - _QUIET_FUNCTION_KEYS):
            self.warn(f"{key}.{unknown}", "not applied locally")
        spec = self._code(name, key, properties)
        if spec is None:
            return None
        spec.update(self._limits(key, properties))
        self._architecture(key, properties.get("Architectures"))
        self._policies(f"{key}.Policies", properties.get("Policies"))
        environment = self._shared.environment_with(
            own, self._environment(f"{key}.Environment.Variables", own.get("Environment"))
        )
        layers = [
            *self._shared.layers,
            *self._function_layers(f"{key}.Layers", own.get("Layers")),
        ]
        if layers and "image" in spec:  # AWS refuses layers on an image function too
            self.warn(f"{key}.Layers", "an image function has no layers; ignored")
            layers = []
        schedules = self._events(name, f"{key}.Events", properties.get("Events"))
        parts = {"environment": environment, "layers": layers, "schedule": schedules}
        spec.update({part: value for part, value in parts.items() if value})
        return spec

    def _read_function_globals(self) -> _FunctionGlobals:
        """Globals.Function, its environment and layers resolved once (warnings once)."""
        shared = dict(self._globals.get("Function") or {})
        key = "Globals.Function"
        environment = self._environment(
            f"{key}.Environment.Variables", shared.pop("Environment", None)
        )
        layers = self._function_layers(f"{key}.Layers", shared.pop("Layers", None))
        return _FunctionGlobals(shared, environment, layers)

    def _code(self, name: str, key: str, properties: Mapping[str, Any]) -> dict[str, Any] | None:
        """Handler, runtime and where the code is: a directory, inline code or an image."""
        if properties.get("PackageType") == "Image":
            return self._image(name, key, properties)
        handler = self._value(f"{key}.Handler", properties.get("Handler"))
        runtime = self._value(f"{key}.Runtime", properties.get("Runtime"))
        if not isinstance(handler, str) or not isinstance(runtime, str):
            raise RoutingConfigError(
                self._source, None, key, "a function needs Handler and Runtime"
            )
        spec: dict[str, Any] = {"handler": handler, "runtime": runtime}
        if "InlineCode" in properties and not runtime.startswith("python"):
            self.warn(f"{key}.InlineCode", f"served for Python runtimes only, not {runtime}")
            return None
        if "InlineCode" in properties:
            spec["inline_code"] = str(self._value(f"{key}.InlineCode", properties["InlineCode"]))
            return spec
        code_uri = self._value(f"{key}.CodeUri", properties.get("CodeUri", "."))
        if not _is_local_path(code_uri):
            self.warn(f"{key}.CodeUri", "not a local directory; the function is skipped")
            return None
        spec["code"] = self._relative(str(code_uri))
        return spec

    def _image(self, name: str, key: str, properties: Mapping[str, Any]) -> dict[str, Any] | None:
        """A container-image function: ``ImageUri``, or the Dockerfile in ``Metadata``."""
        spec: dict[str, Any] = {}
        image_uri = self._value(f"{key}.ImageUri", properties.get("ImageUri"))
        metadata = self._resources[name].get("Metadata") or {}
        if isinstance(metadata, dict) and metadata.get("DockerContext"):
            directory = self._relative(str(metadata["DockerContext"]))
            spec["image"] = directory if directory.startswith((".", "/")) else f"./{directory}"
            dockerfile = str(metadata.get("Dockerfile", "Dockerfile"))
            if dockerfile != "Dockerfile":
                spec["dockerfile"] = dockerfile
        elif isinstance(image_uri, str):
            spec["image"] = image_uri
        else:
            self.warn(key, "an Image function needs ImageUri or Metadata.DockerContext; skipped")
            return None
        config = self._value(f"{key}.ImageConfig", properties.get("ImageConfig")) or {}
        command = config.get("Command") if isinstance(config, dict) else None
        if isinstance(command, list) and command:
            spec["handler"] = str(command[0])
        for unknown in sorted(set(config) - {"Command"} if isinstance(config, dict) else ()):
            self.warn(f"{key}.ImageConfig.{unknown}", "not applied locally")
        return spec

    def _limits(self, key: str, properties: Mapping[str, Any]) -> dict[str, Any]:
        limits: dict[str, Any] = {
            "timeout": self._value(
                f"{key}.Timeout", properties.get("Timeout", LAMBDA_DEFAULT_TIMEOUT_S)
            ),
            "memory": self._value(
                f"{key}.MemorySize", properties.get("MemorySize", LAMBDA_DEFAULT_MEMORY_MB)
            ),
        }
        reserved = self._value(
            f"{key}.ReservedConcurrentExecutions", properties.get("ReservedConcurrentExecutions")
        )
        if isinstance(reserved, int) and reserved > 0:
            limits["max_concurrency"] = reserved
        elif reserved is not None:
            self.warn(
                f"{key}.ReservedConcurrentExecutions",
                f"{reserved!r} is not a positive number; ignored",
            )
        provisioned = self._value(
            f"{key}.ProvisionedConcurrencyConfig", properties.get("ProvisionedConcurrencyConfig")
        )
        if isinstance(provisioned, dict) and provisioned.get("ProvisionedConcurrentExecutions"):
            warm = int(provisioned["ProvisionedConcurrentExecutions"])
            cap = limits.get("max_concurrency", warm)
            if warm > cap:
                self.warn(
                    f"{key}.ProvisionedConcurrencyConfig",
                    f"{warm} is above the reserved concurrency; {cap} kept warm",
                )
            limits["min_warm"] = min(warm, cap)
            limits.setdefault("max_concurrency", max(warm, 10))
        return limits

    def _architecture(self, key: str, architectures: Any) -> None:
        host = self._options.host_architecture
        if isinstance(architectures, list) and any(arch != host for arch in architectures):
            wanted = ", ".join(map(str, architectures))
            self.warn(f"{key}.Architectures", f"{wanted}: functions run on this machine's {host}")

    def _policies(self, key: str, policies: Any) -> None:
        """Warn of the AWS services a function's policies grant that the box does not run:
        the function will reach for them."""
        services = sorted(_unserved_services(policies))
        if services:
            self.warn(key, f"grants {', '.join(services)}, which the box does not serve")

    def _environment(self, key: str, environment: Any) -> dict[str, str]:
        variables = environment.get("Variables") if isinstance(environment, dict) else None
        if not isinstance(variables, dict):
            return {}
        result = {}
        for name, raw in variables.items():
            value = self._value(f"{key}.{name}", raw, "left unset")
            if value is None:
                continue
            if not _ENV_NAME.fullmatch(str(name)) or isinstance(value, dict | list):
                self.warn(f"{key}.{name}", "not a variable name and text value; left unset")
                continue
            result[str(name)] = _env_text(value)
        return result

    def _function_layers(self, key: str, layers: Any) -> list[str]:
        paths = []
        for index, raw in enumerate(layers if isinstance(layers, list) else []):
            arn = self._value(f"{key}[{index}]", raw, "skipped")
            if arn is None:
                continue
            if str(arn) in self._layers:
                paths.append(self._layers[str(arn)])
            else:
                self.warn(f"{key}[{index}]", f"{arn} is not a layer of this template; skipped")
        return paths

    # -- events -----------------------------------------------------------------------------------

    def _events(self, function: str, key: str, events: Any) -> list[str]:
        """Add the function's routes; its schedules, returned."""
        schedules = []
        for event_name, event in events.items() if isinstance(events, dict) else ():
            event_key = f"{key}.{event_name}"
            event_type = event.get("Type") if isinstance(event, dict) else None
            if event_type not in IMPLICIT_APIS and event_type not in _SCHEDULE_EVENTS:
                self.warn(
                    event_key,
                    f"{event_type} events are not served locally; the function stays invokable",
                )
                continue
            raw = dict(event.get("Properties") or {})
            # The API is named by its logical id; a Ref to it has no local value.
            api_name = raw.pop("RestApiId", None) or raw.pop("ApiId", None)
            properties = self._resolved(f"{event_key}.Properties", raw) or {}
            if event_type in IMPLICIT_APIS:
                api = self._api_of(str(event_type), api_name)
                self._route(function, event_key, api, properties)
            else:
                schedules.extend(self._schedule(event_key, str(event_type), properties))
        return schedules

    def _route(self, function: str, key: str, api: _Api, properties: Mapping[str, Any]) -> None:
        path, method = properties.get("Path"), properties.get("Method")
        if api.payload == "2.0" and path is None:
            path, method = DEFAULT_ROUTE, ANY_METHOD
        route: dict[str, Any] = {
            "path": str(path),
            "method": _method(str(method)),
            "function": function,
            "auth": self._route_auth(key, api, properties.get("Auth")),
            "payload": str(properties.get("PayloadFormatVersion", api.payload)),
        }
        if api.cors:
            route["cors"] = list(api.cors)
        if self._claim(key, route):
            self._routes.append(route)

    def _route_auth(self, key: str, api: _Api, auth: Any) -> str:
        authorizer = auth.get("Authorizer") if isinstance(auth, dict) else None
        if authorizer == "NONE":
            return "none"
        if authorizer is not None:
            self.warn(
                f"{key}.Properties.Auth",
                f"authorizer {authorizer} is not run locally; the route {_JWT_INSTEAD}",
            )
            return "jwt"
        return api.auth

    def _claim(self, key: str, route: Mapping[str, Any]) -> bool:
        """Whether ``route`` is valid and no earlier route serves its path and methods."""
        methods = frozenset({route["method"]})
        if route["method"] not in HTTP_METHODS | {ANY_METHOD}:
            self.warn(key, f"method {route['method']} is not served; the route is skipped")
            return False
        try:
            shape = route_shape(route["path"])
        except ValueError as exc:
            self.warn(f"{key}.Properties.Path", f"{route['path']!r} {exc}; the route is skipped")
            return False
        for other_shape, other_methods, other_key in self._claimed:
            if other_shape == shape and methods & other_methods:
                self.warn(
                    key,
                    f"{route['method']} {route['path']} is already served by {other_key}; skipped",
                )
                return False
        self._claimed.append((shape, methods, key))
        return True

    def _schedule(self, key: str, event_type: str, properties: Mapping[str, Any]) -> list[str]:
        expression = properties.get(_SCHEDULE_EVENTS[event_type])
        if (
            properties.get("Enabled") is False
            or str(properties.get("State", "ENABLED")).upper() == "DISABLED"
        ):
            self.warn(key, "the schedule is disabled; not scheduled")
            return []
        if "Input" in properties:
            self.warn(
                f"{key}.Properties.Input",
                "not passed locally; the function gets the Scheduled Event",
            )
        zone = properties.get("ScheduleExpressionTimezone")
        if zone not in (None, "UTC", "Etc/UTC"):
            self.warn(
                f"{key}.Properties.ScheduleExpressionTimezone",
                f"{zone}: schedules run in UTC locally",
            )
        try:
            parse_schedule(str(expression).strip())
        except ScheduleError as exc:
            self.warn(key, f"{expression!r} is not served locally ({exc}); not scheduled")
            return []
        return [str(expression).strip()]

    # -- what is not served -----------------------------------------------------------------

    def _warn_if_unserved(self, name: str) -> None:
        kind = _type_of(self._resources[name])
        if kind in (FUNCTION, LAYER, REST_API, HTTP_API, SIMPLE_TABLE, TABLE, BUCKET):
            return
        events = _properties(self._resources[name]).get("Events")
        also = (
            f" (with its events: {', '.join(events)})"
            if isinstance(events, dict) and events
            else ""
        )
        self.warn(f"Resources.{name}", f"{kind} is not served locally; skipped{also}")

    # -- values ---------------------------------------------------------------------------------

    def _value(self, key: str, raw: Any, outcome: str = "ignored") -> Any:
        """``raw`` resolved; None (after a warning naming ``key``) when it has no local value."""
        try:
            return resolve(raw, self._scope)
        except Unresolvable as exc:
            self.warn(key, f"{exc}; {outcome}")
            return None

    def _resolved(self, key: str, raw: Any) -> dict[str, Any] | None:
        """A mapping of properties resolved one by one: an unresolvable one is dropped."""
        if not isinstance(raw, dict):
            return None
        resolved = {name: self._value(f"{key}.{name}", value) for name, value in raw.items()}
        return {name: value for name, value in resolved.items() if value is not None}

    def _relative(self, path: str) -> str:
        """A path of the template (relative to its directory) relative to ``base_dir``."""
        absolute = os.path.normpath(self._template_dir / path)
        return Path(os.path.relpath(absolute, self._base_dir)).as_posix()


# --- pure helpers ---------------------------------------------------------------------------------


def _mapping(value: Any, key: str, source: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RoutingConfigError(source, None, key, "must be a mapping")
    return value


def _type_of(resource: Any) -> str:
    return str(resource.get("Type", "")) if isinstance(resource, dict) else ""


def _properties(resource: Any) -> dict[str, Any]:
    properties = resource.get("Properties") if isinstance(resource, dict) else None
    return properties if isinstance(properties, dict) else {}


def _merge_globals(defaults: Any, own: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals merge: the resource's primitives win, maps merge, lists add up."""
    if not isinstance(defaults, dict):
        return dict(own)
    merged = dict(defaults)
    for key, value in own.items():
        merged[key] = _merge_value(merged[key], value) if key in merged else value
    return merged


def _merge_value(default: Any, own: Any) -> Any:
    if is_intrinsic(own) or is_intrinsic(default):
        return own
    if isinstance(default, dict) and isinstance(own, dict):
        return _merge_globals(default, own)
    if isinstance(default, list) and isinstance(own, list):
        return default + own
    return own


def _parameter_value(raw: Any, kind: str) -> object:
    if kind == "CommaDelimitedList" or kind.startswith("List<"):
        return [item.strip() for item in _env_text(raw).split(",")]
    return _env_text(raw)


def _unserved_services(policies: Any) -> set[str]:
    """The services a function's ``Policies`` grant (IAM actions' prefixes and SAM policy
    templates' names) other than those the box serves."""
    found = set()
    for policy in policies if isinstance(policies, list) else [policies]:
        if isinstance(policy, dict) and "Statement" in policy:
            found.update(_action_services(policy["Statement"]))
        elif isinstance(policy, dict) and len(policy) == 1:
            template = next(iter(policy))  # a SAM policy template: DynamoDBCrudPolicy, ...
            if not template.startswith(_SERVED_POLICY_TEMPLATES):
                found.add(template)
    return found


def _action_services(statements: Any) -> set[str]:
    services = set()
    for statement in statements if isinstance(statements, list) else [statements]:
        actions = statement.get("Action", []) if isinstance(statement, dict) else []
        for action in actions if isinstance(actions, list) else [actions]:
            service = str(action).partition(":")[0]
            if service not in _SERVED_SERVICES:
                services.add(service)
    return services


def _env_text(value: Any) -> str:
    """A scalar as CloudFormation passes it on: booleans lower-case, numbers as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _is_local_path(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and not value.startswith("s3://")


def _method(method: str) -> str:
    method = method.strip().upper()
    return ANY_METHOD if method in {"ANY", "*", "X-AMAZON-APIGATEWAY-ANY-METHOD"} else method


def _bucket_name(text: str) -> str:
    """An S3 bucket name made from ``text``: lower case, S3's alphabet, at most 63 long."""
    name = re.sub(r"[^a-z0-9.-]+", "-", text.lower())[:63]
    return name.strip(".-")


def _simple_table(properties: Mapping[str, Any]) -> dict[str, Any]:
    """CreateTable's properties for a SimpleTable (key ``id`` String by default)."""
    key = properties.get("PrimaryKey") or {}
    key_name = str(key.get("Name", "id"))
    key_type = _KEY_TYPES.get(str(key.get("Type", "String")), "S")
    table: dict[str, Any] = {
        "KeySchema": [{"AttributeName": key_name, "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": key_name, "AttributeType": key_type}],
    }
    throughput = properties.get("ProvisionedThroughput")
    if isinstance(throughput, dict):
        table["BillingMode"] = "PROVISIONED"
        table["ProvisionedThroughput"] = throughput
    else:
        table["BillingMode"] = "PAY_PER_REQUEST"
    return table


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


def render(conversion: Conversion, *, source: str) -> str:
    """The routing document as routing.yaml text, headed by where it came from and what
    could not be carried over."""
    header = [f"# Converted from the SAM template {source} by `edgelambda import-sam`."]
    if conversion.warnings:
        header.append("# Not carried over:")
        header.extend(f"#   {warning}" for warning in conversion.warnings)
    body = yaml.safe_dump(conversion.document, sort_keys=False, allow_unicode=True, width=100)
    return "\n".join(header) + "\n" + body
