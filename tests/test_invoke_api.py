"""The Invoke API's pure parts: names and ARNs, invocation types, payloads, credentials."""

from __future__ import annotations

import base64
import time
from dataclasses import replace
from urllib.parse import urlsplit

import jwt
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from edgelambda.config import Settings
from edgelambda.errors import (
    InvalidParameterValue,
    InvalidRequestContent,
    RequestTooLarge,
    ResourceNotFound,
)
from edgelambda.invocation import InvocationResult
from edgelambda.invoke_api import (
    InvocationType,
    checked_payload,
    client_context,
    function_name,
    invocation_type,
    is_authorised,
    may_invoke,
    result_headers,
)
from edgelambda.sigv4 import SignedRequest
from tests.fakes import function_spec

REGION = "us-east-1"


@pytest.mark.parametrize(
    "raw",
    [
        "hello",
        "hello:$LATEST",
        "123456789012:function:hello",
        "arn:aws:lambda:us-east-1:123456789012:function:hello",
        "arn:aws:lambda:us-east-1:123456789012:function:hello:$LATEST",
    ],
)
def test_names_and_arns_resolve_to_the_function(raw: str) -> None:
    assert function_name(raw, None, region=REGION) == "hello"


def test_only_latest_is_published() -> None:
    assert function_name("hello", "$LATEST", region=REGION) == "hello"
    with pytest.raises(ResourceNotFound, match=r"function:hello:prod"):
        function_name("hello:prod", None, region=REGION)
    with pytest.raises(ResourceNotFound):
        function_name("hello", "7", region=REGION)
    with pytest.raises(InvalidParameterValue):
        function_name("hello:$LATEST", "prod", region=REGION)


@pytest.mark.parametrize("raw", ["", "arn:aws:lambda:us-east-1:1:layer:x", "a:b:c:d:e"])
def test_malformed_names_are_invalid(raw: str) -> None:
    with pytest.raises(InvalidParameterValue):
        function_name(raw, None, region=REGION)


def test_invocation_types() -> None:
    assert invocation_type(None) is InvocationType.REQUEST_RESPONSE
    assert invocation_type("Event") is InvocationType.EVENT
    assert invocation_type("DryRun") is InvocationType.DRY_RUN
    with pytest.raises(InvalidParameterValue):
        invocation_type("Later")


def test_payloads_must_be_json_and_within_limits() -> None:
    assert checked_payload(b"", InvocationType.REQUEST_RESPONSE) == b"{}"
    assert checked_payload(b'{"a": 1}', InvocationType.EVENT) == b'{"a": 1}'
    with pytest.raises(InvalidRequestContent):
        checked_payload(b"not json", InvocationType.REQUEST_RESPONSE)
    big = b'"' + b"x" * 256 * 1024 + b'"'  # valid JSON, over the async limit
    with pytest.raises(RequestTooLarge):
        checked_payload(big, InvocationType.EVENT)
    assert checked_payload(big, InvocationType.REQUEST_RESPONSE) == big


def test_client_context_is_decoded() -> None:
    encoded = base64.b64encode(b'{"custom": {"k": "v"}}').decode()

    assert client_context(encoded) == '{"custom": {"k": "v"}}'
    assert client_context(None) is None
    with pytest.raises(InvalidRequestContent):
        client_context("%%%not base64")


def _authorised(settings: Settings, **headers: str) -> bool:
    wire = {"x-api-key" if name == "api_key" else name: value for name, value in headers.items()}
    request = SignedRequest("POST", "/2015-03-31/functions/f/invocations", "", wire, b"{}")
    return is_authorised(request, settings=settings, now_s=1_800_000_000)


def test_credentials_in_development_mode() -> None:
    settings = Settings()
    sigv4 = "AWS4-HMAC-SHA256 Credential=x/20261128/us-east-1/lambda/aws4_request, ..."

    assert _authorised(settings, api_key=settings.api_key)
    assert _authorised(settings, authorization=sigv4)
    assert not _authorised(settings)
    assert not _authorised(settings, api_key="wrong")
    assert not _authorised(settings, authorization="Bearer garbage")


def test_production_mode_is_never_open_to_unverified_signatures() -> None:
    settings = Settings(is_production=True, api_key="k" * 20, jwt_secret="s" * 40)
    token = jwt.encode(
        {"sub": "u", "iat": 1_800_000_000, "exp": 1_800_000_100, "iss": "edgelambda",
         "aud": "edgelambda", "jti": "j"},
        "s" * 40,
        algorithm="HS256",
    )  # fmt: skip

    assert not _authorised(settings, authorization="AWS4-HMAC-SHA256 Credential=x")
    assert _authorised(settings, api_key="k" * 20)
    assert _authorised(settings, authorization=f"Bearer {token}")


def test_result_headers() -> None:
    ok = result_headers(InvocationResult(b"{}"), None)
    failed = result_headers(InvocationResult(b"{}", "ValueError"), b"log\n")

    assert ok == {"X-Amz-Executed-Version": "$LATEST"}
    assert failed["X-Amz-Function-Error"] == "Unhandled"
    assert base64.b64decode(failed["X-Amz-Log-Result"]) == b"log\n"


def test_production_mode_accepts_a_signature_made_with_the_box_keys() -> None:
    settings = Settings(
        is_production=True, aws_access_key_id="box-key", aws_secret_access_key="box-secret-key"
    )
    url = "http://127.0.0.1:8000/2015-03-31/functions/hello/invocations"

    def signed(key: str, secret: str) -> SignedRequest:
        request = AWSRequest(method="POST", url=url, data=b"{}")
        SigV4Auth(Credentials(key, secret), "lambda", "us-east-1").add_auth(request)
        headers = {name.lower(): str(value) for name, value in request.headers.items()}
        return SignedRequest(
            "POST", urlsplit(url).path, "", headers | {"host": "127.0.0.1:8000"}, b"{}"
        )

    now_s = time.time()
    assert is_authorised(signed("box-key", "box-secret-key"), settings=settings, now_s=now_s)
    assert not is_authorised(signed("box-key", "a-guess"), settings=settings, now_s=now_s)
    assert not is_authorised(signed("edgelambda", "edgelambda"), settings=settings, now_s=now_s)


@pytest.mark.parametrize(
    "decoded",
    [b"[1, 2]", b'"text"', b"not json", b"\xff\xfe", b'{"k": 1'],
    ids=["array", "string", "not-json", "not-utf8", "truncated"],
)
def test_client_context_must_be_a_json_object(decoded: bytes) -> None:
    with pytest.raises(InvalidRequestContent, match="JSON object"):
        client_context(base64.b64encode(decoded).decode())


def test_client_context_with_line_breaks_reaches_the_runtime_on_one_line() -> None:
    decoded = b'{"custom":\r\n {"k": "v"}}'  # valid JSON; raw CR/LF would break a header

    text = client_context(base64.b64encode(decoded).decode())

    assert text == '{"custom":{"k":"v"}}'


@pytest.mark.parametrize(
    ("can_invoke", "is_production", "allowed"),
    [
        (None, False, {"billing", "orders"}),  # development: any function
        (None, True, set()),  # production: none unless listed
        (frozenset({"billing"}), False, {"billing"}),
        (frozenset({"billing"}), True, {"billing"}),
        (frozenset(), False, set()),
    ],
)
def test_a_function_may_invoke_what_can_invoke_lists(
    can_invoke: frozenset[str] | None, is_production: bool, allowed: set[str]
) -> None:
    caller = replace(function_spec(), name="orders", can_invoke=can_invoke)
    settings = Settings(is_production=is_production)

    assert {t for t in ("billing", "orders") if may_invoke(caller, t, settings=settings)} == allowed
