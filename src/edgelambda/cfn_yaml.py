"""Reading a CloudFormation (SAM) template's YAML into plain values (pure).

CloudFormation's YAML differs from plain YAML in two ways that real templates rely on:

- Short-form intrinsic functions are tags: ``!Ref X``, ``!Sub "..."``, ``!GetAtt A.B``. They
  are read here as the long form, ``{"Ref": "X"}``, ``{"Fn::Sub": "..."}``,
  ``{"Fn::GetAtt": ["A", "B"]}``, so the rest of the import sees one shape (AWS's
  "Intrinsic function reference": each short form is the long form's ``Fn::`` key).
- Values stay what CloudFormation makes of them: an unquoted ``2010-09-09`` is the text
  ``2010-09-09`` (CloudFormation has no date type), not the date ``yaml.safe_load`` builds;
  ``Off`` and ``0755`` are text, not YAML 1.1's boolean and octal number.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from edgelambda.errors import RoutingConfigError
from edgelambda.yaml_reader import syntax_error

__all__ = ["load_template"]

# The short forms CloudFormation accepts, each the long form with "Fn::" before it, except
# !Ref and !Condition, whose long forms have no prefix.
_FUNCTIONS = (
    "And",
    "Base64",
    "Cidr",
    "Equals",
    "FindInMap",
    "GetAZs",
    "If",
    "ImportValue",
    "Join",
    "Length",
    "Not",
    "Or",
    "Select",
    "Split",
    "Sub",
    "ToJsonString",
    "Transform",
)
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"


class _TemplateLoader(yaml.SafeLoader):
    """SafeLoader with CloudFormation's tags and without the timestamp type."""


# YAML 1.1's implicit types that CloudFormation does not read so go, and YAML 1.2's core
# ones replace them: no timestamps; booleans are true/false only (1.1's `on`, `off`, `yes`,
# `no` would turn an event named `Off` into the key False); integers and floats are decimal
# (1.1's `0755` octal and `12:30` base-60 stay text). Null stays.
_DROPPED = (_TIMESTAMP_TAG, _BOOL_TAG, _INT_TAG, _FLOAT_TAG)
_TemplateLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_TemplateLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_TemplateLoader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_TemplateLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?[0-9]+[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _construct_plain(loader: yaml.SafeLoader, node: Node) -> Any:
    if isinstance(node, ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, SequenceNode):
        return loader.construct_sequence(node, deep=True)
    assert isinstance(node, MappingNode)
    return loader.construct_mapping(node, deep=True)


def _function(long_name: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: Node) -> dict[str, Any]:
        return {long_name: _construct_plain(loader, node)}

    return construct


def _get_att(loader: yaml.SafeLoader, node: Node) -> dict[str, Any]:
    """``!GetAtt Resource.Attribute`` (a scalar, split at the first dot) or a list of two."""
    value = _construct_plain(loader, node)
    if isinstance(value, str):
        resource, _, attribute = value.partition(".")
        value = [resource, attribute]
    return {"Fn::GetAtt": value}


_TemplateLoader.add_constructor("!Ref", _function("Ref"))
_TemplateLoader.add_constructor("!Condition", _function("Condition"))
_TemplateLoader.add_constructor("!GetAtt", _get_att)
for _name in _FUNCTIONS:
    _TemplateLoader.add_constructor(f"!{_name}", _function(f"Fn::{_name}"))


def load_template(text: str, source: str) -> dict[str, Any]:
    """The template as plain values; :class:`RoutingConfigError` names ``source`` and the
    line when the YAML is broken or is not a mapping."""
    try:
        document = yaml.load(text, Loader=_TemplateLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise syntax_error(exc, source) from exc
    if not isinstance(document, dict):
        raise RoutingConfigError(source, None, "(top level)", "a template must be a mapping")
    return document
