"""AWS identity as edgelambda presents it: the one account id every ARN and event carries,
and the ARNs built from it (pure)."""

from __future__ import annotations

ACCOUNT_ID = "123456789012"  # the account id every edgelambda ARN and event carries


def function_arn(function_name: str, region: str) -> str:
    return f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{function_name}"
