"""Routes on triggers, and the function URLs that http triggers open.

(No ``from __future__ import annotations`` here: FastAPI reads the annotations.)
"""

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Response
from fastapi import Path as PathParam
from starlette.requests import Request
from starlette.routing import Route

from nimbus.domain.access import Permission, place, require
from nimbus.domain.function import NAME_RE, function_not_found
from nimbus.domain.trigger import Trigger
from nimbus.domain.version import parse_qualifier, split_name
from nimbus.errors import NimbusError, PayloadTooLargeError
from nimbus.gateway import schemas as s
from nimbus.gateway.access import Access, Scope
from nimbus.pool.pool import new_request_id
from nimbus.triggers.http_event import HttpRequest, build_event, parse_response
from nimbus.triggers.scf_events import scf_api_gateway_event

if TYPE_CHECKING:
    from nimbus.app import Platform

TriggerName = Annotated[
    str,
    PathParam(
        pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$",
        description="1-64 letters, digits, '-' or '_', starting with a letter",
    ),
]
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _out(t: Trigger, platform: "Platform") -> s.TriggerOut:
    url = None
    if t.type == "http":
        target = t.function + (f":{t.qualifier}" if t.qualifier else "")
        url = f"{platform.settings.base_url}/fn/{t.namespace}/{target}/"
    config, state = platform.triggers.describe(t)
    return s.TriggerOut(
        name=t.name,
        function=t.function,
        type=t.type,
        qualifier=t.qualifier,
        enabled=t.enabled,
        config=config,
        last_fired=t.last_fired,
        url=url,
        status=state.status if state is not None else None,
        last_error=state.last_error if state is not None else None,
        created_at=t.created_at,
        updated_at=t.updated_at,
    )


def router(platform: "Platform", access: Access) -> APIRouter:
    api = APIRouter(tags=["triggers"])
    Reader = Annotated[Scope, Depends(access.on_function(Permission.READ))]
    Manager = Annotated[Scope, Depends(access.on_function(Permission.MANAGE))]
    errors = s.ERROR_RESPONSES

    @api.post(
        "/v1/functions/{name}/triggers",
        response_model=s.TriggerOut,
        status_code=201,
        responses=errors,
    )
    async def create_trigger(name: s.Name, body: s.TriggerIn, scope: Manager) -> s.TriggerOut:
        """Connect an event source: a timer, or an http function URL."""
        trigger = await platform.triggers.create(
            scope.namespace,
            name,
            body.name,
            body.type,
            qualifier=body.qualifier,
            config=body.config,
            enabled=body.enabled,
            actor=scope.actor,
        )
        return _out(trigger, platform)

    @api.get("/v1/functions/{name}/triggers", response_model=s.TriggerList, responses=errors)
    async def list_triggers(name: s.Name, scope: Reader) -> s.TriggerList:
        found = await platform.triggers.list(scope.namespace, name)
        return s.TriggerList(triggers=[_out(t, platform) for t in found])

    @api.get(
        "/v1/functions/{name}/triggers/{trigger}", response_model=s.TriggerOut, responses=errors
    )
    async def get_trigger(name: s.Name, trigger: TriggerName, scope: Reader) -> s.TriggerOut:
        return _out(await platform.triggers.get(scope.namespace, name, trigger), platform)

    @api.patch(
        "/v1/functions/{name}/triggers/{trigger}", response_model=s.TriggerOut, responses=errors
    )
    async def update_trigger(
        name: s.Name, trigger: TriggerName, body: s.TriggerPatch, scope: Manager
    ) -> s.TriggerOut:
        """Enable or disable a trigger."""
        found = await platform.triggers.set_enabled(
            scope.namespace, name, trigger, body.enabled, actor=scope.actor
        )
        return _out(found, platform)

    @api.delete("/v1/functions/{name}/triggers/{trigger}", status_code=204, responses=errors)
    async def delete_trigger(name: s.Name, trigger: TriggerName, scope: Manager) -> Response:
        await platform.triggers.delete(scope.namespace, name, trigger, actor=scope.actor)
        return Response(status_code=204)

    return api


def function_url_routes(
    platform: "Platform", on_error: Callable[[NimbusError], Response]
) -> list[Route]:
    """``/fn/{namespace}/{name}[:qualifier]/...``: requests to a function with an enabled
    http trigger become payload 2.0 events; the result maps back to the HTTP answer."""

    async def endpoint(request: Request) -> Response:
        try:
            return await _serve(platform, request)
        except NimbusError as exc:
            return on_error(exc)

    return [
        Route("/fn/{namespace}/{target}", endpoint, methods=METHODS, include_in_schema=False),
        Route(
            "/fn/{namespace}/{target}/{path:path}",
            endpoint,
            methods=METHODS,
            include_in_schema=False,
        ),
    ]


async def check_url_access(
    platform: "Platform", trigger: Trigger, authorization: str | None
) -> None:
    """What a function URL asks of its caller: nothing (``public``) or a key that may
    invoke in the namespace (``key``); a key of another namespace learns nothing."""
    if trigger.config.get("auth") != "public":
        key = await platform.keyring.authenticate(authorization)
        if not place(key, trigger.namespace).visible:
            raise function_not_found(trigger.function)
        require(key, Permission.INVOKE)


async def _serve(platform: "Platform", request: Request) -> Response:
    namespace = request.path_params["namespace"]
    target = request.path_params["target"]
    name, qualifier = split_name(target)
    trigger = None
    if NAME_RE.match(name) and NAME_RE.match(namespace):
        trigger = platform.triggers.http_trigger(namespace, name)
    if trigger is None:
        # No URL here: the same answer whether or not the function exists.
        raise function_not_found(name)
    await check_url_access(platform, trigger, request.headers.get("authorization"))
    prefix = f"/fn/{namespace}/{target}".encode()
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    sub_path = raw_path[len(prefix) :].decode("latin-1") if raw_path.startswith(prefix) else "/"
    limit = platform.settings.max_sync_payload_bytes
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLargeError(f"the request body is larger than {limit} bytes")
    request_id = new_request_id()
    client = request.scope.get("client") or ("127.0.0.1", 0)
    http_request = HttpRequest(
        method=request.method,
        raw_path=sub_path or "/",
        raw_query=request.scope.get("query_string", b""),
        headers=forwarded_headers(request.scope["headers"], trigger),
        body=body,
        source_ip=str(client[0]),
    )
    if trigger.config.get("flavour") == "scf":
        event = scf_api_gateway_event(
            http_request,
            request_id=request_id,
            service_id=f"service-{namespace}-{name}",
            path_prefix=prefix.decode("latin-1"),
        )
    else:
        event = build_event(
            http_request,
            request_id=request_id,
            now=datetime.now(UTC),
            domain_name=request.headers.get("host", "localhost"),
        )
    result = await platform.dispatcher.invoke(
        namespace,
        name,
        json.dumps(event).encode(),
        qualifier=parse_qualifier(qualifier or trigger.qualifier),
        request_id=request_id,
    )
    if result.error is not None:
        # As a function URL does: the caller sees a 502, the details are in the logs.
        return Response(
            json.dumps(
                {
                    "error": {
                        "code": "Function.Error",
                        "message": f"the function failed ({result.error.error_type}); "
                        f"see `nimbus logs {name} --request-id {request_id}`",
                    }
                }
            ),
            status_code=502,
            media_type="application/json",
            headers={"X-Nimbus-Request-Id": request_id},
        )
    answer = parse_response(result.payload or b"null")
    response = Response(content=answer.body, status_code=answer.status)
    response.raw_headers.extend(answer.headers)
    response.raw_headers.append((b"x-nimbus-request-id", request_id.encode()))
    return response


def forwarded_headers(
    headers: Iterable[tuple[bytes, bytes]], trigger: Trigger
) -> list[tuple[bytes, bytes]]:
    """A URL request's headers as the function sees them (its event, or a service's app):
    on a key-protected URL the ``Authorization`` header is the caller's Nimbus key, which
    the function never gets."""
    if trigger.config.get("auth") == "public":
        return list(headers)
    return [(name, value) for name, value in headers if name.lower() != b"authorization"]
