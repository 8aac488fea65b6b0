"""Object storage over real HTTP with unmodified clients: boto3's s3 client and the AWS CLI.

Every request goes through ``nimbus serve``'s port under ``/s3``, signed with the access
key pairs Nimbus issues with its API keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import boto3
import httpx
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.integration.harness import Server
from tests.integration.s3_helpers import access_key, error_code, s3_client

MiB = 1024 * 1024


def _code(call: Callable[[], object]) -> str:
    with pytest.raises(ClientError) as err:
        call()
    return error_code(err.value)


def test_buckets_and_their_errors(server: Server) -> None:
    key = access_key(server)
    s3 = s3_client(server, key)
    assert s3.create_bucket(Bucket="st-buckets")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert "st-buckets" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.head_bucket(Bucket="st-buckets")
    assert _code(lambda: s3.create_bucket(Bucket="st-buckets")) == "BucketAlreadyOwnedByYou"
    other = s3_client(server, access_key(server, namespace="st-other"))
    assert _code(lambda: other.create_bucket(Bucket="st-buckets")) == "BucketAlreadyExists"
    assert _code(lambda: s3.create_bucket(Bucket="Bad_Name")) == "InvalidBucketName"
    assert _code(lambda: s3.create_bucket(Bucket="a..b")) == "InvalidBucketName"
    assert _code(lambda: s3.head_bucket(Bucket="st-missing")) == "404"
    assert _code(lambda: s3.list_objects_v2(Bucket="st-missing")) == "NoSuchBucket"
    assert s3.get_bucket_location(Bucket="st-buckets")["LocationConstraint"] is None
    s3.put_object(Bucket="st-buckets", Key="k", Body=b"x")
    assert _code(lambda: s3.delete_bucket(Bucket="st-buckets")) == "BucketNotEmpty"
    assert _code(lambda: s3.get_bucket_versioning(Bucket="st-buckets")) == "NotImplemented"
    s3.delete_object(Bucket="st-buckets", Key="k")
    s3.delete_bucket(Bucket="st-buckets")
    assert "st-buckets" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert _code(lambda: s3.delete_bucket(Bucket="st-buckets")) == "NoSuchBucket"


def test_objects_round_trip_with_metadata_ranges_and_conditions(server: Server) -> None:
    s3 = s3_client(server, access_key(server))
    s3.create_bucket(Bucket="st-objects")
    body = bytes(range(256)) * 100
    put = s3.put_object(
        Bucket="st-objects",
        Key="dir/a b+c é.bin",
        Body=body,
        ContentType="application/x-test",
        Metadata={"owner": "ada", "n": "1"},
        CacheControl="max-age=60",
        ContentDisposition='attachment; filename="x.bin"',
    )
    etag = f'"{hashlib.md5(body).hexdigest()}"'
    assert put["ETag"] == etag
    got = s3.get_object(Bucket="st-objects", Key="dir/a b+c é.bin")
    assert got["Body"].read() == body
    assert got["ContentType"] == "application/x-test" and got["ETag"] == etag
    assert got["Metadata"] == {"owner": "ada", "n": "1"}
    assert got["CacheControl"] == "max-age=60"
    assert got["ContentDisposition"] == 'attachment; filename="x.bin"'
    head = s3.head_object(Bucket="st-objects", Key="dir/a b+c é.bin")
    assert head["ContentLength"] == len(body) and head["ETag"] == etag
    # Ranges.
    part = s3.get_object(Bucket="st-objects", Key="dir/a b+c é.bin", Range="bytes=10-19")
    assert part["Body"].read() == body[10:20] and part["ContentRange"] == f"bytes 10-19/{len(body)}"
    tail = s3.get_object(Bucket="st-objects", Key="dir/a b+c é.bin", Range="bytes=-5")
    assert tail["Body"].read() == body[-5:]
    assert (
        _code(
            lambda: s3.get_object(Bucket="st-objects", Key="dir/a b+c é.bin", Range="bytes=99999-")
        )
        == "InvalidRange"
    )
    # Conditions.
    assert (
        _code(lambda: s3.get_object(Bucket="st-objects", Key="dir/a b+c é.bin", IfNoneMatch=etag))
        == "304"
    )
    assert (
        _code(lambda: s3.get_object(Bucket="st-objects", Key="dir/a b+c é.bin", IfMatch='"nope"'))
        == "PreconditionFailed"
    )
    later = datetime(2100, 1, 1, tzinfo=UTC)
    assert (
        _code(
            lambda: s3.get_object(Bucket="st-objects", Key="dir/a b+c é.bin", IfModifiedSince=later)
        )
        == "304"
    )
    assert s3.get_object(Bucket="st-objects", Key="dir/a b+c é.bin", IfMatch=etag)["ETag"] == etag
    # Digests and missing keys.
    wrong_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    assert (
        _code(lambda: s3.put_object(Bucket="st-objects", Key="k", Body=b"x", ContentMD5=wrong_md5))
        == "BadDigest"
    )
    right_md5 = base64.b64encode(hashlib.md5(b"x").digest()).decode()
    s3.put_object(Bucket="st-objects", Key="k", Body=b"x", ContentMD5=right_md5)
    assert _code(lambda: s3.get_object(Bucket="st-objects", Key="nope")) == "NoSuchKey"
    assert _code(lambda: s3.head_object(Bucket="st-objects", Key="nope")) == "404"
    assert (
        _code(lambda: s3.put_object(Bucket="st-objects", Key="k" * 1025, Body=b""))
        == "KeyTooLongError"
    )
    # An empty object.
    s3.put_object(Bucket="st-objects", Key="empty", Body=b"")
    assert s3.get_object(Bucket="st-objects", Key="empty")["Body"].read() == b""


def test_listing_with_prefixes_delimiters_and_pages(server: Server) -> None:
    s3 = s3_client(server, access_key(server))
    s3.create_bucket(Bucket="st-list")
    keys = [f"photos/2024/{i:02d}.jpg" for i in range(7)] + ["photos/cover.jpg", "readme", "z/1"]
    for key in keys:
        s3.put_object(Bucket="st-list", Key=key, Body=key.encode())
    top = s3.list_objects_v2(Bucket="st-list", Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["readme"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["photos/", "z/"]
    assert top["KeyCount"] == 3 and top["IsTruncated"] is False
    sub = s3.list_objects_v2(Bucket="st-list", Prefix="photos/", Delimiter="/")
    assert [o["Key"] for o in sub["Contents"]] == ["photos/cover.jpg"]
    assert [p["Prefix"] for p in sub["CommonPrefixes"]] == ["photos/2024/"]
    first = s3.list_objects_v2(Bucket="st-list", MaxKeys=3)
    assert first["IsTruncated"] and len(first["Contents"]) == 3
    # boto3's paginator follows NextContinuationToken.
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket="st-list", PaginationConfig={"PageSize": 3}
    )
    listed = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert listed == sorted(keys)
    assert [
        o["Key"] for o in s3.list_objects_v2(Bucket="st-list", StartAfter="readme")["Contents"]
    ] == ["z/1"]
    v1 = s3.list_objects(Bucket="st-list", Prefix="photos/2024/", MaxKeys=5)
    assert len(v1["Contents"]) == 5 and v1["IsTruncated"]
    rest = s3.list_objects(Bucket="st-list", Prefix="photos/2024/", Marker=v1["NextMarker"])
    assert len(rest["Contents"]) == 2 and not rest["IsTruncated"]
    sizes = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket="st-list")["Contents"]}
    assert sizes["readme"] == len(b"readme")


def test_copy_delete_and_batch_delete(server: Server) -> None:
    s3 = s3_client(server, access_key(server))
    s3.create_bucket(Bucket="st-copy")
    s3.put_object(
        Bucket="st-copy", Key="src", Body=b"payload", ContentType="text/plain", Metadata={"a": "1"}
    )
    copied = s3.copy_object(
        Bucket="st-copy", Key="dst", CopySource={"Bucket": "st-copy", "Key": "src"}
    )
    assert copied["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(b"payload").hexdigest()}"'
    dst = s3.get_object(Bucket="st-copy", Key="dst")
    assert dst["Body"].read() == b"payload" and dst["Metadata"] == {"a": "1"}
    replaced = s3.copy_object(
        Bucket="st-copy",
        Key="dst2",
        CopySource="st-copy/src",
        MetadataDirective="REPLACE",
        Metadata={"b": "2"},
        ContentType="application/json",
    )
    assert replaced["CopyObjectResult"]["ETag"]
    dst2 = s3.head_object(Bucket="st-copy", Key="dst2")
    assert dst2["Metadata"] == {"b": "2"} and dst2["ContentType"] == "application/json"
    assert (
        _code(lambda: s3.copy_object(Bucket="st-copy", Key="src", CopySource="st-copy/src"))
        == "InvalidRequest"
    )
    assert (
        _code(lambda: s3.copy_object(Bucket="st-copy", Key="x", CopySource="st-copy/none"))
        == "NoSuchKey"
    )
    # Deleting the source leaves the copy (its bytes are its own).
    s3.delete_object(Bucket="st-copy", Key="src")
    assert s3.get_object(Bucket="st-copy", Key="dst")["Body"].read() == b"payload"
    s3.delete_object(Bucket="st-copy", Key="src")  # deleting what is gone is no error
    result = s3.delete_objects(
        Bucket="st-copy", Delete={"Objects": [{"Key": "dst"}, {"Key": "dst2"}, {"Key": "never"}]}
    )
    assert sorted(d["Key"] for d in result["Deleted"]) == ["dst", "dst2", "never"]
    assert s3.list_objects_v2(Bucket="st-copy")["KeyCount"] == 0


def test_multipart_uploads(server: Server, tmp_path: Path) -> None:
    s3 = s3_client(server, access_key(server))
    s3.create_bucket(Bucket="st-multi")
    data = os.urandom(5 * MiB) + os.urandom(5 * MiB) + b"tail"
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3.upload_fileobj(io.BytesIO(data), "st-multi", "big.bin", Config=config)
    head = s3.head_object(Bucket="st-multi", Key="big.bin")
    digests = b"".join(
        hashlib.md5(data[i : i + 5 * MiB]).digest() for i in range(0, len(data), 5 * MiB)
    )
    assert head["ETag"] == f'"{hashlib.md5(digests).hexdigest()}-3"'
    assert head["ContentLength"] == len(data)
    assert s3.get_object(Bucket="st-multi", Key="big.bin")["Body"].read() == data
    # By hand: parts, listing them, the errors, abort.
    upload = s3.create_multipart_upload(Bucket="st-multi", Key="hand", ContentType="text/plain")
    uid = upload["UploadId"]
    small = s3.upload_part(
        Bucket="st-multi", Key="hand", UploadId=uid, PartNumber=1, Body=b"a" * 10
    )
    last = s3.upload_part(Bucket="st-multi", Key="hand", UploadId=uid, PartNumber=2, Body=b"b")
    parts = s3.list_parts(Bucket="st-multi", Key="hand", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 10), (2, 1)]

    def complete(chosen: list[dict[str, object]]) -> object:
        return s3.complete_multipart_upload(
            Bucket="st-multi", Key="hand", UploadId=uid, MultipartUpload={"Parts": chosen}
        )

    one = {"PartNumber": 1, "ETag": small["ETag"]}
    two = {"PartNumber": 2, "ETag": last["ETag"]}
    assert _code(lambda: complete([one, {"PartNumber": 2, "ETag": '"bad"'}])) == "InvalidPart"
    assert _code(lambda: complete([two, one])) == "InvalidPartOrder"
    assert _code(lambda: complete([one, two])) == "EntityTooSmall"  # part 1 < 5 MiB
    complete([two])  # one part: the last may be small
    assert s3.get_object(Bucket="st-multi", Key="hand")["Body"].read() == b"b"
    assert (
        _code(lambda: s3.list_parts(Bucket="st-multi", Key="hand", UploadId=uid)) == "NoSuchUpload"
    )
    again = s3.create_multipart_upload(Bucket="st-multi", Key="gone")["UploadId"]
    s3.upload_part(Bucket="st-multi", Key="gone", UploadId=again, PartNumber=1, Body=b"x")
    s3.abort_multipart_upload(Bucket="st-multi", Key="gone", UploadId=again)
    assert (
        _code(
            lambda: s3.upload_part(
                Bucket="st-multi", Key="gone", UploadId=again, PartNumber=1, Body=b"x"
            )
        )
        == "NoSuchUpload"
    )
    assert _code(lambda: s3.head_object(Bucket="st-multi", Key="gone")) == "404"


def _signed(
    server: Server,
    key: dict[str, str],
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
) -> tuple[dict[str, str], str]:
    """Headers botocore's own S3 signer gives this request, and its signature."""
    claimed = headers["x-amz-content-sha256"]

    class Signer(S3SigV4Auth):
        def payload(self, request: AWSRequest) -> str:
            return claimed  # botocore would hash the body; keep what the test claims

    request = AWSRequest(method=method, url=f"{server.url}{path}", data=body, headers=headers)
    credentials = Credentials(key["access_key_id"], key["secret_access_key"])
    Signer(credentials, "s3", "us-east-1").add_auth(request)
    signed = dict(request.headers.items())
    return signed, signed["Authorization"].rsplit("Signature=", 1)[1]


def _chunked(key: dict[str, str], amz_date: str, seed: str, data: bytes, size: int) -> bytes:
    """An aws-chunked body with chunk signatures, computed here from the specification."""

    def hmac_sha256(k: bytes, msg: str) -> bytes:
        return hmac.new(k, msg.encode(), hashlib.sha256).digest()

    signing = ("AWS4" + key["secret_access_key"]).encode()
    for part in (amz_date[:8], "us-east-1", "s3", "aws4_request"):
        signing = hmac_sha256(signing, part)
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    empty = hashlib.sha256(b"").hexdigest()
    out, previous = b"", seed
    for chunk in [data[i : i + size] for i in range(0, len(data), size)] + [b""]:
        to_sign = (
            f"AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{previous}\n{empty}\n"
            f"{hashlib.sha256(chunk).hexdigest()}"
        )
        previous = hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()
        out += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + chunk + b"\r\n"
    return out


def test_signatures_and_payload_modes(server: Server) -> None:
    key = access_key(server)
    s3 = s3_client(server, key)
    s3.create_bucket(Bucket="st-sign")
    s3.put_object(Bucket="st-sign", Key="a b", Body=b"secret data")
    wrong = s3_client(server, {**key, "secret_access_key": "x" * 40})
    assert _code(lambda: wrong.list_objects_v2(Bucket="st-sign")) == "SignatureDoesNotMatch"
    unknown = s3_client(server, {"access_key_id": "NIMB" + "A" * 16, "secret_access_key": "x" * 40})
    assert _code(lambda: unknown.list_buckets()) == "InvalidAccessKeyId"
    anonymous = httpx.get(f"{server.url}/s3/st-sign/a%20b")
    assert anonymous.status_code == 403 and b"<Code>AccessDenied</Code>" in anonymous.content
    bearer = httpx.get(
        f"{server.url}/s3/st-sign/a%20b",
        headers={"Authorization": "Bearer test-admin-key-0123456789"},
    )
    assert bearer.status_code == 400 and b"AuthorizationHeaderMalformed" in bearer.content
    # UNSIGNED-PAYLOAD (botocore's choice with payload signing off).
    unsigned = s3_client(server, key, s3={"payload_signing_enabled": False})
    unsigned.put_object(Bucket="st-sign", Key="unsigned", Body=b"u" * 100)
    assert s3.get_object(Bucket="st-sign", Key="unsigned")["Body"].read() == b"u" * 100
    # A body that is not the one signed.
    headers, _ = _signed(
        server,
        key,
        "PUT",
        "/s3/st-sign/tampered",
        b"original",
        {"x-amz-content-sha256": hashlib.sha256(b"original").hexdigest()},
    )
    r = httpx.put(f"{server.url}/s3/st-sign/tampered", content=b"tampered", headers=headers)
    assert r.status_code == 400 and b"XAmzContentSHA256Mismatch" in r.content, r.text
    assert _code(lambda: s3.head_object(Bucket="st-sign", Key="tampered")) == "404"
    # aws-chunked with chunk signatures (STREAMING-AWS4-HMAC-SHA256-PAYLOAD).
    data = os.urandom(200_000)
    base = {
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-date": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
    }
    body_len = len(_chunked(key, base["x-amz-date"], "0" * 64, data, 65536))
    headers, seed = _signed(
        server, key, "PUT", "/s3/st-sign/chunked", b"", {**base, "content-length": str(body_len)}
    )
    body = _chunked(key, base["x-amz-date"], seed, data, 65536)
    r = httpx.put(f"{server.url}/s3/st-sign/chunked", content=body, headers=headers)
    assert r.status_code == 200, r.text
    got = s3.get_object(Bucket="st-sign", Key="chunked")
    assert got["Body"].read() == data and "ContentEncoding" not in got
    forged = body.replace(data[70000:70010], b"\0" * 10)
    r = httpx.put(f"{server.url}/s3/st-sign/chunked", content=forged, headers=headers)
    assert r.status_code == 403 and b"SignatureDoesNotMatch" in r.content
    assert s3.get_object(Bucket="st-sign", Key="chunked")["Body"].read() == data
    # Presigned GET URLs: botocore's default (Signature Version 2) and s3v4.
    for client in (s3, s3_client(server, key, signature_version="s3v4")):
        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": "st-sign", "Key": "a b"}
        )
        fetched = httpx.get(url)
        assert fetched.status_code == 200 and fetched.content == b"secret data", url
        assert httpx.get(url.replace("st-sign/a", "st-sign/b")).status_code == 403
    upload = s3_client(server, key, signature_version="s3v4").generate_presigned_url(
        "put_object", Params={"Bucket": "st-sign", "Key": "presigned-put"}
    )
    assert httpx.put(upload, content=b"put by url").status_code == 200
    assert s3.get_object(Bucket="st-sign", Key="presigned-put")["Body"].read() == b"put by url"
    expired = s3_client(server, key, signature_version="s3v4").generate_presigned_url(
        "get_object", Params={"Bucket": "st-sign", "Key": "a b"}, ExpiresIn=1
    )
    old = expired.replace(
        expired.split("X-Amz-Date=")[1][:16], "20200101T000000Z"
    )  # a URL whose time is long past
    assert httpx.get(old).status_code == 403


def test_namespaces_and_roles(server: Server) -> None:
    developer = s3_client(server, access_key(server, namespace="st-ns-a"))
    developer.create_bucket(Bucket="st-ns-a-bucket")
    developer.put_object(Bucket="st-ns-a-bucket", Key="k", Body=b"mine")
    # Another namespace's key sees none of it.
    stranger = s3_client(server, access_key(server, namespace="st-ns-b"))
    assert "st-ns-a-bucket" not in [b["Name"] for b in stranger.list_buckets()["Buckets"]]
    for call in (
        lambda: stranger.get_object(Bucket="st-ns-a-bucket", Key="k"),
        lambda: stranger.put_object(Bucket="st-ns-a-bucket", Key="k", Body=b"theirs"),
        lambda: stranger.list_objects_v2(Bucket="st-ns-a-bucket"),
        lambda: stranger.delete_object(Bucket="st-ns-a-bucket", Key="k"),
        lambda: stranger.delete_bucket(Bucket="st-ns-a-bucket"),
    ):
        assert _code(call) == "AccessDenied"
    # Invokers read, and only read.
    reader = s3_client(server, access_key(server, role="invoker", namespace="st-ns-a"))
    assert reader.get_object(Bucket="st-ns-a-bucket", Key="k")["Body"].read() == b"mine"
    assert (
        _code(lambda: reader.put_object(Bucket="st-ns-a-bucket", Key="k2", Body=b"x"))
        == "AccessDenied"
    )
    assert _code(lambda: reader.delete_object(Bucket="st-ns-a-bucket", Key="k")) == "AccessDenied"
    assert _code(lambda: reader.create_bucket(Bucket="st-ns-a-new")) == "AccessDenied"
    # Admin keys reach every bucket, and create where X-Nimbus-Namespace says.
    admin = s3_client(server, access_key(server, role="admin"))
    assert admin.get_object(Bucket="st-ns-a-bucket", Key="k")["Body"].read() == b"mine"

    def in_b(request: object, **_: object) -> None:
        request.headers["X-Nimbus-Namespace"] = "st-ns-b"  # type: ignore[attr-defined]

    admin.meta.events.register("before-sign.s3.*", in_b)
    admin.create_bucket(Bucket="st-ns-b-made-by-admin")
    assert "st-ns-b-made-by-admin" in [b["Name"] for b in stranger.list_buckets()["Buckets"]]
    # A namespace that owns buckets is not deleted under them.
    assert server.http.post("/v1/namespaces", json={"name": "st-ns-gone"}).status_code == 201
    gone = s3_client(server, access_key(server, role="admin"))
    gone.meta.events.register(
        "before-sign.s3.*",
        lambda request, **_: request.headers.__setitem__("X-Nimbus-Namespace", "st-ns-gone"),
    )
    gone.create_bucket(Bucket="st-ns-gone-bucket")
    refused = server.http.delete("/v1/namespaces/st-ns-gone")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "Namespace.NotEmpty"
    assert "st-ns-gone-bucket" in refused.json()["error"]["message"]
    gone.delete_bucket(Bucket="st-ns-gone-bucket")
    assert server.http.delete("/v1/namespaces/st-ns-gone").status_code == 204


def test_aws_cli(server: Server, tmp_path: Path) -> None:
    key = access_key(server)
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": key["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": key["secret_access_key"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }
    aws = [str(Path(sys.executable).with_name("aws")), "--endpoint-url", f"{server.url}/s3"]

    def run(*args: str) -> str:
        done = subprocess.run([*aws, *args], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(12 * MiB))  # above the CLI's 8 MiB multipart threshold
    (tmp_path / "small.txt").write_text("hello")
    run("s3", "mb", "s3://st-cli")
    run("s3", "cp", str(source), "s3://st-cli/dir/big.bin", "--only-show-errors")
    run("s3", "cp", str(tmp_path / "small.txt"), "s3://st-cli/small.txt", "--only-show-errors")
    listing = run("s3", "ls", "s3://st-cli/", "--recursive")
    assert "dir/big.bin" in listing and "small.txt" in listing and str(12 * MiB) in listing
    assert "st-cli" in run("s3", "ls")
    run("s3", "cp", "s3://st-cli/dir/big.bin", str(tmp_path / "back.bin"), "--only-show-errors")
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()
    run("s3", "rm", "s3://st-cli", "--recursive", "--only-show-errors")
    run("s3", "rb", "s3://st-cli")
    assert "st-cli" not in run("s3", "ls")


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_large_objects_stream_both_ways(server: Server, tmp_path: Path) -> None:
    """A 160 MiB object goes in and out without the server holding it in memory."""
    assert server.proc is not None
    s3 = s3_client(server, access_key(server))
    s3.create_bucket(Bucket="st-large")
    source = tmp_path / "large.bin"
    digest = hashlib.md5()
    with source.open("wb") as f:
        for _ in range(160):
            chunk = os.urandom(MiB)
            digest.update(chunk)
            f.write(chunk)
    s3.put_object(Bucket="st-large", Key="tiny", Body=b"warm up")  # buffers allocated once
    before = _peak_rss_kib(server.proc.pid)
    with source.open("rb") as f:
        put = s3.put_object(Bucket="st-large", Key="large.bin", Body=f)
    assert put["ETag"] == f'"{digest.hexdigest()}"'
    body = s3.get_object(Bucket="st-large", Key="large.bin")["Body"]
    back = hashlib.md5()
    for piece in iter(lambda: body.read(MiB), b""):
        back.update(piece)
    assert back.hexdigest() == digest.hexdigest()
    grown_mib = (_peak_rss_kib(server.proc.pid) - before) / 1024
    assert grown_mib < 48, f"the server's peak memory grew {grown_mib:.0f} MiB for 160 MiB"
    s3.delete_object(Bucket="st-large", Key="large.bin")


def test_limits_and_durability_across_sigkill(make_server: Callable[..., Server]) -> None:
    srv = make_server(max_put_object_bytes=MiB)
    key = access_key(srv)
    s3 = s3_client(srv, key)
    s3.create_bucket(Bucket="st-durable")
    assert (
        _code(lambda: s3.put_object(Bucket="st-durable", Key="big", Body=b"x" * (MiB + 1)))
        == "EntityTooLarge"
    )
    s3.put_object(Bucket="st-durable", Key="kept", Body=b"committed", Metadata={"m": "1"})
    assert srv.stop(signal.SIGKILL) == -signal.SIGKILL
    srv.start()
    s3 = s3_client(srv, key)
    got = s3.get_object(Bucket="st-durable", Key="kept")
    assert got["Body"].read() == b"committed" and got["Metadata"] == {"m": "1"}
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["st-durable"]
    # Nothing but committed blobs is left on disk.
    blobs = [p for p in (srv.data_dir / "objects" / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 1 and blobs[0].read_bytes() == b"committed"
    assert not any((srv.data_dir / "objects" / "tmp").iterdir())
    json.dumps(got["Metadata"])
    assert boto3.__version__


def test_buckets_through_v1_and_the_nimbus_cli(server: Server) -> None:
    env = {**os.environ, "NIMBUS_URL": server.url, "NIMBUS_TOKEN": "test-admin-key-0123456789"}
    nimbus = str(Path(sys.executable).with_name("nimbus"))

    def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([nimbus, *args], env=env, capture_output=True, text=True, timeout=60)
        assert (done.returncode == 0) == ok, done.stderr
        return done

    assert (
        "created bucket st-cli-buckets in namespace default"
        in cli("bucket", "create", "st-cli-buckets").stdout
    )
    s3 = s3_client(server, access_key(server))
    s3.put_object(Bucket="st-cli-buckets", Key="a", Body=b"12345")
    listed = json.loads(cli("bucket", "list", "--json").stdout)
    mine = next(b for b in listed if b["name"] == "st-cli-buckets")
    assert mine["objects"] == 1 and mine["bytes"] == 5 and mine["endpoint"] == f"{server.url}/s3"
    assert "st-cli-buckets" in cli("bucket", "show", "st-cli-buckets").stdout
    taken = cli("bucket", "create", "st-cli-buckets", ok=False)
    assert "Resource.Conflict" in taken.stderr
    bad = cli("bucket", "create", "Bad_Name", ok=False)
    assert "Request.Invalid" in bad.stderr
    full = cli("bucket", "delete", "st-cli-buckets", "--yes", ok=False)
    assert "Resource.Conflict" in full.stderr and "not empty" in full.stderr
    s3.delete_object(Bucket="st-cli-buckets", Key="a")
    cli("bucket", "delete", "st-cli-buckets", "--yes")
    assert "st-cli-buckets" not in cli("bucket", "list").stdout
    # Over /v1: another namespace's bucket is not there; invokers may not create.
    s3_client(server, access_key(server, namespace="st-v1-other")).create_bucket(
        Bucket="st-v1-theirs"
    )
    r = server.http.get("/v1/buckets/st-v1-theirs")
    assert r.status_code == 404 and r.json()["error"]["code"] == "Resource.NotFound"
    invoker = server.http.post("/v1/keys", json={"role": "invoker", "name": "b"}).json()["secret"]
    r = httpx.post(
        f"{server.url}/v1/buckets",
        json={"name": "st-v1-invoker"},
        headers={"Authorization": f"Bearer {invoker}"},
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "Auth.Forbidden"
