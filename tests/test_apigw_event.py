"""API Gateway events (payload 1.0 and 2.0) built from requests."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest

from edgelambda.apigw_event import (
    ACCOUNT_ID,
    API_ID,
    HttpRequest,
    build_event,
    build_v1_event,
    build_v2_event,
)
from edgelambda.routing import PayloadVersion, Route, RouteMatch, RoutingTable

NOW_MS = 1428582896123  # 2015-04-09 12:34:56.123 UTC
REQUEST_ID = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\xff\xfe"

TABLE = RoutingTable(
    functions={},
    routes=(
        Route("/hello/{name}", frozenset({"GET"}), "hello"),
        Route("/upload", frozenset({"POST"}), "upload"),
        Route("/files/{proxy+}", frozenset({"ANY"}), "files"),
        Route("/ping", frozenset({"GET"}), "ping"),
    ),
)


def make_request(
    method: str = "GET",
    path: str = "/hello/world",
    *,
    raw_path: str | None = None,
    query: str = "",
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    host: str = "api.example.com:8000",
) -> HttpRequest:
    base = (("Host", host), ("User-Agent", "curl/8.5.0"))
    return HttpRequest(
        method=method,
        path=path,
        raw_path=raw_path if raw_path is not None else path,
        raw_query=query,
        headers=base + headers,
        body=body,
        source_ip="203.0.113.7",
        host=host,
        protocol="HTTP/1.1",
    )


def v1(request: HttpRequest, claims: dict[str, object] | None = None) -> dict[str, object]:
    match = TABLE.match(request.method, request.path)
    return build_v1_event(request, match, request_id=REQUEST_ID, now_ms=NOW_MS, claims=claims)


def v2(request: HttpRequest, claims: dict[str, object] | None = None) -> dict[str, object]:
    match = TABLE.match(request.method, request.path)
    return build_v2_event(request, match, request_id=REQUEST_ID, now_ms=NOW_MS, claims=claims)


def context(event: dict[str, object]) -> dict[str, object]:
    value = event["requestContext"]
    assert isinstance(value, dict)
    return value


# A request with path parameters, a repeated query key, repeated headers and cookies.
RICH = make_request(
    query="tag=a&tag=b&q=caf%C3%A9+latte&flag",
    headers=(
        ("Accept", "text/html"),
        ("accept", "application/json"),
        ("Cookie", "session=abc; theme=dark"),
        ("X-Trace", "1"),
    ),
)


# --- payload 1.0 ------------------------------------------------------------------------------


def test_v1_golden_event() -> None:
    event = v1(RICH)

    assert event == {
        "resource": "/hello/{name}",
        "path": "/hello/world",
        "httpMethod": "GET",
        "headers": {
            "Host": "api.example.com:8000",
            "User-Agent": "curl/8.5.0",
            "Accept": "application/json",  # the last value wins
            "Cookie": "session=abc; theme=dark",
            "X-Trace": "1",
        },
        "multiValueHeaders": {
            "Host": ["api.example.com:8000"],
            "User-Agent": ["curl/8.5.0"],
            "Accept": ["text/html", "application/json"],
            "Cookie": ["session=abc; theme=dark"],
            "X-Trace": ["1"],
        },
        "queryStringParameters": {"tag": "b", "q": "café latte", "flag": ""},
        "multiValueQueryStringParameters": {"tag": ["a", "b"], "q": ["café latte"], "flag": [""]},
        "pathParameters": {"name": "world"},
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "resourceId": context(event)["resourceId"],
            "resourcePath": "/hello/{name}",
            "httpMethod": "GET",
            "path": "/prod/hello/world",
            "protocol": "HTTP/1.1",
            "stage": "prod",
            "requestId": REQUEST_ID,
            "extendedRequestId": REQUEST_ID,
            "requestTime": "09/Apr/2015:12:34:56 +0000",
            "requestTimeEpoch": NOW_MS,
            "domainName": "api.example.com",
            "domainPrefix": "api",
            "identity": {
                "accessKey": None,
                "accountId": None,
                "apiKey": None,
                "apiKeyId": None,
                "caller": None,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "sourceIp": "203.0.113.7",
                "user": None,
                "userAgent": "curl/8.5.0",
                "userArn": None,
            },
            "authorizer": None,
        },
        "body": None,
        "isBase64Encoded": False,
    }
    resource_id = context(event)["resourceId"]
    assert isinstance(resource_id, str)
    assert len(resource_id) == 6
    json.dumps(event)  # the event must be JSON as it is


def test_v1_empty_maps_are_null() -> None:
    event = v1(make_request(path="/ping"))

    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["pathParameters"] is None
    assert event["body"] is None
    assert event["isBase64Encoded"] is False


def test_v1_claims_go_under_authorizer_as_strings_with_the_user_name() -> None:
    claims: dict[str, object] = {"sub": "onpremise-user", "exp": 1700000000}

    event = v1(RICH, claims)

    # REST API passes every claim as a string; ported handlers read cognito:username both
    # from the claims and from the authorizer itself.
    assert context(event)["authorizer"] == {
        "claims": {
            "sub": "onpremise-user",
            "exp": "1700000000",
            "cognito:username": "onpremise-user",
            "username": "onpremise-user",
        },
        "cognito:username": "onpremise-user",
        "username": "onpremise-user",
    }
    assert claims == {"sub": "onpremise-user", "exp": 1700000000}  # the caller's map untouched


@pytest.mark.parametrize(
    "value", [0, -7, 2**70, True, False, None, 1.5, 1e16, [1, "a"], {"k": [True]}, "text"]
)
def test_a_claim_that_is_not_a_string_is_spelled_as_json(value: object) -> None:
    event = v1(RICH, {"sub": "u", "claim": value})

    authorizer = context(event)["authorizer"]
    assert isinstance(authorizer, dict)
    assert authorizer["claims"]["claim"] == (value if isinstance(value, str) else json.dumps(value))


def test_v1_binary_upload_is_base64() -> None:
    request = make_request("POST", "/upload", headers=(("Content-Type", "image/png"),), body=PNG)

    event = v1(request)

    assert event["isBase64Encoded"] is True
    assert event["body"] == base64.b64encode(PNG).decode()
    assert event["pathParameters"] is None


def test_v1_json_body_is_text() -> None:
    body = '{"name": "Zoë"}'.encode()
    request = make_request(
        "POST", "/upload", headers=(("Content-Type", "application/json; charset=utf-8"),),
        body=body,
    )  # fmt: skip

    event = v1(request)

    assert (event["body"], event["isBase64Encoded"]) == ('{"name": "Zoë"}', False)


def test_v1_unicode_path_and_greedy_parameter() -> None:
    request = make_request(
        "DELETE", "/files/été/a b.txt", raw_path="/files/%C3%A9t%C3%A9/a%20b.txt"
    )

    event = v1(request)

    assert event["resource"] == "/files/{proxy+}"
    assert event["path"] == "/files/été/a b.txt"
    assert event["httpMethod"] == "DELETE"
    assert event["pathParameters"] == {"proxy": "été/a b.txt"}
    assert context(event)["resourcePath"] == "/files/{proxy+}"
    assert context(event)["path"] == "/prod/files/été/a b.txt"


def test_v1_stage_can_be_chosen() -> None:
    match = TABLE.match("GET", "/ping")
    request = make_request(path="/ping")

    event = build_v1_event(
        request, match, request_id=REQUEST_ID, now_ms=NOW_MS, claims=None, stage="$default"
    )

    assert context(event)["stage"] == "$default"
    assert context(event)["path"] == "/ping"


# --- payload 2.0 ------------------------------------------------------------------------------


def test_v2_golden_event() -> None:
    event = v2(RICH)

    assert event == {
        "version": "2.0",
        "routeKey": "GET /hello/{name}",
        "rawPath": "/hello/world",
        "rawQueryString": "tag=a&tag=b&q=caf%C3%A9+latte&flag",
        "cookies": ["session=abc", "theme=dark"],
        "headers": {
            "host": "api.example.com:8000",
            "user-agent": "curl/8.5.0",
            "accept": "text/html,application/json",
            "x-trace": "1",
        },
        "queryStringParameters": {"tag": "a,b", "q": "café latte", "flag": ""},
        "pathParameters": {"name": "world"},
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": "api.example.com",
            "domainPrefix": "api",
            "http": {
                "method": "GET",
                "path": "/hello/world",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "curl/8.5.0",
            },
            "requestId": REQUEST_ID,
            "routeKey": "GET /hello/{name}",
            "stage": "$default",
            "time": "09/Apr/2015:12:34:56 +0000",
            "timeEpoch": NOW_MS,
        },
        "isBase64Encoded": False,
    }
    json.dumps(event)


def test_v2_leaves_out_what_is_absent() -> None:
    event = v2(make_request(path="/ping"))

    for key in ("cookies", "queryStringParameters", "pathParameters", "body"):
        assert key not in event
    assert "authorizer" not in context(event)
    assert event["isBase64Encoded"] is False


def test_v2_cookies_from_several_cookie_headers() -> None:
    request = make_request(headers=(("Cookie", "a=1; b=2"), ("cookie", "c=3")))

    event = v2(request)

    assert event["cookies"] == ["a=1", "b=2", "c=3"]
    headers = event["headers"]
    assert isinstance(headers, dict)
    assert "cookie" not in headers


def test_v2_claims_go_under_jwt_authorizer_as_strings_with_the_user_name() -> None:
    claims: dict[str, object] = {"sub": "onpremise-user", "iat": 1700000000}

    event = v2(RICH, claims)

    expected = {
        "sub": "onpremise-user",
        "iat": "1700000000",
        "cognito:username": "onpremise-user",
        "username": "onpremise-user",
    }
    assert context(event)["authorizer"] == {"jwt": {"claims": expected, "scopes": None}}


def test_v2_binary_upload_is_base64() -> None:
    request = make_request(
        "POST", "/upload", headers=(("Content-Type", "application/octet-stream"),), body=PNG
    )

    event = v2(request)

    assert event["body"] == base64.b64encode(PNG).decode()
    assert event["isBase64Encoded"] is True
    assert event["routeKey"] == "POST /upload"


def test_v2_unicode_path_keeps_raw_path_encoded() -> None:
    request = make_request("PUT", "/files/été", raw_path="/files/%C3%A9t%C3%A9")

    event = v2(request)

    assert event["rawPath"] == "/files/%C3%A9t%C3%A9"
    assert event["pathParameters"] == {"proxy": "été"}
    assert event["routeKey"] == "ANY /files/{proxy+}"
    http = context(event)["http"]
    assert isinstance(http, dict)
    assert http["path"] == "/files/été"


def test_v2_head_served_by_get_keeps_the_get_route_key() -> None:
    event = v2(make_request("HEAD", "/ping"))

    assert event["routeKey"] == "GET /ping"
    assert context(event)["routeKey"] == "GET /ping"


# --- shared event rules -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "expected_text"),
    [
        ("text/plain; charset=utf-8", b"hello", True),
        ("application/xml", b"<a/>", True),
        ("application/javascript", b"x()", True),
        ("application/x-www-form-urlencoded", b"a=1&b=2", True),
        ("application/vnd.api+json", b"{}", True),
        ("image/svg+xml", b"<svg/>", True),
        (None, b"plain words", True),
        (None, b"\xff\xfe\x00", False),
        ("text/plain", b"\xff\xfe", False),  # declared text but not UTF-8
        ("application/pdf", b"%PDF-1.7", False),
        ("multipart/form-data; boundary=x", b"--x--", False),
    ],
)
def test_body_is_text_or_base64(content_type: str | None, body: bytes, expected_text: bool) -> None:
    headers = (("Content-Type", content_type),) if content_type is not None else ()
    request = make_request("POST", "/upload", headers=headers, body=body)

    for event in (v1(request), v2(request)):
        assert event["isBase64Encoded"] is not expected_text
        expected = body.decode() if expected_text else base64.b64encode(body).decode()
        assert event["body"] == expected


@pytest.mark.parametrize(
    ("now_ms", "expected"),
    [
        (0, "01/Jan/1970:00:00:00 +0000"),
        (1583348638390, "04/Mar/2020:19:03:58 +0000"),
        (1704067199999, "31/Dec/2023:23:59:59 +0000"),
    ],
)
def test_request_time_is_formatted_from_the_given_epoch(now_ms: int, expected: str) -> None:
    request = make_request(path="/ping")
    match = TABLE.match("GET", "/ping")

    one = build_v1_event(request, match, request_id="r", now_ms=now_ms, claims=None)
    two = build_v2_event(request, match, request_id="r", now_ms=now_ms, claims=None)

    assert (context(one)["requestTime"], context(one)["requestTimeEpoch"]) == (expected, now_ms)
    assert (context(two)["time"], context(two)["timeEpoch"]) == (expected, now_ms)


@pytest.mark.parametrize(
    ("host", "domain_name", "domain_prefix"),
    [
        ("localhost:8000", "localhost", "localhost"),
        ("api.example.com", "api.example.com", "api"),
        ("[::1]:8000", "[::1]", "[::1]"),
    ],
)
def test_domain_name_drops_the_port(host: str, domain_name: str, domain_prefix: str) -> None:
    event = v2(make_request(path="/ping", host=host))

    assert (context(event)["domainName"], context(event)["domainPrefix"]) == (
        domain_name,
        domain_prefix,
    )


def test_missing_user_agent() -> None:
    request = replace(make_request(path="/ping"), headers=(("Host", "h"),))

    identity = context(v1(request))["identity"]
    assert isinstance(identity, dict)
    assert identity["userAgent"] is None
    http = context(v2(request))["http"]
    assert isinstance(http, dict)
    assert http["userAgent"] == ""


@pytest.mark.parametrize(
    ("payload", "version_key"), [(PayloadVersion.V1, "resource"), (PayloadVersion.V2, "version")]
)
def test_build_event_follows_the_route_payload(payload: PayloadVersion, version_key: str) -> None:
    route = Route("/ping", frozenset({"GET"}), "ping", payload=payload)
    match = RouteMatch(route, {})

    event = build_event(
        make_request(path="/ping"), match, request_id=REQUEST_ID, now_ms=NOW_MS, claims=None
    )

    assert version_key in event


def test_the_default_route_s_key_is_default() -> None:
    table = RoutingTable(functions={}, routes=(Route("$default", frozenset({"ANY"}), "all"),))
    request = make_request("POST", "/any/path")
    match = table.match(request.method, request.path)

    event = build_v2_event(request, match, request_id=REQUEST_ID, now_ms=NOW_MS, claims=None)
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/any/path"
    assert "pathParameters" not in event
    event_v1 = build_v1_event(request, match, request_id=REQUEST_ID, now_ms=NOW_MS, claims=None)
    assert event_v1["resource"] == "$default"  # a v1 event's resource is the route key
    assert event_v1["path"] == "/any/path"
