"""Results of every shape API Gateway knows, picked with ?shape=..."""

import base64
import json
import os

# The smallest valid PNG: a 1x1 transparent pixel.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def handler(event, context):
    shape = (event.get("queryStringParameters") or {}).get("shape")
    if shape == "cookies":
        return {
            "statusCode": 200,
            "headers": {"Content-Type": "text/plain"},
            "multiValueHeaders": {"Set-Cookie": ["a=1; Path=/", "b=2; HttpOnly"]},
            "body": "two cookies",
        }
    if shape == "png":
        return {
            "statusCode": 200,
            "headers": {"Content-Type": "image/png"},
            "body": base64.b64encode(PNG).decode(),
            "isBase64Encoded": True,
        }
    if shape == "text":
        return {
            "statusCode": 200,
            "headers": {"Content-Type": "text/plain"},
            "body": '"quoted" text',
        }
    if shape == "created":
        return {
            "statusCode": 201,
            "headers": {"Location": "/items/7", "X-Custom": "yes"},
            "body": json.dumps({"id": 7}),
        }
    if shape == "malformed":
        return {"statusCode": "two hundred", "body": {"not": "a string"}}
    if shape == "trace":
        return {"statusCode": 200, "body": os.environ.get("_X_AMZN_TRACE_ID", "")}
    if shape == "echo":
        return {"statusCode": 200, "body": json.dumps(event)}
    return "not an API Gateway result"
