"""The built-in Python runtime, run as a real process against a fake Runtime API.

The fake speaks the Lambda Runtime API over a unix socket or TCP (``http.server`` in a
thread); each test starts ``bootstrap.py`` the way the platform does (``-I -S``).
"""

from __future__ import annotations

import ast
import json
import os
import queue
import shutil
import socketserver
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from nimbus.runtimes.registry import BOOTSTRAP, discover

API = "/2018-06-01/runtime"
DROP = object()  # an "event" that makes the fake close the connection instead of answering


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Event:
    body: bytes
    headers: dict[str, str]
    chunked: bool = False


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class FakeRuntimeAPI:
    """Hands queued events to ``GET next`` and records every POST."""

    def __init__(self, unix_path: str | None) -> None:
        self.events: queue.Queue[Event | object] = queue.Queue()
        self.posts: queue.Queue[Post] = queue.Queue()
        self.connections = 0
        self.closed = False
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                api.connections += 1

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                assert self.path == f"{API}/invocation/next"
                while True:
                    try:
                        event = api.events.get(timeout=0.1)
                        break
                    except queue.Empty:
                        if api.closed:
                            self.close_connection = True
                            return
                if not isinstance(event, Event):
                    self.close_connection = True
                    return
                self.send_response(200)
                for name, value in event.headers.items():
                    self.send_header(name, value)
                if event.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i in range(0, len(event.body), 3):
                        part = event.body[i : i + 3]
                        self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\nX-Trailer: 1\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(event.body)))
                    self.end_headers()
                    self.wfile.write(event.body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                api.posts.put(
                    Post(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                answer = b'{"status":"OK"}'
                self.send_response(202)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.tcp_address = ""  # host:port, when serving over TCP
        if unix_path:
            self.server: socketserver.BaseServer = _UnixHTTPServer(unix_path, Handler)
        else:
            tcp = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            self.tcp_address = f"127.0.0.1:{tcp.server_port}"
            tcp.daemon_threads = True
            self.server = tcp
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def push(
        self, event: Any = None, *, raw: bytes | None = None, chunked: bool = False, **headers: str
    ) -> str:
        request_id = headers.pop("request_id", None) or str(uuid.uuid4())
        hdrs = {
            "Lambda-Runtime-Aws-Request-Id": request_id,
            "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 30_000),
            "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:1:function:fn",
            "Content-Type": "application/json",
        }
        hdrs.update({k.replace("_", "-"): v for k, v in headers.items()})
        body = raw if raw is not None else json.dumps(event).encode()
        self.events.put(Event(body, hdrs, chunked))
        return request_id

    def next_post(self, timeout: float = 10) -> Post:
        return self.posts.get(timeout=timeout)

    def invoke(self, event: Any = None, **kwargs: Any) -> tuple[str, Post]:
        request_id = self.push(event, **kwargs)
        return request_id, self.next_post()

    def close(self) -> None:
        self.closed = True
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Instance:
    api: FakeRuntimeAPI
    proc: subprocess.Popen[bytes]
    root: Path
    out_path: Path
    err_path: Path

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait(self, timeout: float = 10) -> int:
        return self.proc.wait(timeout=timeout)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    instances: list[Instance] = []
    sock_dir = tempfile.mkdtemp(prefix="nrt")  # short: unix socket paths are limited to ~107 bytes

    def _start(
        files: dict[str, str],
        handler: str = "app.handler",
        transport: str = "unix",
        env: dict[str, str] | None = None,
        python: str = sys.executable,
    ) -> Instance:
        root = tmp_path / f"task{len(instances)}"
        root.mkdir()
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(textwrap.dedent(text))
        unix_path = (
            os.path.join(sock_dir, f"api{len(instances)}.sock") if transport == "unix" else None
        )
        api = FakeRuntimeAPI(unix_path)
        full_env = {"_HANDLER": handler, "LAMBDA_TASK_ROOT": str(root), **(env or {})}
        if unix_path:
            full_env["NIMBUS_RUNTIME_API_SOCKET"] = unix_path
        else:
            full_env["AWS_LAMBDA_RUNTIME_API"] = api.tcp_address
        out_path, err_path = tmp_path / f"out{len(instances)}", tmp_path / f"err{len(instances)}"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                [python, "-I", "-S", str(BOOTSTRAP)],
                env=full_env,
                stdout=out,
                stderr=err,
                cwd="/",
            )
        instance = Instance(api, proc, root, out_path, err_path)
        instances.append(instance)
        return instance

    yield _start
    for instance in instances:
        if instance.proc.poll() is None:
            instance.proc.kill()
        instance.proc.wait()
        instance.api.close()
    shutil.rmtree(sock_dir, ignore_errors=True)


ECHO = """
    import os, sys
    def handler(event, context):
        return {"event": event, "cwd": os.getcwd(), "path0": sys.path[0]}
"""

CONTEXT = """
    import os, time
    INITS = []
    INITS.append(1)

    def handler(event, context):
        remaining = context.get_remaining_time_in_millis()
        time.sleep(0.05)
        return {
            "aws_request_id": context.aws_request_id,
            "request_id": context.request_id,
            "function_name": context.function_name,
            "function_version": context.function_version,
            "arn": context.invoked_function_arn,
            "memory": context.memory_limit_in_mb,
            "log_group": context.log_group_name,
            "log_stream": context.log_stream_name,
            "namespace": context.namespace,
            "time_limit_in_ms": context.time_limit_in_ms,
            "environ": context.environ,
            "remaining": remaining,
            "remaining_later": context.get_remaining_time_in_millis(),
            "item": context["request_id"],
            "get": context.get("function_name"),
            "get_missing": context.get("nope", "dflt"),
            "contains": "request_id" in context,
            "not_contains": "aws_request_id" in context,
            "keys": list(context.keys()),
            "identity": context.identity.cognito_identity_id,
            "client_context": context.client_context and {
                "custom": context.client_context.custom,
                "installation_id": context.client_context.client.installation_id,
            },
            "trace": os.environ.get("_X_AMZN_TRACE_ID"),
            "inits": len(INITS),
        }
"""


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_echo_over_one_persistent_connection(start: Any, transport: str) -> None:
    inst = start({"app.py": ECHO}, transport=transport)
    for event in ({"a": 1}, [1, "two", None], "héllo ✓", 42):
        request_id, post = inst.api.invoke(event)
        assert post.path == f"{API}/invocation/{request_id}/response"
        assert post.json == {"event": event, "cwd": str(inst.root), "path0": str(inst.root)}
        assert post.headers["content-type"] == "application/json"
    assert inst.api.connections == 1
    assert inst.proc.poll() is None


def test_empty_body_is_an_empty_dict_and_chunked_events_work(start: Any) -> None:
    inst = start({"app.py": ECHO})
    _, post = inst.api.invoke(raw=b"")
    assert post.json["event"] == {}
    _, post = inst.api.invoke({"chunked": "yes", "n": list(range(20))}, chunked=True)
    assert post.json["event"] == {"chunked": "yes", "n": list(range(20))}


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_context(start: Any, transport: str) -> None:
    env = {
        "AWS_LAMBDA_FUNCTION_NAME": "fn",
        "AWS_LAMBDA_FUNCTION_VERSION": "3",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fn",
        "AWS_LAMBDA_LOG_STREAM_NAME": "stream-1",
        "NIMBUS_NAMESPACE": "team",
        "GREETING": "hi",
    }
    inst = start({"app.py": CONTEXT}, transport=transport, env=env)
    client_context = json.dumps({"client": {"installation_id": "inst-1"}, "custom": {"k": "v"}})
    request_id, post = inst.api.invoke(
        {},
        Lambda_Runtime_Trace_Id="Root=1-abc",
        Lambda_Runtime_Cognito_Identity=json.dumps({"cognitoIdentityId": "cog-1"}),
        Lambda_Runtime_Client_Context=client_context,
    )
    ctx = post.json
    assert ctx["aws_request_id"] == ctx["request_id"] == ctx["item"] == request_id
    assert ctx["function_name"] == ctx["get"] == "fn"
    assert ctx["function_version"] == "3"
    assert ctx["arn"] == "arn:aws:lambda:us-east-1:1:function:fn"
    assert ctx["memory"] == "256"
    assert (ctx["log_group"], ctx["log_stream"], ctx["namespace"]) == (
        "/aws/lambda/fn",
        "stream-1",
        "team",
    )
    assert 29_000 < ctx["time_limit_in_ms"] <= 30_000
    assert 29_000 < ctx["remaining"] <= 30_000
    assert ctx["remaining_later"] <= ctx["remaining"] - 40
    assert "GREETING=hi" in ctx["environ"].split(";")
    assert ctx["get_missing"] == "dflt"
    assert ctx["contains"] is True and ctx["not_contains"] is False
    assert ctx["keys"] == [
        "request_id",
        "function_name",
        "function_version",
        "namespace",
        "time_limit_in_ms",
        "memory_limit_in_mb",
        "environ",
    ]
    assert ctx["identity"] == "cog-1"
    assert ctx["client_context"] == {"custom": {"k": "v"}, "installation_id": "inst-1"}
    assert ctx["trace"] == "Root=1-abc"
    # A second call: module-level code ran once, no trace id, no identity, deadline passed.
    _, post = inst.api.invoke({}, Lambda_Runtime_Deadline_Ms=str(int(time.time() * 1000) - 5))
    ctx = post.json
    assert (ctx["inits"], ctx["trace"], ctx["identity"], ctx["client_context"]) == (
        1,
        None,
        None,
        None,
    )
    assert ctx["remaining"] == 0 and ctx["time_limit_in_ms"] == 0


def test_context_defaults(start: Any) -> None:
    inst = start({"app.py": CONTEXT})
    _, post = inst.api.invoke({})
    ctx = post.json
    assert ctx["function_name"] == "function"
    assert ctx["function_version"] == "$LATEST"
    assert ctx["memory"] == "128"
    assert ctx["namespace"] == "default"
    assert ctx["log_group"] == "/aws/lambda/function"
    assert ctx["log_stream"]


ERRORS = """
    import json

    def helper(x):
        raise ValueError("boom " + x)

    def handler(event, context):
        if event.get("fail"):
            helper("é")
        if event.get("unserializable"):
            return {1, 2}
        if event.get("exit"):
            raise SystemExit(7)
        return "ok"
"""


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_handler_error_is_reported_and_the_instance_keeps_serving(
    start: Any, transport: str
) -> None:
    inst = start({"app.py": ERRORS}, transport=transport)
    request_id, post = inst.api.invoke({"fail": True})
    assert post.path == f"{API}/invocation/{request_id}/error"
    assert post.headers["lambda-runtime-function-error-type"] == "Unhandled"
    app = inst.root / "app.py"
    assert post.json == {
        "errorType": "ValueError",
        "errorMessage": "boom é",
        "requestId": request_id,
        "stackTrace": [
            f'  File "{app}", line 9, in handler\n    helper("é")\n',
            f'  File "{app}", line 5, in helper\n    raise ValueError("boom " + x)\n',
        ],
    }
    assert "[ERROR] ValueError: boom é\nTraceback (most recent call last):\n" in inst.stderr
    request_id, post = inst.api.invoke({})
    assert post.path == f"{API}/invocation/{request_id}/response"
    assert post.json == "ok"
    assert inst.api.connections == 1


def test_marshal_and_unmarshal_errors(start: Any) -> None:
    inst = start({"app.py": ERRORS})
    request_id, post = inst.api.invoke({"unserializable": True})
    assert post.path == f"{API}/invocation/{request_id}/error"
    assert post.json["errorType"] == "Runtime.MarshalError"
    assert (
        post.json["errorMessage"]
        == "Unable to marshal response: Object of type set is not JSON serializable"
    )
    assert post.json["stackTrace"] == []
    request_id, post = inst.api.invoke(raw=b"{not json")
    assert post.path == f"{API}/invocation/{request_id}/error"
    assert post.json["errorType"] == "Runtime.UnmarshalError"
    assert post.json["requestId"] == request_id
    _, post = inst.api.invoke({})
    assert post.json == "ok"


def test_system_exit_from_the_handler_ends_the_process(start: Any) -> None:
    inst = start({"app.py": ERRORS})
    inst.api.push({"exit": True})
    assert inst.wait() == 7
    assert inst.api.posts.empty()


def test_output_is_flushed_before_the_answer(start: Any) -> None:
    code = """
        import sys
        def handler(event, context):
            print("line one")
            print("no newline", end="")
            sys.stderr.write("err no newline")
            return 1
    """
    inst = start({"app.py": code})
    inst.api.invoke({})
    # The fake recorded the POST only after the runtime flushed: the output is already there.
    assert inst.stdout == "line one\nno newline"
    assert inst.stderr == "err no newline"


LOGGING_AT_IMPORT = """
    import logging
    logger = logging.getLogger(__name__)
    logger.warning("at import")

    def handler(event, context):
        logger.info("info %s", event["n"])
        logging.getLogger().debug("hidden")
        return "ok"
"""

LOGGING_IN_HANDLER = """
    def handler(event, context):
        import logging
        logging.getLogger().info("from handler")
        return "ok"
"""


def test_logging_imported_at_module_level(start: Any) -> None:
    inst = start({"app.py": LOGGING_AT_IMPORT})
    request_id, _ = inst.api.invoke({"n": 5})
    warning, info = inst.stdout.splitlines()
    assert warning.startswith("[WARNING]\t") and warning.endswith("\t\tat import")
    level, stamp, rid, message = info.split("\t")
    assert (level, rid, message) == ("[INFO]", request_id, "info 5")
    assert (
        time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S") and stamp.endswith("Z") and len(stamp) == 24
    )


def test_logging_imported_in_the_handler_and_log_level(start: Any) -> None:
    inst = start({"app.py": LOGGING_IN_HANDLER})
    request_id, _ = inst.api.invoke({})
    assert inst.stdout.endswith(f"\t{request_id}\tfrom handler\n")
    quiet = start({"app.py": LOGGING_IN_HANDLER}, env={"AWS_LAMBDA_LOG_LEVEL": "warning"})
    quiet.api.invoke({})
    assert quiet.stdout == ""


def test_handler_paths(start: Any) -> None:
    files = {
        "sub/app.py": "def handler(e, c):\n    return 'sub'\n",
        "pkg/__init__.py": "",
        "pkg/mod.py": "def fn(e, c):\n    return 'pkg'\n",
    }
    assert start(files, handler="sub/app.handler").api.invoke({})[1].json == "sub"
    assert start(files, handler="pkg.mod.fn").api.invoke({})[1].json == "pkg"


@pytest.mark.parametrize(
    ("files", "handler", "error_type", "message"),
    [
        (
            {},
            "app.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'app': No module named 'app'",
        ),
        (
            {"app.py": "import not_a_module_xyz\n"},
            "app.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'app': No module named 'not_a_module_xyz'",
        ),
        (
            {"app.py": "def handler(:\n"},
            "app.handler",
            "Runtime.UserCodeSyntaxError",
            "app.py, line 1",
        ),
        (
            {"app.py": "x = 1\n"},
            "app.nope",
            "Runtime.HandlerNotFound",
            "Handler 'nope' missing on module 'app'",
        ),
        ({"app.py": "x = 1\n"}, "app", "Runtime.MalformedHandlerName", "Bad handler 'app'"),
        (
            {"app.py": "x = 1\nraise ValueError('bad config')\n"},
            "app.handler",
            "ValueError",
            "bad config",
        ),
    ],
)
def test_init_errors(
    start: Any, files: dict[str, str], handler: str, error_type: str, message: str
) -> None:
    inst = start(files, handler=handler)
    post = inst.api.next_post()
    assert inst.wait() == 1
    assert post.path == f"{API}/init/error"
    assert post.headers["lambda-runtime-function-error-type"] == error_type
    assert post.json["errorType"] == error_type
    assert message in post.json["errorMessage"]
    assert isinstance(post.json["stackTrace"], list)
    assert f"[ERROR] {error_type}: " in inst.stderr


def test_init_error_stack_traces(start: Any) -> None:
    inst = start({"app.py": "x = 1\nraise ValueError('bad config')\n"})
    app = inst.root / "app.py"
    assert inst.api.next_post().json["stackTrace"] == [
        f"  File \"{app}\", line 2, in <module>\n    raise ValueError('bad config')\n"
    ]
    inst = start({"app.py": "\n\ndef handler(:\n"})
    app = inst.root / "app.py"
    assert inst.api.next_post().json["stackTrace"] == [
        f'  File "{app}", line 3\n    def handler(:\n'
    ]


def test_reconnects_once_when_the_connection_drops(start: Any) -> None:
    inst = start({"app.py": ECHO})
    inst.api.events.put(DROP)
    _, post = inst.api.invoke({"after": "drop"})
    assert post.json["event"] == {"after": "drop"}
    assert inst.api.connections == 2


def test_exits_when_the_runtime_api_is_gone(start: Any) -> None:
    inst = start({"app.py": ECHO})
    inst.api.invoke({})
    inst.api.close()
    assert inst.wait() != 0


def test_bootstrap_is_standalone_and_python38_syntax() -> None:
    source = BOOTSTRAP.read_text()
    tree = ast.parse(source, feature_version=(3, 8))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert "nimbus" not in imported
    assert imported <= {
        "__future__",
        "json",
        "os",
        "socket",
        "sys",
        "time",
        "types",
        "linecache",
        "collections",
        "typing",
        # HTTP services only, imported when one starts (the zygote pre-imports asyncio).
        "asyncio",
        "inspect",
        # The object storage relay's threads (a builtin module: nothing to import).
        "_thread",
    }
    assert source.startswith('"""') and "from __future__ import annotations" in source


PYTHONS = {
    name: str(rt.executable)
    for name, rt in discover().items()
    if rt.kind == "python" and rt.executable
}


@pytest.mark.parametrize("python", sorted(PYTHONS))
def test_every_python_version(start: Any, python: str) -> None:
    """Python 3.8+: echo, context, user errors, marshal errors, logging, and init errors."""
    code = ERRORS + LOGGING_IN_HANDLER.replace("def handler", "def logs")
    inst = start({"app.py": code}, python=PYTHONS[python])
    assert inst.api.invoke({})[1].json == "ok"
    request_id, post = inst.api.invoke({"fail": True})
    assert (post.json["errorType"], post.json["requestId"]) == ("ValueError", request_id)
    assert [line.split(",")[1:] for line in post.json["stackTrace"]] == [
        [" line 9", ' in handler\n    helper("é")\n'],
        [" line 5", ' in helper\n    raise ValueError("boom " + x)\n'],
    ]
    assert inst.api.invoke({"unserializable": True})[1].json["errorType"] == "Runtime.MarshalError"
    logs = start({"app.py": code}, handler="app.logs", python=PYTHONS[python])
    request_id, post = logs.api.invoke({})
    assert post.json == "ok"
    assert logs.stdout.endswith(f"\t{request_id}\tfrom handler\n")
    broken = start({"app.py": "def handler(:\n"}, python=PYTHONS[python])
    assert broken.api.next_post().json["errorType"] == "Runtime.UserCodeSyntaxError"
    assert broken.wait() == 1
