"""JWT checks for protected routes (HS256 tokens signed with ``JWT_SECRET_KEY``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jwt

from edgelambda.errors import Unauthorized

ALGORITHM = "HS256"


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
            options={"require": ["sub", "iat", "exp"], "verify_exp": False},
        )
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    # Expiry is checked here, against the injected clock, not against time.time().
    if not isinstance(claims["exp"], int | float) or claims["exp"] <= now_s:
        raise Unauthorized("token expired")
    return claims
