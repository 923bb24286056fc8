"""What the parts of a SAM import share: the template's values resolved against its scope,
a warning naming the key of each one that has no local value, and SAM's Globals merge (pure).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from edgelambda.cfn_intrinsics import Scope, is_intrinsic, resolve
from edgelambda.errors import Unresolvable

__all__ = ["TemplateValues", "mapping", "merge_globals", "properties_of", "text_of", "type_of"]


class TemplateValues:
    """The template's values, resolved; collects the import's warnings."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.warnings: list[str] = []

    def warn(self, key: str, problem: str) -> None:
        self.warnings.append(f"{key}: {problem}")

    def value(self, key: str, raw: Any, outcome: str = "ignored") -> Any:
        """``raw`` resolved; None (after a warning naming ``key``) when it has no local value."""
        try:
            return resolve(raw, self.scope)
        except Unresolvable as exc:
            self.warn(key, f"{exc}; {outcome}")
            return None

    def resolved(self, key: str, raw: Any) -> dict[str, Any]:
        """A mapping resolved entry by entry: one without a local value is left out."""
        resolved = {name: self.value(f"{key}.{name}", item) for name, item in mapping(raw).items()}
        return {name: item for name, item in resolved.items() if item is not None}

    def number(self, key: str, raw: Any) -> int | None:
        """A whole number (a parameter's text such as "30" too); None, warned, otherwise."""
        value = self.value(key, raw)
        if value is None:
            return None
        number = _as_number(value)
        if number is None or number <= 0 or number != int(number):
            self.warn(key, f"{value!r} is not a positive whole number; ignored")
            return None
        return int(number)

    def flag(self, key: str, raw: Any, *, default: bool) -> bool:
        """A boolean, or its text ("false"), as CloudFormation reads one."""
        value = self.value(key, raw)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false"}:
            return value.lower() == "true"
        if value is not None:
            self.warn(key, f"{value!r} is not true or false; {default} assumed")
        return default


def _as_number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        number = float(str(value))
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def mapping(value: Any) -> dict[str, Any]:
    """``value`` if it is a mapping, else an empty one."""
    return value if isinstance(value, dict) else {}


def type_of(resource: Any) -> str:
    return str(mapping(resource).get("Type", ""))


def properties_of(resource: Any) -> dict[str, Any]:
    return mapping(mapping(resource).get("Properties"))


def text_of(value: Any) -> str:
    """A scalar as CloudFormation passes it on: booleans lower-case, numbers as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def merge_globals(defaults: Any, own: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals merge: the resource's primitives win, maps merge, lists add up."""
    merged = dict(mapping(defaults))
    for key, value in own.items():
        merged[key] = _merge_value(merged[key], value) if key in merged else value
    return merged


def _merge_value(default: Any, own: Any) -> Any:
    if is_intrinsic(own) or is_intrinsic(default):
        return own
    if isinstance(default, dict) and isinstance(own, dict):
        return merge_globals(default, own)
    if isinstance(default, list) and isinstance(own, list):
        return default + own
    return own
