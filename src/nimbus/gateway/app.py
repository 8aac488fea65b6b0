"""The ASGI application: error handling, OpenAPI, and the /v1 routers.

Routes live in ``routes_*`` modules, one per group of resources; who may call
them is decided by the dependencies in :mod:`nimbus.gateway.access`.

(No ``from __future__ import annotations`` here: FastAPI reads the annotations.)
"""

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from nimbus import __version__
from nimbus.compat import lambda_ops, scf_ops
from nimbus.compat.lambda_api import LambdaApi
from nimbus.compat.scf_api import ScfApi
from nimbus.domain.function import NAME_RE
from nimbus.errors import (
    InvalidNameError,
    InvalidNamespaceNameError,
    InvalidQualifierError,
    InvalidSettingError,
    NimbusError,
)
from nimbus.gateway import (
    routes_events,
    routes_functions,
    routes_metrics,
    routes_tenancy,
    routes_triggers,
    routes_versions,
)
from nimbus.gateway.access import Access
from nimbus.gateway.invoke import InvokeFastPath
from nimbus.gateway.services import ServiceUrls
from nimbus.objects import routes as bucket_routes
from nimbus.objects.s3_api import S3Api

if TYPE_CHECKING:
    from nimbus.app import Platform

log = logging.getLogger("nimbus.gateway")


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def error_response(exc: NimbusError) -> JSONResponse:
    headers = None
    if getattr(exc, "retry_after_s", None) is not None:
        headers = {"Retry-After": str(exc.retry_after_s)}  # type: ignore[attr-defined]
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.status, headers=headers)


def create_asgi(platform: "Platform") -> S3Api:
    """What ``nimbus serve`` runs: the app behind the invoke fast path, which skips
    FastAPI's middleware, routing and dependency solving for warm calls (same checks,
    same answers; the FastAPI route stays for the OpenAPI document and invalid names),
    behind the AWS Lambda API's paths (``/2015-03-31/...``, see docs/lambda-api.md).
    HTTP services' URLs (HTTP and WebSocket) are relayed before the app, see
    :mod:`nimbus.gateway.services`."""
    app = ServiceUrls(create_app(platform), platform=platform, on_error=error_response)
    fast = InvokeFastPath(app, platform=platform, access=Access(platform), on_error=error_response)
    lambda_api = LambdaApi(fast, platform=platform, routes=lambda_ops.routes(platform))
    # Tencent SCF's API 3.0: POST / with X-TC-Action (see docs/scf-api.md).
    scf_api = ScfApi(lambda_api, platform=platform, actions=scf_ops.actions(platform))
    # Object storage, the S3 API under /s3 (see docs/object-storage.md).
    return S3Api(scf_api, platform=platform)


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
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        problems = []
        for err in errors[:5]:
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            problem = f"{where or 'body'}: {err.get('msg')}"
            if problem not in problems:
                problems.append(problem)
        message = "; ".join(problems) or "invalid request"
        return _error(400, _validation_code(request, errors), message)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(_request: Request, _exc: ClientDisconnect) -> JSONResponse:
        # The client left (or was cut off for being too slow) before its body was in:
        # nothing was stored, and nobody will read this answer.
        return _error(400, "Request.Incomplete", "the client disconnected before the request ended")

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

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    access = Access(platform)
    app.include_router(routes_functions.router(platform, access))
    app.include_router(routes_tenancy.router(platform, access))
    app.include_router(routes_versions.router(platform, access))
    app.include_router(routes_events.router(platform, access))
    app.include_router(routes_triggers.router(platform, access))
    app.include_router(routes_metrics.router(platform, access))
    app.include_router(bucket_routes.router(platform, access))
    app.router.routes.extend(routes_triggers.function_url_routes(platform, error_response))
    app.openapi = lambda: _openapi_without_422(app)  # type: ignore[method-assign]
    return app


#: Function settings whose out-of-range values keep the code the domain gives them.
_SETTING_FIELDS = {"memory_mb", "timeout_s", "max_instances", "description", "network", "handler"}


def _validation_code(request: Request, errors: Sequence[Any]) -> str:
    """The stable error code of a request the schema refused: the same code the domain
    check would give (a bad name, a bad setting), else ``Request.Invalid``."""
    locs = [tuple(err.get("loc", ())) for err in errors]
    path = request.url.path
    if path.startswith("/v1/namespaces") and {("path", "name"), ("body", "name")} & set(locs):
        return InvalidNamespaceNameError.code
    if path.startswith("/v1/keys") and ("body", "namespace") in locs:
        return InvalidNamespaceNameError.code
    if path.startswith("/v1/functions/") and {
        ("path", "alias"),
        ("path", "qualifier"),
        ("query", "qualifier"),
    } & set(locs):
        return InvalidQualifierError.code
    if path.startswith("/v1/functions/") and ("path", "name") in locs:
        name = path.removeprefix("/v1/functions/").split("/", 1)[0]
        if ":" in name and NAME_RE.match(name.split(":", 1)[0]):
            return InvalidQualifierError.code
        return InvalidNameError.code
    if path.startswith("/v1/functions/") and all(
        len(loc) == 2 and loc[0] == "body" and loc[1] in _SETTING_FIELDS for loc in locs
    ):
        return InvalidSettingError.code
    return "Request.Invalid"


def _openapi_without_422(app: FastAPI) -> dict[str, Any]:
    """FastAPI documents a 422 on every operation; Nimbus answers invalid requests with
    400 ``Request.Invalid`` instead, so the document says that."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema
