"""SigV4 verification against botocore's own signer (the oracle): what boto3 signs for the
Invoke API verifies with the same keys and nothing else does."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import urlsplit

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from yarl import URL

from edgelambda.invoke_api import signed_request
from edgelambda.sigv4 import SignedRequest, parse_authorization, verifies

KEY, SECRET = "box-key", "box-secret-key"
INVOKE = "/2015-03-31/functions/{}/invocations"
NAMES = ["hello", "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Ahello"]


def botocore_signed(
    url: str, body: bytes, *, key: str = KEY, secret: str = SECRET, service: str = "lambda"
) -> dict[str, str]:
    """Headers botocore's SigV4Auth adds to an Invoke call (the host is the HTTP layer's)."""
    request = AWSRequest(method="POST", url=url, data=body, headers={
        "X-Amz-Invocation-Type": "RequestResponse", "X-Amz-Log-Type": "Tail"})  # fmt: skip
    SigV4Auth(Credentials(key, secret), service, "us-east-1").add_auth(request)
    return {name: str(value) for name, value in request.headers.items()}


def as_received(url: str, headers: dict[str, str], body: bytes) -> SignedRequest:
    parts = urlsplit(url)
    wire = {name.lower(): value for name, value in headers.items()} | {"host": parts.netloc}
    return SignedRequest("POST", parts.path, parts.query, wire, body)


def check(request: SignedRequest, *, now_s: float | None = None, secret: str = SECRET) -> bool:
    return verifies(
        request, access_key_id=KEY, secret_access_key=secret, service="lambda",
        now_s=time.time() if now_s is None else now_s,
    )  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("query", ["", "?Qualifier=%24LATEST"])
def test_what_botocore_signs_verifies(name: str, query: str) -> None:
    url = f"http://127.0.0.1:8000{INVOKE.format(name)}{query}"
    body = b'{"k": 1}'

    assert check(as_received(url, botocore_signed(url, body), body))


def test_anything_else_is_refused() -> None:
    url = f"http://127.0.0.1:8000{INVOKE.format('hello')}"
    body = b'{"k": 1}'
    good = as_received(url, botocore_signed(url, body), body)
    assert check(good)

    assert not check(good, secret="another-secret")
    assert not check(replace(good, body=b'{"k": 2}'))  # the payload is signed
    assert not check(replace(good, raw_path=INVOKE.format("other")))
    assert not check(replace(good, headers={**good.headers, "host": "127.0.0.1:9999"}))
    assert not check(good, now_s=time.time() + 16 * 60)  # too old
    other_key = as_received(url, botocore_signed(url, body, key="other-key"), body)
    assert not check(other_key)
    s3 = as_received(url, botocore_signed(url, body, service="s3"), body)
    assert not check(s3)
    unsigned_date = {k: v for k, v in good.headers.items() if k != "x-amz-date"}
    assert not check(replace(good, headers=unsigned_date))
    garbage = {**good.headers, "authorization": "AWS4-HMAC-SHA256 Credential=x"}
    assert not check(replace(good, headers=garbage))


@pytest.mark.parametrize(
    "change",
    [
        {"authorization": "AWS4-HMAC-SHA256 Credential=é/20261201/us-east-1/lambda/aws4_request,"
                          " SignedHeaders=host;x-amz-date, Signature=" + "0" * 64},
        {"authorization": "AWS4-HMAC-SHA256 Credential=box-key/20261201/us-east-1/lambda/"
                          "aws4_request, SignedHeaders=host;x-amz-date, Signature=é"},
        {"authorization": "AWS4-HMAC-SHA256"},
        {"authorization": "AWS4-HMAC-SHA256 ,,,=,=="},
        {"x-amz-date": "2026é"},
        {"x-amz-invocation-type": "Request\udcffResponse"},  # a raw byte, as aiohttp keeps it
        {"x-amz-log-type": "None", "x-amz-client-context": "e30="},  # x-amz-* left unsigned
    ],
    ids=["key-not-ascii", "signature-not-hex", "no-fields", "junk", "date", "value-byte",
         "unsigned-amz-header"],
)  # fmt: skip
def test_malformed_or_tampered_headers_are_refused_not_raised(change: dict[str, str]) -> None:
    url = f"http://127.0.0.1:8000{INVOKE.format('hello')}"
    good = as_received(url, botocore_signed(url, b"{}"), b"{}")

    assert not check(replace(good, headers={**good.headers, **change}))
    assert not check(replace(good, raw_path="/2015-03-31/functions/h\udcffllo/invocations"))


def test_authorization_header_parts() -> None:
    header = (
        "AWS4-HMAC-SHA256 Credential=AK/20261201/us-east-1/lambda/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=" + "ab" * 32
    )
    credential = parse_authorization(header)

    assert credential is not None
    assert credential.access_key_id == "AK"
    assert credential.scope == "20261201/us-east-1/lambda/aws4_request"
    assert credential.signed_headers == ("host", "x-amz-date")
    assert credential.signature == "ab" * 32
    assert parse_authorization("Bearer x") is None
    assert parse_authorization("AWS4-HMAC-SHA256 Credential=AK/20261201") is None


async def echo_verified(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(check(signed_request(request, body)))


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_post("/2015-03-31/functions/{function}/invocations", echo_verified)
    async with TestServer(app, host="127.0.0.1") as test_server:
        yield test_server


@pytest.mark.parametrize("name", NAMES)
async def test_the_gateway_reads_a_signed_request_as_it_arrived(
    server: TestServer, name: str
) -> None:
    url = f"http://127.0.0.1:{server.port}{INVOKE.format(name)}?Qualifier=%24LATEST"
    body = b'{"k": 1}'
    headers = botocore_signed(url, body)

    async with ClientSession() as session:
        for sent, expected in ((headers, True), ({**headers, "X-Amz-Log-Type": "None"}, False)):
            # encoded=True: on the wire exactly as botocore (urllib3) sends it
            async with session.post(URL(url, encoded=True), data=body, headers=sent) as response:
                assert await response.json() is expected
