"""Soak handlers: one that answers, and ones that misbehave in every way a sandbox can.

Each answer echoes the caller's ``id`` (a route's query string or body, or the Invoke
payload) with the invocation's request id, so the soak can tell a mismatched or doubled
answer from a right one."""

import json
import os
import random
import sys
import time
import urllib.error
import urllib.request

FLOOD_BYTES = 20 * 1024 * 1024
FLOOD_LINE = "x" * (64 * 1024 - 1) + "\n"


def _caller_id(event):
    if "requestContext" not in event:  # the Invoke API: the payload itself
        return event.get("id")
    query = event.get("queryStringParameters") or {}
    if "id" in query:
        return query["id"]
    try:
        return json.loads(event.get("body") or "{}").get("id")
    except ValueError:
        return None


def _answer(event, context, **extra):
    echo = {"id": _caller_id(event), "request_id": context.aws_request_id, **extra}
    if "requestContext" in event:
        return {"statusCode": 200, "body": json.dumps(echo)}
    return echo


def echo(event, context):
    return _answer(event, context)


def crash(event, context):
    os._exit(1)


def sleep_past_timeout(event, context):
    time.sleep(context.get_remaining_time_in_millis() / 1000 + 5)
    return _answer(event, context)


def exceed_memory(event, context):
    hog = []
    while True:  # touch every page, so the limit is really reached
        hog.append(bytearray(16 * 1024 * 1024))


def flood_stdout(event, context):
    for _ in range(FLOOD_BYTES // len(FLOOD_LINE)):
        sys.stdout.write(FLOOD_LINE)
    sys.stdout.flush()
    return _answer(event, context)


def poll_next(event, context):
    """Ask the Runtime API for the next invocation while this one is still open."""
    url = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime/invocation/next"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError as error:
        status = f"{type(error).__name__}"
    return _answer(event, context, next_status=status)


def _succeeded(event):
    """Tell the soak that this Event run succeeded: by HTTP, to the address the payload
    names (engine-independent evidence: an engine restart can cut a container's log stream),
    and by a log line (the log path's own evidence). A report that fails fails the run, so
    the event is retried, never counted as succeeded unseen."""
    body = json.dumps({"id": event.get("id")}).encode()
    request = urllib.request.Request(event["report_to"], data=body, method="POST")
    with urllib.request.urlopen(request, timeout=5):
        pass
    print(f"soak-event-ok {event.get('id')}", flush=True)
    return {"id": event.get("id")}


def event_ok(event, context):
    return _succeeded(event)


def event_fail(event, context):
    raise RuntimeError(f"soak event {event.get('id')} always fails")


def event_flaky(event, context):
    if random.random() < 0.5:
        raise RuntimeError(f"soak event {event.get('id')} failed this time")
    return _succeeded(event)
