"""Events in Tencent SCF's formats, for triggers created with ``"flavour": "scf"``.

Code written for SCF reads its events in SCF's shapes; a trigger with the
``scf`` flavour sends them (the default ``lambda`` flavour sends AWS's). The
shapes follow SCF's documented trigger event message structures:

- timer: ``{"Type": "Timer", "TriggerName", "Time": "2019-02-21T11:49:00Z",
  "Message"}`` — ``Message`` is the trigger's payload: a string as it is, any
  other JSON value as its JSON text (SCF's input parameter is a string);
- API gateway (integration request): ``{"requestContext": {"serviceId", "path",
  "httpMethod", "requestId", "identity", "sourceIp", "stage"}, "headers",
  "body", "pathParameters", "queryStringParameters", "headerParameters",
  "stageVariables", "path", "queryString", "httpMethod", "isBase64Encoded"}``.
  Header names are lower-cased, as SCF's API gateway sends them. ``queryString`` and
  ``queryStringParameters`` hold the same decoded parameters (a repeated key's
  values joined with ``,``). Binary bodies travel base64-encoded with
  ``isBase64Encoded`` true. The function's answer maps back exactly as for the
  Lambda flavour (SCF's integration response has the same fields);
- object storage (COS): ``{"Records": [{"cos": {"cosSchemaVersion": "1.0",
  "cosObject": {"url", "meta", "vid", "key": "/appid/bucket/key", "size"},
  "cosBucket": {"region", "name", "appid"}, "cosNotificationId"}, "event":
  {"eventName": "cos:ObjectCreated:Put", "eventVersion": "1.0", "eventTime",
  "eventSource": "qcs::cos", "requestParameters", "eventQueue",
  "reservedInfo", "reqid"}}]}``.

Nothing here does I/O; the time is passed in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from nimbus.errors import InvalidTriggerError
from nimbus.triggers.http_event import HttpRequest, _event_body, _query_parameters, _text

FLAVOURS = ("lambda", "scf")


def check_flavour(config: Mapping[str, Any]) -> str:
    """Whose event shapes a trigger sends: ``lambda`` (AWS's, the default) or ``scf``."""
    flavour = config.get("flavour") or "lambda"
    if flavour not in FLAVOURS:
        raise InvalidTriggerError(
            f"unknown flavour {flavour!r}: choose lambda (AWS's event shapes, the default) "
            "or scf (Tencent SCF's event shapes)"
        )
    return str(flavour)


#: SCF's ``appid``: Nimbus has no accounts, so a fixed stand-in like Lambda's account id.
APP_ID = "1250000000"
REGION = "local"


def scf_timer_event(trigger_name: str, tick: datetime, payload: Any) -> dict[str, Any]:
    """The event an SCF timer trigger sends for ``tick``."""
    message = payload if isinstance(payload, str) else json.dumps(payload)
    if payload == {}:  # no payload given: SCF sends an empty message
        message = ""
    return {
        "Type": "Timer",
        "TriggerName": trigger_name,
        "Time": tick.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Message": message,
    }


def scf_api_gateway_event(
    request: HttpRequest,
    *,
    request_id: str,
    service_id: str,
    path_prefix: str,
    stage: str = "release",
) -> dict[str, Any]:
    """The integration-request event of an SCF API gateway trigger for ``request``.

    ``path_prefix`` is the URL prefix the trigger is served under (the API's
    path); ``requestContext.path`` is the route, ``path`` the path requested.
    """
    headers: dict[str, str] = {}
    content_type: str | None = None
    for raw_name, raw_value in request.headers:
        name, value = _text(raw_name).lower(), _text(raw_value)
        if name == "content-type":
            content_type = value
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    sub_path = request.raw_path if request.raw_path.startswith("/") else "/" + request.raw_path
    query = _query_parameters(_text(request.raw_query))
    body, is_base64 = _event_body(request.body, content_type)
    method = request.method.upper()
    return {
        "requestContext": {
            "serviceId": service_id,
            "path": f"{path_prefix}/{{path}}",
            "httpMethod": method,
            "requestId": request_id,
            "identity": {},
            "sourceIp": request.source_ip,
            "stage": stage,
        },
        "headers": headers,
        "body": body if body is not None else "",
        "pathParameters": {"path": sub_path.lstrip("/")},
        "queryStringParameters": query,
        "headerParameters": {},
        "stageVariables": {"stage": stage},
        "path": f"{path_prefix}{sub_path}" if sub_path != "/" else path_prefix or "/",
        "queryString": dict(query),
        "httpMethod": method,
        "isBase64Encoded": is_base64,
    }


def scf_cos_event(
    *,
    bucket: str,
    key: str,
    size: int,
    event_name: str,
    time: datetime,
    request_id: str,
    source_ip: str,
    endpoint: str,
    event_queue: str,
    meta: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The event of an SCF COS trigger for one object (created or removed).

    ``event_name`` is the S3-style name without prefix, e.g. ``ObjectCreated:Put``;
    ``endpoint`` is the object-storage base URL the object is reachable under.
    """
    object_meta = {"x-cos-request-id": request_id, "Content-Type": ""}
    object_meta.update(meta or {})
    return {
        "Records": [
            {
                "cos": {
                    "cosSchemaVersion": "1.0",
                    "cosObject": {
                        "url": f"{endpoint.rstrip('/')}/{bucket}/{key}",
                        "meta": object_meta,
                        "vid": "",
                        "key": f"/{APP_ID}/{bucket}/{key}",
                        "size": size,
                    },
                    "cosBucket": {"region": REGION, "name": bucket, "appid": APP_ID},
                    "cosNotificationId": "unkown",  # sic: SCF's documented value
                },
                "event": {
                    "eventName": f"cos:{event_name}",
                    "eventVersion": "1.0",
                    "eventTime": int(time.timestamp()),
                    "eventSource": "qcs::cos",
                    "requestParameters": {
                        "requestSourceIP": source_ip,
                        "requestHeaders": {},
                    },
                    "eventQueue": event_queue,
                    "reservedInfo": "",
                    "reqid": int(request_id.replace("-", "")[:8], 16)
                    if _is_hex(request_id.replace("-", "")[:8])
                    else 0,
                },
            }
        ]
    }


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return bool(text)
