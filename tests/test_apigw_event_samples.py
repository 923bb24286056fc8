"""API Gateway events against AWS's published samples: the same keys, none invented."""

from __future__ import annotations

from edgelambda.apigw_event import HttpRequest, build_v1_event, build_v2_event
from edgelambda.routing import PayloadVersion, Route, RouteMatch

# --- key sets of AWS's published sample events ------------------------------------------------

# From the sample events in the API Gateway developer guide ("Input format of a Lambda function
# for proxy integration" and "HTTP API payload format version 2.0").
AWS_V1_KEYS = {
    "resource", "path", "httpMethod", "headers", "multiValueHeaders", "queryStringParameters",
    "multiValueQueryStringParameters", "pathParameters", "stageVariables", "requestContext",
    "body", "isBase64Encoded",
}  # fmt: skip
AWS_V1_CONTEXT_KEYS = {
    "accountId", "apiId", "authorizer", "domainName", "domainPrefix", "extendedRequestId",
    "httpMethod", "identity", "path", "protocol", "requestId", "requestTime", "requestTimeEpoch",
    "resourceId", "resourcePath", "stage",
}  # fmt: skip
AWS_V1_IDENTITY_KEYS = {
    "accessKey", "accountId", "caller", "cognitoAuthenticationProvider",
    "cognitoAuthenticationType", "cognitoIdentityId", "cognitoIdentityPoolId", "principalOrgId",
    "sourceIp", "user", "userAgent", "userArn",
}  # fmt: skip
AWS_V2_KEYS = {
    "version", "routeKey", "rawPath", "rawQueryString", "cookies", "headers",
    "queryStringParameters", "requestContext", "body", "pathParameters", "isBase64Encoded",
    "stageVariables",
}  # fmt: skip
AWS_V2_CONTEXT_KEYS = {
    "accountId", "apiId", "authentication", "authorizer", "domainName", "domainPrefix", "http",
    "requestId", "routeKey", "stage", "time", "timeEpoch",
}  # fmt: skip


def _sample_request() -> HttpRequest:
    return HttpRequest(
        method="POST",
        path="/a/1",
        raw_path="/a/1",
        raw_query="q=1",
        headers=(("Host", "example.com"), ("Cookie", "c=1"), ("User-Agent", "curl/8")),
        body=b"{}",
        source_ip="192.0.2.1",
        host="example.com",
        protocol="HTTP/1.1",
    )


def _sample_match(payload: PayloadVersion) -> RouteMatch:
    route = Route(path="/a/{x}", methods=frozenset({"POST"}), function="f", payload=payload)
    return RouteMatch(route, {"x": "1"})


def test_v1_events_have_the_key_sets_of_aws_samples() -> None:
    event = build_v1_event(
        _sample_request(), _sample_match(PayloadVersion.V1), request_id="r", now_ms=0,
        claims={"sub": "u"},
    )  # fmt: skip

    assert set(event) == AWS_V1_KEYS
    context = event["requestContext"]
    assert isinstance(context, dict)
    assert set(context) == AWS_V1_CONTEXT_KEYS
    assert set(context["identity"]) >= AWS_V1_IDENTITY_KEYS


def test_v2_events_have_the_key_sets_of_aws_samples() -> None:
    event = build_v2_event(
        _sample_request(), _sample_match(PayloadVersion.V2), request_id="r", now_ms=0,
        claims={"sub": "u"},
    )  # fmt: skip

    # Keys AWS leaves out when empty may be missing; none may be invented.
    assert set(event) <= AWS_V2_KEYS
    assert {"version", "routeKey", "rawPath", "rawQueryString", "headers", "requestContext",
            "isBase64Encoded"} <= set(event)  # fmt: skip
    context = event["requestContext"]
    assert isinstance(context, dict)
    assert set(context) <= AWS_V2_CONTEXT_KEYS
    assert set(context["http"]) == {"method", "path", "protocol", "sourceIp", "userAgent"}
