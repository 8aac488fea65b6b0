"""Helpers for the object storage tests: access keys, boto3 clients, boto3 for functions."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from tests.integration.harness import Server, vendored


def access_key(
    srv: Server, role: str = "developer", namespace: str | None = None
) -> dict[str, str]:
    """A new API key's AWS access key pair (``access_key_id``, ``secret_access_key``)."""
    if namespace is not None:
        created = srv.http.post("/v1/namespaces", json={"name": namespace})
        assert created.status_code in (201, 409), created.text
    body: dict[str, Any] = {"role": role, "name": f"s3-{role}"}
    if namespace is not None:
        body["namespace"] = namespace
    r = srv.http.post("/v1/keys", json=body)
    assert r.status_code == 201, r.text
    return {k: r.json()[k] for k in ("access_key_id", "secret_access_key")}


def s3_client(srv: Server, key: dict[str, str], **config: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=f"{srv.url}/s3",
        region_name="us-east-1",
        aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=key["secret_access_key"],
        config=Config(retries={"max_attempts": 1}, **config),
    )


@cache
def boto3_package() -> dict[str, str | bytes]:
    """boto3 and what it needs, as a function's package carries it (``pip install
    --target``), with botocore's service models cut down to S3's (a smaller upload)."""
    files: dict[str, str | bytes] = {}
    for name, data in vendored("boto3").items():
        if name.startswith("botocore/data/"):
            rest = name[len("botocore/data/") :]
            if "/" in rest and not rest.startswith("s3/"):
                continue
        files[name] = data
    return files


def error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code"))
