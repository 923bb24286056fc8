"""Handlers for the Invoke API tests; `caller` invokes another function with plain boto3,
which reaches the gateway through AWS_ENDPOINT_URL_LAMBDA."""

import json
import os
import time

import boto3


def echo(event, context):
    print(f"echo handling {context.aws_request_id}")
    return {
        "echo": event,
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "client_context": getattr(context.client_context, "custom", None),
    }


def fail(event, context):
    raise ValueError("this function always fails")


def caller(event, context):
    client = boto3.client("lambda")
    sync = client.invoke(FunctionName="echo", Payload=json.dumps({"from": "caller"}))
    async_ = client.invoke(FunctionName="echo", InvocationType="Event", Payload=b"{}")
    return {
        "child": json.loads(sync["Payload"].read()),
        "async_status": async_["StatusCode"],
        "endpoint": os.environ.get("AWS_ENDPOINT_URL_LAMBDA"),
    }


def slow_event(event, context):
    print(f"ran event {event['n']}")
    time.sleep(0.5)
    return {"n": event["n"]}


def sleepy(event, context):
    time.sleep(float(event.get("s", 5)))
    return {"slept": True}
