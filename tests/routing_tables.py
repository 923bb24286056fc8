"""Routing tables written as routing.yaml text, shared by the tests of route matching
(`test_routing`) and of reading the file (`test_routing_file`)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from edgelambda.routing import RoutingTable
from edgelambda.routing_file import parse_routing

BASE_DIR = Path("/srv/app")
CORS_FUNCTIONS = "functions:\n  f: {handler: a.b}\nroutes:\n"


def parse(text: str) -> RoutingTable:
    return parse_routing(textwrap.dedent(text), source="routing.yaml", base_dir=BASE_DIR)


def table_of(*routes: str) -> RoutingTable:
    """A table with one function and ``routes`` given as "METHOD /path" (methods split by |)."""
    listed = "".join(
        f"  - {{path: '{path}', method: [{method.replace('|', ', ')}], function: f}}\n"
        for method, path in (route.split(" ", 1) for route in routes)
    )
    return parse(f"functions:\n  f: {{handler: app.handler}}\nroutes:\n{listed}")
