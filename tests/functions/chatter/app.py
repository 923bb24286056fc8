"""Prints several lines per invocation, the last one right before returning, for the tests
of the invocation log that X-Amz-Log-Type: Tail returns."""

import time


def handler(event, context):
    n = event["n"]
    for i in range(5):
        print(f"call {n} line {i}")
    time.sleep(event.get("pause_s", 0))
    print(f"call {n} done")
    return {"n": n}
