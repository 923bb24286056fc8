"""Handlers that misbehave toward the platform, for the real-engine fault tests: one polls its
own Runtime API while it holds an invocation, one shows the client context it was given, one
returns a result of a chosen size (around Lambda's 6,291,556-byte limit)."""

import json
import os
import urllib.error
import urllib.request


def poll_self(event, context):
    """Asks the Runtime API for the next invocation while this one is still open."""
    print(f"handling {event.get('tag')}")
    if not event.get("poll", True):
        return {"polled": False}
    url = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime/invocation/next"
    try:
        with urllib.request.urlopen(url, timeout=float(event.get("poll_timeout_s", 2))) as got:
            return {"polled": True, "status": got.status}
    except urllib.error.HTTPError as exc:
        return {"polled": True, "status": exc.code}
    except OSError as exc:  # a timeout or a refused connection: what the poll came to
        return {"polled": True, "error": repr(exc)}


def client_context(event, context):
    found = context.client_context
    if found is None:
        return {"client_context": None}
    return {"client_context": {"custom": found.custom, "env": found.env}}


def sized(event, context):
    """A result whose JSON is ``bytes`` long: a string on the Invoke API, an API Gateway
    result whose body fills it on a route."""
    query = event.get("queryStringParameters") or {}
    size = int(query.get("bytes", event.get("bytes", 0)))
    if "requestContext" not in event:
        return "x" * (size - 2)  # the JSON quotes
    shell = json.dumps({"statusCode": 200, "body": ""})
    return {"statusCode": 200, "body": "x" * (size - len(shell))}
