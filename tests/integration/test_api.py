"""The management API: auth, OpenAPI, functions CRUD, bad input refused with stable codes."""

from __future__ import annotations

import httpx

from tests.integration.harness import Server, make_zip

HELLO = {"app.py": "def handler(event, context):\n    return {'hello': event.get('name')}\n"}


def test_every_v1_call_needs_a_key(server: Server) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        r = httpx.get(server.url + "/v1/functions", headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "Auth.Unauthorized"
        assert r.json()["error"]["message"]


def test_openapi_document_lists_the_api(server: Server) -> None:
    doc = httpx.get(server.url + "/openapi.json").json()
    assert "/v1/functions/{name}/invocations" in doc["paths"]
    assert "/v1/code" in doc["paths"]


def test_runtimes_include_python311_and_custom(server: Server) -> None:
    names = {r["name"] for r in server.http.get("/v1/runtimes").json()["runtimes"]}
    assert {"python3.11", "custom"} <= names


def test_create_show_list_update_delete(server: Server) -> None:
    created = server.deploy(
        "crud", HELLO, memory_mb=256, timeout_s=5, env={"A": "1"}, description="first"
    )
    assert created["revision"] == 1 and created["memory_mb"] == 256
    assert created["code_size"] > 0
    shown = server.http.get("/v1/functions/crud").json()
    assert shown["env"] == {"A": "1"} and shown["description"] == "first"
    assert "crud" in {f["name"] for f in server.http.get("/v1/functions").json()["functions"]}

    # config-only update keeps the code
    r = server.http.patch("/v1/functions/crud", json={"timeout_s": 9})
    assert r.status_code == 200
    assert r.json()["timeout_s"] == 9 and r.json()["code_sha256"] == created["code_sha256"]
    assert r.json()["revision"] == 2

    # code-only update keeps the config
    sha = server.upload(make_zip({"app.py": "def handler(e, c):\n    return 'v2'\n"}))
    r = server.http.patch("/v1/functions/crud", json={"code_sha256": sha})
    assert r.json()["code_sha256"] == sha and r.json()["timeout_s"] == 9
    assert server.invoke("crud")["result"] == "v2"

    assert server.http.delete("/v1/functions/crud").status_code == 204
    r = server.http.get("/v1/functions/crud")
    assert r.status_code == 404 and r.json()["error"]["code"] == "Function.NotFound"
    assert server.http.delete("/v1/functions/crud").status_code == 404


def _refused(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code, body
    assert len(body["message"]) > 10


def test_bad_input_is_refused_with_stable_codes(server: Server) -> None:
    sha = server.upload(make_zip(HELLO))
    put = server.http.put
    base = {"runtime": "python3.11", "handler": "app.handler", "code_sha256": sha}
    _refused(put("/v1/functions/9bad", json=base), 400, "Function.InvalidName")
    _refused(put("/v1/functions/" + "x" * 80, json=base), 400, "Function.InvalidName")
    _refused(put("/v1/functions/ok", json={**base, "memory_mb": 1}), 400, "Function.InvalidSetting")
    _refused(put("/v1/functions/ok", json={**base, "timeout_s": 0}), 400, "Function.InvalidSetting")
    _refused(
        put("/v1/functions/ok", json={**base, "env": {"AWS_LAMBDA_X": "1"}}),
        400,
        "Function.InvalidSetting",
    )
    _refused(
        put("/v1/functions/ok", json={**base, "runtime": "cobol"}), 400, "Function.UnknownRuntime"
    )
    _refused(
        put("/v1/functions/ok", json={**base, "handler": "missing.handler"}),
        400,
        "Code.HandlerNotFound",
    )
    _refused(put("/v1/functions/ok", json={**base, "code_sha256": "0" * 64}), 404, "Code.NotFound")
    _refused(put("/v1/functions/ok", json={**base, "surprise": 1}), 400, "Request.Invalid")
    _refused(
        put("/v1/functions/ok", content=b"{not json", headers={"Content-Type": "application/json"}),
        400,
        "Request.Invalid",
    )
    _refused(
        server.http.put(
            "/v1/code", content=b"not a zip at all", headers={"Content-Type": "application/zip"}
        ),
        400,
        "Code.InvalidPackage",
    )
    _refused(
        server.http.put(
            "/v1/code",
            content=make_zip({"../evil.py": "x"}),
            headers={"Content-Type": "application/zip"},
        ),
        400,
        "Code.InvalidPackage",
    )
    _refused(
        server.http.put("/v1/code", content=b"x", headers={"Content-Type": "text/plain"}),
        415,
        "Request.UnsupportedMediaType",
    )
    # nothing was created by any of these
    assert server.http.get("/v1/functions/ok").status_code == 404


def test_bad_events_are_refused(server: Server) -> None:
    server.deploy("events", HELLO)
    post = server.http.post
    url = "/v1/functions/events/invocations"
    _refused(
        post(url, content=b"{nope", headers={"Content-Type": "application/json"}),
        400,
        "Request.InvalidJSON",
    )
    _refused(
        post(
            url,
            content=b"[" * 100_000 + b"]" * 100_000,
            headers={"Content-Type": "application/json"},
        ),
        400,
        "Request.InvalidJSON",
    )
    _refused(
        post(url, content=b"{}", headers={"Content-Type": "text/html"}),
        415,
        "Request.UnsupportedMediaType",
    )
    big = b'"' + b"a" * (6 * 1024 * 1024 + 10) + b'"'
    _refused(
        post(url, content=big, headers={"Content-Type": "application/json"}),
        413,
        "Request.PayloadTooLarge",
    )
    _refused(post("/v1/functions/nope/invocations", json={}), 404, "Function.NotFound")
    # the function still works
    assert server.invoke("events", {"name": "x"})["result"] == {"hello": "x"}
