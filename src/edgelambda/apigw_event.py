"""API Gateway proxy events built from HTTP requests.

Pure: the HTTP shell hands in an :class:`HttpRequest` and the time, and gets back a JSON-ready
event. Field names, nulls and formats follow API Gateway's documented Lambda proxy formats:
payload 1.0 (REST API) and payload 2.0 (HTTP API). What the function answers becomes a response
in :mod:`edgelambda.apigw_result`.

The gateway plays one REST API stage, :data:`V1_STAGE`, for payload 1.0 (so
``requestContext.path`` is ``/prod/hello`` for a request to ``/hello``, as if called on the
execute-api host) and the ``$default`` stage for payload 2.0.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

from edgelambda.aws import ACCOUNT_ID
from edgelambda.routing import ANY_METHOD, DEFAULT_ROUTE, PayloadVersion, RouteMatch

__all__ = [
    "ACCOUNT_ID",
    "API_ID",
    "V1_STAGE",
    "V2_STAGE",
    "HttpRequest",
    "build_event",
    "build_v1_event",
    "build_v2_event",
]

API_ID = "edgelambda"  # ten lower-case characters, the shape of a real API id
V1_STAGE = "prod"
V2_STAGE = "$default"

_TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/x-www-form-urlencoded",
    }
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_USER_NAME_CLAIMS = ("cognito:username", "username")  # what ported Cognito handlers read
_V1_IDENTITY_NULLS = (
    "accessKey",
    "accountId",
    "apiKey",
    "apiKeyId",
    "caller",
    "cognitoAuthenticationProvider",
    "cognitoAuthenticationType",
    "cognitoIdentityId",
    "cognitoIdentityPoolId",
    "principalOrgId",
    "user",
    "userArn",
)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What the HTTP shell hands to the pure core."""

    method: str
    path: str  # percent-decoded
    raw_path: str  # as received, still percent-encoded
    raw_query: str  # without "?"
    headers: tuple[tuple[str, str], ...]  # arrival order, repeated names kept, original case
    body: bytes
    source_ip: str
    host: str
    protocol: str  # "HTTP/1.1"


def build_event(
    request: HttpRequest,
    match: RouteMatch,
    *,
    request_id: str,
    now_ms: int,
    claims: Mapping[str, object] | None,
) -> dict[str, object]:
    """The event for the payload version of the matched route."""
    build = build_v2_event if match.route.payload is PayloadVersion.V2 else build_v1_event
    return build(request, match, request_id=request_id, now_ms=now_ms, claims=claims)


def build_v1_event(
    request: HttpRequest,
    match: RouteMatch,
    *,
    request_id: str,
    now_ms: int,
    claims: Mapping[str, object] | None,
    stage: str = V1_STAGE,
) -> dict[str, object]:
    """A REST API (payload 1.0) proxy event.

    Repeated headers and query keys appear in the ``multiValue*`` maps; the single-value maps
    keep the last value, as API Gateway does. Empty maps and an empty body are null.
    """
    headers, multi_headers = _v1_headers(request.headers)
    query, multi_query = _v1_query(request.raw_query)
    body, is_base64 = _encode_body(request.body, _last_header(request.headers, "content-type"))
    return {
        "resource": match.route.path,
        "path": request.path,
        "httpMethod": request.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": dict(match.path_parameters) or None,
        "stageVariables": None,
        "requestContext": _v1_context(request, match, request_id, now_ms, claims, stage),
        "body": body,
        "isBase64Encoded": is_base64,
    }


def build_v2_event(
    request: HttpRequest,
    match: RouteMatch,
    *,
    request_id: str,
    now_ms: int,
    claims: Mapping[str, object] | None,
) -> dict[str, object]:
    """An HTTP API (payload 2.0) event.

    Header names are lower-cased and repeats comma-joined; cookies move from the Cookie header
    to ``cookies``. Keys with nothing to say (``cookies``, ``queryStringParameters``,
    ``pathParameters``, ``body``) are left out, as API Gateway does.
    """
    route_key = _route_key(match, request.method)
    event: dict[str, object] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": request.raw_path,
        "rawQueryString": request.raw_query,
        "headers": _v2_headers(request.headers),
        "requestContext": _v2_context(request, route_key, request_id, now_ms, claims),
        "isBase64Encoded": False,
    }
    cookies = _cookies(request.headers)
    query = _v2_query(request.raw_query)
    _put_if(event, "cookies", cookies)
    _put_if(event, "queryStringParameters", query)
    _put_if(event, "pathParameters", dict(match.path_parameters))
    body, is_base64 = _encode_body(request.body, _last_header(request.headers, "content-type"))
    if body is not None:
        event["body"] = body
        event["isBase64Encoded"] = is_base64
    return event


def _v1_context(
    request: HttpRequest,
    match: RouteMatch,
    request_id: str,
    now_ms: int,
    claims: Mapping[str, object] | None,
    stage: str,
) -> dict[str, object]:
    domain_name, domain_prefix = _domain(request.host)
    identity: dict[str, object] = dict.fromkeys(_V1_IDENTITY_NULLS)
    identity["sourceIp"] = request.source_ip
    identity["userAgent"] = _last_header(request.headers, "user-agent")
    return {
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
        "resourceId": _resource_id(match.route.path),
        "resourcePath": match.route.path,
        "httpMethod": request.method,
        # Called on the execute-api host, the path a client used carries the stage.
        "path": request.path if stage == V2_STAGE else f"/{stage}{request.path}",
        "protocol": request.protocol,
        "stage": stage,
        "requestId": request_id,
        "extendedRequestId": request_id,
        "requestTime": _clf_time(now_ms),
        "requestTimeEpoch": now_ms,
        "domainName": domain_name,
        "domainPrefix": domain_prefix,
        "identity": identity,
        "authorizer": _v1_authorizer(claims) if claims is not None else None,
    }


def _v2_context(
    request: HttpRequest,
    route_key: str,
    request_id: str,
    now_ms: int,
    claims: Mapping[str, object] | None,
) -> dict[str, object]:
    domain_name, domain_prefix = _domain(request.host)
    context: dict[str, object] = {
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
        "domainName": domain_name,
        "domainPrefix": domain_prefix,
        "http": {
            "method": request.method,
            "path": request.path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": _last_header(request.headers, "user-agent") or "",
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": V2_STAGE,
        "time": _clf_time(now_ms),
        "timeEpoch": now_ms,
    }
    if claims is not None:
        context["authorizer"] = {"jwt": {"claims": _authorizer_claims(claims), "scopes": None}}
    return context


def _v1_authorizer(claims: Mapping[str, object]) -> dict[str, object]:
    """The claims, and the user names beside them, where the original system put them."""
    text_claims = _authorizer_claims(claims)
    return {"claims": text_claims, **{name: text_claims[name] for name in _USER_NAME_CLAIMS}}


def _authorizer_claims(claims: Mapping[str, object]) -> dict[str, str]:
    """The token's claims as API Gateway hands them on (every value a string), plus the user
    name the token was issued for (its ``sub``) under the names Cognito handlers read."""
    text_claims = {name: _claim_text(value) for name, value in claims.items()}
    user = text_claims.get("sub", "")
    return {**text_claims, **dict.fromkeys(_USER_NAME_CLAIMS, user)}


def _claim_text(value: object) -> str:
    # Numbers and booleans as JSON spells them: "exp": "1700000000", as API Gateway sends it.
    # An int (every token has exp and iat) is spelled by str, as json.dumps does, faster.
    if isinstance(value, str):
        return value
    return str(value) if type(value) is int else json.dumps(value)


def _v1_headers(
    headers: Iterable[tuple[str, str]],
) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    """Single- and multi-value header maps; names keep the case of their first appearance."""
    multi: dict[str, list[str]] = {}
    spelling: dict[str, str] = {}
    for name, value in headers:
        key = spelling.setdefault(name.lower(), name)
        multi.setdefault(key, []).append(value)
    if not multi:
        return None, None
    return {name: values[-1] for name, values in multi.items()}, multi


def _v2_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    joined: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if key == "cookie":  # carried by the event's cookies list instead
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    return joined


def _cookies(headers: Iterable[tuple[str, str]]) -> list[str]:
    cookies: list[str] = []
    for name, value in headers:
        if name.lower() == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
    return cookies


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    # keep_blank_values: "?flag" and "?a=" are parameters with an empty value in API Gateway.
    return parse_qsl(raw_query, keep_blank_values=True)


def _v1_query(raw_query: str) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    multi: dict[str, list[str]] = {}
    for name, value in _query_pairs(raw_query):
        multi.setdefault(name, []).append(value)
    if not multi:
        return None, None
    return {name: values[-1] for name, values in multi.items()}, multi


def _v2_query(raw_query: str) -> dict[str, str]:
    joined: dict[str, str] = {}
    for name, value in _query_pairs(raw_query):
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    return joined


def _put_if(event: dict[str, object], key: str, value: Mapping[str, str] | list[str]) -> None:
    if value:
        event[key] = value


def _route_key(match: RouteMatch, method: str) -> str:
    """HTTP API's ``routeKey``: ``GET /items/{id}``, or ``$default`` for that route (serverless-
    offline's HTTP API emulation, dherault/serverless-offline#1175, does the same)."""
    if match.route.path == DEFAULT_ROUTE:
        return DEFAULT_ROUTE
    return f"{_route_key_method(match, method)} {match.route.path}"


def _route_key_method(match: RouteMatch, method: str) -> str:
    methods = match.route.methods
    if method in methods:
        return method
    if ANY_METHOD in methods:
        return ANY_METHOD
    return "GET"  # a HEAD request served by the GET route


def _last_header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    found = None
    for header, value in headers:
        if header.lower() == name:
            found = value
    return found


def _encode_body(body: bytes, content_type: str | None) -> tuple[str | None, bool]:
    """The event's body and isBase64Encoded: text stays text, anything else is base64."""
    if not body:
        return None, False
    if _is_text(content_type):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass  # declared text but not UTF-8: only base64 carries it intact
    return base64.b64encode(body).decode("ascii"), True


def _is_text(content_type: str | None) -> bool:
    if content_type is None:
        return True  # no type: text if it decodes as UTF-8
    media_type = content_type.split(";", 1)[0].strip().lower()
    return (
        media_type.startswith("text/")
        or media_type in _TEXT_TYPES
        or media_type.endswith(("+json", "+xml"))
    )


def _domain(host: str) -> tuple[str, str]:
    """domainName (the host without its port) and domainPrefix (its first label)."""
    if host.startswith("["):  # an IPv6 literal, "[::1]:8000"
        name = host.split("]", 1)[0] + "]"
    else:
        name = host.rsplit(":", 1)[0] if ":" in host else host
    return name, name.split(".", 1)[0]


@functools.cache
def _resource_id(route_path: str) -> str:
    # Stable per route, six characters like API Gateway's resource ids; computed once.
    return hashlib.sha256(route_path.encode()).hexdigest()[:6]


def _clf_time(now_ms: int) -> str:
    """``09/Apr/2015:12:34:56 +0000``; month names fixed, never from the locale."""
    return _clf_second(now_ms // 1000)


@functools.lru_cache(maxsize=8)  # requests come in bursts of the same few seconds
def _clf_second(second: int) -> str:
    moment = _EPOCH + timedelta(seconds=second)
    return f"{moment.day:02d}/{_MONTHS[moment.month - 1]}/{moment.year}:{moment:%H:%M:%S} +0000"
