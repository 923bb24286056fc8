"""Results that carry their own framing headers, picked with ?case=...: a gateway must frame
the body itself, whatever the function claims."""

BODY = "hello world"
FRAMING = {
    "chunked": {"Transfer-Encoding": "chunked"},  # yet the body is plain
    "short": {"Content-Length": "5", "Connection": "close"},  # shorter than the body
}


def handler(event, context):
    case = (event.get("queryStringParameters") or {}).get("case", "chunked")
    headers = {"Content-Type": "text/plain", **FRAMING[case]}
    return {"statusCode": 200, "headers": headers, "body": BODY}
