class BoomError(Exception):
    pass


def handler(event, context):
    raise BoomError(f"boom for {context.aws_request_id}")
