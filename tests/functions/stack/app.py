"""Plain boto3 with no endpoint configuration: the stack's S3 and DynamoDB are reached
through the AWS_ENDPOINT_URL_* variables the gateway sets. Reads the user as the original
system's handlers do, and says in its log which invocation it was."""

import json

import boto3


def handler(event, context):
    result = {"s3": use_s3(), "dynamodb": use_dynamodb()}
    print(f"stack: s3 and dynamodb used by {context.aws_request_id}")
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}  # none: Invoke API
    user = (authorizer.get("claims") or {}).get("cognito:username", "anonymous")
    body = {**result, "user": user, "request_id": context.aws_request_id}
    return {"statusCode": 200, "body": json.dumps(body)}


def use_s3():
    s3 = boto3.client("s3")
    s3.put_object(Bucket="uploads", Key="hello.txt", Body=b"hello from a function")
    body = s3.get_object(Bucket="uploads", Key="hello.txt")["Body"].read().decode()
    listed = [item["Key"] for item in s3.list_objects_v2(Bucket="uploads").get("Contents", [])]
    s3.delete_object(Bucket="uploads", Key="hello.txt")
    left = s3.list_objects_v2(Bucket="uploads").get("KeyCount", 0)
    return {"body": body, "listed": listed, "left": left}


def use_dynamodb():
    table = "orders"
    key = {"id": {"S": "o-1"}}
    dynamodb = boto3.client("dynamodb")
    dynamodb.put_item(TableName=table, Item={**key, "total": {"N": "5"}})
    got = dynamodb.get_item(TableName=table, Key=key)["Item"]["total"]["N"]
    dynamodb.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET #t = :t",
        ExpressionAttributeNames={"#t": "total"},
        ExpressionAttributeValues={":t": {"N": "7"}},
    )
    updated = dynamodb.get_item(TableName=table, Key=key)["Item"]["total"]["N"]
    queried = dynamodb.query(
        TableName=table,
        KeyConditionExpression="id = :id",
        ExpressionAttributeValues={":id": {"S": "o-1"}},
    )["Count"]
    dynamodb.delete_item(TableName=table, Key=key)
    gone = "Item" not in dynamodb.get_item(TableName=table, Key=key)
    return {"got": got, "updated": updated, "queried": queried, "gone": gone}
