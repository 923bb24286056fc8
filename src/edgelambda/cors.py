"""Per-route CORS as API Gateway offers it: the policy value and the headers it implies.

Pure and framework-free: the HTTP layer asks :func:`is_preflight`, finds the policy with
:meth:`~edgelambda.routing.RoutingTable.preflight` (or from the matched route's ``cors``), and
adds the header pairs these functions return. A preflight is answered here, never by the
function, as API Gateway does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "ANY_ORIGIN",
    "DEFAULT_ALLOW_HEADERS",
    "DEFAULT_MAX_AGE_S",
    "CorsPolicy",
    "allowed_origin",
    "is_preflight",
    "normalize_origin",
    "preflight_headers",
    "response_headers",
]

ANY_ORIGIN = "*"
# API Gateway's console default for "Enable CORS".
DEFAULT_ALLOW_HEADERS = (
    "Content-Type",
    "Authorization",
    "X-Amz-Date",
    "X-Api-Key",
    "X-Amz-Security-Token",
    "X-Amzn-Trace-Id",
)
DEFAULT_MAX_AGE_S = 600

_ORIGIN = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://"
    r"(?P<host>\[[0-9a-f:.]+\]|[a-z0-9-]+(?:\.[a-z0-9-]+)*)"
    r"(?::(?P<port>[1-9][0-9]{0,4}))?"
)
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_MAX_PORT = 65535


@dataclass(frozen=True)
class CorsPolicy:
    """Which origins may call a route from a browser, and what its preflight answers."""

    origins: frozenset[str]  # frozenset({"*"}) for any origin; else serialized origins
    allow_headers: tuple[str, ...] = DEFAULT_ALLOW_HEADERS
    max_age_s: int = DEFAULT_MAX_AGE_S

    @property
    def is_any_origin(self) -> bool:
        """True when every origin is allowed (``Access-Control-Allow-Origin: *``)."""
        return ANY_ORIGIN in self.origins


def normalize_origin(text: str) -> str | None:
    """``text`` as a browser serializes an origin, or None if it is not ``scheme://host[:port]``.

    Browsers send the scheme and host in lower case and leave out the scheme's default port,
    so a configured ``https://App.example.com:443`` could never match as written.
    """
    found = _ORIGIN.fullmatch(text.strip().lower())
    if found is None:
        return None
    scheme, host, port = found.group("scheme", "host", "port")
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    if int(port) > _MAX_PORT:
        return None
    return f"{scheme}://{host}:{port}"


def allowed_origin(policy: CorsPolicy, origin: str | None) -> str | None:
    """The ``Access-Control-Allow-Origin`` value for a request from ``origin``, or None.

    ``"*"`` for an any-origin policy; the request's own origin when the policy lists it (a
    listed policy must echo one origin: the header cannot carry a list).
    """
    if policy.is_any_origin:
        return ANY_ORIGIN
    if origin is not None and origin in policy.origins:
        return origin
    return None


def preflight_headers(
    policy: CorsPolicy,
    *,
    origin: str | None,
    allowed_methods: frozenset[str],
) -> tuple[tuple[str, str], ...]:
    """Headers of the 204 answer to a preflight; empty when ``origin`` is not allowed.

    ``allowed_methods`` usually comes from :meth:`RoutingTable.preflight`; OPTIONS is added.
    Whatever ``Access-Control-Request-Headers`` asked, the answer lists the policy's headers:
    that keeps it cacheable for ``max_age_s`` and lets the browser name a refused header.
    """
    allow_origin = allowed_origin(policy, origin)
    if allow_origin is None:
        return ()
    headers = (
        ("Access-Control-Allow-Origin", allow_origin),
        ("Access-Control-Allow-Methods", ", ".join(sorted(allowed_methods | {"OPTIONS"}))),
        ("Access-Control-Allow-Headers", ", ".join(policy.allow_headers)),
        ("Access-Control-Max-Age", str(policy.max_age_s)),
    )
    return headers + _vary(policy)


def response_headers(policy: CorsPolicy, origin: str | None) -> tuple[tuple[str, str], ...]:
    """CORS headers to add to a normal (non-preflight) response of a route with ``policy``.

    A listed-origin policy always sends ``Vary: Origin``, even to an origin it refuses or a
    request without one: otherwise a shared cache could hand one origin's answer to another.
    """
    allow_origin = allowed_origin(policy, origin)
    allow = () if allow_origin is None else (("Access-Control-Allow-Origin", allow_origin),)
    return allow + _vary(policy)


def is_preflight(method: str, request_method_header: str | None) -> bool:
    """Whether a request is a CORS preflight: OPTIONS naming ``Access-Control-Request-Method``.

    Any other OPTIONS request is an ordinary request for a route that lists OPTIONS.
    """
    return method.upper() == "OPTIONS" and bool(request_method_header)


def _vary(policy: CorsPolicy) -> tuple[tuple[str, str], ...]:
    # "*" is the same for every origin; an echoed origin makes the response depend on it.
    return () if policy.is_any_origin else (("Vary", "Origin"),)
