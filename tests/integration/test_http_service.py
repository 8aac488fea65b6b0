"""HTTP services end to end: unmodified Flask, FastAPI, plain ASGI and WSGI apps served
at their function URLs by a real ``nimbus serve`` on real instances, with streaming both
ways, WebSockets, auth, scaling and failures. The frameworks are copied from this
environment into the packages, as `pip install --target` would."""

from __future__ import annotations

import concurrent.futures
import hashlib
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.integration.harness import TOKEN, Server, vendored, wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

FLASK_APP = """
import os, time
from flask import Flask, Response, jsonify, make_response, redirect, request, url_for

app = Flask(__name__)

@app.get("/")
def index():
    return "flask says hi"

@app.route("/hello/<name>", methods=["GET", "POST", "DELETE"])
def hello(name):
    return jsonify(
        hello=name,
        method=request.method,
        args=request.args.to_dict(flat=False),
        header=request.headers.get("X-Test"),
        cookies=request.cookies.to_dict(),
        url=url_for("hello", name=name),
        external=url_for("hello", name=name, _external=True),
        script_root=request.script_root,
        path=request.path,
    )

@app.post("/form")
def form():
    files = {k: f.read().decode() for k, f in request.files.items()}
    return jsonify(form=request.form.to_dict(), files=files)

@app.post("/json")
def post_json():
    return jsonify(got=request.get_json()), 201

@app.get("/cookie")
def cookie():
    response = make_response("cookie set")
    response.set_cookie("flavour", "oat", path=request.script_root + "/")
    response.set_cookie("other", "1")
    response.headers["X-Custom"] = "yes"
    return response

@app.get("/teapot")
def teapot():
    return "short and stout", 418

@app.get("/go")
def go():
    return redirect(url_for("index"))

@app.get("/stream")
def stream():
    def generate():
        yield "first\\n"
        time.sleep(2)
        yield "second\\n"
    return Response(generate(), mimetype="text/plain")

@app.get("/forever")
def forever():
    def generate():
        try:
            while True:
                yield "tick\\n"
                time.sleep(0.05)
        finally:
            print("generator closed", flush=True)
    return Response(generate(), mimetype="text/plain")

@app.get("/instance")
def instance():
    return os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
"""

FASTAPI_APP = """
import asyncio, os
from contextlib import asynccontextmanager
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse, StreamingResponse

STARTUPS = []

@asynccontextmanager
async def lifespan(app):
    STARTUPS.append(1)
    app.state.flag = "set at startup"
    yield {"db": "connected"}

app = FastAPI(lifespan=lifespan)

@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q}

@app.post("/echo", status_code=201)
async def echo(request: Request):
    return {"got": await request.json()}

@app.get("/state")
async def state(request: Request):
    return {
        "db": request.state.db,
        "flag": request.app.state.flag,
        "startups": len(STARTUPS),
        "url": str(request.url),
        "root_path": request.scope["root_path"],
    }

@app.get("/stream")
async def stream():
    async def gen():
        yield "first\\n"
        await asyncio.sleep(2)
        yield "second\\n"
    return StreamingResponse(gen(), media_type="text/plain")

@app.get("/forever")
async def forever():
    async def gen():
        try:
            while True:
                yield "tick\\n"
                await asyncio.sleep(0.05)
        finally:
            print("stream cancelled", flush=True)
    return StreamingResponse(gen(), media_type="text/plain")

@app.get("/instance")
def instance():
    return PlainTextResponse(os.environ["AWS_LAMBDA_LOG_STREAM_NAME"])

@app.websocket("/ws")
async def ws(websocket: WebSocket):
    await websocket.accept()
    await websocket.send_text("hello " + websocket.query_params.get("who", "?"))
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            if message.get("text") == "bye":
                await websocket.close(code=4001, reason="see you")
                return
            if message.get("bytes") is not None:
                await websocket.send_bytes(message["bytes"][::-1])
            else:
                await websocket.send_text("echo:" + message["text"])
    except WebSocketDisconnect as exc:
        print(f"client left with {exc.code}", flush=True)
"""

# A raw ASGI callable: no framework, no lifespan support.
PLAIN_ASGI = """
import asyncio, hashlib, json, os, time

async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": "plain:" + message["text"]})
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here")
    path = scope["path"][len(scope["root_path"]):]
    if path == "/boom":
        raise RuntimeError("boom before the response")
    if path == "/half":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        await asyncio.sleep(0.2)
        raise RuntimeError("boom in the middle")
    body = hashlib.sha256()
    size = reads = 0
    first = last = None
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        if chunk:
            reads += 1
            size += len(chunk)
            body.update(chunk)
            last = time.time()
            first = first or last
        if not message.get("more_body"):
            break
    if path == "/slow":
        await asyncio.sleep(float(scope["query_string"] or 1))
    answer = {
        "method": scope["method"],
        "path": scope["path"],
        "root_path": scope["root_path"],
        "query": scope["query_string"].decode(),
        "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
        "instance": os.environ["AWS_LAMBDA_LOG_STREAM_NAME"],
        "size": size, "reads": reads, "sha256": body.hexdigest(), "first": first, "last": last,
    }
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(answer).encode()})
"""

PLAIN_WSGI = """
import hashlib, json, os

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/boom":
        raise ValueError("wsgi boom")
    digest, size, reads = hashlib.sha256(), 0, 0
    while True:
        chunk = environ["wsgi.input"].read(65536)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
        reads += 1
    print("wsgi request", path, flush=True)
    environ["wsgi.errors"].write("to wsgi.errors\\n")
    start_response("200 OK", [("Content-Type", "application/json"), ("X-Wsgi", "1")])
    return [json.dumps({
        "script_name": environ["SCRIPT_NAME"], "path_info": path,
        "query": environ["QUERY_STRING"], "method": environ["REQUEST_METHOD"],
        "size": size, "reads": reads, "sha256": digest.hexdigest(),
        "instance": os.environ["AWS_LAMBDA_LOG_STREAM_NAME"],
    }).encode()]
"""

FLASK_DEPS = ("flask",)
FASTAPI_DEPS = ("fastapi",)


def _service(
    srv: Server, name: str, files: dict[str, str | bytes], auth: str = "public", **settings: Any
) -> str:
    """Deploy ``files`` as an HTTP service (handler app:app) with a URL; the URL."""
    settings.setdefault("timeout_s", 30)
    settings.setdefault("memory_mb", 256)
    function = srv.deploy(name, files, handler="app:app", **settings)
    assert function["type"] == "service", function
    r = srv.http.post(
        f"/v1/functions/{name}/triggers",
        json={"name": "web", "type": "http", "config": {"auth": auth}},
    )
    assert r.status_code == 201, r.text
    url = str(r.json()["url"])
    assert url == f"{srv.url}/fn/default/{name}/"
    return url


def _arrivals(url: str, **kwargs: Any) -> list[tuple[float, bytes]]:
    """(seconds since the request, bytes) of each piece of a response as it arrives."""
    start = time.monotonic()
    pieces = []
    with httpx.stream("GET", url, timeout=30, **kwargs) as response:
        assert response.status_code == 200, response.read()
        for chunk in response.iter_raw():
            pieces.append((time.monotonic() - start, chunk))
    return pieces


def _assert_streamed(pieces: list[tuple[float, bytes]]) -> None:
    """``first`` arrived well before ``second``, which the app sent 2 s later."""
    body = b"".join(chunk for _, chunk in pieces)
    assert body == b"first\nsecond\n", pieces
    first_at = next(t for t, chunk in pieces if chunk)
    end_at = pieces[-1][0]
    assert end_at - first_at > 1.5, f"the response was buffered: {pieces}"


def _wait_logged(srv: Server, name: str, text: str, **params: str) -> bool:
    """The function logged a line containing ``text`` (the log store writes in batches)."""
    return wait_until(
        lambda: any(text in line["message"] for line in srv.logs(name, **params)), timeout=10
    )


def _gone_quickly(url: str) -> None:
    """Read the first piece of an endless stream, then hang up."""
    with httpx.stream("GET", url, timeout=30) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            assert chunk.startswith(b"tick")
            break


# ---- frameworks ---------------------------------------------------------------------


def test_flask_app_served_unmodified(server: Server) -> None:
    url = _service(server, "svc-flask", {"app.py": FLASK_APP, **vendored(*FLASK_DEPS)})
    with httpx.Client(timeout=30) as client:
        r = client.get(url)
        assert r.status_code == 200 and r.text == "flask says hi"
        assert r.headers["x-nimbus-request-id"]

        r = client.post(
            url + "hello/ada?x=1&x=2&y=%C3%A9",
            headers={"X-Test": "yes", "Cookie": "c=v; d=w"},
        )
        assert r.status_code == 200, r.text
        assert r.json() == {
            "hello": "ada",
            "method": "POST",
            "args": {"x": ["1", "2"], "y": ["é"]},
            "header": "yes",
            "cookies": {"c": "v", "d": "w"},
            "url": "/fn/default/svc-flask/hello/ada",
            "external": f"{server.url}/fn/default/svc-flask/hello/ada",
            "script_root": "/fn/default/svc-flask",
            "path": "/hello/ada",
        }
        assert client.delete(url + "hello/x").json()["method"] == "DELETE"

        r = client.post(url + "form", data={"a": "1", "b": "two words"}, files={"f": b"data"})
        assert r.json() == {"form": {"a": "1", "b": "two words"}, "files": {"f": "data"}}
        r = client.post(url + "json", json={"list": [1, 2], "nested": {"k": None}})
        assert r.status_code == 201 and r.json() == {"got": {"list": [1, 2], "nested": {"k": None}}}

        r = client.get(url + "cookie")
        assert r.text == "cookie set" and r.headers["x-custom"] == "yes"
        cookies = r.headers.get_list("set-cookie")
        assert any(
            c.startswith("flavour=oat") and "Path=/fn/default/svc-flask/" in c for c in cookies
        )
        assert any(c.startswith("other=1") for c in cookies)

        r = client.get(url + "teapot")
        assert r.status_code == 418 and r.text == "short and stout"
        r = client.get(url + "go")
        assert r.status_code == 302 and r.headers["location"] == "/fn/default/svc-flask/"
        assert client.get(url + "nowhere").status_code == 404  # Flask's own 404
        # The function URL without its trailing slash is the app's root.
        assert client.get(url.rstrip("/")).text == "flask says hi"
    _assert_streamed(_arrivals(url + "stream"))


def test_fastapi_app_with_lifespan_streaming_and_websocket(server: Server) -> None:
    url = _service(server, "svc-fastapi", {"app.py": FASTAPI_APP, **vendored(*FASTAPI_DEPS)})
    with httpx.Client(timeout=30) as client:
        r = client.get(url + "items/42", params={"q": "x y"})
        assert r.status_code == 200 and r.json() == {"item_id": 42, "q": "x y"}, r.text
        assert client.get(url + "items/nope").status_code == 422
        r = client.post(url + "echo", json={"a": [1, 2]})
        assert r.status_code == 201 and r.json() == {"got": {"a": [1, 2]}}
        # Lifespan ran once, before the first request; its state reaches every request.
        for _ in range(2):
            state = client.get(url + "state").json()
            assert state == {
                "db": "connected",
                "flag": "set at startup",
                "startups": 1,
                "url": f"{server.url}/fn/default/svc-fastapi/state",
                "root_path": "/fn/default/svc-fastapi",
            }
        # The OpenAPI docs work under the prefix.
        docs = client.get(url + "docs")
        assert docs.status_code == 200 and "/fn/default/svc-fastapi/openapi.json" in docs.text
        assert "/items/{item_id}" in client.get(url + "openapi.json").json()["paths"]
    _assert_streamed(_arrivals(url + "stream"))

    ws_url = url.replace("http://", "ws://") + "ws"
    with connect(ws_url + "?who=me", open_timeout=30) as ws:
        assert ws.recv(timeout=10) == "hello me"
        for i in range(5):
            ws.send(f"m{i}")
        assert [ws.recv(timeout=10) for _ in range(5)] == [f"echo:m{i}" for i in range(5)]
        ws.send(b"\x01\x02\x03")
        assert ws.recv(timeout=10) == b"\x03\x02\x01"
        ws.send("bye")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "see you")
    # The client closing is reported to the app with its code.
    with connect(ws_url, open_timeout=30) as ws:
        assert ws.recv(timeout=10) == "hello ?"
        ws.close(code=4003)
    assert _wait_logged(server, "svc-fastapi", "client left with 4003")
    # The instance is free again.
    assert httpx.get(url + "items/1", timeout=30).status_code == 200


def test_plain_asgi_and_wsgi_callables(server: Server) -> None:
    asgi = _service(server, "svc-asgi", {"app.py": PLAIN_ASGI})
    wsgi = _service(server, "svc-wsgi", {"app.py": PLAIN_WSGI})
    with httpx.Client(timeout=30) as client:
        r = client.put(asgi + "a/b%20c?x=1&y=2", content=b"hello", headers={"X-Up": "1"})
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["method"] == "PUT" and got["query"] == "x=1&y=2"
        assert got["root_path"] == "/fn/default/svc-asgi"
        assert got["path"] == "/fn/default/svc-asgi/a/b c"  # as uvicorn's --root-path gives it
        assert got["headers"]["x-up"] == "1" and got["size"] == 5

        r = client.post(wsgi + "x/y?q=1", content=b"abc")
        assert r.status_code == 200 and r.headers["x-wsgi"] == "1", r.text
        got = r.json()
        assert (got["script_name"], got["path_info"], got["query"]) == (
            "/fn/default/svc-wsgi",
            "/x/y",
            "q=1",
        )
        assert (got["method"], got["size"]) == ("POST", 3)
        rid = r.headers["x-nimbus-request-id"]

    # Output is captured per request, like any function's (the log store is written in
    # batches: wait for the call's REPORT line, its last).
    def messages() -> list[str]:
        return [line["message"] for line in server.logs("svc-wsgi", request_id=rid)]

    assert wait_until(lambda: any(m.startswith(f"REPORT RequestId: {rid}") for m in messages()))
    assert "wsgi request /x/y" in messages() and "to wsgi.errors" in messages(), messages()

    with connect(asgi.replace("http://", "ws://") + "ws", open_timeout=30) as ws:
        ws.send("one")
        assert ws.recv(timeout=10) == "plain:one"
    # WSGI has no WebSockets: the handshake is refused.
    with pytest.raises(InvalidStatus) as refused:
        connect(wsgi.replace("http://", "ws://") + "ws", open_timeout=30)
    assert refused.value.response.status_code == 403

    # A published version answers at its own URL.
    assert server.http.post("/v1/functions/svc-asgi/versions", json={}).status_code == 201
    r = httpx.get(f"{server.url}/fn/default/svc-asgi:1/v", timeout=30)
    assert r.status_code == 200 and r.json()["root_path"] == "/fn/default/svc-asgi:1"


# ---- the platform around the app -------------------------------------------------------


def test_key_protected_and_public_urls(server: Server) -> None:
    url = _service(server, "svc-key", {"app.py": PLAIN_ASGI}, auth="key")
    ws_url = url.replace("http://", "ws://") + "ws"
    with httpx.Client(timeout=30) as anon:
        r = anon.get(url)
        assert r.status_code == 401 and r.json()["error"]["code"] == "Auth.Unauthorized"
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url, open_timeout=30)
        assert refused.value.response.status_code == 401
    r = server.http.get(url + "p")
    assert r.status_code == 200, r.text
    assert "authorization" not in r.json()["headers"], "the caller's Nimbus key reached the app"
    with connect(ws_url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        ws.send("in")
        assert ws.recv(timeout=10) == "plain:in"
    # A key of another namespace learns nothing.
    server.http.post("/v1/namespaces", json={"name": "svc-other"})
    key = server.http.post(
        "/v1/keys", json={"namespace": "svc-other", "role": "invoker", "name": "svc"}
    ).json()["secret"]
    r = httpx.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "Function.NotFound"

    # A public URL passes the Authorization header through: it is the app's own.
    public = _service(server, "svc-public", {"app.py": PLAIN_ASGI})
    r = httpx.get(public, headers={"Authorization": "Basic dTpw"}, timeout=30)
    assert r.json()["headers"]["authorization"] == "Basic dTpw"


def test_services_are_not_invoked_with_events(server: Server) -> None:
    _service(server, "svc-noinvoke", {"app.py": PLAIN_ASGI})
    for headers in ({}, {"X-Nimbus-Invocation-Type": "Event"}):
        r = server.http.post(
            "/v1/functions/svc-noinvoke/invocations",
            json={},
            headers=headers,
        )
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == "Function.IsHttpService"
        assert "/fn/default/svc-noinvoke/" in error["message"]
    # Deploy-time checks: a service needs a Python runtime and a well-formed handler.
    sha = server.upload(_zip({"bootstrap": "#!/bin/sh\n"}))
    r = server.http.put(
        "/v1/functions/svc-custom",
        json={"runtime": "custom", "handler": "app:app", "code_sha256": sha},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "Function.InvalidSetting"
    sha = server.upload(_zip({"app.py": PLAIN_ASGI}))
    for handler, code in (
        ("app:", "Function.InvalidSetting"),
        ("nope:app", "Code.HandlerNotFound"),
    ):
        r = server.http.put(
            "/v1/functions/svc-bad",
            json={"runtime": "python3.11", "handler": handler, "code_sha256": sha},
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == code, (handler, r.text)
    event = server.deploy("svc-event", {"app.py": "def handler(e, c):\n    return 1\n"})
    assert event["type"] == "event"


def _zip(files: dict[str, str | bytes]) -> bytes:
    from tests.integration.harness import make_zip

    return make_zip(files)


def test_app_failures(server: Server) -> None:
    asgi = _service(server, "svc-fail", {"app.py": PLAIN_ASGI}, max_instances=1)
    wsgi = _service(server, "svc-wfail", {"app.py": PLAIN_WSGI}, max_instances=1)
    for url, error_type, text in (
        (asgi, "RuntimeError", "boom before the response"),
        (wsgi, "ValueError", "wsgi boom"),
    ):
        before = httpx.get(url, timeout=30).json()["instance"]
        r = httpx.get(url + "boom", timeout=30)
        assert r.status_code == 502, r.text
        error = r.json()["error"]
        assert error["code"] == "Function.Error" and f"({error_type})" in error["message"]
        rid = r.headers["x-nimbus-request-id"]
        assert rid in error["message"]
        name = url.rstrip("/").rsplit("/", 1)[1]
        assert _wait_logged(server, name, text, request_id=rid)
        # The same warm instance keeps serving.
        assert httpx.get(url, timeout=30).json()["instance"] == before
    # A failure after the response started cuts the connection: the client sees it broken.
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("GET", asgi + "half", timeout=30) as response,
    ):
        assert response.status_code == 200
        response.read()
    assert httpx.get(asgi, timeout=30).status_code == 200

    # An app that cannot start: every request says why, with a 502.
    broken = _service(server, "svc-broken", {"app.py": "import not_a_module\napp = None\n"})
    r = httpx.get(broken, timeout=30)
    assert r.status_code == 502 and "Runtime.ImportModuleError" in r.json()["error"]["message"]
    failing_lifespan = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})
"""
    broken = _service(server, "svc-nolife", {"app.py": failing_lifespan})
    r = httpx.get(broken, timeout=30)
    assert r.status_code == 502
    assert "Runtime.LifespanStartupFailed" in r.json()["error"]["message"]

    # Throttled like any call: reserved concurrency 0 answers 429 with Retry-After.
    r = server.http.put("/v1/functions/svc-fail/concurrency", json={"reserved": 0})
    assert r.status_code == 200, r.text
    r = httpx.get(asgi, timeout=30)
    assert r.status_code == 429 and r.headers["retry-after"] == "60"
    assert r.json()["error"]["code"] == "Function.ReservedConcurrencyExceeded"
    with pytest.raises(InvalidStatus) as refused:
        connect(asgi.replace("http://", "ws://") + "ws", open_timeout=30)
    assert refused.value.response.status_code == 429
    assert refused.value.response.headers["Retry-After"] == "60"
    server.http.delete("/v1/functions/svc-fail/concurrency")


@pytest.mark.parametrize(
    ("app", "deps", "log_line"),
    [
        (FASTAPI_APP, FASTAPI_DEPS, "stream cancelled"),
        (FLASK_APP, FLASK_DEPS, "generator closed"),
    ],
    ids=["asgi", "wsgi"],
)
def test_client_leaving_mid_stream_frees_the_instance(
    server: Server, app: str, deps: tuple[str, ...], log_line: str
) -> None:
    name = f"svc-leave-{'asgi' if 'fastapi' in deps else 'wsgi'}"
    url = _service(server, name, {"app.py": app, **vendored(*deps)}, max_instances=1)
    instance = httpx.get(url + "instance", timeout=30).text
    start = time.monotonic()
    _gone_quickly(url + "forever")
    assert _wait_logged(server, name, log_line)
    # The only instance serves the next request at once (not after the 30 s timeout).
    assert httpx.get(url + "instance", timeout=30).text == instance
    assert time.monotonic() - start < 10


def test_concurrent_requests_scale_out_then_reuse_warm_instances(server: Server) -> None:
    url = _service(server, "svc-scale", {"app.py": PLAIN_ASGI}, max_instances=4)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: httpx.get(url + "slow?1.5", timeout=30), range(4)))
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    instances = {r.json()["instance"] for r in answers}
    assert len(instances) == 4, f"4 concurrent requests ran on {instances}"
    again = {httpx.get(url, timeout=30).json()["instance"] for _ in range(6)}
    assert again <= instances, "warm instances were not reused"


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_large_upload_is_streamed_through(server: Server) -> None:
    asgi = _service(server, "svc-upload", {"app.py": PLAIN_ASGI})
    wsgi = _service(server, "svc-wupload", {"app.py": PLAIN_WSGI})
    piece = bytes(range(256)) * 4096  # 1 MiB
    pieces = 20
    digest = hashlib.sha256(piece * pieces).hexdigest()

    def body() -> Any:
        for _ in range(pieces):
            yield piece
            time.sleep(0.05)

    assert server.proc is not None
    httpx.get(asgi, timeout=30)  # a warm instance
    peak_before = _peak_rss_kb(server.proc.pid)
    sent_at = time.time()
    r = httpx.post(asgi + "upload", content=body(), timeout=60)
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["size"], got["sha256"]) == (pieces * len(piece), digest)
    # The app read the body while the client was still sending it.
    assert got["reads"] >= pieces
    assert got["first"] - sent_at < 1.0 and got["last"] - got["first"] > 0.5, got
    grown_mb = (_peak_rss_kb(server.proc.pid) - peak_before) / 1024
    assert grown_mb < 12, f"the gateway's peak memory grew by {grown_mb:.1f} MB"

    r = httpx.post(wsgi + "upload", content=body(), timeout=60)
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["size"], got["sha256"]) == (pieces * len(piece), digest)
    assert got["reads"] >= pieces


# ---- the examples ----------------------------------------------------------------------------


def _example(directory: str) -> dict[str, str | bytes]:
    root = EXAMPLES / directory
    return {p.name: p.read_bytes() for p in root.glob("*.py")}


def test_flask_example(server: Server) -> None:
    url = _service(server, "ex-flask", {**_example("flask-service"), **vendored(*FLASK_DEPS)})
    with httpx.Client(timeout=30) as client:
        assert client.get(url).json() == {
            "service": "flask-notes",
            "notes": "/fn/default/ex-flask/notes",
            "countdown": "/fn/default/ex-flask/countdown/3",
        }
        r = client.post(url + "notes", json={"text": "buy milk"})
        assert r.status_code == 201 and r.headers["location"] == "/fn/default/ex-flask/notes/1"
        assert client.post(url + "notes", data={"text": "call mum"}).json()["id"] == 2
        assert client.get(url + "notes/2").json() == {"id": 2, "text": "call mum"}
        assert client.get(url + "notes/9").status_code == 404
    pieces = _arrivals(url + "countdown/2")
    assert b"".join(c for _, c in pieces) == b"2\n1\nliftoff\n"
    assert pieces[-1][0] - pieces[0][0] > 0.7, pieces


def test_fastapi_example(server: Server) -> None:
    url = _service(server, "ex-fastapi", {**_example("fastapi-service"), **vendored(*FASTAPI_DEPS)})
    with httpx.Client(timeout=30) as client:
        root = client.get(url).json()
        assert root["service"] == "fastapi-items" and root["docs"] == "/fn/default/ex-fastapi/docs"
        r = client.put(url + "items/1", json={"name": "tea", "price": 2.5})
        assert r.json() == {"item_id": 1, "name": "tea", "price": 2.5}
        assert client.get(url + "items/1").json() == {"name": "tea", "price": 2.5}
        assert client.get(url + "items/2").status_code == 404
        assert client.get(url + "docs").status_code == 200
    pieces = _arrivals(url + "ticks", params={"n": 2})
    assert b"".join(c for _, c in pieces) == b"tick 1\ntick 2\n"
    assert pieces[-1][0] - pieces[0][0] > 0.3, pieces
    with connect(url.replace("http://", "ws://") + "ws", open_timeout=30) as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "echo: hello"
        ws.send("bye")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000


def test_websocket_session_ends_at_the_function_timeout(server: Server) -> None:
    url = _service(server, "svc-wslimit", {"app.py": PLAIN_ASGI}, timeout_s=2, max_instances=1)
    ws_url = url.replace("http://", "ws://") + "ws"
    instance = httpx.get(url, timeout=30).json()["instance"]
    with connect(ws_url, open_timeout=30) as ws:
        started = time.monotonic()
        ws.send("x")
        assert ws.recv(timeout=10) == "plain:x"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert 1.5 < time.monotonic() - started < 5
    # The app ended on its own when told the session was over: the instance stays warm.
    assert httpx.get(url, timeout=30).json()["instance"] == instance
    lines = [line["message"] for line in server.logs("svc-wslimit")]
    assert not any("timed out" in m for m in lines), lines
    # One HTTP request is bounded by the timeout: past it the instance is stopped, the
    # client gets a 502, and the next request a new instance.
    r = httpx.get(url + "slow?5", timeout=30)
    assert r.status_code == 502 and "Sandbox.Timedout" in r.json()["error"]["message"]
    assert httpx.get(url, timeout=30).json()["instance"] != instance


def test_services_on_every_python_runtime(server: Server) -> None:
    """The runtime's service mode is standard library only, for every CPython 3.8+."""
    runtimes = server.http.get("/v1/runtimes").json()["runtimes"]
    pythons = sorted(r["name"] for r in runtimes if r["kind"] == "python")
    assert pythons
    for runtime in pythons:
        tag = runtime.replace(".", "")
        for kind, code in (("asgi", PLAIN_ASGI), ("wsgi", PLAIN_WSGI)):
            url = _service(server, f"svc-{tag}-{kind}", {"app.py": code}, runtime=runtime)
            r = httpx.post(url + "p?q=1", content=b"x" * 70000, timeout=30)
            assert r.status_code == 200, (runtime, kind, r.text)
            assert r.json()["size"] == 70000, (runtime, kind)
        with connect(url.replace("-wsgi/", "-asgi/").replace("http://", "ws://") + "ws") as ws:
            ws.send("v")
            assert ws.recv(timeout=10) == "plain:v", runtime


HELLO_ASGI = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})
"""

HELLO_WSGI = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
"""


def test_apps_that_never_read_the_request_answer_every_time(server: Server) -> None:
    """The request's body frames may still be in flight when such an app is done: its
    answer must never be lost to the channel closing under it."""
    for name, code in (("svc-hello-asgi", HELLO_ASGI), ("svc-hello-wsgi", HELLO_WSGI)):
        url = _service(server, name, {"app.py": code})
        with httpx.Client(timeout=30) as client:
            answers = [client.post(url, content=b"unread body") for _ in range(300)]
        failed = [(r.status_code, r.text) for r in answers if r.text != "hello"]
        assert not failed, failed[:3]
