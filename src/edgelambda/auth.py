"""JWT checks for protected routes (HS256 tokens signed with ``JWT_SECRET_KEY``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jwt

from edgelambda.errors import Unauthorized

ALGORITHM = "HS256"
CLOCK_SKEW_S = 60  # tolerated difference between the issuer's clock and ours


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization`` header: ``Bearer <jwt>`` or the bare token."""
    if not authorization or not authorization.strip():
        raise Unauthorized("no Authorization header")
    scheme, _, rest = authorization.strip().partition(" ")
    return rest.strip() if scheme.lower() == "bearer" else authorization.strip()


def verify_token(token: str, *, secret: str, now_s: float) -> Mapping[str, Any]:
    """The claims of a valid token; anything else (expired, tampered, another algorithm)
    raises :class:`Unauthorized`."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            # Times are checked below against the injected clock, not time.time().
            options={
                "require": ["sub", "iat", "exp"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    exp, iat = claims["exp"], claims["iat"]
    if not isinstance(exp, int | float) or not isinstance(iat, int | float):
        raise Unauthorized("exp and iat must be numbers")
    if exp <= now_s:
        raise Unauthorized("token expired")
    if iat > now_s + CLOCK_SKEW_S:
        raise Unauthorized("token issued in the future")
    return claims
