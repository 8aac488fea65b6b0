"""The built-in Node.js runtime as a real ``node`` process against a fake Runtime API.

What the integration tests cannot reach through the platform: TCP instead of the unix
socket, chunked event bodies, a Runtime API that drops the connection, the Lambda
context headers, and malformed input. The fake is the Python runtime's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nimbus.runtimes.registry import NODE_BOOTSTRAP, node_heap_flags
from tests.unit.test_python_runtime import API, DROP, FakeRuntimeAPI

NODE = shutil.which("node") or shutil.which("nodejs")

APP = """\
let calls = 0;
exports.handler = async (event, context) => {
  calls += 1;
  return {
    event,
    calls,
    identity: context.identity,
    clientContext: context.clientContext,
    arn: context.invokedFunctionArn,
    remaining: context.getRemainingTimeInMillis(),
    trace: process.env._X_AMZN_TRACE_ID || null,
  };
};
"""


class Runtime:
    def __init__(self, api: FakeRuntimeAPI, proc: subprocess.Popen[bytes], err: Path) -> None:
        self.api = api
        self.proc = proc
        self.err = err


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    assert NODE, "Node.js is not installed; scripts/setup.sh installs Debian's nodejs"
    started: list[Runtime] = []
    sock_dir = tempfile.mkdtemp(prefix="nnb")

    def _start(files: dict[str, str], handler: str = "index.handler", tcp: bool = False) -> Runtime:
        root = tmp_path / f"task{len(started)}"
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(textwrap.dedent(text))
        unix_path = None if tcp else os.path.join(sock_dir, f"api{len(started)}.sock")
        api = FakeRuntimeAPI(unix_path)
        env = {"_HANDLER": handler, "LAMBDA_TASK_ROOT": str(root), "PATH": "/usr/bin:/bin"}
        if unix_path:
            env["NIMBUS_RUNTIME_API_SOCKET"] = unix_path
        else:
            env["AWS_LAMBDA_RUNTIME_API"] = api.tcp_address
        err = tmp_path / f"err{len(started)}"
        with err.open("wb") as err_file:
            proc = subprocess.Popen(
                [str(NODE), *node_heap_flags(128), str(NODE_BOOTSTRAP)],
                env=env,
                cwd=root,
                stdout=subprocess.DEVNULL,
                stderr=err_file,
            )
        runtime = Runtime(api, proc, err)
        started.append(runtime)
        return runtime

    yield _start
    for runtime in started:
        if runtime.proc.poll() is None:
            runtime.proc.kill()
        runtime.proc.wait()
        runtime.api.close()
    shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.mark.parametrize("tcp", [False, True], ids=["unix", "tcp"])
def test_both_transports_and_the_context_headers(start: Any, tcp: bool) -> None:
    rt = start({"index.js": APP}, tcp=tcp)
    request_id, post = rt.api.invoke(
        {"x": 1},
        Lambda_Runtime_Cognito_Identity=json.dumps({"cognitoIdentityId": "id-1"}),
        Lambda_Runtime_Client_Context=json.dumps({"custom": {"k": "v"}}),
        Lambda_Runtime_Trace_Id="Root=1-abc",
    )
    assert post.path == f"{API}/invocation/{request_id}/response"
    assert post.headers["content-type"] == "application/json"
    body = post.json
    assert body["event"] == {"x": 1} and body["calls"] == 1
    assert body["identity"]["cognitoIdentityId"] == "id-1"
    assert body["clientContext"] == {"custom": {"k": "v"}}
    assert body["arn"] == "arn:aws:lambda:us-east-1:1:function:fn"
    assert 25_000 < body["remaining"] <= 30_000
    assert body["trace"] == "Root=1-abc"
    _, second = rt.api.invoke([1, 2])
    assert second.json["calls"] == 2 and second.json["trace"] is None
    assert rt.api.connections == 1  # one keep-alive connection for every request


def test_chunked_events_and_an_empty_body(start: Any) -> None:
    rt = start({"index.js": APP})
    _, post = rt.api.invoke({"chunked": "événement ☃"}, chunked=True)
    assert post.json["event"] == {"chunked": "événement ☃"}
    _, empty = rt.api.invoke(raw=b"")
    assert empty.json["event"] == {}


def test_a_dropped_connection_is_reopened_once(start: Any) -> None:
    rt = start({"index.js": APP})
    rt.api.events.put(DROP)  # the fake closes the connection instead of answering next
    _, post = rt.api.invoke({"after": "drop"})
    assert post.json["event"] == {"after": "drop"}
    assert rt.api.connections == 2


def test_bad_input_is_an_error_not_a_crash(start: Any) -> None:
    rt = start({"index.js": APP})
    request_id, post = rt.api.invoke(raw=b"{not json")
    assert post.path == f"{API}/invocation/{request_id}/error"
    assert post.headers["lambda-runtime-function-error-type"] == "Unhandled"
    assert post.json["errorType"] == "Runtime.UnmarshalError"
    assert post.json["requestId"] == request_id
    _, bad_context = rt.api.invoke({}, Lambda_Runtime_Client_Context="{nope")
    assert bad_context.json["errorType"] == "Runtime.LambdaContextUnmarshalError"
    _, fine = rt.api.invoke({"ok": True})
    assert fine.json["event"] == {"ok": True}  # the same process goes on


@pytest.mark.parametrize(
    ("handler", "error_type"),
    [("index", "Runtime.MalformedHandlerName"), ("missing.handler", "Runtime.ImportModuleError")],
)
def test_init_errors_are_posted_then_the_process_exits(
    start: Any, handler: str, error_type: str
) -> None:
    rt = start({"index.js": APP}, handler=handler)
    post = rt.api.next_post()
    assert post.path == f"{API}/init/error"
    assert post.headers["lambda-runtime-function-error-type"] == error_type
    assert post.json["errorType"] == error_type
    assert rt.proc.wait(timeout=10) == 1
    assert f"[ERROR] {error_type}" in rt.err.read_text()


def test_the_runtime_api_going_away_ends_the_process(start: Any) -> None:
    rt = start({"index.js": APP})
    rt.api.invoke({})
    rt.api.close()
    assert rt.proc.wait(timeout=10) == 1
    assert "Runtime API unreachable" in rt.err.read_text()
