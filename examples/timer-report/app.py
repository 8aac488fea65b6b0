"""A scheduled job: each tick of its timer trigger is one asynchronous invocation."""

import json


def handler(event, context):
    # Lambda flavour: EventBridge's "Scheduled Event", the trigger's payload as `detail`.
    job = event.get("detail", {}).get("report", "unnamed")
    print(json.dumps({"job": job, "tick": event["time"], "event_id": event["id"]}))
    return {"job": job, "tick": event["time"]}
