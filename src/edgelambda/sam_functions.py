"""A SAM ``AWS::Serverless::Function`` as a routing.yaml function (pure): its code (a
directory, inline code or an image), limits, environment and layers, with ``Globals.Function``
merged in as SAM merges it; what has no local meaning is warned about.

Lambda's own rules followed here: a 3 s timeout and 128 MB unless set; CloudFormation writes
inline code to a file named ``index``, so its handler is ``index.<function>``
(``AWS::Lambda::Function Code.ZipFile``); an image function has no layers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgelambda.errors import RoutingConfigError
from edgelambda.routing import ENV_NAME, IMAGE_DIR_PREFIXES
from edgelambda.sam_values import TemplateValues, mapping, merge_globals, properties_of, text_of

__all__ = ["FunctionReader", "Layers"]

LAMBDA_DEFAULT_TIMEOUT_S = 3
LAMBDA_DEFAULT_MEMORY_MB = 128
INLINE_HANDLER_MODULE = "index"
_FUNCTION_KEYS = frozenset(
    {
        "Handler", "Runtime", "CodeUri", "InlineCode", "Timeout", "MemorySize", "Environment",
        "Architectures", "ReservedConcurrentExecutions", "ProvisionedConcurrencyConfig",
        "Layers", "PackageType", "ImageUri", "ImageConfig", "Events", "Policies",
    }
)  # fmt: skip
# Properties with no local meaning that need no warning: deployment, IAM, tracing (the box
# traces every invocation), tags, descriptions.
_QUIET_FUNCTION_KEYS = frozenset(
    {
        "AutoPublishAlias", "AutoPublishCodeSha256", "AutoPublishAliasAllProperties",
        "CodeSigningConfigArn", "DeploymentPreference", "Description", "FunctionName",
        "KmsKeyArn", "LoggingConfig", "PermissionsBoundary", "PropagateTags", "Role",
        "RolePath", "RuntimeManagementConfig", "SnapStart", "Tags", "Tracing",
        "VersionDescription", "VpcConfig", "EphemeralStorage", "AssumeRolePolicyDocument",
    }
)  # fmt: skip
# The AWS services a function finds in the box (IAM action prefixes, SAM policy templates).
_SERVED_SERVICES = frozenset({"dynamodb", "s3", "lambda", "logs", "xray", "cloudwatch"})
_SERVED_POLICY_TEMPLATES = ("DynamoDB", "S3", "Lambda", "CloudWatch", "AWSXray")


@dataclass(frozen=True)
class Layers:
    """The template's layers: local ones by ARN (their path), and why the others were
    skipped."""

    paths: Mapping[str, str] = field(default_factory=dict)
    skipped: Mapping[str, str] = field(default_factory=dict)


@dataclass
class FunctionReader:
    """Reads functions; ``Globals.Function`` is checked and resolved once."""

    values: TemplateValues
    source: str
    shared: Mapping[str, Any]  # Globals.Function
    layers: Layers
    relative: Callable[[str], str]  # a template path relative to where routing.yaml goes
    host_architecture: str
    _environment: dict[str, str] = field(init=False)
    _layer_paths: list[str] = field(init=False)
    _rest: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        key, rest = "Globals.Function", dict(self.shared)
        self._warn_unknown(key, rest)
        self._environment = self._env(f"{key}.Environment", rest.pop("Environment", None))
        self._layer_paths = self._function_layers(f"{key}.Layers", rest.pop("Layers", None))
        self._rest = rest

    def read(self, name: str, resource: Mapping[str, Any]) -> tuple[dict[str, Any], Any] | None:
        """The function's routing.yaml entry and its (unread) Events; None when it cannot be
        served (warned)."""
        key, own = f"Resources.{name}.Properties", properties_of(resource)
        self._warn_unknown(key, own)
        properties = merge_globals(self._rest, own)
        metadata = self.values.resolved(f"Resources.{name}.Metadata", resource.get("Metadata"))
        spec = self._code(key, properties, metadata)
        if spec is None:
            return None
        spec.update(self._limits(key, properties))
        self._architecture(key, properties.get("Architectures"))
        self._policies(f"{key}.Policies", properties.get("Policies"))
        environment = {
            **{k: v for k, v in self._environment.items() if k not in _variables(own)},
            **self._env(f"{key}.Environment", own.get("Environment")),
        }
        layers = [*self._layer_paths, *self._function_layers(f"{key}.Layers", own.get("Layers"))]
        if layers and "image" in spec:  # AWS refuses layers on an image function too
            self.values.warn(f"{key}.Layers", "an image function has no layers; ignored")
            layers = []
        spec.update(
            {part: v for part, v in (("environment", environment), ("layers", layers)) if v}
        )
        return spec, properties.get("Events")

    def _warn_unknown(self, key: str, properties: Mapping[str, Any]) -> None:
        for unknown in sorted(properties.keys() - _FUNCTION_KEYS - _QUIET_FUNCTION_KEYS):
            self.values.warn(f"{key}.{unknown}", "not applied locally")

    # -- code --------------------------------------------------------------------------------

    def _code(
        self, key: str, properties: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Handler, runtime and where the code is: a directory, inline code or an image."""
        if properties.get("PackageType") == "Image":
            return self._image(key, properties, metadata)
        if "Handler" not in properties or "Runtime" not in properties:
            raise RoutingConfigError(self.source, None, key, "a function needs Handler and Runtime")
        handler = self.values.value(f"{key}.Handler", properties["Handler"], "skipped")
        runtime = self.values.value(f"{key}.Runtime", properties["Runtime"], "skipped")
        if handler is None or runtime is None:
            return None
        for name, value in (("Handler", handler), ("Runtime", runtime)):
            if not isinstance(value, str):
                raise RoutingConfigError(self.source, None, f"{key}.{name}", "must be text")
        spec: dict[str, Any] = {"handler": str(handler), "runtime": str(runtime)}
        if "InlineCode" in properties:
            return self._inline(key, spec, properties["InlineCode"])
        code_uri = self.values.value(f"{key}.CodeUri", properties.get("CodeUri", "."), "skipped")
        if not _is_local_path(code_uri):
            if code_uri is not None:
                self.values.warn(f"{key}.CodeUri", "not a local directory; the function is skipped")
            return None
        return spec | {"code": self.relative(str(code_uri))}

    def _inline(self, key: str, spec: dict[str, Any], raw: Any) -> dict[str, Any] | None:
        code = self.values.value(f"{key}.InlineCode", raw, "the function is skipped")
        if code is None:
            return None
        if not spec["runtime"].startswith("python"):
            self.values.warn(f"{key}.InlineCode", f"served for Python only, not {spec['runtime']}")
            return None
        if spec["handler"].rpartition(".")[0] != INLINE_HANDLER_MODULE:
            self.values.warn(
                f"{key}.Handler",
                f"inline code is written to {INLINE_HANDLER_MODULE}.py, so the handler must be "
                f"{INLINE_HANDLER_MODULE}.<function>; the function is skipped",
            )
            return None
        return spec | {"inline_code": text_of(code)}

    def _image(
        self, key: str, properties: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """A container-image function: the Dockerfile in ``Metadata``, or ``ImageUri``."""
        image_uri = self.values.value(f"{key}.ImageUri", properties.get("ImageUri"))
        spec: dict[str, Any] = {}
        if metadata.get("DockerContext"):
            spec["image"] = _image_directory(self.relative(str(metadata["DockerContext"])))
            dockerfile = str(metadata.get("Dockerfile", "Dockerfile"))
            if dockerfile != "Dockerfile":
                spec["dockerfile"] = dockerfile
            if metadata.get("DockerBuildArgs"):
                where = key.removesuffix(".Properties")
                self.values.warn(f"{where}.Metadata.DockerBuildArgs", "not passed locally")
        elif isinstance(image_uri, str):
            spec["image"] = image_uri
        else:
            self.values.warn(
                key, "an Image function needs ImageUri or Metadata.DockerContext; skipped"
            )
            return None
        config = mapping(self.values.value(f"{key}.ImageConfig", properties.get("ImageConfig")))
        command = config.get("Command")
        if isinstance(command, list) and command:
            spec["handler"] = str(command[0])
        for unknown in sorted(set(config) - {"Command"}):
            self.values.warn(f"{key}.ImageConfig.{unknown}", "not applied locally")
        return spec

    # -- limits, architecture, policies --------------------------------------------------------

    def _limits(self, key: str, properties: Mapping[str, Any]) -> dict[str, Any]:
        number = self.values.number
        timeout = properties.get("Timeout", LAMBDA_DEFAULT_TIMEOUT_S)
        memory = properties.get("MemorySize", LAMBDA_DEFAULT_MEMORY_MB)
        limits: dict[str, Any] = {
            "timeout": number(f"{key}.Timeout", timeout) or LAMBDA_DEFAULT_TIMEOUT_S,
            "memory": number(f"{key}.MemorySize", memory) or LAMBDA_DEFAULT_MEMORY_MB,
        }
        reserved = properties.get("ReservedConcurrentExecutions")
        if reserved is not None and (
            cap := number(f"{key}.ReservedConcurrentExecutions", reserved)
        ):
            limits["max_concurrency"] = cap
        provisioned = mapping(properties.get("ProvisionedConcurrencyConfig"))
        if "ProvisionedConcurrentExecutions" in provisioned:
            warm_key = f"{key}.ProvisionedConcurrencyConfig.ProvisionedConcurrentExecutions"
            warm = number(warm_key, provisioned["ProvisionedConcurrentExecutions"])
            if warm is not None:
                limits.update(_warm(warm, limits.get("max_concurrency")))
        return limits

    def _architecture(self, key: str, raw: Any) -> None:
        architectures = self.values.value(f"{key}.Architectures", raw)
        host = self.host_architecture
        if isinstance(architectures, list) and any(arch != host for arch in architectures):
            wanted = ", ".join(map(str, architectures))
            self.values.warn(
                f"{key}.Architectures", f"{wanted}: functions run on this machine's {host}"
            )

    def _policies(self, key: str, policies: Any) -> None:
        """Warn of the AWS services a function's policies grant that the box does not run:
        the function will reach for them."""
        services = sorted(_unserved_services(policies))
        if services:
            self.values.warn(key, f"grants {', '.join(services)}, which the box does not serve")

    # -- environment and layers ------------------------------------------------------------------

    def _env(self, key: str, environment: Any) -> dict[str, str]:
        if environment is None:
            return {}
        variables = mapping(environment).get("Variables")
        if not isinstance(variables, dict):
            self.values.warn(key, "needs Variables, a mapping; ignored")
            return {}
        result = {}
        for name, raw in variables.items():
            value = self.values.value(f"{key}.Variables.{name}", raw, "left unset")
            if value is None:
                continue
            if not ENV_NAME.fullmatch(str(name)) or isinstance(value, dict | list):
                self.values.warn(
                    f"{key}.Variables.{name}", "not a variable name and text; left unset"
                )
                continue
            result[str(name)] = text_of(value)
        return result

    def _function_layers(self, key: str, raw: Any) -> list[str]:
        if raw is None:
            return []
        layers = self.values.value(key, raw, "no layers")
        if not isinstance(layers, list):
            if layers is not None:
                self.values.warn(key, "must be a list of layers; none used")
            return []
        paths = []
        for index, arn in enumerate(map(str, layers)):
            if arn in self.layers.paths:
                paths.append(self.layers.paths[arn])
            else:
                why = self.layers.skipped.get(arn, f"{arn} is not a layer of this template")
                self.values.warn(f"{key}[{index}]", f"{why}; skipped")
        return paths


def _image_directory(path: str) -> str:
    """A directory as routing.yaml's ``image`` says one (``./x``, not the reference ``x``)."""
    if path == ".":
        return "./"
    return path if path.startswith(IMAGE_DIR_PREFIXES) else f"./{path}"


def _variables(properties: Mapping[str, Any]) -> dict[str, Any]:
    return mapping(mapping(properties.get("Environment")).get("Variables"))


def _warm(warm: int, cap: int | None) -> dict[str, int]:
    """min_warm for provisioned concurrency, within the reserved cap (or raising the
    default one to hold it)."""
    if cap is None:
        return {"min_warm": warm, "max_concurrency": max(warm, 10)}
    return {"min_warm": min(warm, cap)}


def _is_local_path(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and not value.startswith("s3://")


def _unserved_services(policies: Any) -> set[str]:
    """The services a function's ``Policies`` grant (IAM actions' prefixes and SAM policy
    templates' names) other than those the box serves."""
    found = set()
    for policy in policies if isinstance(policies, list) else [policies]:
        if isinstance(policy, dict) and "Statement" in policy:
            found.update(_action_services(policy["Statement"]))
        elif isinstance(policy, dict) and len(policy) == 1:
            template = str(next(iter(policy)))  # a SAM policy template: DynamoDBCrudPolicy, ...
            if not template.startswith(_SERVED_POLICY_TEMPLATES):
                found.add(template)
    return found


def _action_services(statements: Any) -> set[str]:
    services = set()
    for statement in statements if isinstance(statements, list) else [statements]:
        actions = mapping(statement).get("Action", [])
        for action in actions if isinstance(actions, list) else [actions]:
            service = str(action).partition(":")[0]
            if service not in _SERVED_SERVICES:
                services.add(service)
    return services
