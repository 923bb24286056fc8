"""The console's browser test function: says what it was asked, sleeps ``?s=`` (or
``"sleep"`` of a direct invocation) seconds, and fails while ``BROKEN`` is 1."""

import os
import time


def handler(event, context):
    query = event.get("queryStringParameters") or {}
    say = event.get("say", query.get("say", "nothing"))
    print(f"console function says {say}")
    time.sleep(float(event.get("sleep", query.get("s", 0))))
    if os.environ.get("BROKEN") == "1":
        raise RuntimeError("the console function is broken")
    return {"statusCode": 200, "body": f"said {say}", "said": say}
