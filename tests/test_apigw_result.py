"""Responses from function results (payload 1.0 and 2.0), and streamed responses' preludes."""

from __future__ import annotations

import base64
import json

import pytest

from edgelambda.apigw_result import (
    PRELUDE_SEPARATOR,
    HttpResponse,
    parse_result,
    parse_v1_result,
    parse_v2_result,
    prelude_response,
    split_prelude,
)
from edgelambda.errors import FunctionError
from edgelambda.routing import PayloadVersion

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\xff\xfe"


# --- results, payload 1.0 ---------------------------------------------------------------------


def result(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_v1_two_set_cookies_through_multi_value_headers() -> None:
    raw = result(
        statusCode=200,
        headers={"Content-Type": "text/plain"},
        multiValueHeaders={"Set-Cookie": ["a=1; Path=/", "b=2; HttpOnly"]},
        body="ok",
    )

    response = parse_v1_result(raw)

    assert response == HttpResponse(
        200,
        (
            ("Content-Type", "text/plain"),
            ("Set-Cookie", "a=1; Path=/"),
            ("Set-Cookie", "b=2; HttpOnly"),
        ),
        b"ok",
    )


def test_v1_a_pair_in_both_header_maps_is_sent_once() -> None:
    raw = result(
        statusCode=200,
        headers={"X-A": "1", "Content-Type": "text/plain"},
        multiValueHeaders={"x-a": ["1", "2"]},
    )

    response = parse_v1_result(raw)

    assert response.headers == (("X-A", "1"), ("Content-Type", "text/plain"), ("x-a", "2"))


def test_v1_base64_png_is_decoded_to_bytes() -> None:
    raw = result(
        statusCode=200,
        headers={"Content-Type": "image/png"},
        body=base64.b64encode(PNG).decode(),
        isBase64Encoded=True,
    )

    assert parse_v1_result(raw).body == PNG


def test_v1_text_body_is_byte_exact() -> None:
    raw = b'{"statusCode": 200, "body": "\\"quoted\\"  \\u00e9\\n", "headers": {"A": "b"}}'

    response = parse_v1_result(raw)

    assert response.body == '"quoted"  é\n'.encode()


def test_v1_created_with_custom_headers() -> None:
    raw = result(
        statusCode=201,
        headers={"Location": "/items/7", "X-Count": 3, "X-Flag": True, "X-None": None},
        body='{"id": 7}',
        extra="ignored, as API Gateway ignores unknown keys",
    )

    response = parse_v1_result(raw)

    assert response.status == 201
    assert response.headers == (
        ("Location", "/items/7"),
        ("X-Count", "3"),
        ("X-Flag", "true"),
        ("Content-Type", "application/json"),  # API Gateway's default
    )
    assert response.body == b'{"id": 7}'


def test_v1_numeric_string_status_and_no_body() -> None:
    response = parse_v1_result(result(statusCode="204"))

    assert (response.status, response.body) == (204, b"")


MALFORMED_V1 = [
    pytest.param(b"not json", id="not-json"),
    pytest.param(b"", id="empty"),
    pytest.param(b"\xff\xfe", id="not-utf8"),
    pytest.param(b"[1, 2]", id="list"),
    pytest.param(b'"hello"', id="string"),
    pytest.param(result(body="x"), id="no-status"),
    pytest.param(result(statusCode=None), id="status-null"),
    pytest.param(result(statusCode=True), id="status-bool"),
    pytest.param(result(statusCode=200.0), id="status-float"),
    pytest.param(result(statusCode="OK"), id="status-text"),
    pytest.param(result(statusCode=99), id="status-low"),
    pytest.param(result(statusCode=600), id="status-high"),
    pytest.param(result(statusCode=200, headers=["A: b"]), id="headers-list"),
    pytest.param(result(statusCode=200, headers={"A": {"b": 1}}), id="header-object"),
    pytest.param(result(statusCode=200, headers={"A": "b\r\nX: y"}), id="header-crlf"),
    pytest.param(result(statusCode=200, headers={"Bad Name": "x"}), id="header-name"),
    pytest.param(result(statusCode=200, multiValueHeaders={"A": "b"}), id="multi-not-list"),
    pytest.param(result(statusCode=200, multiValueHeaders=[]), id="multi-list"),
    pytest.param(result(statusCode=200, body={"a": 1}), id="body-object"),
    pytest.param(result(statusCode=200, body=5), id="body-number"),
    pytest.param(result(statusCode=200, body="x", isBase64Encoded="yes"), id="base64-flag"),
    pytest.param(result(statusCode=200, body="***", isBase64Encoded=True), id="bad-base64"),
    pytest.param(b'{"statusCode": 200, "body": "\\ud800"}', id="lone-surrogate"),
]


@pytest.mark.parametrize("raw", MALFORMED_V1)
def test_v1_malformed_result_is_a_function_error(raw: bytes) -> None:
    with pytest.raises(FunctionError) as caught:
        parse_v1_result(raw)

    assert caught.value.error_type == "MalformedResult"
    assert caught.value.status == 502
    assert caught.value.public_message == "Internal server error"


# --- results, payload 2.0 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b'{"message": "hi",  "n": [1, 2.50]}', b"42", b"null", b"[true]"],
)
def test_v2_plain_json_is_the_body(raw: bytes) -> None:
    response = parse_v2_result(raw)

    assert response == HttpResponse(200, (("Content-Type", "application/json"),), raw)


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (b'"hello from lambda"', b"hello from lambda"),
        (b'"caf\\u00e9 \\"quoted\\"\\n"', 'café "quoted"\n'.encode()),
        (b'""', b""),
    ],
)
def test_v2_a_json_string_result_is_its_value(raw: bytes, body: bytes) -> None:
    response = parse_v2_result(raw)

    # AWS's table: output "Hello from Lambda!" is served as the body Hello from Lambda!
    assert response == HttpResponse(200, (("Content-Type", "application/json"),), body)


def test_v2_structured_result_with_cookies() -> None:
    raw = result(
        statusCode=302,
        headers={"Location": "/login"},
        cookies=["a=1; Secure", "b=2"],
        multiValueHeaders={"X-Ignored": ["not part of payload 2.0"]},
        body="",
    )

    response = parse_v2_result(raw)

    assert response == HttpResponse(
        302,
        (
            ("Location", "/login"),
            ("Set-Cookie", "a=1; Secure"),
            ("Set-Cookie", "b=2"),
            ("Content-Type", "application/json"),
        ),
        b"",
    )


def test_v2_structured_base64_and_text() -> None:
    png = parse_v2_result(
        result(statusCode=200, body=base64.b64encode(PNG).decode(), isBase64Encoded=True)
    )
    text = parse_v2_result(result(statusCode=200, body='"quoted"'))

    assert png.body == PNG
    assert text.body == b'"quoted"'


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(result(statusCode="x"), id="bad-status"),
        pytest.param(result(statusCode=200, cookies="a=1"), id="cookies-string"),
        pytest.param(result(statusCode=200, cookies=[1]), id="cookies-numbers"),
        pytest.param(result(statusCode=200, cookies=["a=1\nb"]), id="cookie-newline"),
        pytest.param(b'"\\ud800"', id="string-lone-surrogate"),
    ],
)
def test_v2_malformed_result_is_a_function_error(raw: bytes) -> None:
    with pytest.raises(FunctionError) as caught:
        parse_v2_result(raw)

    assert caught.value.error_type == "MalformedResult"


def test_parse_result_follows_the_payload_version() -> None:
    raw = b'{"ok": true}'

    assert parse_result(raw, PayloadVersion.V2).body == raw
    with pytest.raises(FunctionError):
        parse_result(raw, PayloadVersion.V1)  # 1.0 has no "plain JSON" rule


# --- framing and hop-by-hop headers ----------------------------------------------------------

# A function's own framing must never reach the client: the gateway frames what it sends.
FRAMING = {
    "Content-Length": "5",
    "Transfer-Encoding": "chunked",
    "Connection": "close",
    "Keep-Alive": "timeout=5",
    "Upgrade": "websocket",
    "TE": "trailers",
    "Trailer": "Expires",
    "Proxy-Authenticate": "Basic",
    "Proxy-Connection": "keep-alive",
}


def names(response: HttpResponse) -> set[str]:
    return {name.lower() for name, _ in response.headers}


def test_v1_remaps_framing_headers_as_rest_apis_do() -> None:
    raw = result(statusCode=200, headers={**FRAMING, "X-Kept": "1"}, body="hello world")

    response = parse_v1_result(raw)

    assert not names(response) & {name.lower() for name in FRAMING}
    assert ("x-amzn-Remapped-Content-Length", "5") in response.headers
    assert ("x-amzn-Remapped-Transfer-Encoding", "chunked") in response.headers
    assert ("x-amzn-Remapped-Connection", "close") in response.headers
    assert ("X-Kept", "1") in response.headers
    assert response.body == b"hello world"


def test_v1_remaps_framing_headers_given_as_multi_value_headers() -> None:
    raw = result(
        statusCode=200,
        multiValueHeaders={"content-length": ["5", "7"], "transfer-encoding": ["chunked"]},
        body="hello world",
    )

    response = parse_v1_result(raw)

    assert not names(response) & {"content-length", "transfer-encoding"}
    remapped = [pair for pair in response.headers if pair[0].startswith("x-amzn-Remapped-")]
    assert remapped == [
        ("x-amzn-Remapped-content-length", "5"),
        ("x-amzn-Remapped-content-length", "7"),
        ("x-amzn-Remapped-transfer-encoding", "chunked"),
    ]


def test_v2_drops_framing_headers_http_apis_reserve() -> None:
    raw = result(statusCode=200, headers={**FRAMING, "X-Kept": "1"}, body="hello world")

    response = parse_v2_result(raw)

    assert names(response) == {"x-kept", "content-type"}
    assert response.body == b"hello world"


def test_a_streamed_prelude_drops_framing_headers() -> None:
    prelude = json.dumps({"statusCode": 200, "headers": {**FRAMING, "X-Kept": "1"}}).encode()

    response = prelude_response(prelude)

    assert names(response) == {"x-kept", "content-type"}


# --- streamed responses ----------------------------------------------------------------------


def test_split_prelude_waits_for_the_separator() -> None:
    assert split_prelude(b'{"statusCode": 2') is None
    assert split_prelude(b'{"statusCode": 201}' + PRELUDE_SEPARATOR + b"body") == (
        b'{"statusCode": 201}',
        b"body",
    )


def test_split_prelude_refuses_an_endless_prelude() -> None:
    with pytest.raises(FunctionError):
        split_prelude(b"x" * (64 * 1024 + 1))


def test_prelude_response_takes_status_headers_and_cookies() -> None:
    prelude = b'{"statusCode": 201, "headers": {"Content-Type": "text/plain"}, "cookies": ["a=1"]}'
    response = prelude_response(prelude)

    assert response.status == 201
    assert ("Content-Type", "text/plain") in response.headers
    assert ("Set-Cookie", "a=1") in response.headers
    assert prelude_response(b"").status == 200  # an empty prelude means 200
    with pytest.raises(FunctionError):
        prelude_response(b"[1, 2]")
