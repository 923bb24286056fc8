from __future__ import annotations

import jwt
import pytest

from edgelambda.auth import bearer_token, verify_token
from edgelambda.errors import Unauthorized

SECRET = "test-secret-with-enough-length-for-hs256"
NOW = 1_800_000_000


def _token(secret: str = SECRET, algorithm: str = "HS256", **claims: object) -> str:
    payload = {"sub": "onpremise-user", "iat": NOW - 10, "exp": NOW + 100, **claims}
    return jwt.encode(payload, secret, algorithm=algorithm)


def test_bearer_and_bare_tokens_are_accepted() -> None:
    assert bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token("bearer  abc.def.ghi ") == "abc.def.ghi"
    assert bearer_token("abc.def.ghi") == "abc.def.ghi"
    with pytest.raises(Unauthorized):
        bearer_token(None)
    with pytest.raises(Unauthorized):
        bearer_token("  ")


def test_valid_token_gives_its_claims() -> None:
    claims = verify_token(_token(), secret=SECRET, now_s=NOW)

    assert claims["sub"] == "onpremise-user"


def test_expiry_uses_the_injected_clock() -> None:
    token = _token()

    assert verify_token(token, secret=SECRET, now_s=NOW + 99)["sub"] == "onpremise-user"
    with pytest.raises(Unauthorized, match="expired"):
        verify_token(token, secret=SECRET, now_s=NOW + 100)


@pytest.mark.parametrize(
    "token",
    [
        _token(secret="another-secret-with-enough-length-for-hs256"),
        _token(secret=SECRET * 2, algorithm="HS512"),
        jwt.encode({"sub": "x", "iat": NOW, "exp": NOW + 100}, None, algorithm="none"),
        _token()[:-4] + "AAAA",
        "not-a-token",
    ],
    ids=["wrong-secret", "wrong-algorithm", "alg-none", "tampered", "garbage"],
)
def test_bad_tokens_are_refused(token: str) -> None:
    with pytest.raises(Unauthorized):
        verify_token(token, secret=SECRET, now_s=NOW)


def test_missing_required_claims_are_refused() -> None:
    token = jwt.encode({"sub": "x", "exp": NOW + 100}, SECRET, algorithm="HS256")

    with pytest.raises(Unauthorized):
        verify_token(token, secret=SECRET, now_s=NOW)
