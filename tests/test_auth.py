from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt
import pytest

from edgelambda.auth import (
    AUDIENCE,
    CLOCK_SKEW_S,
    ISSUER,
    LoginThrottle,
    ThrottlePolicy,
    bearer_token,
    claims_for,
    is_api_key_valid,
    issue_token,
    login,
    verify_token,
)
from edgelambda.config import Settings
from edgelambda.errors import BadRequest, InvalidCredentials, LoginThrottled, Unauthorized

SECRET = "test-secret-with-enough-length-for-hs256"
# pyjwt warns about HMAC keys shorter than the digest, and warnings are errors here.
LONG_SECRET = "x" * 64
NOW = 1_800_000_000
API_KEY = "test-api-key"
USER = "test-user"
PASSWORD = "test-pass"
TOKEN_ID = "0123456789abcdef0123456789abcdef"
EXPIRES_S = 600

SETTINGS = Settings(
    api_key=API_KEY,
    auth_user=USER,
    auth_pass=PASSWORD,
    jwt_secret=SECRET,
    jwt_expires_s=EXPIRES_S,
)


def _claims(**overrides: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "sub": USER,
        "iat": NOW - 10,
        "exp": NOW + 100,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "jti": TOKEN_ID,
    }
    claims.update(overrides)
    return claims


def _token(secret: str = SECRET, algorithm: str = "HS256", **overrides: object) -> str:
    return jwt.encode(_claims(**overrides), secret, algorithm=algorithm)


def _without(claim: str) -> str:
    claims = _claims()
    del claims[claim]
    return jwt.encode(claims, SECRET, algorithm="HS256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_signed_with_header(header: dict[str, str]) -> str:
    """A token whose header names another algorithm but which is HMAC-signed with the secret:
    the algorithm-confusion attack."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims()).encode())}"
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _tampered_signature() -> str:
    header, payload, signature = _token().split(".")
    # The first character carries six whole bits of the signature, so changing it always
    # changes the decoded signature (the last one may only carry padding bits).
    first = "B" if signature[0] == "A" else "A"
    return f"{header}.{payload}.{first}{signature[1:]}"


def _tampered_payload() -> str:
    header, _, signature = _token().split(".")
    forged = _b64(json.dumps(_claims(sub="admin")).encode())
    return f"{header}.{forged}.{signature}"


def _body(**params: object) -> bytes:
    return json.dumps({"AuthParameters": params}).encode()


GOOD_BODY = _body(USERNAME=USER, PASSWORD=PASSWORD)


def _login(body: bytes = GOOD_BODY, api_key: str | None = API_KEY) -> dict[str, object]:
    return login(body, api_key=api_key, settings=SETTINGS, now_s=NOW, token_id=TOKEN_ID)


# --- bearer_token ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer abc.def.ghi", "abc.def.ghi"),
        ("BEARER  abc.def.ghi ", "abc.def.ghi"),
        ("abc.def.ghi", "abc.def.ghi"),
    ],
    ids=["Bearer", "lower-case-bearer", "upper-case-extra-spaces", "bare"],
)
def test_bearer_token_is_read(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", [None, "", "   "], ids=["none", "empty", "blank"])
def test_missing_authorization_is_refused(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        bearer_token(header)


# --- issue_token / verify_token -------------------------------------------------------------


def test_issued_token_carries_every_claim() -> None:
    token = issue_token(USER, secret=SECRET, now_s=NOW + 0.75, expires_s=EXPIRES_S, token_id="t1")

    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert dict(verify_token(token, secret=SECRET, now_s=NOW)) == _claims(
        iat=NOW, exp=NOW + EXPIRES_S, jti="t1"
    )


def test_valid_token_gives_its_claims() -> None:
    claims = verify_token(_token(), secret=SECRET, now_s=NOW)

    assert claims["sub"] == USER
    assert claims["jti"] == TOKEN_ID


def test_token_is_valid_until_just_before_exp() -> None:
    assert verify_token(_token(), secret=SECRET, now_s=NOW + 99.999)["sub"] == USER


@pytest.mark.parametrize("now_s", [NOW + 100, NOW + 10_000], ids=["at-exp", "after-exp"])
def test_expired_token_is_refused(now_s: float) -> None:
    with pytest.raises(Unauthorized, match="expired"):
        verify_token(_token(), secret=SECRET, now_s=now_s)


def test_a_token_checked_once_is_still_refused_once_it_expires() -> None:
    token = _token()
    assert verify_token(token, secret=SECRET, now_s=NOW)["sub"] == USER  # checked, kept

    with pytest.raises(Unauthorized, match="expired"):
        verify_token(token, secret=SECRET, now_s=NOW + 100)
    with pytest.raises(Unauthorized):
        verify_token(token, secret="another-secret-of-at-least-32-bytes!!", now_s=NOW)


def test_iat_within_the_clock_skew_is_accepted() -> None:
    token = _token(iat=NOW + CLOCK_SKEW_S, exp=NOW + 1000)

    assert verify_token(token, secret=SECRET, now_s=NOW)["sub"] == USER


def test_iat_in_the_future_is_refused() -> None:
    token = _token(iat=NOW + CLOCK_SKEW_S + 1, exp=NOW + 1000)

    with pytest.raises(Unauthorized, match="future"):
        verify_token(token, secret=SECRET, now_s=NOW)


def test_nbf_in_the_future_is_refused() -> None:
    token = _token(nbf=NOW + CLOCK_SKEW_S + 1)

    with pytest.raises(Unauthorized, match="not valid yet"):
        verify_token(token, secret=SECRET, now_s=NOW)


@pytest.mark.parametrize(
    "token",
    [
        _token(secret="another-secret-with-enough-length-for-hs256"),
        _tampered_signature(),
        _tampered_payload(),
        jwt.encode(_claims(), None, algorithm="none"),
        _token(secret=LONG_SECRET, algorithm="HS512"),
        _hs256_signed_with_header({"alg": "HS512", "typ": "JWT"}),
        _hs256_signed_with_header({"alg": "RS256", "typ": "JWT"}),
        _token(aud="someone-else"),
        _token(aud=[AUDIENCE, "someone-else"]),
        _token(iss="someone-else"),
        "not-a-token",
        "",
    ],
    ids=[
        "wrong-secret",
        "tampered-signature",
        "tampered-payload",
        "alg-none",
        "hs512-signed",
        "hs512-header",
        "rs256-header",
        "wrong-audience",
        "audience-list",
        "wrong-issuer",
        "garbage",
        "empty",
    ],
)
def test_bad_tokens_are_refused(token: str) -> None:
    with pytest.raises(Unauthorized):
        verify_token(token, secret=SECRET, now_s=NOW)


def test_hs512_token_is_refused_even_with_its_own_secret() -> None:
    with pytest.raises(Unauthorized):
        verify_token(_token(secret=LONG_SECRET, algorithm="HS512"), secret=LONG_SECRET, now_s=NOW)


@pytest.mark.parametrize("claim", ["sub", "iat", "exp", "iss", "aud", "jti"])
def test_missing_claim_is_refused(claim: str) -> None:
    with pytest.raises(Unauthorized):
        verify_token(_without(claim), secret=SECRET, now_s=NOW)


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": "soon"},
        {"exp": True},
        {"iat": "now"},
        {"jti": ""},
        {"sub": 42},
    ],
    ids=["exp-string", "exp-bool", "iat-string", "jti-empty", "sub-number"],
)
def test_malformed_claims_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(Unauthorized):
        verify_token(_token(**overrides), secret=SECRET, now_s=NOW)


def test_refusal_does_not_leak_the_reason_publicly() -> None:
    with pytest.raises(Unauthorized) as caught:
        verify_token(_token(iss="someone-else"), secret=SECRET, now_s=NOW)

    assert caught.value.public_message == "Unauthorized"
    assert caught.value.status == 401


# --- claims_for ------------------------------------------------------------------------------


def test_claims_for_reads_the_header_and_verifies() -> None:
    claims = claims_for(f"Bearer {_token()}", secret=SECRET, now_s=NOW)

    assert type(claims) is dict
    assert claims["sub"] == USER


@pytest.mark.parametrize(
    "header", [None, "Bearer ", f"Bearer {_token(secret='x' * 40)}"], ids=["none", "empty", "bad"]
)
def test_claims_for_refuses_without_a_valid_token(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        claims_for(header, secret=SECRET, now_s=NOW)


# --- is_api_key_valid ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected", "is_valid"),
    [
        (API_KEY, API_KEY, True),
        (API_KEY + "x", API_KEY, False),
        (API_KEY[:-1], API_KEY, False),
        (None, API_KEY, False),
        ("", API_KEY, False),
        ("", "", False),
        ("\udcff", API_KEY, False),
        ("ключ", "ключ", True),
    ],
    ids=["right", "longer", "shorter", "none", "empty", "both-empty", "surrogate", "non-ascii"],
)
def test_api_key_check(given: str | None, expected: str, is_valid: bool) -> None:
    assert is_api_key_valid(given, expected) is is_valid


# --- login -----------------------------------------------------------------------------------


def test_login_returns_a_token_that_verifies() -> None:
    result = _login()

    assert list(result) == ["AuthenticationResult"]
    auth_result = result["AuthenticationResult"]
    assert isinstance(auth_result, dict)
    token = auth_result.pop("IdToken")
    assert auth_result == {"ExpiresIn": EXPIRES_S, "TokenType": "Bearer"}
    assert isinstance(token, str)
    assert dict(verify_token(token, secret=SECRET, now_s=NOW)) == _claims(
        iat=NOW, exp=NOW + EXPIRES_S
    )


@pytest.mark.parametrize(
    ("api_key", "body"),
    [
        (None, GOOD_BODY),
        ("", GOOD_BODY),
        ("wrong-key", GOOD_BODY),
        (None, b"not json"),
        ("wrong-key", b"[]"),
        ("wrong-key", _body(USERNAME=USER)),
    ],
    ids=[
        "missing-key",
        "empty-key",
        "wrong-key",
        "missing-key-malformed-body",
        "wrong-key-list-body",
        "wrong-key-no-password",
    ],
)
def test_login_without_the_api_key_is_unauthorized(api_key: str | None, body: bytes) -> None:
    with pytest.raises(Unauthorized) as caught:
        _login(body, api_key=api_key)

    assert not isinstance(caught.value, InvalidCredentials)
    assert caught.value.headers == {}
    assert caught.value.status == 401


@pytest.mark.parametrize(
    "body",
    [
        _body(USERNAME=USER, PASSWORD="wrong-pass"),
        _body(USERNAME="wrong-user", PASSWORD=PASSWORD),
        _body(USERNAME="wrong-user", PASSWORD="wrong-pass"),
        _body(USERNAME="", PASSWORD=""),
        _body(USERNAME=USER, PASSWORD="\ud800"),
    ],
    ids=["wrong-password", "wrong-user", "both-wrong", "both-empty", "lone-surrogate"],
)
def test_login_with_wrong_credentials_is_invalid_credentials(body: bytes) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        _login(body)

    assert caught.value.headers == {"PADMA_USER_AUTHORIZED": "true"}
    assert caught.value.status == 401


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "body must be JSON"),
        (b"", "body must be JSON"),
        (b"\xff\xfe{", "body must be JSON"),
        (b"[" * 100_000, "body must be JSON"),
        (b"[]", "body must be a JSON object"),
        (b'"text"', "body must be a JSON object"),
        (b"{}", "AuthParameters is required"),
        (b'{"AuthParameters": "x"}', "AuthParameters must be an object"),
        (_body(PASSWORD=PASSWORD), "AuthParameters.USERNAME is required"),
        (_body(USERNAME=42, PASSWORD=PASSWORD), "AuthParameters.USERNAME must be a string"),
        (_body(USERNAME=USER), "AuthParameters.PASSWORD is required"),
        (_body(USERNAME=USER, PASSWORD=None), "AuthParameters.PASSWORD is required"),
        (_body(USERNAME=USER, PASSWORD=["x"]), "AuthParameters.PASSWORD must be a string"),
    ],
    ids=[
        "not-json",
        "empty",
        "not-utf8",
        "too-deep",
        "json-list",
        "json-string",
        "no-auth-parameters",
        "auth-parameters-not-object",
        "no-username",
        "username-not-string",
        "no-password",
        "password-null",
        "password-not-string",
    ],
)
def test_login_with_a_malformed_body_is_bad_request(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        _login(body)

    assert caught.value.public_message == message
    assert caught.value.status == 400


# --- throttling failed logins ----------------------------------------------------------------

POLICY = ThrottlePolicy(max_failures=3, window_s=60, max_addresses=4)


def _fail(throttle: LoginThrottle, address: str, times: int, now_s: float = NOW) -> None:
    for _ in range(times):
        throttle.record_failure(address, now_s)


def test_an_address_is_throttled_after_its_failures_until_the_window_ends() -> None:
    throttle = LoginThrottle(POLICY)
    _fail(throttle, "198.51.100.1", 2)
    throttle.check("198.51.100.1", NOW + 1)  # two failures: still allowed
    _fail(throttle, "198.51.100.1", 1, NOW + 10)

    with pytest.raises(LoginThrottled) as refused:
        throttle.check("198.51.100.1", NOW + 10)

    assert (refused.value.status, refused.value.retry_after_s) == (429, 50)
    assert refused.value.headers == {"Retry-After": "50"}
    assert refused.value.body() == {"message": "Too Many Requests"}
    throttle.check("198.51.100.1", NOW + 60)  # the window is over


def test_retry_after_is_at_least_one_second() -> None:
    throttle = LoginThrottle(POLICY)
    _fail(throttle, "198.51.100.1", 3)

    with pytest.raises(LoginThrottled) as refused:
        throttle.check("198.51.100.1", NOW + 59.9)

    assert refused.value.retry_after_s == 1


def test_other_addresses_are_not_throttled() -> None:
    throttle = LoginThrottle(POLICY)
    _fail(throttle, "198.51.100.1", 10)

    throttle.check("198.51.100.2", NOW)
    throttle.check("2001:db8::1", NOW)


def test_a_success_resets_the_count() -> None:
    throttle = LoginThrottle(POLICY)
    _fail(throttle, "198.51.100.1", 2)
    throttle.record_success("198.51.100.1")
    _fail(throttle, "198.51.100.1", 2)

    throttle.check("198.51.100.1", NOW)


def test_rotating_addresses_keeps_memory_bounded() -> None:
    throttle = LoginThrottle(POLICY)
    for n in range(1000):
        throttle.record_failure(f"10.0.{n // 256}.{n % 256}", NOW + n / 1000)

    assert len(throttle) == POLICY.max_addresses  # the oldest are forgotten
    _fail(throttle, "10.0.3.231", 2, NOW + 1)
    with pytest.raises(LoginThrottled):  # the newest are still counted
        throttle.check("10.0.3.231", NOW + 1)


def test_expired_windows_are_forgotten() -> None:
    throttle = LoginThrottle(POLICY)
    _fail(throttle, "198.51.100.1", 1)
    _fail(throttle, "198.51.100.2", 1, NOW + 30)

    _fail(throttle, "198.51.100.3", 1, NOW + 61)

    assert len(throttle) == 2  # .1's window ended; .2's has not
