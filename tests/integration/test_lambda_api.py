"""The AWS Lambda API against a real ``nimbus serve``, driven by the unmodified boto3
client and the AWS CLI v1, signed with the access keys Nimbus issues."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import boto3
import botocore.exceptions
import httpx
import pytest
from botocore.config import Config

from nimbus.compat.shapes import ARCHITECTURE
from tests.integration.harness import Server, make_zip, wait_until

AWS = str(Path(sys.executable).with_name("aws"))
REGION = "eu-central-1"
ROLE = "arn:aws:iam::123456789012:role/lambda-role"
ECHO = {
    "app.py": "import os\n"
    "def handler(event, context):\n"
    "    print('event', event)\n"
    "    if event.get('fail'):\n"
    "        raise ValueError('asked to fail')\n"
    "    return {'event': event, 'version': context.function_version,\n"
    "            'release': os.environ.get('RELEASE'), 'arn': context.invoked_function_arn}\n"
}
ECHO_ZIP = make_zip(ECHO)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Tenant:
    namespace: str
    key: dict[str, Any]  # the POST /v1/keys answer
    server: Server

    def client(self, **kwargs: Any) -> Any:
        return lambda_client(self.server, self.key, **kwargs)


def lambda_client(
    server: Server, key: dict[str, Any], *, secret: str | None = None, retries: int = 1
) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=secret or key["secret_access_key"],
        config=Config(retries={"max_attempts": retries, "mode": "standard"}),
    )


def new_tenant(server: Server, role: str = "developer", namespace: str | None = None) -> Tenant:
    namespace = namespace or unique("lam")
    if server.http.get(f"/v1/namespaces/{namespace}").status_code == 404:
        r = server.http.post("/v1/namespaces", json={"name": namespace})
        assert r.status_code == 201, r.text
    r = server.http.post(
        "/v1/keys", json={"namespace": namespace, "role": role, "name": unique("aws")}
    )
    assert r.status_code == 201, r.text
    return Tenant(namespace, r.json(), server)


@pytest.fixture
def tenant(server: Server) -> Tenant:
    return new_tenant(server)


@pytest.fixture
def lam(tenant: Tenant) -> Any:
    return tenant.client()


def create(lam: Any, name: str, files: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip(files) if files else ECHO_ZIP},
        **kw,
    )
    return out


def invoke(lam: Any, name: str, event: Any = None, **kw: Any) -> tuple[dict[str, Any], Any]:
    out = lam.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode(), **kw)
    return out, json.loads(out["Payload"].read())


def error_code(exc: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


# ---- credentials ---------------------------------------------------------------------


def test_keys_come_with_an_access_key_pair_shown_once(server: Server, tenant: Tenant) -> None:
    key = tenant.key
    assert re.fullmatch(r"NIMB[A-Z0-9]{16}", key["access_key_id"])
    assert len(key["secret_access_key"]) == 40
    listed = server.http.get("/v1/keys", params={"namespace": tenant.namespace}).json()["keys"]
    mine = next(k for k in listed if k["id"] == key["id"])
    assert "secret_access_key" not in mine and "access_key_id" not in mine
    raw = (server.data_dir / "nimbus.db").read_bytes()
    assert key["secret_access_key"].encode() not in raw  # sealed at rest, not in clear


# ---- functions ------------------------------------------------------------------------


def test_create_get_list_update_delete(tenant: Tenant, lam: Any) -> None:
    name = unique("fn")
    created = create(
        lam,
        name,
        MemorySize=256,
        Timeout=7,
        Description="made by boto3",
        Environment={"Variables": {"RELEASE": "one"}},
    )
    assert created["FunctionName"] == name
    assert re.fullmatch(
        rf"arn:aws:lambda:{REGION}:\d{{12}}:function:{name}", created["FunctionArn"]
    )
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/.+", created["Role"])
    assert created["CodeSha256"] == base64.b64encode(hashlib.sha256(ECHO_ZIP).digest()).decode()
    assert created["CodeSize"] == len(ECHO_ZIP)
    assert (created["MemorySize"], created["Timeout"]) == (256, 7)
    assert created["Environment"] == {"Variables": {"RELEASE": "one"}}
    assert (created["State"], created["LastUpdateStatus"]) == ("Active", "Successful")
    assert (created["Version"], created["PackageType"], created["Runtime"]) == (
        "$LATEST",
        "Zip",
        "python3.11",
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert datetime.strptime(created["LastModified"], "%Y-%m-%dT%H:%M:%S.%f%z")
    lam.get_waiter("function_active").wait(FunctionName=name, WaiterConfig={"Delay": 1})

    with pytest.raises(lam.exceptions.ResourceConflictException):
        create(lam, name)

    got = lam.get_function(FunctionName=name)
    assert got["Configuration"]["CodeSha256"] == created["CodeSha256"]
    assert got["Configuration"]["RevisionId"] == created["RevisionId"]
    # The code's Location is a presigned URL: no credentials needed, valid for a while.
    location = got["Code"]["Location"]
    assert httpx.get(location).content == ECHO_ZIP
    assert httpx.get(location.replace("X-Amz-Expires=600", "X-Amz-Expires=6000")).status_code == 403
    config = lam.get_function_configuration(FunctionName=created["FunctionArn"])
    assert config["FunctionName"] == name

    updated = lam.update_function_configuration(
        FunctionName=name,
        MemorySize=512,
        Environment={"Variables": {"RELEASE": "two"}},
        Description="changed",
    )
    assert (updated["MemorySize"], updated["Timeout"], updated["Description"]) == (
        512,
        7,
        "changed",
    )
    assert updated["RevisionId"] != created["RevisionId"]
    lam.get_waiter("function_updated").wait(FunctionName=name, WaiterConfig={"Delay": 1})
    assert invoke(lam, name)[1]["release"] == "two"

    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.update_function_configuration(
            FunctionName=name, Timeout=9, RevisionId=created["RevisionId"]
        )
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.update_function_configuration(FunctionName=name, MemorySize=20_000)
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.update_function_configuration(FunctionName=name, Runtime="cobol85")

    new_code = make_zip(
        {"app.py": "def handler(event, context):\n    return {'release': 'new code'}\n"}
    )
    after = lam.update_function_code(FunctionName=name, ZipFile=new_code)
    assert after["CodeSha256"] == base64.b64encode(hashlib.sha256(new_code).digest()).decode()
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})
    assert invoke(lam, name)[1] == {"release": "new code"}
    dry = lam.update_function_code(FunctionName=name, ZipFile=ECHO_ZIP, DryRun=True)
    assert dry["CodeSha256"] == created["CodeSha256"]
    assert invoke(lam, name)[1] == {"release": "new code"}  # a dry run changes nothing

    lam.delete_function(FunctionName=name)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=name)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.delete_function(FunctionName=name)


def test_list_functions_paginates(tenant: Tenant, lam: Any) -> None:
    names = sorted(unique(f"p{i}") for i in range(5))
    for name in names:
        create(lam, name)
    first = lam.list_functions(MaxItems=2)
    assert [f["FunctionName"] for f in first["Functions"]] == names[:2]
    second = lam.list_functions(MaxItems=2, Marker=first["NextMarker"])
    assert [f["FunctionName"] for f in second["Functions"]] == names[2:4]
    pages = list(lam.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 2}))
    assert len(pages) == 3
    assert [f["FunctionName"] for p in pages for f in p["Functions"]] == names
    assert "NextMarker" not in pages[-1]
    lam.publish_version(FunctionName=names[0])
    everything = lam.list_functions(FunctionVersion="ALL")["Functions"]
    assert [(f["FunctionName"], f["Version"]) for f in everything][:2] == [
        (names[0], "$LATEST"),
        (names[0], "1"),
    ]
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.list_functions(Marker="not-a-marker")


def test_settings_nimbus_cannot_honour_are_refused(lam: Any) -> None:
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="Layers"):
        create(lam, unique("x"), Layers=["arn:aws:lambda:eu-central-1:123456789012:layer:l:1"])
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="ZipFile only"):
        lam.create_function(
            FunctionName=unique("x"),
            Runtime="python3.11",
            Role=ROLE,
            Handler="app.handler",
            Code={"S3Bucket": "bucket", "S3Key": "key.zip"},
        )
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        create(lam, "9starts-with-a-digit")
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="handler"):
        create(lam, unique("x"), files={"other.py": "x = 1\n"})
    other = "arm64" if ARCHITECTURE == "x86_64" else "x86_64"
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="Architectures"):
        create(lam, unique("x"), Architectures=[other])
    # Defaults that tools send are fine.
    made = create(lam, unique("ok"), TracingConfig={"Mode": "PassThrough"}, Layers=[], Tags={})
    assert made["TracingConfig"] == {"Mode": "PassThrough"}


# ---- invocation -------------------------------------------------------------------------


def test_invoke_payload_tail_errors_and_dry_run(tenant: Tenant, lam: Any) -> None:
    name = unique("inv")
    create(lam, name)
    out, payload = invoke(lam, name, {"a": "ünïcode"}, LogType="Tail")
    assert out["StatusCode"] == 200
    assert out["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in out
    assert payload["event"] == {"a": "ünïcode"}
    assert payload["arn"].endswith(f":function:{name}")
    assert "event {'a': 'ünïcode'}" in base64.b64decode(out["LogResult"]).decode()

    out, payload = invoke(lam, name, {"fail": True})
    assert out["StatusCode"] == 200
    assert out["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "ValueError"
    assert payload["errorMessage"] == "asked to fail"
    assert isinstance(payload["stackTrace"], list)

    dry = lam.invoke(FunctionName=name, InvocationType="DryRun")
    assert dry["StatusCode"] == 204
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=unique("missing"), InvocationType="DryRun")
    with pytest.raises(lam.exceptions.InvalidRequestContentException):
        lam.invoke(FunctionName=name, Payload=b"{not json")
    with pytest.raises(lam.exceptions.RequestTooLargeException):
        lam.invoke(FunctionName=name, Payload=json.dumps({"x": "a" * 7_000_000}).encode())


def test_invoke_event_is_queued_and_runs(server: Server, tenant: Tenant, lam: Any) -> None:
    name = unique("evt")
    create(lam, name)
    out = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"n": 7}')
    assert out["StatusCode"] == 202
    request_id = out["ResponseMetadata"]["RequestId"]
    headers = {"X-Nimbus-Namespace": tenant.namespace}

    def done() -> bool:
        r = server.http.get(f"/v1/invocations/{request_id}", headers=headers)
        return r.status_code == 200 and r.json()["status"] == "succeeded"

    assert wait_until(done, timeout=20)
    result = server.http.get(f"/v1/invocations/{request_id}", headers=headers).json()["result"]
    assert result["event"] == {"n": 7}


def test_versions_aliases_weights_and_qualifiers(tenant: Tenant, lam: Any) -> None:
    name = unique("rel")
    create(lam, name, Environment={"Variables": {"RELEASE": "one"}})
    v1 = lam.publish_version(FunctionName=name, Description="first")
    assert (v1["Version"], v1["Description"]) == ("1", "first")
    assert v1["FunctionArn"].endswith(f":function:{name}:1")
    lam.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"RELEASE": "two"}}
    )
    v2 = lam.publish_version(FunctionName=name)
    assert v2["Version"] == "2"
    lam.get_waiter("published_version_active").wait(
        FunctionName=name, Qualifier="2", WaiterConfig={"Delay": 1}
    )
    versions = lam.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    page = lam.list_versions_by_function(FunctionName=name, MaxItems=1)
    assert [v["Version"] for v in page["Versions"]] == ["$LATEST"] and page["NextMarker"]

    out, payload = invoke(lam, name, Qualifier="1")
    assert (out["ExecutedVersion"], payload["release"]) == ("1", "one")
    out, payload = invoke(lam, f"{name}:2")
    assert (out["ExecutedVersion"], payload["release"]) == ("2", "two")
    assert lam.get_function_configuration(FunctionName=name, Qualifier="1")["Version"] == "1"
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        invoke(lam, name, Qualifier="9")
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        invoke(lam, f"{name}:1", Qualifier="2")

    alias = lam.create_alias(
        FunctionName=name,
        Name="live",
        FunctionVersion="1",
        Description="production",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}},
    )
    assert alias["AliasArn"].endswith(f":function:{name}:live")
    assert alias["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.5}}
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="LATEST"):
        lam.create_alias(FunctionName=name, Name="head", FunctionVersion="$LATEST")
    ran = Counter(invoke(lam, name, Qualifier="live")[0]["ExecutedVersion"] for _ in range(40))
    assert set(ran) == {"1", "2"}, ran
    assert lam.get_function_configuration(FunctionName=name, Qualifier="live")[
        "FunctionArn"
    ].endswith(":live")

    moved = lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2", RoutingConfig={})
    assert moved["FunctionVersion"] == "2" and "RoutingConfig" not in moved
    assert moved["Description"] == "production"
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.update_alias(FunctionName=name, Name="live", RevisionId=alias["RevisionId"])
    assert {invoke(lam, name, Qualifier="live")[0]["ExecutedVersion"] for _ in range(5)} == {"2"}
    assert lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == "2"
    lam.create_alias(FunctionName=name, Name="old", FunctionVersion="1")
    listed = lam.list_aliases(FunctionName=name)["Aliases"]
    assert [a["Name"] for a in listed] == ["live", "old"]
    assert [
        a["Name"] for a in lam.list_aliases(FunctionName=name, FunctionVersion="1")["Aliases"]
    ] == ["old"]
    pages = list(
        lam.get_paginator("list_aliases").paginate(
            FunctionName=name, PaginationConfig={"PageSize": 1}
        )
    )
    assert [a["Name"] for p in pages for a in p["Aliases"]] == ["live", "old"]

    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.delete_function(FunctionName=name, Qualifier="1")  # "old" points to it
    lam.delete_alias(FunctionName=name, Name="old")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_alias(FunctionName=name, Name="old")
    lam.delete_function(FunctionName=name, Qualifier="1")
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == [
        "$LATEST",
        "2",
    ]


def test_reserved_concurrency(lam: Any) -> None:
    name = unique("conc")
    create(lam, name)
    assert (
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)[
            "ReservedConcurrentExecutions"
        ]
        == 0
    )
    assert lam.get_function(FunctionName=name)["Concurrency"] == {"ReservedConcurrentExecutions": 0}
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 0
    with pytest.raises(lam.exceptions.TooManyRequestsException) as exc:
        invoke(lam, name)
    response = exc.value.response
    assert response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "60"
    lam.delete_function_concurrency(FunctionName=name)
    assert "Concurrency" not in lam.get_function(FunctionName=name)
    assert invoke(lam, name)[0]["StatusCode"] == 200
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=100_000)


def test_endpoint_from_the_environment(
    server: Server, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", tenant.key["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", tenant.key["secret_access_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    lam = boto3.session.Session().client("lambda")
    name = unique("env")
    made = create(lam, name)
    assert made["FunctionArn"].startswith("arn:aws:lambda:ap-southeast-2:")
    assert [f["FunctionName"] for f in lam.list_functions()["Functions"]] == [name]


# ---- authentication and tenants ------------------------------------------------------------


def test_unsigned_and_badly_signed_requests_are_refused(server: Server, tenant: Tenant) -> None:
    url = f"{server.url}/2015-03-31/functions/"
    r = httpx.get(url)
    assert r.status_code == 403
    assert r.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    r = httpx.get(url, headers={"Authorization": f"Bearer {tenant.key['secret']}"})
    assert (r.status_code, r.headers["x-amzn-ErrorType"]) == (403, "IncompleteSignatureException")
    assert "Bearer" in r.json()["message"]

    wrong = lambda_client(server, tenant.key, secret="x" * 40)
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        wrong.list_functions()
    assert error_code(exc) == "InvalidSignatureException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    stranger = lambda_client(server, {"access_key_id": "NIMB" + "A" * 16, "secret_access_key": "s"})
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        stranger.list_functions()
    assert error_code(exc) == "UnrecognizedClientException"

    lam = tenant.client()
    stale = datetime.now(UTC) - timedelta(minutes=10)
    with (
        mock.patch("botocore.auth.get_current_datetime", return_value=stale.replace(tzinfo=None)),
        pytest.raises(botocore.exceptions.ClientError) as exc,
    ):
        lam.list_functions()
    assert error_code(exc) == "InvalidSignatureException"
    assert "Signature expired" in exc.value.response["Error"]["Message"]

    # A body changed after signing: the signature no longer matches.
    def tamper(request: Any, **_: Any) -> None:
        request.body = b'{"tampered": true}'
        request.headers["Content-Length"] = str(len(request.body))

    lam.meta.events.register_last("before-send.lambda.Invoke", tamper)
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        lam.invoke(FunctionName="anything", Payload=b"{}")
    assert error_code(exc) == "InvalidSignatureException"


def test_unknown_operations_answer_in_lambda_shape(tenant: Tenant, lam: Any) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        lam.list_tags(Resource=f"arn:aws:lambda:{REGION}:123456789012:function:x")
    assert error_code(exc) == "UnknownOperationException"
    assert "docs/lambda-api.md" in exc.value.response["Error"]["Message"]


def test_revoked_keys_stop_signing(server: Server) -> None:
    tenant = new_tenant(server)
    lam = tenant.client()
    lam.list_functions()
    assert server.http.delete(f"/v1/keys/{tenant.key['id']}").status_code == 204
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        lam.list_functions()
    assert error_code(exc) == "UnrecognizedClientException"


def test_tenants_see_only_their_own_functions(server: Server) -> None:
    alice, bob = new_tenant(server), new_tenant(server)
    a, b = alice.client(), bob.client()
    name = unique("private")
    made = create(a, name)
    assert b.list_functions()["Functions"] == []
    for call in (
        lambda: b.get_function(FunctionName=name),
        lambda: b.get_function(FunctionName=made["FunctionArn"]),
        lambda: b.invoke(FunctionName=name),
        lambda: b.delete_function(FunctionName=name),
        lambda: b.publish_version(FunctionName=name),
        lambda: a.get_function(
            FunctionName=made["FunctionArn"].replace(
                made["FunctionArn"].split(":")[4], "000000000000"
            )
        ),
    ):
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            call()
        assert error_code(exc) == "ResourceNotFoundException"
    # The same name in another namespace is another function.
    create(b, name, Environment={"Variables": {"RELEASE": "bob"}})
    assert invoke(b, name)[1]["release"] == "bob"
    assert invoke(a, name)[1]["release"] is None

    invoker = new_tenant(server, role="invoker", namespace=alice.namespace).client()
    assert invoke(invoker, name)[0]["StatusCode"] == 200
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        create(invoker, unique("nope"))
    assert error_code(exc) == "AccessDeniedException"
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        invoker.list_functions()
    assert error_code(exc) == "AccessDeniedException"


def test_admin_keys_name_a_namespace_with_a_header(server: Server) -> None:
    team = new_tenant(server)
    name = unique("team-fn")
    create(team.client(), name)
    admin_tenant = new_tenant(server, role="admin", namespace="default")
    admin = admin_tenant.client()
    try:
        with pytest.raises(admin.exceptions.ResourceNotFoundException):
            admin.get_function(FunctionName=name)  # admin keys act in default by default

        def in_team(request: Any, **_: Any) -> None:
            request.headers["X-Nimbus-Namespace"] = team.namespace

        admin.meta.events.register("before-sign.lambda.*", in_team)
        assert admin.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name
        assert [f["FunctionName"] for f in admin.list_functions()["Functions"]] == [name]
    finally:  # the shared server keeps one admin key, as other tests expect
        server.http.delete(f"/v1/keys/{admin_tenant.key['id']}")


# ---- the AWS CLI ---------------------------------------------------------------------------


@pytest.fixture
def aws(server: Server, tenant: Tenant, tmp_path: Path) -> Iterator[Any]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": tenant.key["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": tenant.key["secret_access_key"],
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_MAX_ATTEMPTS": "1",
    }

    def run(*args: str, ok: bool = True) -> Any:
        proc = subprocess.run(
            [AWS, "lambda", *args, "--endpoint-url", server.url, "--output", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        if not ok:
            assert proc.returncode != 0, proc.stdout
            return proc.stderr
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    yield run


def test_aws_cli(aws: Any, tmp_path: Path) -> None:
    name = unique("cli")
    (tmp_path / "package.zip").write_bytes(ECHO_ZIP)
    made = aws(
        "create-function",
        "--function-name",
        name,
        "--runtime",
        "python3.11",
        "--role",
        ROLE,
        "--handler",
        "app.handler",
        "--zip-file",
        "fileb://package.zip",
        "--environment",
        "Variables={RELEASE=cli}",
    )
    assert made["FunctionName"] == name and made["State"] == "Active"
    aws("wait", "function-active", "--function-name", name)
    assert aws("get-function", "--function-name", name)["Configuration"]["Handler"] == "app.handler"
    assert aws("get-function-configuration", "--function-name", name)["Environment"] == {
        "Variables": {"RELEASE": "cli"}
    }
    out = aws(
        "invoke",
        "--function-name",
        name,
        "--payload",
        '{"from": "cli"}',
        "--log-type",
        "Tail",
        "out.json",
    )
    assert out["StatusCode"] == 200 and out["ExecutedVersion"] == "$LATEST"
    assert "event {'from': 'cli'}" in base64.b64decode(out["LogResult"]).decode()
    assert json.loads((tmp_path / "out.json").read_text())["event"] == {"from": "cli"}
    aws("update-function-configuration", "--function-name", name, "--timeout", "10")
    aws("wait", "function-updated", "--function-name", name)
    assert aws("publish-version", "--function-name", name)["Version"] == "1"
    aws("create-alias", "--function-name", name, "--name", "prod", "--function-version", "1")
    assert aws("list-aliases", "--function-name", name)["Aliases"][0]["Name"] == "prod"
    aws(
        "put-function-concurrency", "--function-name", name, "--reserved-concurrent-executions", "5"
    )
    for i in range(2):
        aws(
            "create-function",
            "--function-name",
            f"{name}-{i}",
            "--runtime",
            "python3.11",
            "--role",
            ROLE,
            "--handler",
            "app.handler",
            "--zip-file",
            "fileb://package.zip",
        )
    # The CLI follows NextMarker itself; --max-items caps what it prints.
    listed = aws("list-functions", "--page-size", "1")
    assert [f["FunctionName"] for f in listed["Functions"]] == [name, f"{name}-0", f"{name}-1"]
    capped = aws("list-functions", "--max-items", "2")
    assert len(capped["Functions"]) == 2 and capped["NextToken"]
    aws("delete-alias", "--function-name", name, "--name", "prod")
    aws("delete-function", "--function-name", name)
    stderr = aws("get-function", "--function-name", name, ok=False)
    assert "ResourceNotFoundException" in stderr


def test_tampered_presigned_code_url_is_refused(lam: Any) -> None:
    name = unique("loc")
    create(lam, name)
    location = lam.get_function(FunctionName=name)["Code"]["Location"]
    parts = urlsplit(location)
    other = location.replace(f"/functions/{name}/", f"/functions/{name}x/")
    assert httpx.get(other).status_code == 403
    assert parts.scheme == "http" and httpx.get(location).status_code == 200
