"""A handler whose behaviour the test picks with ?action=...: it reports which container and
which process served it, sleeps, crashes, or allocates past its memory limit."""

import json
import os
import time

INVOCATIONS = 0  # per process: a warm container counts up, a restarted one starts again


def handler(event, context):
    global INVOCATIONS
    INVOCATIONS += 1
    query = event.get("queryStringParameters") or {}
    action = query.get("action", "report")
    if action == "sleep":
        time.sleep(float(query.get("s", "1")))
    elif action == "crash":
        os._exit(1)
    elif action == "oom":
        hog = [bytearray(b"x" * (16 * 1024 * 1024)) for _ in range(64)]  # 1 GiB, touched
        return {"statusCode": 200, "body": str(len(hog))}
    body = {
        "container": os.environ.get("HOSTNAME"),
        "invocations": INVOCATIONS,
        "uid": os.getuid(),
        "aws_request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
    return {"statusCode": 200, "body": json.dumps(body)}
