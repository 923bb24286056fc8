"""An ordinary AWS Lambda handler behind an API Gateway proxy route."""

import json
import os


def handler(event, context):
    name = (event.get("pathParameters") or {}).get("name", "world")
    greeting = os.environ.get("GREETING", "Hello")
    body = {
        "message": f"{greeting}, {name}!",
        "name": name,
        "path": event.get("path"),
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
    }
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
    }
