"""X-Ray style trace ids (``X-Amzn-Trace-Id``): kept when a caller sends one, created
otherwise, and passed to functions as ``Lambda-Runtime-Trace-Id``."""

from __future__ import annotations

import re

from edgelambda import ids

# Root=1-<8 hex epoch seconds>-<24 hex>, as X-Ray writes it.
_ROOT = re.compile(r"(?:^|;)\s*Root=(1-[0-9a-fA-F]{8}-[0-9a-fA-F]{24})\s*(?:;|$)")


def new_trace_header(now_s: float) -> str:
    """A fresh, unsampled trace header for a request that arrived without one."""
    root = f"1-{int(now_s):08x}-{ids.token_hex(12)}"
    return f"Root={root};Parent={ids.token_hex(8)};Sampled=0"


def trace_header(incoming: str | None, now_s: float) -> str:
    """The caller's header when it carries a valid root; a new one otherwise."""
    if incoming and len(incoming) <= 512 and _ROOT.search(incoming):
        return incoming.strip()
    return new_trace_header(now_s)


def trace_root(header: str) -> str | None:
    """The ``Root=`` part of a trace header, the id that links a chain of calls."""
    found = _ROOT.search(header)
    return found.group(1) if found else None
