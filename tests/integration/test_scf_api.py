"""Tencent SCF's API 3.0 against a real ``nimbus serve``, driven by the unmodified
``tencentcloud-sdk-python-scf`` client over HTTP, signed (TC3-HMAC-SHA256) with the
access keys Nimbus issues.

Warnings are errors under pytest here, so the SDK's own check that every field of an
answer is one its models know ("... fileds are useless") fails a test too.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from unittest import mock

import httpx
import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
    TencentCloudSDKException,
)
from tencentcloud.common.http.request import RequestInternal
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.scf.v20180416 import models, scf_client

from nimbus.compat.scf_shapes import ScfError, nimbus_runtime, scf_runtime_name, unflatten
from tests.integration.harness import Server, make_zip, wait_until

REGION = "ap-guangzhou"
INDEX = {
    "index.py": "import os\n"
    "def main_handler(event, context):\n"
    "    print('event', event)\n"
    "    if event.get('fail'):\n"
    "        raise ValueError('asked to fail')\n"
    "    return {'event': event, 'version': context['function_version'],\n"
    "            'request_id': context.request_id, 'release': os.environ.get('RELEASE')}\n"
}
INDEX_ZIP = make_zip(INDEX)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def scf_client_for(
    server: Server, secret_id: str, secret_key: str, *, method: str = "POST"
) -> scf_client.ScfClient:
    """The SDK's client, pointed at Nimbus: ``protocol="http"`` (HttpProfile has no
    ``scheme`` argument) and the host and port as the endpoint."""
    http = HttpProfile(endpoint=f"127.0.0.1:{server.port}", protocol="http", reqMethod=method)
    cred = credential.Credential(secret_id, secret_key)
    return scf_client.ScfClient(cred, REGION, ClientProfile(httpProfile=http))


@dataclass
class Tenant:
    namespace: str
    key: dict[str, Any]  # the POST /v1/keys answer
    server: Server

    def client(self, *, secret: str | None = None, method: str = "POST") -> Any:
        return scf_client_for(
            self.server,
            self.key["access_key_id"],
            secret or self.key["secret_access_key"],
            method=method,
        )


def new_tenant(server: Server, role: str = "developer", namespace: str | None = None) -> Tenant:
    namespace = namespace or unique("scf")
    if server.http.get(f"/v1/namespaces/{namespace}").status_code == 404:
        r = server.http.post("/v1/namespaces", json={"name": namespace})
        assert r.status_code == 201, r.text
    r = server.http.post(
        "/v1/keys", json={"namespace": namespace, "role": role, "name": unique("tc")}
    )
    assert r.status_code == 201, r.text
    return Tenant(namespace, r.json(), server)


@pytest.fixture
def tenant(server: Server) -> Tenant:
    return new_tenant(server)


@pytest.fixture
def scf(tenant: Tenant) -> Any:
    return tenant.client()


def call(client: Any, action: str, **params: Any) -> Any:
    """One action through the SDK, as its users write it: the request model filled from
    JSON, the client's method for the action."""
    request = getattr(models, f"{action}Request")()
    request.from_json_string(json.dumps(params))
    return getattr(client, action)(request)


def answer(client: Any, action: str, **params: Any) -> dict[str, Any]:
    """The answer of one action as the JSON the SDK decoded (RequestId included)."""
    out: dict[str, Any] = json.loads(call(client, action, **params).to_json_string())
    return out


def error_code(exc: pytest.ExceptionInfo[TencentCloudSDKException]) -> str:
    return str(exc.value.get_code())


def create(client: Any, name: str, files: dict[str, str] | None = None, **kw: Any) -> None:
    call(
        client,
        "CreateFunction",
        FunctionName=name,
        Runtime=kw.pop("Runtime", "Python3.11"),
        Handler=kw.pop("Handler", "index.main_handler"),
        Code={"ZipFile": b64(make_zip(files) if files else INDEX_ZIP)},
        **kw,
    )


def invoke(client: Any, name: str, event: Any = None, **kw: Any) -> dict[str, Any]:
    result: dict[str, Any] = answer(
        client, "Invoke", FunctionName=name, ClientContext=json.dumps(event or {}), **kw
    )["Result"]
    return result


# ---- functions ------------------------------------------------------------------------


def test_create_get_update_delete(tenant: Tenant, scf: Any) -> None:
    name = unique("fn")
    out = call(
        scf,
        "CreateFunction",
        FunctionName=name,
        Runtime="Python3.11",
        Handler="index.main_handler",
        Code={"ZipFile": b64(INDEX_ZIP)},
        MemorySize=256,
        Timeout=7,
        Description="made by the SCF SDK",
        Environment={"Variables": [{"Key": "RELEASE", "Value": "one"}]},
        Role="SCF_QcsRole",  # accepted and ignored: Nimbus has no CAM roles
    )
    assert out.RequestId

    got = answer(scf, "GetFunction", FunctionName=name)
    assert got["FunctionName"] == name
    assert got["Namespace"] == tenant.namespace
    assert (got["Runtime"], got["Handler"]) == ("Python3.11", "index.main_handler")
    assert (got["MemorySize"], got["Timeout"], got["CodeSize"]) == (256, 7, len(INDEX_ZIP))
    assert got["Description"] == "made by the SCF SDK"
    assert got["Environment"] == {"Variables": [{"Key": "RELEASE", "Value": "one"}]}
    assert (got["Status"], got["FunctionVersion"], got["Qualifier"]) == (
        "Active",
        "$LATEST",
        "$LATEST",
    )
    assert got["FunctionId"].startswith("lam-") and len(got["FunctionId"]) == 12
    assert time.strptime(got["AddTime"], "%Y-%m-%d %H:%M:%S")
    assert got["PublicNetConfig"]["PublicNetStatus"] == "DISABLE"  # Nimbus's safe default

    with pytest.raises(TencentCloudSDKException) as exc:
        create(scf, name)
    assert error_code(exc) == "ResourceInUse.Function"
    assert exc.value.get_request_id()

    result = invoke(scf, name, {"n": 1})
    assert json.loads(result["RetMsg"])["release"] == "one"

    # New code, and a new handler with it: the next call runs it.
    new_code = make_zip(
        {"main.py": "def handler(event, context):\n    return {'release': 'new code'}\n"}
    )
    call(
        scf,
        "UpdateFunctionCode",
        FunctionName=name,
        Handler="main.handler",
        ZipFile=b64(new_code),
    )
    assert json.loads(invoke(scf, name)["RetMsg"]) == {"release": "new code"}
    assert answer(scf, "GetFunction", FunctionName=name)["CodeSize"] == len(new_code)
    # Code can come inside Code too, as in CreateFunction.
    call(
        scf,
        "UpdateFunctionCode",
        FunctionName=name,
        Handler="index.main_handler",
        Code={"ZipFile": b64(INDEX_ZIP)},
    )
    assert json.loads(invoke(scf, name)["RetMsg"])["release"] == "one"

    call(
        scf,
        "UpdateFunctionConfiguration",
        FunctionName=name,
        Environment={"Variables": [{"Key": "RELEASE", "Value": "two"}]},
        PublicNetConfig={"PublicNetStatus": "ENABLE"},
    )
    got = answer(scf, "GetFunction", FunctionName=name)
    assert got["PublicNetConfig"]["PublicNetStatus"] == "ENABLE"
    assert got["MemorySize"] == 256  # untouched
    assert json.loads(invoke(scf, name)["RetMsg"])["release"] == "two"

    call(scf, "DeleteFunction", FunctionName=name)
    for action in ("GetFunction", "DeleteFunction", "Invoke"):
        with pytest.raises(TencentCloudSDKException) as exc:
            call(scf, action, FunctionName=name)
        assert error_code(exc) == "ResourceNotFound.Function", action


def test_list_functions_pages_with_offset_and_limit(tenant: Tenant, scf: Any) -> None:
    names = sorted(unique(f"p{i}") for i in range(5))
    for i, name in enumerate(names):
        create(scf, name, Description=f"number {i}")
    first = answer(scf, "ListFunctions", Limit=2)
    assert first["TotalCount"] == 5
    assert [f["FunctionName"] for f in first["Functions"]] == names[:2]
    second = answer(scf, "ListFunctions", Offset=2, Limit=2)
    assert [f["FunctionName"] for f in second["Functions"]] == names[2:4]
    last = answer(scf, "ListFunctions", Offset=4, Limit=2)
    assert [f["FunctionName"] for f in last["Functions"]] == names[4:]
    assert answer(scf, "ListFunctions", Offset=10)["Functions"] == []
    backwards = answer(scf, "ListFunctions", Order="DESC")
    assert [f["FunctionName"] for f in backwards["Functions"]] == names[::-1]
    found = answer(scf, "ListFunctions", SearchKey=names[3][-8:])
    assert ([f["FunctionName"] for f in found["Functions"]], found["TotalCount"]) == (
        [names[3]],
        1,
    )
    described = answer(scf, "ListFunctions", Description="number 1")
    assert [f["FunctionName"] for f in described["Functions"]] == [names[1]]
    one = first["Functions"][0]
    assert (one["Runtime"], one["Status"], one["Namespace"]) == (
        "Python3.11",
        "Active",
        tenant.namespace,
    )
    # The SDK's GET form: parameters in the signed query string.
    by_get = answer(tenant.client(method="GET"), "ListFunctions", Offset=1, Limit=1)
    assert [f["FunctionName"] for f in by_get["Functions"]] == names[1:2]
    for bad in ({"Limit": 0}, {"Limit": 101}):
        with pytest.raises(TencentCloudSDKException) as exc:
            call(scf, "ListFunctions", **bad)
        assert error_code(exc) == "InvalidParameterValue.Limit"
    with pytest.raises(TencentCloudSDKException) as exc:
        call(scf, "ListFunctions", Offset=-1)
    assert error_code(exc) == "InvalidParameterValue.Offset"


def test_settings_nimbus_cannot_honour_are_refused(server: Server, scf: Any) -> None:
    refused: list[tuple[dict[str, Any], str]] = [
        ({"VpcConfig": {"VpcId": "vpc-1", "SubnetId": "subnet-1"}}, "UnsupportedOperation"),
        ({"Layers": [{"LayerName": "l", "LayerVersion": 1}]}, "UnsupportedOperation"),
        ({"Type": "HTTP"}, "UnsupportedOperation"),
        ({"MemorySize": 20_480}, "LimitExceeded.Memory"),
        ({"MemorySize": 32}, "InvalidParameterValue.MemorySize"),
        ({"Timeout": 1000}, "LimitExceeded.Timeout"),
        ({"Runtime": "Python2.7"}, "InvalidParameterValue.Runtime"),
        ({"Runtime": "Java8"}, "InvalidParameterValue.Runtime"),
        ({"Handler": "missing.handler"}, "InvalidParameterValue.Handler"),
        (
            {"Environment": {"Variables": [{"Key": "SCF_RUNTIME", "Value": "x"}]}},
            "InvalidParameterValue.Environment",
        ),
    ]
    for settings, code in refused:
        with pytest.raises(TencentCloudSDKException) as exc:
            create(scf, unique("x"), **settings)
        assert error_code(exc) == code, settings
    with pytest.raises(TencentCloudSDKException) as exc:
        call(
            scf,
            "CreateFunction",
            FunctionName=unique("x"),
            Runtime="Python3.11",
            Code={"CosBucketName": "bucket", "CosObjectName": "/code.zip"},
        )
    assert error_code(exc) == "InvalidParameterValue.Code"
    with pytest.raises(TencentCloudSDKException) as exc:
        call(scf, "CreateFunction", FunctionName=unique("x"), Code={"ZipFile": b64(INDEX_ZIP)})
    assert error_code(exc) == "MissingParameter.Runtime"
    with pytest.raises(TencentCloudSDKException) as exc:
        create(scf, "9starts-with-a-digit")
    assert error_code(exc) == "InvalidParameterValue.FunctionName"
    # Defaults that tools send ask for nothing, and are fine.
    create(
        scf,
        unique("ok"),
        Type="Event",
        CodeSource="ZipFile",
        InstallDependency="FALSE",
        AsyncRunEnable="FALSE",
        Layers=[],
        VpcConfig={"VpcId": "", "SubnetId": ""},
    )


def test_runtimes_map_onto_the_servers(server: Server, scf: Any) -> None:
    available = [r["name"] for r in server.http.get("/v1/runtimes").json()["runtimes"]]
    name = unique("old")
    # SCF's Python3.6 runs on the nearest newer minor version this server has.
    create(scf, name, Runtime="Python3.6")
    expected = scf_runtime_name(nimbus_runtime("Python3.6", available))
    assert answer(scf, "GetFunction", FunctionName=name)["Runtime"] == expected
    assert int(expected.split(".")[1]) >= 6
    assert json.loads(invoke(scf, name, {"a": 1})["RetMsg"])["event"] == {"a": 1}
    # A custom runtime brings its own bootstrap; its handler is the bootstrap.
    custom = unique("custom")
    call(
        scf,
        "CreateFunction",
        FunctionName=custom,
        Runtime="CustomRuntime",
        Code={"ZipFile": b64(make_zip({"bootstrap": "#!/bin/sh\n"}, ("bootstrap",)))},
    )
    got = answer(scf, "GetFunction", FunctionName=custom)
    assert (got["Runtime"], got["Handler"]) == ("CustomRuntime", "bootstrap")


def test_runtime_names_map_to_the_nearest_newer_one_here() -> None:
    """Pure: SCF's runtime names against a made-up set of runtimes."""
    here = ["python3.8", "python3.11", "nodejs18", "nodejs20", "custom"]
    assert nimbus_runtime("Python3.11", here) == "python3.11"
    assert nimbus_runtime("Python3.9", here) == "python3.11"
    assert nimbus_runtime("Python3.6", here) == "python3.8"
    assert nimbus_runtime("Nodejs16.13", here) == "nodejs18"
    assert nimbus_runtime("Nodejs20.11", here) == "nodejs20"
    assert nimbus_runtime("CustomRuntime", here) == "custom"
    assert nimbus_runtime("python3.8", here) == "python3.8"  # Nimbus's own names too
    for unavailable in ("Python3.12", "Python2.7", "Nodejs22.1", "Go1", "Php8"):
        with pytest.raises(ScfError) as exc:
            nimbus_runtime(unavailable, here)
        assert exc.value.code == "InvalidParameterValue.Runtime"
        assert "Python3.8, Python3.11, Nodejs18, Nodejs20, CustomRuntime" in exc.value.message
    assert [scf_runtime_name(n) for n in here] == [
        "Python3.8",
        "Python3.11",
        "Nodejs18",
        "Nodejs20",
        "CustomRuntime",
    ]


def test_get_queries_unflatten_into_the_objects_a_post_carries() -> None:
    pairs = [
        ("FunctionName", "f"),
        ("Environment.Variables.0.Key", "A"),
        ("Environment.Variables.0.Value", "1"),
        ("Environment.Variables.1.Key", "B"),
        ("Code.ZipFile", "UEs="),
    ]
    assert unflatten(pairs) == {
        "FunctionName": "f",
        "Environment": {"Variables": [{"Key": "A", "Value": "1"}, {"Key": "B"}]},
        "Code": {"ZipFile": "UEs="},
    }
    with pytest.raises(ScfError):
        unflatten([("Environment.Variables.99999999.Key", "A")])  # no giant lists


# ---- invocation -------------------------------------------------------------------------


def test_invoke_results_logs_and_function_errors(scf: Any) -> None:
    name = unique("inv")
    create(scf, name)
    result = invoke(scf, name, {"a": "ünïcode"}, LogType="Tail")
    assert result["InvokeResult"] == 0 and result["ErrMsg"] == ""
    value = json.loads(result["RetMsg"])
    assert value["event"] == {"a": "ünïcode"}
    assert value["version"] == "$LATEST"
    assert value["request_id"] == result["FunctionRequestId"]
    assert "event {'a': 'ünïcode'}" in result["Log"]
    assert isinstance(result["Duration"], float) and result["Duration"] > 0
    assert result["BillDuration"] >= 1
    assert invoke(scf, name, {"a": 1})["Log"] == ""  # no tail unless asked

    # A function error is a result, as SCF reports it: InvokeResult 1, the error object.
    failed = invoke(scf, name, {"fail": True})
    assert failed["InvokeResult"] == 1
    error = json.loads(failed["ErrMsg"])
    assert failed["RetMsg"] == failed["ErrMsg"]
    assert (error["errorType"], error["errorMessage"]) == ("ValueError", "asked to fail")
    assert error["statusCode"] == 430 and error["errorCode"] == 1
    assert "Traceback" in error["stackTrace"] or "main_handler" in error["stackTrace"]

    # No ClientContext is an empty event.
    assert json.loads(answer(scf, "Invoke", FunctionName=name)["Result"]["RetMsg"])["event"] == {}
    with pytest.raises(TencentCloudSDKException) as exc:
        call(scf, "Invoke", FunctionName=name, ClientContext="{not json")
    assert error_code(exc) == "InvalidParameterValue.ClientContext"
    with pytest.raises(TencentCloudSDKException) as exc:
        call(scf, "Invoke", FunctionName=name, InvocationType="DryRun")
    assert error_code(exc) == "InvalidParameterValue"
    with pytest.raises(TencentCloudSDKException) as exc:
        call(scf, "Invoke", FunctionName=unique("missing"))
    assert error_code(exc) == "ResourceNotFound.Function"


def test_invoke_event_is_queued_and_runs(server: Server, tenant: Tenant, scf: Any) -> None:
    name = unique("evt")
    create(scf, name)
    result = invoke(scf, name, {"n": 7}, InvocationType="Event")
    request_id = result["FunctionRequestId"]
    assert request_id and result["RetMsg"] == "" and result["InvokeResult"] == 0
    headers = {"X-Nimbus-Namespace": tenant.namespace}

    def done() -> bool:
        r = server.http.get(f"/v1/invocations/{request_id}", headers=headers)
        return r.status_code == 200 and r.json()["status"] == "succeeded"

    assert wait_until(done, timeout=20)
    ran = server.http.get(f"/v1/invocations/{request_id}", headers=headers).json()["result"]
    assert ran["event"] == {"n": 7}


def test_versions_aliases_weights_and_qualifiers(scf: Any) -> None:
    name = unique("rel")
    create(scf, name, Environment={"Variables": [{"Key": "RELEASE", "Value": "one"}]})
    v1 = answer(scf, "PublishVersion", FunctionName=name, Description="first")
    assert (v1["FunctionVersion"], v1["Description"], v1["Runtime"]) == (
        "1",
        "first",
        "Python3.11",
    )
    call(
        scf,
        "UpdateFunctionConfiguration",
        FunctionName=name,
        Environment={"Variables": [{"Key": "RELEASE", "Value": "two"}]},
    )
    assert answer(scf, "PublishVersion", FunctionName=name)["FunctionVersion"] == "2"
    listed = answer(scf, "ListVersionByFunction", FunctionName=name)
    assert listed["FunctionVersion"] == ["$LATEST", "1", "2"] and listed["TotalCount"] == 3

    assert json.loads(invoke(scf, name, Qualifier="1")["RetMsg"])["release"] == "one"
    two = json.loads(invoke(scf, name, Qualifier="2")["RetMsg"])
    assert (two["release"], two["version"]) == ("two", "2")
    assert answer(scf, "GetFunction", FunctionName=name, Qualifier="1")["Environment"] == {
        "Variables": [{"Key": "RELEASE", "Value": "one"}]
    }
    with pytest.raises(TencentCloudSDKException) as exc:
        invoke(scf, name, Qualifier="9")
    assert error_code(exc) == "ResourceNotFound.Version"

    call(
        scf,
        "CreateAlias",
        FunctionName=name,
        Name="live",
        FunctionVersion="1",
        Description="production",
        RoutingConfig={"AdditionalVersionWeights": [{"Version": "2", "Weight": 0.5}]},
    )
    alias = answer(scf, "GetAlias", FunctionName=name, Name="live")
    assert (alias["FunctionVersion"], alias["Description"]) == ("1", "production")
    assert alias["RoutingConfig"]["AdditionalVersionWeights"] == [{"Version": "2", "Weight": 0.5}]
    ran = Counter(
        json.loads(invoke(scf, name, Qualifier="live")["RetMsg"])["version"] for _ in range(40)
    )
    assert set(ran) == {"1", "2"}, ran
    assert answer(scf, "GetFunction", FunctionName=name, Qualifier="live")["Qualifier"] == "live"

    with pytest.raises(TencentCloudSDKException) as exc:
        call(scf, "CreateAlias", FunctionName=name, Name="live", FunctionVersion="2")
    assert error_code(exc) == "ResourceInUse.Alias"
    with pytest.raises(TencentCloudSDKException) as exc:
        call(scf, "CreateAlias", FunctionName=name, Name="head", FunctionVersion="$LATEST")
    assert error_code(exc) == "InvalidParameterValue"
    with pytest.raises(TencentCloudSDKException) as exc:
        call(scf, "CreateAlias", FunctionName=name, Name="gone", FunctionVersion="7")
    assert error_code(exc) == "ResourceNotFound.Version"
    with pytest.raises(TencentCloudSDKException) as exc:
        call(
            scf,
            "CreateAlias",
            FunctionName=name,
            Name="heavy",
            FunctionVersion="1",
            RoutingConfig={"AdditionalVersionWeights": [{"Version": "2", "Weight": 1.5}]},
        )
    assert error_code(exc).startswith("InvalidParameterValue")

    call(scf, "CreateAlias", FunctionName=name, Name="old", FunctionVersion="1")
    aliases = answer(scf, "ListAliases", FunctionName=name)
    assert [a["Name"] for a in aliases["Aliases"]] == ["live", "old"]
    with pytest.raises(TencentCloudSDKException) as exc:
        call(scf, "DeleteFunction", FunctionName=name, Qualifier="1")  # aliases use it
    assert error_code(exc) == "UnsupportedOperation.AliasBind"
    call(scf, "DeleteAlias", FunctionName=name, Name="old")
    call(scf, "DeleteAlias", FunctionName=name, Name="live")
    with pytest.raises(TencentCloudSDKException) as exc:
        call(scf, "GetAlias", FunctionName=name, Name="old")
    assert error_code(exc) == "ResourceNotFound.Alias"
    call(scf, "DeleteFunction", FunctionName=name, Qualifier="1")
    listed = answer(scf, "ListVersionByFunction", FunctionName=name)
    assert listed["FunctionVersion"] == ["$LATEST", "2"]


# ---- authentication and tenants ------------------------------------------------------------


def _signed(client: Any, action: str, params: dict[str, Any]) -> RequestInternal:
    """A request the SDK built and signed, not yet sent."""
    request = RequestInternal(client._get_endpoint(), "POST", "/", header={})
    client._build_req_inter(action, params, request)
    return request


def _error(response: httpx.Response) -> str:
    assert response.status_code == 200  # Tencent answers errors with 200 too
    assert response.headers["content-type"] == "application/json"
    body = response.json()["Response"]
    assert body["RequestId"]
    return str(body["Error"]["Code"])


def test_unsigned_badly_signed_and_stale_requests_are_refused(
    server: Server, tenant: Tenant
) -> None:
    headers = {
        "X-TC-Action": "ListFunctions",
        "X-TC-Version": "2018-04-16",
        "X-TC-Timestamp": str(int(time.time())),
        "Content-Type": "application/json",
    }
    assert _error(httpx.post(server.url + "/", content=b"{}", headers=headers)) == (
        "AuthFailure.SignatureFailure"
    )
    bearer = {**headers, "Authorization": f"Bearer {tenant.key['secret']}"}
    assert _error(httpx.post(server.url + "/", content=b"{}", headers=bearer)) == (
        "AuthFailure.InvalidAuthorization"
    )

    with pytest.raises(TencentCloudSDKException) as exc:
        call(tenant.client(secret="x" * 40), "ListFunctions")
    assert error_code(exc) == "AuthFailure.SignatureFailure"

    stranger = scf_client_for(server, "NIMB" + "A" * 16, "s" * 40)
    with pytest.raises(TencentCloudSDKException) as exc:
        call(stranger, "ListFunctions")
    assert error_code(exc) == "AuthFailure.SecretIdNotFound"

    stale = mock.Mock(wraps=time)
    stale.time.return_value = time.time() - 600
    with (
        mock.patch("tencentcloud.common.abstract_client.time", stale),
        pytest.raises(TencentCloudSDKException) as exc,
    ):
        call(tenant.client(), "ListFunctions")
    assert error_code(exc) == "AuthFailure.SignatureExpire"

    # What the SDK signed goes through; the same headers over another body do not.
    client = tenant.client()
    signed = _signed(client, "ListFunctions", {"Limit": 1})
    url = server.url + "/"
    ok = httpx.post(url, content=signed.data, headers=signed.header).json()["Response"]
    assert "Error" not in ok and ok["TotalCount"] == 0
    tampered = httpx.post(url, content=b'{"Limit": 2}', headers=signed.header)
    assert _error(tampered) == "AuthFailure.SignatureFailure"
    other_version = {**signed.header, "X-TC-Version": "2017-01-01"}
    assert _error(httpx.post(url, content=signed.data, headers=other_version)) == "NoSuchVersion"

    with pytest.raises(TencentCloudSDKException) as exc:
        client.call_json("ListLayers", {})
    assert error_code(exc) == "InvalidAction"
    assert "docs/scf-api.md" in exc.value.get_message()


def test_revoked_keys_stop_signing(server: Server) -> None:
    tenant = new_tenant(server)
    scf = tenant.client()
    call(scf, "ListFunctions")
    assert server.http.delete(f"/v1/keys/{tenant.key['id']}").status_code == 204
    with pytest.raises(TencentCloudSDKException) as exc:
        call(scf, "ListFunctions")
    assert error_code(exc) == "AuthFailure.SecretIdNotFound"


def test_tenants_see_only_their_own_functions(server: Server) -> None:
    alice, bob = new_tenant(server), new_tenant(server)
    a, b = alice.client(), bob.client()
    name = unique("private")
    create(a, name)
    # SCF's "default" namespace (also what a missing Namespace means) is the key's own.
    assert answer(a, "GetFunction", FunctionName=name, Namespace="default")["Namespace"] == (
        alice.namespace
    )
    assert answer(a, "GetFunction", FunctionName=name, Namespace=alice.namespace)["FunctionName"]
    assert answer(b, "ListFunctions")["TotalCount"] == 0
    attempts: list[Callable[[], Any]] = [
        lambda: call(b, "GetFunction", FunctionName=name),
        lambda: call(b, "GetFunction", FunctionName=name, Namespace=alice.namespace),
        lambda: call(b, "Invoke", FunctionName=name, Namespace=alice.namespace),
        lambda: call(b, "DeleteFunction", FunctionName=name, Namespace=alice.namespace),
        lambda: call(b, "PublishVersion", FunctionName=name, Namespace=alice.namespace),
    ]
    for attempt in attempts:
        with pytest.raises(TencentCloudSDKException) as exc:
            attempt()
        assert error_code(exc) == "ResourceNotFound.Function"
    for namespace in (alice.namespace, unique("nowhere")):
        with pytest.raises(TencentCloudSDKException) as exc:
            call(b, "ListFunctions", Namespace=namespace)
        assert error_code(exc) == "ResourceNotFound.Namespace"
    with pytest.raises(TencentCloudSDKException) as exc:
        create(b, unique("intruder"), Namespace=alice.namespace)
    assert error_code(exc) == "ResourceNotFound.Namespace"
    assert answer(a, "ListFunctions")["TotalCount"] == 1  # still only alice's, untouched

    # An admin key acts in any namespace it names.
    admin = new_tenant(server, role="admin", namespace="default").client()
    got = answer(admin, "GetFunction", FunctionName=name, Namespace=alice.namespace)
    assert got["Namespace"] == alice.namespace
    with pytest.raises(TencentCloudSDKException) as exc:
        call(admin, "GetFunction", FunctionName=name)  # in "default": not there
    assert error_code(exc) == "ResourceNotFound.Function"

    # An invoker key may invoke, nothing else.
    invoker = new_tenant(server, role="invoker", namespace=alice.namespace).client()
    assert json.loads(invoke(invoker, name, {"x": 1})["RetMsg"])["event"] == {"x": 1}
    for action in ("GetFunction", "PublishVersion", "DeleteFunction"):
        with pytest.raises(TencentCloudSDKException) as exc:
            call(invoker, action, FunctionName=name)
        assert error_code(exc) == "AuthFailure.UnauthorizedOperation", action
