"""An HTTP function: its URL's requests arrive as payload 2.0 events (Lambda function
URLs / API Gateway HTTP APIs); the returned object is the HTTP answer."""

import json


def handler(event, context):
    name = (event.get("queryStringParameters") or {}).get("name", "world")
    method = event["requestContext"]["http"]["method"]
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "cookies": ["visited=1; Path=/"],
        "body": json.dumps({"hello": name, "method": method, "path": event["rawPath"]}),
    }
