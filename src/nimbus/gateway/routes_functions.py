"""Routes on functions and their code: CRUD, invoke, logs; and the runtimes list.

(No ``from __future__ import annotations`` here: FastAPI reads the annotations.)
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from nimbus.control.functions import FunctionChanges
from nimbus.domain.access import Permission
from nimbus.domain.keys import ApiKey
from nimbus.domain.version import split_name
from nimbus.errors import UnsupportedMediaError
from nimbus.gateway import schemas as s
from nimbus.gateway.access import Access, Scope
from nimbus.gateway.invoke import pick_qualifier, run_invocation

if TYPE_CHECKING:
    from nimbus.app import Platform

#: PATCH fields for which an explicit null means "leave as is" (they cannot be null).
_NOT_NULLABLE = (
    "runtime",
    "handler",
    "code_sha256",
    "memory_mb",
    "timeout_s",
    "env",
    "description",
    "secret_env",
    "network",
    "async_max_attempts",
    "async_max_age_s",
)


def router(platform: "Platform", access: Access) -> APIRouter:
    api = APIRouter()
    AnyKey = Annotated[ApiKey, Depends(access.with_permission(Permission.INVOKE))]
    Uploader = Annotated[Scope, Depends(access.in_namespace(Permission.MANAGE))]
    Lister = Annotated[Scope, Depends(access.in_namespace(Permission.READ))]
    Reader = Annotated[Scope, Depends(access.on_function(Permission.READ))]
    Manager = Annotated[Scope, Depends(access.on_function(Permission.MANAGE))]
    Invoker = Annotated[Scope, Depends(access.on_invocation(Permission.INVOKE))]

    @api.get("/v1/runtimes", response_model=s.RuntimeList, responses=s.ERROR_RESPONSES)
    async def list_runtimes(key: AnyKey) -> s.RuntimeList:
        return s.RuntimeList(
            runtimes=[
                s.RuntimeOut(**r.to_dict())  # type: ignore[arg-type]
                for r in platform.registry.all()
            ]
        )

    @api.put(
        "/v1/code",
        status_code=201,
        response_model=s.CodeOut,
        responses=s.ERROR_RESPONSES,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def upload_code(request: Request, scope: Uploader) -> s.CodeOut:
        media = request.headers.get("content-type", "application/zip").split(";")[0].strip()
        if media not in (
            "application/zip",
            "application/octet-stream",
            "application/x-zip-compressed",
        ):
            raise UnsupportedMediaError(
                f"code must be a zip file sent as application/zip (got {media!r})"
            )
        stored = await platform.functions.upload_code(request.stream())
        return s.CodeOut(sha256=stored.sha256, size=stored.size, files=stored.manifest.file_count)

    @api.get("/v1/functions", response_model=s.FunctionList, responses=s.ERROR_RESPONSES)
    async def list_functions(scope: Lister) -> s.FunctionList:
        return s.FunctionList(
            functions=[s.FunctionOut.of(c) for c in await platform.functions.list(scope.namespace)]
        )

    @api.put("/v1/functions/{name}", response_model=s.FunctionOut, responses=s.ERROR_RESPONSES)
    async def put_function(
        name: s.Name,
        body: s.FunctionPut,
        scope: Manager,
        response: Response,
        prewarm: Annotated[
            bool, Query(description="Also start one instance now, before the first call")
        ] = False,
    ) -> s.FunctionOut:
        config, created = await platform.functions.put(
            scope.namespace,
            name,
            FunctionChanges(**body.model_dump()),
            replace=True,
            actor=scope.actor,
        )
        if prewarm and config.reserved_concurrency != 0:
            platform.pools.pool_for(config).prewarm()
        response.status_code = 201 if created else 200
        return s.FunctionOut.of(config)

    @api.patch("/v1/functions/{name}", response_model=s.FunctionOut, responses=s.ERROR_RESPONSES)
    async def patch_function(name: s.Name, body: s.FunctionPatch, scope: Manager) -> s.FunctionOut:
        given = body.model_dump(exclude_unset=True)
        for field in _NOT_NULLABLE:
            if field in given and given[field] is None:
                del given[field]
        config, _ = await platform.functions.put(
            scope.namespace, name, FunctionChanges(**given), replace=False, actor=scope.actor
        )
        return s.FunctionOut.of(config)

    @api.get("/v1/functions/{name}", response_model=s.FunctionOut, responses=s.ERROR_RESPONSES)
    async def get_function(name: s.Name, scope: Reader) -> s.FunctionOut:
        return s.FunctionOut.of(await platform.functions.get(scope.namespace, name))

    @api.delete("/v1/functions/{name}", status_code=204, responses=s.ERROR_RESPONSES)
    async def delete_function(name: s.Name, scope: Manager) -> Response:
        await platform.functions.delete(scope.namespace, name, actor=scope.actor)
        return Response(status_code=204)

    @api.post(
        "/v1/functions/{name}/invocations",
        response_model=s.InvocationOut,
        responses=s.ERROR_RESPONSES,
        openapi_extra={
            "requestBody": {"required": False, "content": {"application/json": {"schema": {}}}}
        },
    )
    async def invoke(
        name: s.QualifiedName,
        request: Request,
        scope: Invoker,
        x_nimbus_log_type: Annotated[
            str | None, Header(description="Tail: include the call's log tail")
        ] = None,
        x_nimbus_invocation_type: Annotated[
            Literal["RequestResponse", "Event", "DryRun"] | None,
            Header(
                description="RequestResponse (default): run and answer the result; Event: "
                "store the event durably and answer 202 at once; DryRun: check only (204)"
            ),
        ] = None,
        qualifier: Annotated[
            str | None,
            Query(
                pattern=s.QUALIFIER_PATTERN,
                max_length=128,
                description="$LATEST (default), a version number or an alias; "
                "same as NAME:QUALIFIER in the path",
            ),
        ] = None,
    ) -> Response:
        """Run the function with the request body as its event and return its result."""
        base, in_path = split_name(name)
        return await run_invocation(
            platform,
            request,
            scope.namespace,
            base,
            pick_qualifier(in_path, qualifier),
            invocation_type=x_nimbus_invocation_type,
            log_type=x_nimbus_log_type,
        )

    @api.get("/v1/functions/{name}/logs", response_model=s.LogsOut, responses=s.ERROR_RESPONSES)
    async def get_logs(
        name: s.Name,
        scope: Reader,
        request_id: str | None = None,
        since: float | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        follow: bool = False,
    ) -> Response:
        """Log lines of a function, oldest first; ``follow=true`` streams NDJSON."""
        namespace = scope.namespace
        await platform.functions.get(namespace, name)
        if not follow:
            lines = await platform.logs.query(
                namespace, name, request_id=request_id, since=since, limit=limit
            )
            return JSONResponse({"lines": [line.to_dict() for line in lines]})
        return StreamingResponse(
            _follow(platform, namespace, name, request_id, since, limit),
            media_type="application/x-ndjson",
        )

    return api


async def _follow(
    platform: "Platform",
    namespace: str,
    name: str,
    request_id: str | None,
    since: float | None,
    limit: int,
) -> AsyncIterator[bytes]:
    queue = platform.logs.follow(namespace, name)
    try:
        backlog = await platform.logs.query(
            namespace, name, request_id=request_id, since=since, limit=limit
        )
        seen = backlog[-1].ts if backlog else (since or time.time() - 1e-3)
        for line in backlog:
            yield json.dumps(line.to_dict()).encode() + b"\n"
        while True:
            try:
                line = await asyncio.wait_for(queue.get(), timeout=15)
            except TimeoutError:
                yield b"\n"  # keeps proxies and idle timers from closing the stream
                continue
            if line.ts <= seen and backlog:
                continue
            if request_id is not None and line.request_id != request_id:
                continue
            yield json.dumps(line.to_dict()).encode() + b"\n"
    finally:
        platform.logs.unfollow(namespace, name, queue)
