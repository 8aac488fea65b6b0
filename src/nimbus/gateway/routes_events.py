"""Routes on asynchronous invocations: their status, and the dead letters.

(No ``from __future__ import annotations`` here: FastAPI reads the annotations.)
"""

import base64
import json
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam

from nimbus.domain.access import Permission, place, require
from nimbus.domain.keys import ApiKey
from nimbus.errors import InvocationNotFoundError
from nimbus.gateway import schemas as s
from nimbus.gateway.access import Access, Scope
from nimbus.queue.base import Event

if TYPE_CHECKING:
    from nimbus.app import Platform

RequestId = Annotated[
    str,
    PathParam(
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        description="The request id an asynchronous invocation answered",
    ),
]


def _payload(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return {"base64": base64.b64encode(raw).decode()}


def _out(event: Event, status: str) -> s.AsyncInvocationOut:
    return s.AsyncInvocationOut(
        request_id=event.id,
        function_name=event.function,
        qualifier=event.qualifier,
        status=status,  # type: ignore[arg-type]
        attempts=event.attempts,
        max_attempts=event.max_attempts,
        created_at=event.created_at,
        finished_at=event.finished_at,
        next_attempt_at=event.not_before if event.state.value == "queued" else None,
        result=_payload(event.result),
        error=s.InvocationError(**event.last_error.to_dict()) if event.last_error else None,
        dead_reason=event.dead_reason.value if event.dead_reason else None,
        event=_payload(event.payload),
    )


def router(platform: "Platform", access: Access) -> APIRouter:
    api = APIRouter(tags=["async"])
    AnyKey = Annotated[ApiKey, Depends(access.caller)]
    Reader = Annotated[Scope, Depends(access.on_function(Permission.READ))]
    Manager = Annotated[Scope, Depends(access.on_function(Permission.MANAGE))]
    errors = s.ERROR_RESPONSES

    @api.get("/v1/invocations/{request_id}", response_model=s.AsyncInvocationOut, responses=errors)
    async def get_invocation(request_id: RequestId, key: AnyKey) -> s.AsyncInvocationOut:
        """Status and outcome of an asynchronous invocation (queued, running, succeeded,
        or failed after its last attempt)."""
        found = await platform.events.status(request_id)
        # Another namespace's event answers exactly like one that does not exist.
        if found is None or not place(key, found.event.namespace).visible:
            raise InvocationNotFoundError(
                f"no asynchronous invocation {request_id!r}; use the request_id that "
                "the 202 answer gave"
            )
        require(key, Permission.INVOKE)  # whoever may send an event may follow it
        return _out(found.event, found.status)

    @api.get(
        "/v1/functions/{name}/dead-letters",
        response_model=s.DeadLetterList,
        responses=errors,
    )
    async def list_dead_letters(
        name: s.Name,
        scope: Reader,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> s.DeadLetterList:
        """Asynchronous events of the function that failed their last attempt, oldest
        first (with an on_failure destination, a record of each also went there)."""
        await platform.functions.get(scope.namespace, name)
        dead = await platform.events.dead_letters(scope.namespace, name, limit)
        return s.DeadLetterList(dead_letters=[_out(e, "failed") for e in dead])

    @api.post(
        "/v1/functions/{name}/dead-letters/redrive",
        response_model=s.RedriveOut,
        responses=errors,
    )
    async def redrive(
        name: s.Name, scope: Manager, body: s.RedriveIn | None = None
    ) -> s.RedriveOut:
        """Queue dead letters again as fresh events (all attempts anew): those named in
        ``request_ids``, else up to ``limit`` oldest."""
        body = body or s.RedriveIn()
        await platform.functions.get(scope.namespace, name)
        count = await platform.events.redrive(scope.namespace, name, body.request_ids, body.limit)
        return s.RedriveOut(redriven=count)

    return api
