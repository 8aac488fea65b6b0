"""The ASGI application: /v1 management and invoke routes, errors, OpenAPI.

(No ``from __future__ import annotations`` here: FastAPI reads the annotations.)
"""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from nimbus import __version__
from nimbus.domain.keys import ApiKey, Role
from nimbus.errors import ForbiddenError, NimbusError, UnsupportedMediaError
from nimbus.gateway import schemas as s
from nimbus.gateway.invoke import read_event, render_result

if TYPE_CHECKING:
    from nimbus.app import Platform

log = logging.getLogger("nimbus.gateway")


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def create_app(platform: "Platform") -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await platform.startup()
        try:
            yield
        finally:
            await platform.shutdown()

    app = FastAPI(
        title="Nimbus",
        version=__version__,
        lifespan=lifespan,
        description="A self-hosted serverless function platform.",
        docs_url="/docs",
        redoc_url=None,
    )

    @app.exception_handler(NimbusError)
    async def nimbus_error(_request: Request, exc: NimbusError) -> JSONResponse:
        headers = None
        if getattr(exc, "retry_after_s", None) is not None:
            headers = {"Retry-After": str(exc.retry_after_s)}  # type: ignore[attr-defined]
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors()[:5]:
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            problems.append(f"{where or 'body'}: {err.get('msg')}")
        return _error(400, "Request.Invalid", "; ".join(problems) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "Route.NotFound", 405: "Route.MethodNotAllowed"}
        return _error(
            exc.status_code, codes.get(exc.status_code, "Request.Invalid"), str(exc.detail)
        )

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return _error(
            500,
            "Platform.InternalError",
            "Nimbus hit an internal error; it was logged on the server",
        )

    async def caller(authorization: Annotated[str | None, Header()] = None) -> ApiKey:
        return await platform.keys.authenticate(authorization)

    Caller = Annotated[ApiKey, Depends(caller)]

    def manager(key: ApiKey) -> str:
        if key.role is Role.INVOKER:
            raise ForbiddenError("this key may only invoke functions")
        return key.namespace

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/runtimes", response_model=s.RuntimeList, responses=s.ERROR_RESPONSES)
    async def list_runtimes(key: Caller) -> s.RuntimeList:
        return s.RuntimeList(
            runtimes=[
                s.RuntimeOut(**r.to_dict())  # type: ignore[arg-type]
                for r in platform.registry.all()
            ]
        )

    @app.put(
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
    async def upload_code(request: Request, key: Caller) -> s.CodeOut:
        manager(key)
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

    @app.get("/v1/functions", response_model=s.FunctionList, responses=s.ERROR_RESPONSES)
    async def list_functions(key: Caller) -> s.FunctionList:
        namespace = manager(key)
        return s.FunctionList(
            functions=[s.FunctionOut.of(c) for c in await platform.functions.list(namespace)]
        )

    @app.put("/v1/functions/{name}", response_model=s.FunctionOut, responses=s.ERROR_RESPONSES)
    async def put_function(
        name: str, body: s.FunctionPut, key: Caller, response: Response
    ) -> s.FunctionOut:
        from nimbus.control.functions import FunctionChanges

        config, created = await platform.functions.put(
            manager(key), name, FunctionChanges(**body.model_dump()), replace=True
        )
        response.status_code = 201 if created else 200
        return s.FunctionOut.of(config)

    @app.patch("/v1/functions/{name}", response_model=s.FunctionOut, responses=s.ERROR_RESPONSES)
    async def patch_function(name: str, body: s.FunctionPatch, key: Caller) -> s.FunctionOut:
        from nimbus.control.functions import FunctionChanges

        given = body.model_dump(exclude_unset=True)
        for field in (
            "runtime",
            "handler",
            "code_sha256",
            "memory_mb",
            "timeout_s",
            "env",
            "description",
        ):
            if field in given and given[field] is None:
                del given[field]
        config, _ = await platform.functions.put(
            manager(key), name, FunctionChanges(**given), replace=False
        )
        return s.FunctionOut.of(config)

    @app.get("/v1/functions/{name}", response_model=s.FunctionOut, responses=s.ERROR_RESPONSES)
    async def get_function(name: str, key: Caller) -> s.FunctionOut:
        return s.FunctionOut.of(await platform.functions.get(manager(key), name))

    @app.delete("/v1/functions/{name}", status_code=204, responses=s.ERROR_RESPONSES)
    async def delete_function(name: str, key: Caller) -> Response:
        await platform.functions.delete(manager(key), name)
        return Response(status_code=204)

    @app.post(
        "/v1/functions/{name}/invocations",
        response_model=s.InvocationOut,
        responses=s.ERROR_RESPONSES,
        openapi_extra={
            "requestBody": {"required": False, "content": {"application/json": {"schema": {}}}}
        },
    )
    async def invoke(
        name: str,
        request: Request,
        key: Caller,
        x_nimbus_log_type: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Run the function with the request body as its event and return its result."""
        event = await read_event(request, platform.settings.max_sync_payload_bytes)
        result = await platform.dispatcher.invoke(
            key.namespace, name, event, want_tail=(x_nimbus_log_type or "").lower() == "tail"
        )
        return render_result(result)

    @app.get("/v1/functions/{name}/logs", response_model=s.LogsOut, responses=s.ERROR_RESPONSES)
    async def get_logs(
        name: str,
        key: Caller,
        request_id: str | None = None,
        since: float | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        follow: bool = False,
    ) -> Response:
        """Log lines of a function, oldest first; ``follow=true`` streams NDJSON."""
        namespace = manager(key)
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

    return app


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
