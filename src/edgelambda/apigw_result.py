"""Function results turned into HTTP responses, as API Gateway reads them.

Pure: the HTTP shell hands in the function's raw result bytes and gets back an
:class:`HttpResponse`, following API Gateway's documented Lambda proxy formats: payload 1.0
(REST API) and payload 2.0 (HTTP API). A result API Gateway would refuse raises
:class:`~edgelambda.errors.FunctionError` (502, "Internal server error"). A streamed response
(Lambda's response streaming mode) starts with a JSON prelude, read here too; its body follows
separately.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from edgelambda.errors import FunctionError
from edgelambda.routing import PayloadVersion

__all__ = [
    "HTTP_INTEGRATION_CONTENT_TYPE",
    "MALFORMED_RESULT",
    "MAX_PRELUDE_BYTES",
    "PRELUDE_SEPARATOR",
    "HttpResponse",
    "parse_result",
    "parse_v1_result",
    "parse_v2_result",
    "prelude_response",
    "split_prelude",
]

MALFORMED_RESULT = "MalformedResult"  # FunctionError.error_type for results we cannot use
_DEFAULT_CONTENT_TYPE = "application/json"  # what API Gateway sends when the function gave none
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token

# Headers about the connection and the message's framing rather than its content. The gateway
# frames what it sends (aiohttp writes Content-Length, or chunks a stream), so a function's
# values never reach the client as given: a short Content-Length cuts the body and leaves the
# rest to be read as the next response on a kept-alive connection; "Transfer-Encoding:
# chunked" on a plain body leaves the client waiting for a chunk that never comes. API Gateway
# does the same, by payload version:
# - REST APIs (1.0) remap Connection, Content-Length, Proxy-Authenticate, TE, Trailer,
#   Transfer-Encoding and Upgrade, among others, to x-amzn-Remapped-<name> in what an
#   integration sends back (API Gateway Developer Guide, "Amazon API Gateway important notes",
#   REST APIs; awsdocs/amazon-api-gateway-developer-guide doc_source/api-gateway-known-issues.md).
#   Keep-Alive and the other Proxy-* headers are remapped the same way here.
# - HTTP APIs (2.0) reserve Connection, Content-Length, Keep-Alive, Proxy-Authenticate,
#   Proxy-Authorization, TE, Trailers, Transfer-Encoding and Upgrade (the same guide,
#   "Transforming API requests and responses", Reserved headers): a function does not set
#   them, so they are dropped, as they are from a streamed response's prelude (function URLs).
_FRAMING_HEADERS = frozenset(
    {"connection", "content-length", "keep-alive", "te", "trailer", "trailers"}
    | {"transfer-encoding", "upgrade"}
)
_REMAPPED_PREFIX = "x-amzn-Remapped-"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """What the function answered, ready to be written to the client."""

    status: int
    headers: tuple[tuple[str, str], ...]  # repeated names kept (several Set-Cookie)
    body: bytes


def parse_result(raw: bytes, payload: PayloadVersion) -> HttpResponse:
    """The HTTP response for a function's raw result in the route's payload version."""
    if payload is PayloadVersion.V2:
        return parse_v2_result(raw)
    return parse_v1_result(raw)


def parse_v1_result(raw: bytes) -> HttpResponse:
    """A payload 1.0 result: a JSON object with ``statusCode``, ``headers``,
    ``multiValueHeaders``, ``body`` and ``isBase64Encoded``; other keys are ignored.

    A string body is sent byte-exact as UTF-8. Raises :class:`FunctionError` for anything
    API Gateway would answer with 502.
    """
    result = _load_json(raw)
    if not isinstance(result, dict):
        raise _malformed(f"result must be a JSON object, got {type(result).__name__}")
    return _structured_response(result, multi_value=True, cookies=False)


def parse_v2_result(raw: bytes) -> HttpResponse:
    """A payload 2.0 result.

    An object with ``statusCode`` is read like payload 1.0 plus ``cookies`` (one Set-Cookie
    each); API Gateway's 2.0 format has no ``multiValueHeaders``. Any other valid JSON is the
    body itself: status 200, ``application/json``; a JSON string is sent as its value, other
    JSON as the bytes exactly as returned.
    """
    result = _load_json(raw)
    if isinstance(result, dict) and "statusCode" in result:
        return _structured_response(result, multi_value=False, cookies=True)
    # AWS's "Lambda function response for format 2.0" table: the output "Hello from Lambda!"
    # is served as the body Hello from Lambda!, an object as its JSON text.
    body = _result_body(result, None) if isinstance(result, str) else raw
    return HttpResponse(200, (("Content-Type", _DEFAULT_CONTENT_TYPE),), body)


def _load_json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise _malformed(f"result is not valid JSON: {exc}") from exc


def _malformed(detail: str) -> FunctionError:
    return FunctionError(f"malformed result: {detail}", error_type=MALFORMED_RESULT)


def _structured_response(
    result: dict[str, object], *, multi_value: bool, cookies: bool
) -> HttpResponse:
    headers = _result_headers(result.get("headers"))
    if multi_value:
        headers = _merge_multi_value(headers, result.get("multiValueHeaders"))
    # Payload 1.0 is REST APIs' (remapped), the rest HTTP APIs' and function URLs' (dropped).
    headers = _without_framing(headers, is_remapped=multi_value)
    if cookies:
        headers += [("Set-Cookie", cookie) for cookie in _result_cookies(result.get("cookies"))]
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", _DEFAULT_CONTENT_TYPE))
    body = _result_body(result.get("body"), result.get("isBase64Encoded"))
    return HttpResponse(_status_code(result.get("statusCode")), tuple(headers), body)


def _is_framing_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in _FRAMING_HEADERS or lowered.startswith("proxy-")


def _without_framing(headers: list[tuple[str, str]], *, is_remapped: bool) -> list[tuple[str, str]]:
    """``headers`` without the function's framing headers, or with them renamed to
    ``x-amzn-Remapped-<name>`` when ``is_remapped``."""
    kept = []
    for name, value in headers:
        if not _is_framing_header(name):
            kept.append((name, value))
        elif is_remapped:
            kept.append((_REMAPPED_PREFIX + name, value))
    return kept


def _status_code(value: object) -> int:
    # API Gateway also takes the code as a numeric string ("statusCode": "200").
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise _malformed(f"statusCode must be an integer from 100 to 599, got {value!r}")
    return value


def _result_headers(value: object) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, dict):
        raise _malformed("headers must be an object")
    return [
        (_header_name(name), text)
        for name, item in value.items()
        if (text := _header_value(name, item)) is not None
    ]


def _merge_multi_value(headers: list[tuple[str, str]], value: object) -> list[tuple[str, str]]:
    """headers plus multiValueHeaders; a name/value pair given in both is sent once."""
    if value is None:
        return headers
    if not isinstance(value, dict):
        raise _malformed("multiValueHeaders must be an object")
    merged = list(headers)
    seen = {(name.lower(), text) for name, text in headers}
    for name, values in value.items():
        if not isinstance(values, list):
            raise _malformed(f"multiValueHeaders[{name!r}] must be a list")
        for item in values:
            text = _header_value(name, item)
            if text is not None and (name.lower(), text) not in seen:
                seen.add((name.lower(), text))
                merged.append((_header_name(name), text))
    return merged


def _header_name(name: str) -> str:
    if not _HEADER_NAME.fullmatch(name):
        raise _malformed(f"{name!r} is not a valid header name")
    return name


def _header_value(name: str, value: object) -> str | None:
    """A header value as text: JSON scalars are spelled as JSON spells them; null drops it."""
    if value is None:
        return None
    if isinstance(value, dict | list):
        raise _malformed(f"header {name!r} must have a scalar value")
    return _single_line(name, value if isinstance(value, str) else json.dumps(value))


def _single_line(name: str, text: str) -> str:
    if "\r" in text or "\n" in text:  # would split the response: never pass it on
        raise _malformed(f"header {name!r} contains a line break")
    return text


def _result_cookies(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(cookie, str) for cookie in value):
        raise _malformed("cookies must be a list of strings")
    return [_single_line("Set-Cookie", cookie) for cookie in value]


def _result_body(body: object, is_base64: object) -> bytes:
    if is_base64 is not None and not isinstance(is_base64, bool):
        raise _malformed("isBase64Encoded must be true or false")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise _malformed(f"body must be a string, got {type(body).__name__}")
    if is_base64:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _malformed(f"body is not valid base64: {exc}") from exc
    try:
        return body.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate escaped in the JSON
        raise _malformed(f"body is not valid Unicode: {exc}") from exc


# --- streamed responses -----------------------------------------------------------------------

HTTP_INTEGRATION_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
PRELUDE_SEPARATOR = b"\0" * 8  # ends the JSON prelude of a streamed HTTP response
MAX_PRELUDE_BYTES = 64 * 1024


def split_prelude(buffer: bytes) -> tuple[bytes, bytes] | None:
    """(prelude, start of the body) once ``buffer`` holds the whole prelude, else None."""
    prelude, separator, rest = buffer.partition(PRELUDE_SEPARATOR)
    if separator:
        return prelude, rest
    if len(buffer) > MAX_PRELUDE_BYTES:
        raise _malformed("streamed response prelude is too long or not terminated")
    return None


def prelude_response(prelude: bytes) -> HttpResponse:
    """Status and headers of a streamed HTTP response from its JSON prelude (statusCode,
    headers, cookies, as Lambda function URLs read it); the body follows separately."""
    result = _load_json(prelude) if prelude.strip() else {}
    if not isinstance(result, dict):
        raise _malformed("streamed response prelude must be a JSON object")
    result = {**result, "body": None, "isBase64Encoded": False}
    result.setdefault("statusCode", 200)
    return _structured_response(result, multi_value=False, cookies=True)
