"""Routes on releases and scaling: versions, aliases, reserved concurrency, provisioned
instances.

(No ``from __future__ import annotations`` here: FastAPI reads the annotations.)
"""

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Response
from fastapi import Path as PathParam

from nimbus.control.versions import ProvisionedStatus
from nimbus.domain.access import Permission
from nimbus.errors import InvalidSettingError
from nimbus.gateway import schemas as s
from nimbus.gateway.access import Access, Scope

if TYPE_CHECKING:
    from nimbus.app import Platform

VersionNumber = Annotated[int, PathParam(ge=1, description="A published version number")]


def _weights(raw: dict[str, float]) -> dict[int, float]:
    out = {}
    for key, weight in raw.items():
        if not key.isdigit():
            raise InvalidSettingError(
                f'weights are keyed by version number, e.g. {{"4": 0.1}}; got {key!r}'
            )
        out[int(key)] = weight
    return out


def _provisioned(status: ProvisionedStatus) -> s.ProvisionedOut:
    return s.ProvisionedOut(
        qualifier=status.qualifier,
        requested=status.requested,
        ready=status.ready,
        versions={
            v: s.ProvisionedVersionOut(wanted=w, ready=r) for v, (w, r) in status.versions.items()
        },
    )


def router(platform: "Platform", access: Access) -> APIRouter:
    api = APIRouter(tags=["versions"])
    Reader = Annotated[Scope, Depends(access.on_function(Permission.READ))]
    Manager = Annotated[Scope, Depends(access.on_function(Permission.MANAGE))]
    errors = s.ERROR_RESPONSES

    # ---- versions ----------------------------------------------------------------
    @api.post("/v1/functions/{name}/versions", response_model=s.FunctionOut, responses=errors)
    async def publish(
        name: s.Name, scope: Manager, response: Response, body: s.PublishIn | None = None
    ) -> s.FunctionOut:
        """Publish $LATEST as a new immutable version (201), or answer the version that
        already has its code and settings (200)."""
        body = body or s.PublishIn()
        version, created = await platform.versions.publish(
            scope.namespace,
            name,
            description=body.description,
            prewarm=body.prewarm,
            actor=scope.actor,
        )
        response.status_code = 201 if created else 200
        return s.FunctionOut.of(version)

    @api.get("/v1/functions/{name}/versions", response_model=s.VersionList, responses=errors)
    async def list_versions(name: s.Name, scope: Reader) -> s.VersionList:
        found = await platform.versions.list_versions(scope.namespace, name)
        return s.VersionList(versions=[s.FunctionOut.of(v) for v in found])

    @api.get(
        "/v1/functions/{name}/versions/{number}", response_model=s.FunctionOut, responses=errors
    )
    async def get_version(name: s.Name, number: VersionNumber, scope: Reader) -> s.FunctionOut:
        return s.FunctionOut.of(await platform.versions.get_version(scope.namespace, name, number))

    @api.delete("/v1/functions/{name}/versions/{number}", status_code=204, responses=errors)
    async def delete_version(name: s.Name, number: VersionNumber, scope: Manager) -> Response:
        """Delete a version; 409 Function.VersionInUse while an alias points to it."""
        await platform.versions.delete_version(scope.namespace, name, number, actor=scope.actor)
        return Response(status_code=204)

    # ---- aliases ---------------------------------------------------------------------
    @api.put("/v1/functions/{name}/aliases/{alias}", response_model=s.AliasOut, responses=errors)
    async def put_alias(
        name: s.Name, alias: s.AliasName, body: s.AliasIn, scope: Manager, response: Response
    ) -> s.AliasOut:
        """Create (201) or move (200) an alias, atomically; with ``weights`` it splits
        calls between its version and one other."""
        stored, created = await platform.versions.put_alias(
            scope.namespace,
            name,
            alias,
            version=body.version,
            weights=_weights(body.weights),
            description=body.description,
            actor=scope.actor,
        )
        response.status_code = 201 if created else 200
        return s.AliasOut.of(stored)

    @api.get("/v1/functions/{name}/aliases", response_model=s.AliasList, responses=errors)
    async def list_aliases(name: s.Name, scope: Reader) -> s.AliasList:
        found = await platform.versions.list_aliases(scope.namespace, name)
        return s.AliasList(aliases=[s.AliasOut.of(a) for a in found])

    @api.get("/v1/functions/{name}/aliases/{alias}", response_model=s.AliasOut, responses=errors)
    async def get_alias(name: s.Name, alias: s.AliasName, scope: Reader) -> s.AliasOut:
        return s.AliasOut.of(await platform.versions.get_alias(scope.namespace, name, alias))

    @api.delete("/v1/functions/{name}/aliases/{alias}", status_code=204, responses=errors)
    async def delete_alias(name: s.Name, alias: s.AliasName, scope: Manager) -> Response:
        await platform.versions.delete_alias(scope.namespace, name, alias, actor=scope.actor)
        return Response(status_code=204)

    # ---- reserved concurrency -------------------------------------------------------------
    @api.put("/v1/functions/{name}/concurrency", response_model=s.ConcurrencyOut, responses=errors)
    async def put_concurrency(
        name: s.Name, body: s.ConcurrencyIn, scope: Manager
    ) -> s.ConcurrencyOut:
        """Reserve (cap) the function's concurrent instances; 0 disables it."""
        head = await platform.versions.set_concurrency(
            scope.namespace, name, body.reserved, actor=scope.actor
        )
        return s.ConcurrencyOut(reserved=head.reserved_concurrency)

    @api.delete("/v1/functions/{name}/concurrency", status_code=204, responses=errors)
    async def delete_concurrency(name: s.Name, scope: Manager) -> Response:
        await platform.versions.set_concurrency(scope.namespace, name, None, actor=scope.actor)
        return Response(status_code=204)

    # ---- provisioned instances ---------------------------------------------------------------
    @api.put(
        "/v1/functions/{name}/provisioned/{qualifier}",
        response_model=s.ProvisionedOut,
        responses=errors,
    )
    async def put_provisioned(
        name: s.Name, qualifier: s.Qualifier, body: s.ProvisionedIn, scope: Manager
    ) -> s.ProvisionedOut:
        """Keep ``count`` instances of a version or alias initialised at all times."""
        status = await platform.versions.set_provisioned(
            scope.namespace, name, qualifier, body.count, actor=scope.actor
        )
        return _provisioned(status)

    @api.get("/v1/functions/{name}/provisioned", response_model=s.ProvisionedList, responses=errors)
    async def list_provisioned(name: s.Name, scope: Reader) -> s.ProvisionedList:
        found = await platform.versions.provisioned(scope.namespace, name)
        return s.ProvisionedList(provisioned=[_provisioned(p) for p in found])

    @api.delete("/v1/functions/{name}/provisioned/{qualifier}", status_code=204, responses=errors)
    async def delete_provisioned(name: s.Name, qualifier: s.Qualifier, scope: Manager) -> Response:
        await platform.versions.set_provisioned(
            scope.namespace, name, qualifier, 0, actor=scope.actor
        )
        return Response(status_code=204)

    return api
