"""``/v1/buckets``: the object storage's buckets for Nimbus's own API and CLI.

Objects themselves are read and written with S3 clients at ``/s3`` (see
docs/object-storage.md); this router creates, lists and deletes buckets with a
Nimbus API key, as ``nimbus bucket`` does. Errors use the general codes:
``Request.Invalid`` (a name S3 would not accept), ``Resource.NotFound`` (no such
bucket in the namespace, including another namespace's), ``Resource.Conflict``
(the name is taken, or the bucket is not empty).

(No ``from __future__ import annotations`` here: FastAPI reads the annotations.)
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

from fastapi import APIRouter, Depends, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from nimbus.domain.access import Permission, allows
from nimbus.errors import ConflictError, NimbusError, NotFoundError, ValidationError
from nimbus.gateway import schemas as s
from nimbus.gateway.access import Access, Scope
from nimbus.objects.errors import S3Error
from nimbus.objects.model import Bucket
from nimbus.objects.service import Caller

if TYPE_CHECKING:
    from nimbus.app import Platform

T = TypeVar("T")
BucketName = Annotated[
    str, PathParam(min_length=1, max_length=255, description="The bucket's name")
]


class BucketIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="3-63 lower-case letters, digits, '.' and '-', starting and ending with a "
        "letter or digit; no '..', not like an IP address (S3's rules); unique across the "
        "server",
    )


class BucketOut(BaseModel):
    name: str
    namespace: str
    created_at: datetime
    #: Objects in the bucket, and their bytes.
    objects: int = 0
    bytes: int = 0
    #: Where S3 clients reach it: ``s3://NAME`` at ``{base}/s3``.
    endpoint: str


class BucketList(BaseModel):
    buckets: list[BucketOut]


def _nimbus_error(exc: S3Error, bucket: str) -> NimbusError:
    if exc.code == "InvalidBucketName":
        return ValidationError(exc.message)
    if exc.code in ("NoSuchBucket", "AccessDenied"):
        return NotFoundError(
            f"bucket {bucket!r} does not exist in this namespace; list them with "
            "`nimbus bucket list`"
        )
    if exc.code in ("BucketAlreadyExists", "BucketAlreadyOwnedByYou", "BucketNotEmpty"):
        return ConflictError(exc.message)
    return NimbusError(exc.message)


async def _s3(bucket: str, call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except S3Error as exc:
        raise _nimbus_error(exc, bucket) from None


def router(platform: "Platform", access: Access) -> APIRouter:
    api = APIRouter(tags=["buckets"])
    Reader = Annotated[Scope, Depends(access.in_namespace(Permission.INVOKE))]
    Manager = Annotated[Scope, Depends(access.in_namespace(Permission.MANAGE))]
    errors = s.ERROR_RESPONSES

    def caller(scope: Scope) -> Caller:
        return Caller(
            namespace=scope.namespace,
            writes=allows(scope.key.role, Permission.MANAGE),
            principal=f"nimbus:key:{scope.key.id}",
        )

    async def out(buckets: list[Bucket]) -> list[BucketOut]:
        store = platform.objects.store
        stats = await asyncio.to_thread(store.bucket_stats, [b.name for b in buckets])
        endpoint = f"{platform.settings.base_url}/s3"
        return [
            BucketOut(
                name=b.name,
                namespace=b.namespace,
                created_at=datetime.fromtimestamp(b.created_at, UTC),
                objects=stats.get(b.name, (0, 0))[0],
                bytes=stats.get(b.name, (0, 0))[1],
                endpoint=endpoint,
            )
            for b in buckets
        ]

    @api.get("/v1/buckets", response_model=BucketList, responses=errors)
    async def list_buckets(scope: Reader) -> BucketList:
        """The namespace's buckets, with how many objects and bytes each holds."""
        return BucketList(buckets=await out(await platform.objects.list_buckets(caller(scope))))

    @api.post("/v1/buckets", response_model=BucketOut, status_code=201, responses=errors)
    async def create_bucket(body: BucketIn, scope: Manager) -> BucketOut:
        """Create a bucket in the namespace (names are unique across the server)."""
        bucket = await _s3(
            body.name, lambda: platform.objects.create_bucket(caller(scope), body.name)
        )
        return (await out([bucket]))[0]

    @api.get("/v1/buckets/{bucket}", response_model=BucketOut, responses=errors)
    async def get_bucket(bucket: BucketName, scope: Reader) -> BucketOut:
        found = await _s3(
            bucket, lambda: platform.objects.bucket(caller(scope), bucket, write=False)
        )
        return (await out([found]))[0]

    @api.delete("/v1/buckets/{bucket}", status_code=204, responses=errors)
    async def delete_bucket(bucket: BucketName, scope: Manager) -> Response:
        """Delete an empty bucket (``Resource.Conflict`` while it has objects)."""
        await _s3(bucket, lambda: platform.objects.delete_bucket(caller(scope), bucket))
        return Response(status_code=204)

    return api
