"""Authentication: the original system's login endpoint and the JWT checks of protected routes.

Pure functions over values, with the clock and the token id passed in; the HTTP wiring in
``gateway`` reads the request, calls these and turns the errors raised here into responses.
Tokens are HS256 JWTs signed with ``JWT_SECRET_KEY``. :class:`LoginThrottle` counts failed
logins per client address, also with the time passed in.
"""

from __future__ import annotations

import functools
import hmac
import json
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import jwt

from edgelambda.config import Settings
from edgelambda.errors import BadRequest, InvalidCredentials, LoginThrottled, Unauthorized

ALGORITHM = "HS256"
ISSUER = "edgelambda"
AUDIENCE = "edgelambda"
CLOCK_SKEW_S = 60  # tolerated difference between the issuer's clock and ours
REQUIRED_CLAIMS = ("sub", "iat", "exp", "iss", "aud", "jti")


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization`` header: ``Bearer <jwt>`` or the bare token."""
    if not authorization or not authorization.strip():
        raise Unauthorized("no Authorization header")
    scheme, _, rest = authorization.strip().partition(" ")
    return rest.strip() if scheme.lower() == "bearer" else authorization.strip()


def issue_token(subject: str, *, secret: str, now_s: float, expires_s: int, token_id: str) -> str:
    """A signed token for ``subject``, valid for ``expires_s`` seconds from ``now_s``.

    ``token_id`` becomes the ``jti`` claim; callers pass ``uuid4().hex``.
    """
    # NumericDate may be fractional, but whole seconds are what clients of the original
    # system (and most JWT libraries) expect.
    issued_at = int(now_s)
    payload = {
        "sub": subject,
        "iat": issued_at,
        "exp": issued_at + expires_s,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "jti": token_id,
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def verify_token(token: str, *, secret: str, now_s: float) -> Mapping[str, Any]:
    """The claims of a valid token issued by :func:`issue_token`.

    Anything else raises :class:`Unauthorized`: a bad signature, another algorithm (``none``
    included), a wrong issuer or audience, a missing claim, an expired token (``exp <= now_s``)
    or one issued further in the future than :data:`CLOCK_SKEW_S`.
    """
    claims = _signed_claims(token, secret)
    _check_times(claims, now_s)
    return claims


@functools.lru_cache(maxsize=1024)
def _signed_claims(token: str, secret: str) -> Mapping[str, Any]:
    """The claims of a token whose signature and claims hold, whatever the time: a client
    sends the same token on every request, so each is checked once (only valid ones are
    kept: an exception is not cached). The times are checked on every use."""
    claims = _decode(token, secret)
    _check_strings(claims)
    return MappingProxyType(claims)


def claims_for(authorization: str | None, *, secret: str, now_s: float) -> dict[str, object]:
    """The claims of the token in an ``Authorization`` header, for ``auth: jwt`` routes."""
    return dict(verify_token(bearer_token(authorization), secret=secret, now_s=now_s))


def is_api_key_valid(given: str | None, expected: str) -> bool:
    """Whether ``given`` (the ``x-api-key`` header) is the configured key, in constant time."""
    # An empty expected key must not turn "no header" into a match.
    if not given or not expected:
        return False
    return hmac.compare_digest(_as_bytes(given), _as_bytes(expected))


def login(
    body: bytes, *, api_key: str | None, settings: Settings, now_s: float, token_id: str
) -> dict[str, object]:
    """The original system's ``POST /user/auth/ver1.0``: API key and user/password in, token out.

    ``body`` is ``{"AuthParameters": {"USERNAME": ..., "PASSWORD": ...}}`` and ``api_key`` the
    ``x-api-key`` header. A missing or wrong key raises :class:`Unauthorized` before the body
    is read; a malformed body raises :class:`BadRequest` naming the problem; a wrong user or
    password raises :class:`InvalidCredentials`. The result is the 200 body; the caller adds
    the ``PADMA_USER_AUTHORIZED: true`` header to that response, as the original system does.
    """
    # Key first: callers without the key learn nothing about the body or the users.
    if not is_api_key_valid(api_key, settings.api_key):
        raise Unauthorized("missing or wrong x-api-key")
    username, password = _credentials(body)
    if not _are_credentials_valid(username, password, settings):
        raise InvalidCredentials("wrong user name or password")
    token = issue_token(
        username,
        secret=settings.jwt_secret,
        now_s=now_s,
        expires_s=settings.jwt_expires_s,
        token_id=token_id,
    )
    return {
        "AuthenticationResult": {
            "IdToken": token,
            "ExpiresIn": settings.jwt_expires_s,
            "TokenType": "Bearer",
        }
    }


@dataclass(frozen=True)
class ThrottlePolicy:
    """``max_failures`` failed logins within ``window_s`` of the first one, then 429 until the
    window ends; at most ``max_addresses`` addresses are remembered."""

    max_failures: int
    window_s: float
    max_addresses: int

    @classmethod
    def of(cls, settings: Settings) -> ThrottlePolicy:
        return cls(
            settings.login_max_failures,
            settings.login_failure_window_s,
            settings.login_throttle_addresses,
        )


@dataclass(frozen=True)
class _Failures:
    window_start_s: float
    count: int


class LoginThrottle:
    """Failed logins per client address in fixed windows, so one address cannot guess
    passwords at full speed while every other address keeps logging in.

    Memory is bounded: addresses are kept least recently failed first; expired windows are
    dropped from the front, and past ``max_addresses`` the oldest is forgotten (an attacker
    rotating addresses gains nothing it would not get from that many addresses anyway).
    """

    def __init__(self, policy: ThrottlePolicy) -> None:
        self._policy = policy
        self._failures: OrderedDict[str, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def check(self, address: str, now_s: float) -> None:
        """Raise :class:`LoginThrottled` while ``address`` has used up its failures."""
        failures = self._current(address, now_s)
        if failures is not None and failures.count >= self._policy.max_failures:
            end_s = failures.window_start_s + self._policy.window_s
            raise LoginThrottled(max(1, math.ceil(end_s - now_s)))

    def record_failure(self, address: str, now_s: float) -> None:
        failures = self._current(address, now_s) or _Failures(now_s, 0)
        self._failures[address] = _Failures(failures.window_start_s, failures.count + 1)
        self._failures.move_to_end(address)
        self._forget_expired(now_s)
        while len(self._failures) > self._policy.max_addresses:
            self._failures.popitem(last=False)

    def record_success(self, address: str) -> None:
        self._failures.pop(address, None)

    def _current(self, address: str, now_s: float) -> _Failures | None:
        failures = self._failures.get(address)
        if failures is not None and self._is_expired(failures, now_s):
            del self._failures[address]
            return None
        return failures

    def _forget_expired(self, now_s: float) -> None:
        # The front failed least recently; stop at the first one still counting.
        while self._failures:
            oldest = next(iter(self._failures.values()))
            if not self._is_expired(oldest, now_s):
                return
            self._failures.popitem(last=False)

    def _is_expired(self, failures: _Failures, now_s: float) -> bool:
        return now_s >= failures.window_start_s + self._policy.window_s


def _decode(token: str, secret: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            # Times are checked in _check_times against the injected clock, not time.time().
            options={
                "require": list(REQUIRED_CLAIMS),
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "strict_aud": True,
            },
        )
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    return claims


def _check_strings(claims: Mapping[str, Any]) -> None:
    # Newer pyjwt versions check these too; the supported range does not all do.
    for name in ("sub", "jti"):
        if not isinstance(claims[name], str) or not claims[name]:
            raise Unauthorized(f"{name} must be a non-empty string")


def _check_times(claims: Mapping[str, Any], now_s: float) -> None:
    exp, iat = _numeric_date(claims, "exp"), _numeric_date(claims, "iat")
    if exp <= now_s:
        raise Unauthorized("token expired")
    if iat > now_s + CLOCK_SKEW_S:
        raise Unauthorized("token issued in the future")
    if "nbf" in claims and _numeric_date(claims, "nbf") > now_s + CLOCK_SKEW_S:
        raise Unauthorized("token not valid yet")


def _numeric_date(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    # bool is an int subclass; `"exp": true` is not a date.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthorized(f"{name} must be a number")
    return float(value)


def _credentials(body: bytes) -> tuple[str, str]:
    try:
        document = json.loads(body)
    # ValueError covers bad JSON and bad UTF-8; RecursionError a deeply nested document.
    except (ValueError, RecursionError):
        raise _bad_request("body must be JSON") from None
    if not isinstance(document, dict):
        raise _bad_request("body must be a JSON object")
    params = document.get("AuthParameters")
    if params is None:
        raise _bad_request("AuthParameters is required")
    if not isinstance(params, dict):
        raise _bad_request("AuthParameters must be an object")
    return _string_param(params, "USERNAME"), _string_param(params, "PASSWORD")


def _string_param(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    if value is None:
        raise _bad_request(f"AuthParameters.{name} is required")
    if not isinstance(value, str):
        raise _bad_request(f"AuthParameters.{name} must be a string")
    return value


def _are_credentials_valid(username: str, password: str, settings: Settings) -> bool:
    # Both comparisons always run, so the timing does not tell which of the two was wrong.
    is_user_valid = hmac.compare_digest(_as_bytes(username), _as_bytes(settings.auth_user))
    is_pass_valid = hmac.compare_digest(_as_bytes(password), _as_bytes(settings.auth_pass))
    return is_user_valid and is_pass_valid


def _as_bytes(text: str) -> bytes:
    # JSON "\ud800" escapes and undecodable header bytes give lone surrogates, which plain
    # UTF-8 refuses; they cannot match a real secret but must not crash the comparison.
    return text.encode("utf-8", "surrogatepass")


def _bad_request(message: str) -> BadRequest:
    return BadRequest(message, public_message=message)
