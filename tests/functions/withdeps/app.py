import tinydep  # installed from requirements.txt when the image is built


def handler(event, context):
    return {"statusCode": 200, "body": tinydep.VALUE}
