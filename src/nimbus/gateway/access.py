"""Who is calling, in which namespace, and whether they may: FastAPI dependencies.

(No ``from __future__ import annotations`` here: FastAPI reads the annotations.)

Every /v1 route depends on one of these. Order of refusals: 401 (no valid
key), then 404 (the namespace, or the function in it, is not visible to the
key: the same answer as when it does not exist), then 403 (the key's role may
not do this in its own namespace).
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Header, Query

from nimbus.domain.access import Permission, Placement, place, require
from nimbus.domain.audit import Actor
from nimbus.domain.function import function_not_found
from nimbus.domain.keys import ApiKey, Role
from nimbus.domain.namespace import namespace_not_found
from nimbus.gateway.schemas import Name, QualifiedName

if TYPE_CHECKING:
    from nimbus.app import Platform

NAMESPACE_HEADER_DOC = (
    "Namespace to act in (admin keys; default: default). Other keys always act in "
    "their own namespace: naming another one answers 404."
)
NAMESPACE_QUERY_DOC = "Same as the X-Nimbus-Namespace header; takes precedence over it."

AuthorizationHeader = Annotated[str | None, Header(description="Bearer <API key>")]
NamespaceHeader = Annotated[str | None, Header(description=NAMESPACE_HEADER_DOC)]
NamespaceQuery = Annotated[str | None, Query(description=NAMESPACE_QUERY_DOC)]


@dataclass(frozen=True)
class Scope:
    """A verified key and the namespace its call acts in."""

    key: ApiKey
    namespace: str

    @property
    def actor(self) -> Actor:
        return Actor.of(self.key)


def requested_namespace(header: str | None, query: str | None) -> str | None:
    return query or header or None


class Access:
    def __init__(self, platform: "Platform") -> None:
        self._platform = platform

    async def caller(self, authorization: AuthorizationHeader = None) -> ApiKey:
        return await self._platform.keyring.authenticate(authorization)

    def _placed(self, key: ApiKey, requested: str | None) -> Placement:
        placement = place(key, requested)
        if placement.visible and not self._platform.namespaces.exists(placement.namespace):
            return Placement(placement.namespace, False)
        return placement

    def in_namespace(self, permission: Permission) -> Callable[..., Awaitable[Scope]]:
        """For routes on a namespace's collections (list, create, upload)."""

        async def dependency(
            authorization: AuthorizationHeader = None,
            x_nimbus_namespace: NamespaceHeader = None,
            namespace: NamespaceQuery = None,
        ) -> Scope:
            key = await self.caller(authorization)
            placement = self._placed(key, requested_namespace(x_nimbus_namespace, namespace))
            if not placement.visible:
                raise namespace_not_found(placement.namespace)
            require(key, permission)
            return Scope(key, placement.namespace)

        return dependency

    def on_function(self, permission: Permission) -> Callable[..., Awaitable[Scope]]:
        """For routes on one function (``{name}`` in the path): an invisible namespace
        answers ``Function.NotFound``, exactly like a function that does not exist."""

        async def dependency(
            name: Name,
            authorization: AuthorizationHeader = None,
            x_nimbus_namespace: NamespaceHeader = None,
            namespace: NamespaceQuery = None,
        ) -> Scope:
            return await self.function_scope(
                name, permission, authorization, requested_namespace(x_nimbus_namespace, namespace)
            )

        return dependency

    def on_invocation(self, permission: Permission) -> Callable[..., Awaitable[Scope]]:
        """Like :meth:`on_function` for routes whose ``{name}`` may carry ``:qualifier``."""

        async def dependency(
            name: QualifiedName,
            authorization: AuthorizationHeader = None,
            x_nimbus_namespace: NamespaceHeader = None,
            namespace: NamespaceQuery = None,
        ) -> Scope:
            return await self.function_scope(
                name.partition(":")[0],
                permission,
                authorization,
                requested_namespace(x_nimbus_namespace, namespace),
            )

        return dependency

    async def function_scope(
        self,
        name: str,
        permission: Permission,
        authorization: str | None,
        requested: str | None,
    ) -> Scope:
        """The check of :meth:`on_function`, callable without FastAPI (the invoke path)."""
        key = await self.caller(authorization)
        placement = self._placed(key, requested)
        if not placement.visible:
            if key.role is Role.ADMIN:
                raise namespace_not_found(placement.namespace)
            raise function_not_found(name)
        require(key, permission)
        return Scope(key, placement.namespace)

    def with_permission(self, permission: Permission) -> Callable[..., Awaitable[ApiKey]]:
        """For routes that are not inside one namespace (runtimes, admin routes)."""

        async def dependency(authorization: AuthorizationHeader = None) -> ApiKey:
            key = await self.caller(authorization)
            require(key, permission)
            return key

        return dependency
