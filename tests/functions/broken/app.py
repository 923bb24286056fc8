import edgelambda_no_such_module  # noqa: F401  the import fails: Runtime.ImportModuleError


def handler(event, context):
    return {"statusCode": 200, "body": "fixed"}
