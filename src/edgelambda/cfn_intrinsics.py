"""CloudFormation's intrinsic functions, evaluated locally (pure).

A template's values may be computed: ``{"Ref": "Table"}``, ``{"Fn::Sub": "${AWS::StackName}-x"}``,
``{"Fn::If": [...]}``. :func:`resolve` evaluates them against a :class:`Scope` (the parameters'
values, the pseudo-parameters, what each local resource's ``Ref`` and attributes give, the
conditions) and raises :class:`~edgelambda.errors.Unresolvable` for what has no local value:
``Fn::ImportValue`` (another stack's export), a parameter without a value, a resource the box
does not serve. The semantics follow AWS's "Intrinsic function reference" and "Pseudo
parameters reference" (docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgelambda.errors import Unresolvable

__all__ = ["NO_VALUE", "Scope", "is_intrinsic", "pseudo_parameters", "resolve", "test_condition"]


class _NoValue:
    """``AWS::NoValue``: the property it is given to is removed."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def pseudo_parameters(*, stack: str, region: str, account_id: str) -> dict[str, object]:
    """The pseudo-parameters' values for a stack named ``stack``."""
    return {
        "AWS::StackName": stack,
        "AWS::Region": region,
        "AWS::AccountId": account_id,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::StackId": f"arn:aws:cloudformation:{region}:{account_id}:stack/{stack}/local",
        "AWS::NotificationARNs": [],
        "AWS::NoValue": NO_VALUE,
    }


@dataclass(frozen=True)
class Scope:
    """What names mean while resolving: parameter and pseudo-parameter values, each local
    resource's ``Ref`` value and attributes, and why other names have no value."""

    values: Mapping[str, object]  # parameters and pseudo-parameters
    refs: Mapping[str, object] = field(default_factory=dict)  # logical id -> Ref value
    attributes: Mapping[tuple[str, str], object] = field(default_factory=dict)
    unknown: Mapping[str, str] = field(default_factory=dict)  # name -> why it has no value
    conditions: Mapping[str, object] = field(default_factory=dict)  # name -> definition
    mappings: Mapping[str, Any] = field(default_factory=dict)

    def ref(self, name: str) -> object:
        if name in self.values:
            return self.values[name]
        if name in self.refs:
            return self.refs[name]
        raise Unresolvable(self.unknown.get(name, f"{name} is not a parameter or resource"))

    def attribute(self, resource: str, name: str) -> object:
        if (resource, name) in self.attributes:
            return self.attributes[(resource, name)]
        if resource in self.unknown:
            raise Unresolvable(self.unknown[resource])
        raise Unresolvable(f"{resource}.{name} has no local value")


def is_intrinsic(value: object) -> bool:
    """Whether ``value`` is one intrinsic function call (a one-key mapping naming one)."""
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _FUNCTIONS


def resolve(value: Any, scope: Scope) -> Any:
    """``value`` with every intrinsic function evaluated; a mapping entry or list item that
    comes out as ``AWS::NoValue`` is removed. Raises Unresolvable."""
    if isinstance(value, dict):
        if is_intrinsic(value):
            ((name, argument),) = value.items()
            return _call(name, argument, scope)
        resolved = {key: resolve(item, scope) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}
    if isinstance(value, list):
        return [item for item in (resolve(v, scope) for v in value) if item is not NO_VALUE]
    return value


def test_condition(name: str, scope: Scope) -> bool:
    """The value of the template's condition ``name``."""
    if name not in scope.conditions:
        raise Unresolvable(f"no condition named {name}")
    try:
        return _truth(resolve(scope.conditions[name], scope))
    except RecursionError:  # a condition that names itself, through others or directly
        raise Unresolvable(f"condition {name} refers to itself") from None


def _call(name: str, argument: object, scope: Scope) -> Any:
    """One intrinsic function; arguments of the wrong shape have no value either."""
    try:
        return _FUNCTIONS[name](argument, scope)
    except Unresolvable:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        raise Unresolvable(f"{name} with {argument!r}: {exc}") from exc


def _truth(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    raise Unresolvable(f"{value!r} is not a condition value (true or false)")


def _text(value: object, what: str) -> str:
    """A scalar as CloudFormation turns it into text (numbers too; booleans lower-case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise Unresolvable(f"{what} must be text, not {value!r}")


def _arguments(argument: object, count: int, function: str) -> list[Any]:
    if not isinstance(argument, list) or len(argument) != count:
        raise Unresolvable(f"{function} takes a list of {count}")
    return argument


def _ref(argument: object, scope: Scope) -> object:
    return scope.ref(_text(resolve(argument, scope), "Ref"))


def _get_att(argument: object, scope: Scope) -> object:
    parts = resolve(argument, scope)
    if isinstance(parts, str):  # the long form may name "Resource.Attribute" too
        parts = parts.split(".", 1)
    resource, name = (_text(part, "Fn::GetAtt") for part in _arguments(parts, 2, "Fn::GetAtt"))
    return scope.attribute(resource, name)


def _sub(argument: object, scope: Scope) -> str:
    template, variables = (
        (argument, {}) if not isinstance(argument, list) else _arguments(argument, 2, "Fn::Sub")
    )
    if not isinstance(variables, dict):
        raise Unresolvable("Fn::Sub's variables must be a mapping")
    local = {key: resolve(item, scope) for key, item in variables.items()}

    def value_of(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):  # ${!Literal} writes ${Literal}
            return f"${{{name[1:]}}}"
        if name in local:
            return _text(local[name], name)
        if "." in name and not name.startswith("AWS::"):
            resource, _, attribute = name.partition(".")
            return _text(scope.attribute(resource, attribute), name)
        return _text(scope.ref(name), name)

    return _SUB_VARIABLE.sub(value_of, _text(template, "Fn::Sub"))


def _join(argument: object, scope: Scope) -> str:
    separator, items = _arguments(resolve(argument, scope), 2, "Fn::Join")
    return _text(separator, "Fn::Join").join(_text(item, "Fn::Join") for item in items)


def _select(argument: object, scope: Scope) -> object:
    index, items = _arguments(resolve(argument, scope), 2, "Fn::Select")
    position = int(_text(index, "Fn::Select"))
    if not isinstance(items, list) or not 0 <= position < len(items):
        raise Unresolvable(f"Fn::Select index {position} is out of range")
    return items[position]


def _split(argument: object, scope: Scope) -> list[str]:
    separator, text = _arguments(resolve(argument, scope), 2, "Fn::Split")
    return _text(text, "Fn::Split").split(_text(separator, "Fn::Split"))


def _if(argument: object, scope: Scope) -> object:
    condition, when_true, when_false = _arguments(argument, 3, "Fn::If")
    chosen = when_true if test_condition(_text(condition, "Fn::If"), scope) else when_false
    return resolve(chosen, scope)


def _equals(argument: object, scope: Scope) -> bool:
    left, right = _arguments(resolve(argument, scope), 2, "Fn::Equals")
    return _text(left, "Fn::Equals") == _text(right, "Fn::Equals")


def _not(argument: object, scope: Scope) -> bool:
    (value,) = _arguments(argument, 1, "Fn::Not")
    return not _truth(resolve(value, scope))


def _and(argument: object, scope: Scope) -> bool:
    return all(_truth(resolve(value, scope)) for value in _conditions(argument, "Fn::And"))


def _or(argument: object, scope: Scope) -> bool:
    return any(_truth(resolve(value, scope)) for value in _conditions(argument, "Fn::Or"))


def _conditions(argument: object, function: str) -> list[Any]:
    if not isinstance(argument, list) or not 2 <= len(argument) <= 10:
        raise Unresolvable(f"{function} takes a list of 2 to 10 conditions")
    return argument


def _condition(argument: object, scope: Scope) -> bool:
    return test_condition(_text(argument, "Condition"), scope)


def _find_in_map(argument: object, scope: Scope) -> object:
    keys = [
        _text(key, "Fn::FindInMap")
        for key in _arguments(resolve(argument, scope), 3, "Fn::FindInMap")
    ]
    found: Any = scope.mappings
    for key in keys:
        if not isinstance(found, dict) or key not in found:
            raise Unresolvable(f"Fn::FindInMap: no {'.'.join(keys)} in Mappings")
        found = found[key]
    return found


def _base64(argument: object, scope: Scope) -> str:
    return base64.b64encode(_text(resolve(argument, scope), "Fn::Base64").encode()).decode()


def _import_value(argument: object, scope: Scope) -> object:
    try:
        name = _text(resolve(argument, scope), "Fn::ImportValue")
    except Unresolvable:
        name = "a value"
    raise Unresolvable(f"Fn::ImportValue of {name}: another stack's export has no local value")


def _no_local_value(function: str) -> Callable[[object, Scope], object]:
    def fail(argument: object, scope: Scope) -> object:
        raise Unresolvable(f"{function} has no local value")

    return fail


_FUNCTIONS: dict[str, Callable[[Any, Scope], Any]] = {
    "Ref": _ref,
    "Fn::GetAtt": _get_att,
    "Fn::Sub": _sub,
    "Fn::Join": _join,
    "Fn::Select": _select,
    "Fn::Split": _split,
    "Fn::If": _if,
    "Fn::Equals": _equals,
    "Fn::Not": _not,
    "Fn::And": _and,
    "Fn::Or": _or,
    "Condition": _condition,
    "Fn::FindInMap": _find_in_map,
    "Fn::ImportValue": _import_value,
    "Fn::Base64": _base64,
    "Fn::GetAZs": _no_local_value("Fn::GetAZs"),
    "Fn::Cidr": _no_local_value("Fn::Cidr"),
    "Fn::Length": _no_local_value("Fn::Length"),
    "Fn::ToJsonString": _no_local_value("Fn::ToJsonString"),
    "Fn::Transform": _no_local_value("Fn::Transform"),
}
