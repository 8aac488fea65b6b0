"""Tenants and access against a real server: namespaces, roles, keys, secrets, quotas, audit."""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.harness import NIMBUS, TOKEN, Server, make_zip

HELLO = {"app.py": "def handler(event, context):\n    return {'hello': event.get('name')}\n"}
ENV_ECHO = {
    "app.py": "import os\n"
    "def handler(event, context):\n"
    "    return {k: os.environ.get(k) for k in event['keys']}\n"
}
SLEEPY = {
    "app.py": "import time\n"
    "def handler(event, context):\n"
    "    time.sleep(event.get('sleep', 0))\n"
    "    return 'done'\n"
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


_OPEN: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


class Api:
    """Calls as one key, optionally naming a namespace with X-Nimbus-Namespace."""

    def __init__(self, server: Server, token: str, namespace: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        if namespace is not None:
            headers["X-Nimbus-Namespace"] = namespace
        self.server = server
        self.token = token
        self.http = httpx.Client(base_url=server.url, headers=headers, timeout=30)
        _OPEN.append(self.http)

    def as_namespace(self, namespace: str) -> Api:
        return Api(self.server, self.token, namespace)

    def deploy(self, name: str, files: dict[str, str], **settings: Any) -> httpx.Response:
        r = self.http.put(
            "/v1/code", content=make_zip(files), headers={"Content-Type": "application/zip"}
        )
        if r.status_code != 201:
            return r
        body = {
            "runtime": "python3.11",
            "handler": "app.handler",
            "code_sha256": r.json()["sha256"],
        }
        return self.http.put(f"/v1/functions/{name}", json={**body, **settings})

    def invoke(self, name: str, event: Any = None) -> httpx.Response:
        return self.http.post(
            f"/v1/functions/{name}/invocations",
            content=json.dumps(event or {}),
            headers={"Content-Type": "application/json"},
        )


@pytest.fixture
def admin(server: Server) -> Api:
    return Api(server, TOKEN)


def create_namespace(admin: Api, name: str, **quotas: Any) -> dict[str, Any]:
    r = admin.http.post("/v1/namespaces", json={"name": name, **quotas})
    assert r.status_code == 201, r.text
    return dict(r.json())


def create_key(api: Api, namespace: str, role: str, name: str = "test") -> dict[str, Any]:
    r = api.http.post("/v1/keys", json={"namespace": namespace, "role": role, "name": name})
    assert r.status_code == 201, r.text
    return dict(r.json())


def error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code, body
    assert len(body["message"]) > 10
    return dict(body)


@pytest.fixture
def tenants(server: Server, admin: Api) -> dict[str, Any]:
    """Namespaces A and B, each with a developer key, and a function 'shared' in B."""
    a, b = unique("team-a"), unique("team-b")
    create_namespace(admin, a)
    create_namespace(admin, b)
    key_a = create_key(admin, a, "developer", "dev-a")
    key_b = create_key(admin, b, "developer", "dev-b")
    dev_a, dev_b = Api(server, key_a["secret"]), Api(server, key_b["secret"])
    assert dev_b.deploy("shared", HELLO).status_code == 201
    return {"a": a, "b": b, "key_a": key_a, "key_b": key_b, "dev_a": dev_a, "dev_b": dev_b}


# ---- isolation -------------------------------------------------------------------


def test_a_developer_cannot_see_or_touch_another_namespace(tenants: dict[str, Any]) -> None:
    dev_a: Api = tenants["dev_a"]
    b = tenants["b"]
    in_b = dev_a.as_namespace(b)
    via_query = {"namespace": b}

    # Every call on B's function answers exactly like a function that does not exist.
    calls = {
        "get": lambda api, **kw: api.http.get("/v1/functions/shared", **kw),
        "invoke": lambda api, **kw: api.http.post(
            "/v1/functions/shared/invocations", json={}, **kw
        ),
        "logs": lambda api, **kw: api.http.get("/v1/functions/shared/logs", **kw),
        "patch": lambda api, **kw: api.http.patch(
            "/v1/functions/shared", json={"timeout_s": 9}, **kw
        ),
        "delete": lambda api, **kw: api.http.delete("/v1/functions/shared", **kw),
    }
    for what, call in calls.items():
        missing = call(dev_a)  # 'shared' does not exist in A
        assert missing.status_code == 404, (what, missing.text)
        for foreign in (call(in_b), call(dev_a, params=via_query)):
            assert foreign.status_code == 404, (what, foreign.text)
            assert foreign.json() == missing.json(), what
            assert foreign.json()["error"]["code"] == "Function.NotFound"

    # Collections of B: the same answer as a namespace that does not exist.
    listed = in_b.http.get("/v1/functions")
    error(listed, 404, "Namespace.NotFound")
    nowhere = dev_a.as_namespace("no-such-ns").http.get("/v1/functions")
    assert listed.json()["error"]["message"].replace(b, "X") == nowhere.json()["error"][
        "message"
    ].replace("no-such-ns", "X")
    error(in_b.deploy("intruder", HELLO), 404, "Namespace.NotFound")
    error(
        dev_a.http.post("/v1/keys", json={"namespace": b, "role": "developer", "name": "x"}),
        404,
        "Namespace.NotFound",
    )
    error(dev_a.http.get("/v1/keys", params={"namespace": b}), 404, "Namespace.NotFound")
    error(dev_a.http.get(f"/v1/namespaces/{b}"), 404, "Namespace.NotFound")
    # Nor B's keys: revoking one answers like a key that does not exist.
    error(dev_a.http.delete(f"/v1/keys/{tenants['key_b']['id']}"), 404, "Key.NotFound")

    # B's function is untouched, and A's own listing does not show it.
    dev_b: Api = tenants["dev_b"]
    assert dev_b.http.get("/v1/functions/shared").status_code == 200
    assert dev_b.invoke("shared", {"name": "b"}).json()["result"] == {"hello": "b"}
    assert dev_a.http.get("/v1/functions").json() == {"functions": []}
    # Naming its own namespace explicitly is fine.
    assert dev_a.as_namespace(tenants["a"]).http.get("/v1/functions").status_code == 200


def test_same_function_name_in_two_namespaces(tenants: dict[str, Any]) -> None:
    dev_a: Api = tenants["dev_a"]
    code = {"app.py": "def handler(e, c):\n    return 'from a'\n"}
    assert dev_a.deploy("shared", code).status_code == 201
    assert dev_a.invoke("shared").json()["result"] == "from a"
    assert tenants["dev_b"].invoke("shared", {"name": "b"}).json()["result"] == {"hello": "b"}
    assert dev_a.http.get("/v1/functions/shared").json()["namespace"] == tenants["a"]


def test_invoker_key_may_only_invoke(server: Server, tenants: dict[str, Any]) -> None:
    dev_a: Api = tenants["dev_a"]
    assert dev_a.deploy("greet", HELLO).status_code == 201
    invoker_key = create_key(dev_a, tenants["a"], "invoker", "frontend")
    assert invoker_key["role"] == "invoker" and invoker_key["namespace"] == tenants["a"]
    invoker = Api(server, invoker_key["secret"])

    r = invoker.invoke("greet", {"name": "inv"})
    assert r.status_code == 200 and r.json()["result"] == {"hello": "inv"}

    refused = error(invoker.deploy("greet", HELLO), 403, "Auth.Forbidden")
    assert "invoke" in refused["message"]
    for r in (
        invoker.http.get("/v1/functions"),
        invoker.http.get("/v1/functions/greet"),
        invoker.http.get("/v1/functions/greet/logs"),
        invoker.http.patch("/v1/functions/greet", json={"timeout_s": 5}),
        invoker.http.delete("/v1/functions/greet"),
        invoker.http.post("/v1/keys", json={"role": "invoker", "name": "x"}),
        invoker.http.get("/v1/keys"),
        invoker.http.get("/v1/audit"),
    ):
        error(r, 403, "Auth.Forbidden")
    # In another namespace, even an invoker key learns nothing: 404, not 403.
    error(invoker.as_namespace(tenants["b"]).invoke("shared"), 404, "Function.NotFound")
    assert dev_a.http.get("/v1/functions/greet").status_code == 200


def test_developer_key_management_limits(server: Server, tenants: dict[str, Any]) -> None:
    dev_a: Api = tenants["dev_a"]
    a = tenants["a"]
    error(
        dev_a.http.post("/v1/keys", json={"role": "admin", "name": "escalate"}),
        403,
        "Auth.Forbidden",
    )
    made = create_key(dev_a, a, "developer", "ci")
    listed = dev_a.http.get("/v1/keys").json()["keys"]
    assert {k["namespace"] for k in listed} == {a}
    assert made["id"] in {k["id"] for k in listed}
    assert all("secret" not in k for k in listed)


def test_revoked_key_is_refused_at_once(server: Server, tenants: dict[str, Any]) -> None:
    dev_a: Api = tenants["dev_a"]
    made = create_key(dev_a, tenants["a"], "developer", "short-lived")
    temp = Api(server, made["secret"])
    assert temp.http.get("/v1/functions").status_code == 200  # now verified and cached
    assert dev_a.http.delete(f"/v1/keys/{made['id']}").status_code == 204
    error(temp.http.get("/v1/functions"), 401, "Auth.Unauthorized")
    error(temp.invoke("anything"), 401, "Auth.Unauthorized")
    error(dev_a.http.delete(f"/v1/keys/{made['id']}"), 404, "Key.NotFound")
    assert made["id"] not in {k["id"] for k in dev_a.http.get("/v1/keys").json()["keys"]}


def test_admin_acts_in_a_namespace_by_header_or_query(admin: Api, tenants: dict[str, Any]) -> None:
    a = tenants["a"]
    r = admin.as_namespace(a).deploy("by-admin", HELLO)
    assert r.status_code == 201 and r.json()["namespace"] == a
    assert admin.http.get("/v1/functions/by-admin", params={"namespace": a}).status_code == 200
    assert tenants["dev_a"].http.get("/v1/functions/by-admin").status_code == 200
    # Without a namespace an admin acts in "default".
    error(admin.http.get("/v1/functions/by-admin"), 404, "Function.NotFound")
    # The query parameter wins over the header.
    assert (
        admin.as_namespace("default")
        .http.get("/v1/functions/by-admin", params={"namespace": a})
        .status_code
        == 200
    )
    error(admin.as_namespace("no-such-ns").http.get("/v1/functions"), 404, "Namespace.NotFound")
    doc = httpx.get(admin.server.url + "/openapi.json").json()
    params = doc["paths"]["/v1/functions/{name}"]["get"]["parameters"]
    names = {(p["name"].lower(), p["in"]) for p in params}
    assert {("x-nimbus-namespace", "header"), ("namespace", "query")} <= names


# ---- namespaces --------------------------------------------------------------------


def test_namespace_lifecycle(server: Server, admin: Api) -> None:
    name = unique("life")
    created = create_namespace(admin, name, max_functions=3, max_requests_per_s=50)
    assert created["quotas"]["max_functions"] == 3
    assert created["quotas"]["max_code_bytes"] is None
    assert created["usage"] == {"functions": 0, "code_bytes": 0, "instances": 0}
    error(admin.http.post("/v1/namespaces", json={"name": name}), 409, "Namespace.AlreadyExists")
    error(admin.http.post("/v1/namespaces", json={"name": "9bad"}), 400, "Namespace.InvalidName")
    error(
        admin.http.post("/v1/namespaces", json={"name": unique("q"), "max_functions": 0}),
        400,
        "Request.Invalid",
    )
    names = {n["name"] for n in admin.http.get("/v1/namespaces").json()["namespaces"]}
    assert {"default", name} <= names

    r = admin.http.patch(f"/v1/namespaces/{name}", json={"max_functions": None})
    assert r.status_code == 200
    assert r.json()["quotas"]["max_functions"] is None
    assert r.json()["quotas"]["max_requests_per_s"] == 50

    in_ns = admin.as_namespace(name)
    assert in_ns.deploy("f", HELLO).status_code == 201
    assert in_ns.invoke("f").status_code == 200
    shown = admin.http.get(f"/v1/namespaces/{name}").json()
    assert shown["usage"]["functions"] == 1 and shown["usage"]["code_bytes"] > 0
    assert shown["usage"]["instances"] == 1

    key = create_key(admin, name, "developer")
    dev = Api(server, key["secret"])
    assert dev.http.get(f"/v1/namespaces/{name}").status_code == 200  # its own
    error(dev.http.get("/v1/namespaces"), 403, "Auth.Forbidden")
    error(dev.http.post("/v1/namespaces", json={"name": unique("x")}), 403, "Auth.Forbidden")
    error(dev.http.patch(f"/v1/namespaces/{name}", json={}), 403, "Auth.Forbidden")

    body = error(admin.http.delete(f"/v1/namespaces/{name}"), 409, "Namespace.NotEmpty")
    assert "1 function" in body["message"] and "1 live key" in body["message"]
    assert in_ns.http.delete("/v1/functions/f").status_code == 204
    error(admin.http.delete(f"/v1/namespaces/{name}"), 409, "Namespace.NotEmpty")
    assert admin.http.delete(f"/v1/keys/{key['id']}").status_code == 204
    assert admin.http.delete(f"/v1/namespaces/{name}").status_code == 204
    error(admin.http.get(f"/v1/namespaces/{name}"), 404, "Namespace.NotFound")
    error(admin.http.delete("/v1/namespaces/default"), 409, "Namespace.Protected")


# ---- secrets -----------------------------------------------------------------------


def test_secret_env_reaches_the_function_and_nothing_else(server: Server, admin: Api) -> None:
    secret = "s3cr3t-" + uuid.uuid4().hex
    fn = unique("secret")
    r = admin.deploy(fn, ENV_ECHO, env={"PLAIN": "visible"}, secret_env={"DB_PASSWORD": secret})
    assert r.status_code == 201, r.text
    assert r.json()["secret_env_keys"] == ["DB_PASSWORD"]
    assert r.json()["env"] == {"PLAIN": "visible"}
    assert secret not in r.text

    result = admin.invoke(fn, {"keys": ["DB_PASSWORD", "PLAIN"]}).json()["result"]
    assert result == {"DB_PASSWORD": secret, "PLAIN": "visible"}

    for response in (
        admin.http.get(f"/v1/functions/{fn}"),
        admin.http.get("/v1/functions"),
        admin.http.get("/v1/audit"),
    ):
        assert response.status_code == 200
        assert secret not in response.text
    assert admin.http.get(f"/v1/functions/{fn}").json()["secret_env_keys"] == ["DB_PASSWORD"]

    # A name may not be both plain and secret.
    error(
        admin.http.patch(f"/v1/functions/{fn}", json={"env": {"DB_PASSWORD": "x"}}),
        400,
        "Function.InvalidSetting",
    )
    # PATCH without secret_env keeps it; with it, replaces the whole map.
    r = admin.http.patch(f"/v1/functions/{fn}", json={"description": "kept"})
    assert r.json()["secret_env_keys"] == ["DB_PASSWORD"]
    assert admin.invoke(fn, {"keys": ["DB_PASSWORD"]}).json()["result"] == {"DB_PASSWORD": secret}
    other = "other-" + uuid.uuid4().hex
    r = admin.http.patch(f"/v1/functions/{fn}", json={"secret_env": {"API_TOKEN": other}})
    assert r.json()["secret_env_keys"] == ["API_TOKEN"]
    result = admin.invoke(fn, {"keys": ["DB_PASSWORD", "API_TOKEN"]}).json()["result"]
    assert result == {"DB_PASSWORD": None, "API_TOKEN": other}

    # At rest: encrypted. Neither value is in the database files (WAL included).
    stored = b"".join(p.read_bytes() for p in server.data_dir.glob("nimbus.db*") if p.is_file())
    assert stored and secret.encode() not in stored and other.encode() not in stored
    key_file = server.data_dir / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


# ---- quotas ------------------------------------------------------------------------


def test_function_count_and_code_size_quotas(admin: Api) -> None:
    name = unique("small")
    create_namespace(admin, name, max_functions=1, max_code_bytes=4096)
    api = admin.as_namespace(name)
    assert api.deploy("one", HELLO).status_code == 201
    body = error(api.deploy("two", HELLO), 409, "Quota.FunctionsExceeded")
    assert "max_functions=1" in body["message"]
    assert api.http.patch("/v1/functions/one", json={"timeout_s": 5}).status_code == 200

    noise = random.Random(7).randbytes(8192).hex()  # incompressible: the zip stays large
    body = error(api.deploy("one", {**HELLO, "blob.txt": noise}), 409, "Quota.CodeSizeExceeded")
    assert "max_code_bytes=4096" in body["message"]
    assert api.http.get("/v1/functions/one").json()["revision"] == 2  # unchanged

    admin.http.patch(f"/v1/namespaces/{name}", json={"max_functions": 2})
    assert api.deploy("two", HELLO).status_code == 201


def test_request_rate_quota(admin: Api) -> None:
    name = unique("rate")
    create_namespace(admin, name, max_requests_per_s=0.5)  # burst: 1 call
    api = admin.as_namespace(name)
    assert api.deploy("tick", HELLO).status_code == 201
    error(api.invoke("missing"), 404, "Function.NotFound")  # spends no token
    assert api.invoke("tick").status_code == 200
    r = api.invoke("tick")
    body = error(r, 429, "Quota.RateExceeded")
    assert "max_requests_per_s=0.5" in body["message"]
    assert int(r.headers["Retry-After"]) >= 1
    time.sleep(float(r.headers["Retry-After"]))
    assert api.invoke("tick").status_code == 200
    # Other namespaces are not affected.
    assert admin.http.get("/v1/functions").status_code == 200


def test_concurrent_instances_quota(make_server: Any) -> None:
    srv: Server = make_server(queue_timeout_s=1.5)
    admin = Api(srv, TOKEN)
    create_namespace(admin, "tight", max_concurrent_instances=1)
    api = admin.as_namespace("tight")
    assert api.deploy("slow", SLEEPY, timeout_s=30).status_code == 201
    assert api.deploy("fast", SLEEPY).status_code == 201

    slow_result: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: slow_result.append(api.invoke("slow", {"sleep": 4})))
    worker.start()
    try:
        assert _wait_for_instances(admin, "tight", 1)
        started = time.monotonic()
        r = api.invoke("fast")
        waited = time.monotonic() - started
        body = error(r, 429, "Quota.ConcurrencyExceeded")
        assert "max_concurrent_instances=1" in body["message"]
        assert r.headers["Retry-After"] == "1"
        assert waited >= 1.2  # it waited for a place before giving up
    finally:
        worker.join(timeout=30)
    assert slow_result and slow_result[0].status_code == 200

    # Once 'slow' is idle, its place is reclaimed for 'fast' instead of waiting for keep-alive.
    r = api.invoke("fast")
    assert r.status_code == 200, r.text
    assert admin.http.get("/v1/namespaces/tight").json()["usage"]["instances"] <= 1
    # Other namespaces are not limited.
    assert admin.deploy("free", SLEEPY).status_code == 201
    assert admin.invoke("free").status_code == 200


def _wait_for_instances(admin: Api, namespace: str, count: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        usage = admin.http.get(f"/v1/namespaces/{namespace}").json()["usage"]
        if usage["instances"] >= count:
            return True
        time.sleep(0.05)
    return False


# ---- audit -------------------------------------------------------------------------


def test_audit_trail_records_who_changed_what(server: Server, admin: Api) -> None:
    ns = unique("audited")
    create_namespace(admin, ns)
    key = create_key(admin, ns, "developer", "auditee")
    dev = Api(server, key["secret"])
    assert dev.deploy("fn", HELLO, secret_env={"TOKEN": "hush-" + ns}).status_code == 201
    assert dev.http.patch("/v1/functions/fn", json={"memory_mb": 256}).status_code == 200
    assert dev.http.patch("/v1/functions/fn", json={"memory_mb": 256}).status_code == 200  # no-op
    assert dev.http.delete("/v1/functions/fn").status_code == 204
    temp = create_key(dev, ns, "invoker", "temp")
    assert dev.http.delete(f"/v1/keys/{temp['id']}").status_code == 204
    admin.http.patch(f"/v1/namespaces/{ns}", json={"max_functions": 5})

    admin_id = next(
        k["id"]
        for k in admin.http.get("/v1/keys", params={"namespace": "default"}).json()["keys"]
        if k["role"] == "admin"
    )
    r = admin.http.get("/v1/audit", params={"namespace": ns})
    assert r.status_code == 200
    entries = list(reversed(r.json()["entries"]))  # oldest first
    assert [(e["action"], e["key_id"], e["target"]) for e in entries] == [
        ("namespace.create", admin_id, ns),
        ("key.create", admin_id, key["id"]),
        ("function.create", key["id"], "fn"),
        ("function.update", key["id"], "fn"),
        ("function.delete", key["id"], "fn"),
        ("key.create", key["id"], temp["id"]),
        ("key.revoke", key["id"], temp["id"]),
        ("namespace.update", admin_id, ns),
    ]
    assert all(e["namespace"] == ns for e in entries)
    assert entries[2]["key_name"] == "auditee" and entries[2]["role"] == "developer"
    assert entries[2]["details"]["secret_env_keys"] == ["TOKEN"]
    assert entries[3]["details"]["changed"] == ["memory_mb"]
    assert "hush-" not in r.text

    only = admin.http.get("/v1/audit", params={"namespace": ns, "action": "key.revoke"})
    assert [e["target"] for e in only.json()["entries"]] == [temp["id"]]
    later = admin.http.get("/v1/audit", params={"namespace": ns, "since": time.time() + 60})
    assert later.json()["entries"] == []
    assert len(admin.http.get("/v1/audit", params={"limit": 2}).json()["entries"]) == 2
    error(dev.http.get("/v1/audit"), 403, "Auth.Forbidden")


# ---- CLI ---------------------------------------------------------------------------


def test_cli_namespaces_keys_and_audit(server: Server) -> None:
    env = {
        **os.environ,
        "NIMBUS_URL": server.url,
        "NIMBUS_TOKEN": TOKEN,
        "NIMBUS_CONFIG": str(server.data_dir.parent / "cli-config.json"),
    }
    env.pop("NIMBUS_NAMESPACE", None)

    def nimbus(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [NIMBUS, *args], env={**env, **extra}, capture_output=True, text=True, timeout=60
        )

    ns = unique("cli")
    r = nimbus("namespace", "create", ns, "--max-functions", "2", "--max-code-bytes", "1MiB")
    assert r.returncode == 0, r.stderr
    assert "max_functions=2" in r.stdout and "max_code_bytes=1.0 MiB" in r.stdout

    r = nimbus("--namespace", ns, "key", "create", "--role", "developer", "--name", "cli-dev")
    assert r.returncode == 0, r.stderr
    secret = r.stdout.strip()
    assert secret.startswith("nmb_") and "only time" in r.stderr

    r = nimbus("key", "list", "--namespace", ns, "--json")
    keys = json.loads(r.stdout)
    assert [k["name"] for k in keys] == ["cli-dev"] and secret not in r.stdout

    app = server.data_dir.parent / "cli-app"
    app.mkdir(exist_ok=True)
    (app / "app.py").write_text(ENV_ECHO["app.py"])
    r = nimbus(
        "deploy", str(app), "--name", "envfn", "--runtime", "python3.11",
        "--handler", "app.handler", "--secret-env", "PASS=cli-secret-1",
        NIMBUS_TOKEN=secret,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = nimbus("invoke", "envfn", "-d", '{"keys": ["PASS"]}', NIMBUS_TOKEN=secret)
    assert json.loads(r.stdout) == {"PASS": "cli-secret-1"}
    r = nimbus("show", "envfn", NIMBUS_TOKEN=secret)
    assert "PASS=<hidden>" in r.stdout and "cli-secret-1" not in r.stdout
    r = nimbus("update", "envfn", "--secret-env", "PASS=cli-secret-2", NIMBUS_TOKEN=secret)
    assert r.returncode == 0, r.stderr

    r = nimbus("--namespace", ns, "list")  # admin acting in the namespace
    assert "envfn" in r.stdout
    r = nimbus("list", NIMBUS_NAMESPACE=ns)
    assert "envfn" in r.stdout
    r = nimbus("namespace", "show", ns)
    assert "functions" in r.stdout and "1 / 2" in r.stdout

    r = nimbus("--namespace", ns, "audit", "--json")
    actions = [e["action"] for e in json.loads(r.stdout)]
    assert actions[:3] == ["function.update", "function.create", "key.create"]
    r = nimbus("audit", NIMBUS_TOKEN=secret)
    assert r.returncode == 1 and "Auth.Forbidden" in r.stderr

    r = nimbus("namespace", "delete", ns, "--yes")
    assert r.returncode == 1 and "Namespace.NotEmpty" in r.stderr
    r = nimbus("namespace", "update", ns, "--max-functions", "unlimited")
    assert r.returncode == 0 and "max_functions=unlimited" in r.stdout
