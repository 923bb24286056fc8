"""AWS Signature Version 4, verified on requests the AWS SDKs sign (pure).

In production mode the Invoke API accepts a SigV4-signed call only when its signature
verifies against the box's configured keys. The algorithm is AWS's ("Create a signed AWS API
request" in the IAM user guide) as botocore computes it (``SigV4Auth`` in botocore/auth.py):
the path as sent is percent-encoded once more (services other than S3 double-encode), the
query is split on ``&`` and sorted as sent, header values have their white space folded, and
the payload hash is the body's SHA-256 (botocore sends no ``x-amz-content-sha256`` to Lambda).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 15 * 60  # AWS refuses signatures dated more than 15 minutes from its clock
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
SIGNATURE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class SignedRequest:
    """What a signature covers, as it arrived."""

    method: str
    raw_path: str  # percent-encoded as sent, without the query
    raw_query: str
    headers: Mapping[str, str]  # looked up by lower-case name (aiohttp's are case-insensitive)
    body: bytes


@dataclass(frozen=True)
class Credential:
    """The parts of an ``Authorization: AWS4-HMAC-SHA256 ...`` header."""

    access_key_id: str
    date: str  # YYYYMMDD
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def parse_authorization(header: str) -> Credential | None:
    """``AWS4-HMAC-SHA256 Credential=AKID/20261201/us-east-1/lambda/aws4_request,
    SignedHeaders=host;x-amz-date, Signature=hex``; None when it is not of that form."""
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        return None
    fields = dict(part.strip().partition("=")[::2] for part in rest.split(","))
    scope = fields.get("Credential", "").split("/")
    signed = tuple(fields.get("SignedHeaders", "").split(";"))
    signature = fields.get("Signature", "")
    if len(scope) != 5 or scope[4] != "aws4_request" or not all(signed):
        return None
    if not SIGNATURE.fullmatch(signature) or not rest.isascii():
        return None
    return Credential(scope[0], scope[1], scope[2], scope[3], signed, signature)


def verifies(
    request: SignedRequest,
    *,
    access_key_id: str,
    secret_access_key: str,
    service: str,
    now_s: float,
) -> bool:
    """True when the request is signed for ``service`` with these keys, recently."""
    credential = parse_authorization(request.headers.get("authorization", ""))
    amz_date = request.headers.get("x-amz-date", "")
    if credential is None or not _is_signable(credential, amz_date, service, now_s):
        return False
    if not hmac.compare_digest(credential.access_key_id.encode(), access_key_id.encode()):
        return False
    canonical = canonical_request(request, credential.signed_headers)
    if canonical is None:
        return False
    to_sign = "\n".join([ALGORITHM, amz_date, credential.scope, _sha256(canonical.encode())])
    key = signing_key(secret_access_key, credential.date, credential.region, credential.service)
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), credential.signature.encode())


def _is_signable(credential: Credential, amz_date: str, service: str, now_s: float) -> bool:
    """The scope names the service and the request's day, and the date is recent."""
    if credential.service != service or not amz_date.startswith(credential.date):
        return False
    if not {"host", "x-amz-date"} <= set(credential.signed_headers):
        return False
    try:
        signed_at = datetime.strptime(amz_date, AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return False
    return abs(signed_at.timestamp() - now_s) <= MAX_SKEW_S


def canonical_request(request: SignedRequest, signed_headers: tuple[str, ...]) -> str | None:
    """The canonical request over ``signed_headers``; None when a signed header is absent
    or not ASCII, an ``x-amz-*`` header is left unsigned (botocore signs every one, and an
    unsigned ``X-Amz-Log-Type`` added to a replayed call would read its log), or the body
    does not match a hash the client declared."""
    payload_hash = _sha256(request.body)
    declared = request.headers.get("x-amz-content-sha256")
    if declared is not None and declared != payload_hash:
        return None
    if any(_is_amz(name) and name.lower() not in signed_headers for name in request.headers):
        return None
    if not (request.raw_path.isascii() and request.raw_query.isascii()):
        return None  # a request target is ASCII on the wire
    lines = []
    for name in signed_headers:
        value = request.headers.get(name)
        if value is None or not value.isascii():
            return None
        lines.append(f"{name}:{' '.join(value.split())}\n")
    return "\n".join(
        [
            request.method.upper(),
            quote(request.raw_path or "/", safe="/~"),
            _canonical_query(request.raw_query),
            "".join(lines),
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def _is_amz(name: str) -> bool:
    return name.lower().startswith("x-amz-") and name.lower() != "x-amz-content-sha256"


def _canonical_query(raw_query: str) -> str:
    pairs = sorted(pair.partition("=")[::2] for pair in raw_query.split("&") if pair)
    return "&".join(f"{key}={value}" for key, value in pairs)


def signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret_access_key}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
