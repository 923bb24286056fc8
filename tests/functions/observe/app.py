"""Handlers for the observability tests."""

import json
import os
import time

import boto3


def chatty(event, context):
    print(f"first line of {context.aws_request_id}")
    print(json.dumps({"level": "WARNING", "message": "a structured warning"}))
    time.sleep(float(event.get("s", 0)))
    print(f"last line of {context.aws_request_id}")
    return {"request_id": context.aws_request_id, "trace": os.environ.get("_X_AMZN_TRACE_ID")}


def chain_a(event, context):
    print("in A")
    response = boto3.client("lambda").invoke(FunctionName="chain_b", Payload=b"{}")
    return json.loads(response["Payload"].read())


def chain_b(event, context):
    print("in B")
    boto3.client("lambda").invoke(FunctionName="chain_c", InvocationType="Event", Payload=b"{}")
    return {"b": True}


def chain_c(event, context):
    print("in C")
    return {"c": True}
