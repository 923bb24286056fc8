"""Benchmark handlers: a trivial one and a sleeping one."""

import os
import time


def trivial(event, context):
    return {"statusCode": 200, "body": "ok"}


def sleep(event, context):
    time.sleep(float((event.get("queryStringParameters") or {}).get("s", "1")))
    return {"statusCode": 200, "body": os.environ.get("HOSTNAME", "")}
