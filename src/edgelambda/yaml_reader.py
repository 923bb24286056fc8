"""A typed reader of a YAML document that keeps line numbers (pure).

Values are read from the composed node tree, not from PyYAML's loaded objects, so that every
error names the 1-based line and the dotted key, and duplicate keys (which the loader would
silently collapse) are errors too. :mod:`edgelambda.routing_file` reads routing.yaml with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from edgelambda.errors import RoutingConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Item:
    """A mapping entry: its dotted key and the nodes of the key and the value."""

    key: str
    key_node: Node
    node: Node


def node_at(items: Mapping[str, Item], name: str) -> Node | None:
    item = items.get(name)
    return item.node if item is not None else None


def line_of(node: Node) -> int:
    return node.start_mark.line + 1


def compose(text: str, source: str) -> Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise syntax_error(exc, source) from exc


def syntax_error(exc: yaml.YAMLError, source: str) -> RoutingConfigError:
    """The error naming ``source`` and the line for YAML that does not parse."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        return RoutingConfigError(source, line, "(syntax)", exc.problem or str(exc))
    return RoutingConfigError(source, None, "(syntax)", str(exc))


def is_null(node: Node | None) -> bool:
    return node is None or node.tag == "tag:yaml.org,2002:null"


class Reader:
    """Typed access to a composed YAML tree; every failure names the file, line and key."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._constructor = SafeConstructor()

    def error(self, node: Node | None, key: str, problem: str) -> RoutingConfigError:
        """The error to raise for ``problem`` at ``node`` (the line) under ``key``."""
        line = line_of(node) if node is not None else None
        return RoutingConfigError(self.source, line, key, problem)

    def scalar(self, node: Node, key: str) -> object:
        """The Python value of a scalar node; collections come back as None."""
        if not isinstance(node, ScalarNode):
            return None
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:  # e.g. an unknown explicit tag
            raise self.error(node, key, str(exc).splitlines()[0]) from exc

    def value(self, item: Item) -> object:
        """The plain Python value of any node (lists and mappings included)."""
        try:
            return self._constructor.construct_object(item.node, deep=True)
        except yaml.YAMLError as exc:
            raise self.error(item.node, item.key, str(exc).splitlines()[0]) from exc

    def mapping(
        self, node: Node | None, key: str, allowed: frozenset[str] | None = None
    ) -> dict[str, Item]:
        """Entries of a mapping (null counts as empty), rejecting duplicate and unknown keys."""
        if node is None or is_null(node):
            return {}
        if not isinstance(node, MappingNode):
            raise self.error(node, key, "must be a mapping")
        items: dict[str, Item] = {}
        for key_node, value_node in node.value:
            name = self._key_name(key, key_node)
            dotted = f"{key}.{name}" if key else name
            if name in items:
                first = line_of(items[name].key_node)
                raise self.error(key_node, dotted, f"duplicate key (first defined on line {first})")
            if allowed is not None and name not in allowed:
                raise self.error(
                    key_node, dotted, f"unknown key; expected one of {listing(allowed)}"
                )
            items[name] = Item(dotted, key_node, value_node)
        return items

    def _key_name(self, parent: str, key_node: Node) -> str:
        name = self.scalar(key_node, parent or "(top level)")
        if not isinstance(name, str):
            # Unquoted `yes`, `1` or `null` as a key are not names in YAML; say so.
            raise self.error(key_node, parent or "(top level)", f"key {name!r} must be a string")
        return name

    def string(self, item: Item) -> str:
        value = self.scalar(item.node, item.key)
        if not isinstance(value, str) or not value.strip():
            raise self.error(item.node, item.key, "must be a non-empty string")
        return value

    def positive_number(self, item: Item) -> float:
        value = self.non_negative_number(item, problem="must be a positive number")
        if value == 0:
            raise self.error(item.node, item.key, "must be a positive number")
        return value

    def non_negative_number(
        self, item: Item, problem: str = "must be a number, 0 or more"
    ) -> float:
        value = self.scalar(item.node, item.key)
        # bool is an int subclass; "timeout: yes" is a mistake, not 1 second.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(item.node, item.key, problem)
        if not 0 <= value < math.inf:  # also rules out YAML's .nan and .inf
            raise self.error(item.node, item.key, problem)
        return float(value)

    def integer(self, item: Item, *, minimum: int) -> int:
        value = self.scalar(item.node, item.key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise self.error(item.node, item.key, f"must be {wanted}")
        return value

    def positive_int(self, item: Item) -> int:
        return self.integer(item, minimum=1)

    def strings(self, item: Item) -> list[tuple[str, Node]]:
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


def listing(names: frozenset[str]) -> str:
    return ", ".join(sorted(names))


def optional(items: Mapping[str, Item], name: str, read: Callable[[Item], T]) -> T | None:
    item = items.get(name)
    return read(item) if item is not None else None


def first(*values: T | None, default: T) -> T:
    for value in values:
        if value is not None:
            return value
    return default
