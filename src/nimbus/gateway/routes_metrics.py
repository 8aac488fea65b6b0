"""``GET /metrics``: Prometheus metrics of the whole platform (admin keys).

(No ``from __future__ import annotations`` here: FastAPI reads the annotations.)
"""

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Response

from nimbus.domain.access import Permission
from nimbus.domain.keys import ApiKey, Role
from nimbus.errors import ForbiddenError
from nimbus.gateway.access import Access
from nimbus.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from nimbus.app import Platform


def router(platform: "Platform", access: Access) -> APIRouter:
    api = APIRouter()
    Caller = Annotated[ApiKey, Depends(access.with_permission(Permission.READ))]

    @api.get("/metrics", include_in_schema=False)
    async def metrics(key: Caller) -> Response:
        if key.role is not Role.ADMIN:
            raise ForbiddenError("metrics cover every namespace: they need an admin key")
        return Response(platform.metrics.exposition(), media_type=CONTENT_TYPE)

    return api
