"""Routes on tenants and access: namespaces, API keys, the audit trail.

(No ``from __future__ import annotations`` here: FastAPI reads the annotations.)
"""

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Query, Response

from nimbus.domain.access import Permission, require
from nimbus.domain.audit import Actor
from nimbus.domain.keys import ApiKey, Role
from nimbus.domain.namespace import namespace_not_found
from nimbus.gateway import schemas as s
from nimbus.gateway.access import Access, NamespaceHeader, NamespaceQuery, requested_namespace

if TYPE_CHECKING:
    from nimbus.app import Platform

NamespaceFilter = Annotated[
    str | None,
    Query(
        description="Only this namespace (also read from X-Nimbus-Namespace); default: all",
    ),
]


def router(platform: "Platform", access: Access) -> APIRouter:
    api = APIRouter()
    Admin = Annotated[ApiKey, Depends(access.with_permission(Permission.ADMIN))]
    Caller = Annotated[ApiKey, Depends(access.caller)]

    # ---- namespaces ----------------------------------------------------------
    @api.post(
        "/v1/namespaces",
        status_code=201,
        response_model=s.NamespaceOut,
        responses=s.ERROR_RESPONSES,
        tags=["namespaces"],
    )
    async def create_namespace(body: s.NamespaceCreate, key: Admin) -> s.NamespaceOut:
        """Create a namespace (admin). Quotas left out take the server's defaults."""
        quotas = body.model_dump(exclude_unset=True)
        name = quotas.pop("name")
        created = await platform.namespaces.create(Actor.of(key), name, quotas)
        return s.NamespaceOut.of(created, await platform.namespaces.usage(name))

    @api.get(
        "/v1/namespaces",
        response_model=s.NamespaceList,
        responses=s.ERROR_RESPONSES,
        tags=["namespaces"],
    )
    async def list_namespaces(key: Admin) -> s.NamespaceList:
        """Every namespace with its quotas and usage (admin)."""
        return s.NamespaceList(
            namespaces=[
                s.NamespaceOut.of(n, await platform.namespaces.usage(n.name))
                for n in platform.namespaces.list()
            ]
        )

    @api.get(
        "/v1/namespaces/{name}",
        response_model=s.NamespaceOut,
        responses=s.ERROR_RESPONSES,
        tags=["namespaces"],
    )
    async def get_namespace(name: s.Name, key: Caller) -> s.NamespaceOut:
        """A namespace's quotas and current usage. Admin: any; developer: its own."""
        if key.role is not Role.ADMIN and name != key.namespace:
            raise namespace_not_found(name)
        require(key, Permission.READ)
        namespace = platform.namespaces.get(name)
        return s.NamespaceOut.of(namespace, await platform.namespaces.usage(name))

    @api.patch(
        "/v1/namespaces/{name}",
        response_model=s.NamespaceOut,
        responses=s.ERROR_RESPONSES,
        tags=["namespaces"],
    )
    async def update_namespace(name: s.Name, body: s.QuotasIn, key: Admin) -> s.NamespaceOut:
        """Change quotas (admin); only those given change, null means unlimited."""
        updated = await platform.namespaces.update(
            Actor.of(key), name, body.model_dump(exclude_unset=True)
        )
        return s.NamespaceOut.of(updated, await platform.namespaces.usage(name))

    @api.delete(
        "/v1/namespaces/{name}",
        status_code=204,
        responses=s.ERROR_RESPONSES,
        tags=["namespaces"],
    )
    async def delete_namespace(name: s.Name, key: Admin) -> Response:
        """Delete an empty namespace (admin): 409 Namespace.NotEmpty while it has
        functions or live keys."""
        await platform.namespaces.delete(Actor.of(key), name)
        return Response(status_code=204)

    # ---- keys ----------------------------------------------------------------
    @api.post(
        "/v1/keys",
        status_code=201,
        response_model=s.KeyCreated,
        responses=s.ERROR_RESPONSES,
        tags=["keys"],
    )
    async def create_key(
        body: s.KeyCreate,
        key: Caller,
        x_nimbus_namespace: NamespaceHeader = None,
        namespace: NamespaceQuery = None,
    ) -> s.KeyCreated:
        """Issue an API key; its secret is in this answer only. Admin: any key anywhere;
        developer: developer and invoker keys of its own namespace."""
        target = body.namespace or requested_namespace(x_nimbus_namespace, namespace)
        if target is None:
            target = key.namespace if key.role is not Role.ADMIN else "default"
        if key.role is not Role.ADMIN and target != key.namespace:
            raise namespace_not_found(target)
        require(key, Permission.KEYS)
        created, secret, access = await platform.keys.create(
            key, target, Role(body.role), body.name
        )
        return s.KeyCreated(
            **s.KeyOut.of(created).model_dump(),
            secret=secret,
            access_key_id=access.id,
            secret_access_key=access.secret,
        )

    @api.get("/v1/keys", response_model=s.KeyList, responses=s.ERROR_RESPONSES, tags=["keys"])
    async def list_keys(
        key: Caller,
        x_nimbus_namespace: NamespaceHeader = None,
        namespace: NamespaceFilter = None,
    ) -> s.KeyList:
        """Live keys, never their secrets. Admin: all (or one namespace's);
        developer: its own namespace's."""
        wanted = requested_namespace(x_nimbus_namespace, namespace)
        if key.role is not Role.ADMIN:
            if wanted is not None and wanted != key.namespace:
                raise namespace_not_found(wanted)
            wanted = key.namespace
        require(key, Permission.KEYS)
        return s.KeyList(keys=[s.KeyOut.of(k) for k in await platform.keys.list(wanted)])

    @api.delete("/v1/keys/{key_id}", status_code=204, responses=s.ERROR_RESPONSES, tags=["keys"])
    async def revoke_key(key_id: str, key: Caller) -> Response:
        """Revoke a key: it is refused (401) from now on."""
        require(key, Permission.KEYS)
        await platform.keys.revoke(key, key_id)
        return Response(status_code=204)

    # ---- audit ---------------------------------------------------------------
    @api.get("/v1/audit", response_model=s.AuditList, responses=s.ERROR_RESPONSES, tags=["audit"])
    async def list_audit(
        key: Admin,
        x_nimbus_namespace: NamespaceHeader = None,
        namespace: NamespaceFilter = None,
        action: Annotated[str | None, Query(description="e.g. function.create, key.revoke")] = None,
        since: Annotated[float | None, Query(ge=0, le=1e11, description="Epoch seconds")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> s.AuditList:
        """Management actions that changed something, newest first (admin)."""
        records = await platform.audit.query(
            namespace=requested_namespace(x_nimbus_namespace, namespace),
            action=action,
            since=since,
            limit=limit,
        )
        return s.AuditList(entries=[s.AuditOut.of(r) for r in records])

    return api
