"""The built-in Node.js runtime (``nodejsN``) held to the Python runtime's contract.

Echo, unicode, env, context, warm reuse, handled and init errors, timeouts, large
payloads and logs, as ``test_invoke.py`` and ``test_logs.py`` ask of Python, plus
the three handler styles (async, callback, promise). Every contract test runs under
the default sandbox and under the plain ``process`` backend; the isolation tests run
a ``namespaces`` server of their own.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from nimbus.runtimes.registry import NODE_BOOTSTRAP, RUNTIMES_DIR, RUNTIMES_IN_SANDBOX
from tests.integration.harness import Server, instance_pids, wait_until


def _node_runtime_name() -> str:
    """``nodejs<major>`` of the ``node`` on PATH, which the server must offer."""
    node = shutil.which("node") or shutil.which("nodejs")
    assert node, "Node.js is not installed; scripts/setup.sh installs Debian's nodejs"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    return f"nodejs{version.stdout.strip().lstrip('v').split('.')[0]}"


RUNTIME = _node_runtime_name()


@pytest.fixture(scope="module", params=["default-sandbox", "process-sandbox"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    env = {"NIMBUS_SANDBOX": "process"} if request.param == "process-sandbox" else {}
    srv = Server(tmp_path_factory.mktemp(f"node-{request.param}") / "data", env).start()
    yield srv
    srv.stop()
    srv.close()


def deploy(
    server: Server, name: str, files: dict[str, str], handler: str = "index.handler", **kw: Any
) -> dict[str, Any]:
    return server.deploy(name, files, runtime=RUNTIME, handler=handler, **kw)


def invoke_raw(server: Server, name: str, body: bytes) -> dict[str, Any]:
    r = server.http.post(
        f"/v1/functions/{name}/invocations",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text[:500]
    return dict(r.json())


def test_runtime_is_listed(server: Server) -> None:
    runtimes = {r["name"]: r for r in server.http.get("/v1/runtimes").json()["runtimes"]}
    assert runtimes[RUNTIME]["kind"] == "node", runtimes
    assert runtimes[RUNTIME]["version"].split(".")[0] == RUNTIME.removeprefix("nodejs")
    assert "runtimes: " in server.output() and RUNTIME in server.output()


CONTEXT_APP = """\
const crypto = require('crypto');
const INSTANCE = crypto.randomUUID(); // one per instance process
let inits = 0;
inits += 1;
let calls = 0;

exports.handler = async (event, context) => {
  calls += 1;
  return {
    event,
    instance: INSTANCE,
    inits,
    calls,
    request_id: context.awsRequestId,
    scf_request_id: context.request_id,
    function_name: context.functionName,
    scf_function_name: context.function_name,
    function_version: context.functionVersion,
    scf_function_version: context.function_version,
    memory: context.memoryLimitInMB,
    scf_memory: context.memory_limit_in_mb,
    arn: context.invokedFunctionArn,
    log_group: context.logGroupName,
    log_stream: context.logStreamName,
    remaining: context.getRemainingTimeInMillis(),
    time_limit: context.time_limit_in_ms,
    namespace: context.namespace,
    environ_greeting: context.environ.split(';').includes('GREETING=hi'),
    waits: context.callbackWaitsForEmptyEventLoop,
    env: process.env.GREETING,
    handler_env: process.env._HANDLER,
    cwd: process.cwd(),
    task_root: process.env.LAMBDA_TASK_ROOT,
  };
};
"""


def test_result_context_env_and_warm_reuse(server: Server) -> None:
    deploy(
        server,
        "n-ctx",
        {"index.js": CONTEXT_APP},
        memory_mb=256,
        timeout_s=7,
        env={"GREETING": "hi"},
    )
    first = server.invoke("n-ctx", {"x": 1})
    assert first["status"] == "succeeded", first
    assert first["cold_start"] is True and first["init_duration_ms"] > 0
    r = first["result"]
    assert r["event"] == {"x": 1}
    assert r["request_id"] == first["request_id"] == r["scf_request_id"]
    assert r["function_name"] == r["scf_function_name"] == "n-ctx"
    assert r["function_version"] == r["scf_function_version"] == "$LATEST"
    assert r["memory"] == r["scf_memory"] == "256"
    assert "n-ctx" in r["arn"] and r["log_group"].endswith("/n-ctx") and r["log_stream"]
    assert 6000 < r["remaining"] <= 7000 and 6000 < r["time_limit"] <= 7000
    assert r["namespace"] == "default" and r["environ_greeting"] is True
    assert r["waits"] is True
    assert r["env"] == "hi" and r["handler_env"] == "index.handler"
    assert r["cwd"] == r["task_root"]
    assert first["billed_duration_ms"] >= 1

    second = server.invoke("n-ctx", [1, "two", None])
    assert second["cold_start"] is False and second["init_duration_ms"] is None
    assert second["result"]["instance"] == r["instance"]
    assert second["result"]["inits"] == 1  # module-level code ran once
    assert second["result"]["calls"] == 2  # module state persists between calls
    assert second["result"]["event"] == [1, "two", None]
    assert second["request_id"] != first["request_id"]


def test_unicode_and_plain_values(server: Server) -> None:
    deploy(server, "n-echo", {"index.js": "exports.handler = async (e) => e;\n"})
    for event in ("héllo ☃ 𝄞", 42, None, {"nested": {"a": [1, 2.5, True]}}, "", [], False):
        assert server.invoke("n-echo", event)["result"] == (event if event is not None else {})
    raw = invoke_raw(server, "n-echo", json.dumps({"s": "ünï ☃ 𝄞"}, ensure_ascii=False).encode())
    assert raw["result"] == {"s": "ünï ☃ 𝄞"}


STYLES_APP = """\
const later = (ms, value) => new Promise((resolve) => setTimeout(() => resolve(value), ms));

exports.asyncStyle = async (event) => {
  await later(10);
  return { style: 'async', got: event };
};

exports.callbackStyle = (event, context, callback) => {
  setTimeout(() => callback(null, { style: 'callback', got: event }), 10);
};

exports.promiseStyle = function (event) {
  return later(10, { style: 'promise', got: event });
};

exports.syncStyle = (event) => ({ style: 'sync', got: event });

// Lambda's default: the answer waits until the event loop is empty.
exports.waits = (event, context, callback) => {
  callback(null, 'answered');
  setTimeout(() => console.log('timer after callback'), 300);
};

exports.noWait = (event, context, callback) => {
  context.callbackWaitsForEmptyEventLoop = false;
  callback(null, 'answered at once');
  setTimeout(() => {}, 300);
};

exports.nothing = () => {
  setTimeout(() => console.log('loop emptied'), 20);
};

exports.contextSucceed = (event, context) => context.succeed({ legacy: true });
"""


def test_handler_styles(server: Server) -> None:
    files = {"index.js": STYLES_APP}
    for style in ("asyncStyle", "callbackStyle", "promiseStyle", "syncStyle"):
        deploy(server, f"n-{style.lower()}", files, handler=f"index.{style}")
        out = server.invoke(f"n-{style.lower()}", {"n": 1})
        assert out["status"] == "succeeded", out
        assert out["result"] == {"style": style.removesuffix("Style"), "got": {"n": 1}}
        again = server.invoke(f"n-{style.lower()}", {"n": 2})  # warm, same answer path
        assert again["cold_start"] is False and again["result"]["got"] == {"n": 2}

    deploy(server, "n-waits", files, handler="index.waits")
    server.invoke("n-waits")  # warm up: the timing below is the call's own
    waited = server.invoke("n-waits")
    assert waited["result"] == "answered" and waited["duration_ms"] >= 280, waited
    lines = server.logs("n-waits", request_id=waited["request_id"])
    assert "timer after callback" in [x["message"] for x in lines], lines

    deploy(server, "n-nowait", files, handler="index.noWait")
    server.invoke("n-nowait")
    quick = server.invoke("n-nowait")
    assert quick["result"] == "answered at once" and quick["duration_ms"] < 250, quick

    deploy(server, "n-nothing", files, handler="index.nothing")
    empty = server.invoke("n-nothing")
    assert empty["status"] == "succeeded" and empty["result"] is None, empty
    lines = server.logs("n-nothing", request_id=empty["request_id"])
    assert "loop emptied" in [x["message"] for x in lines], lines

    deploy(server, "n-succeed", files, handler="index.contextSucceed")
    assert server.invoke("n-succeed")["result"] == {"legacy": True}


ERRORS_APP = """\
const INSTANCE = require('crypto').randomUUID();

class ValidationError extends Error {}

function helper(kind) {
  if (kind === 'type') throw new TypeError('bad value');
  if (kind === 'custom') throw new ValidationError('invalid input');
  if (kind === 'string') throw 'plain string';
}

exports.handler = async (event) => {
  helper(event.fail);
  if (event.reject) return Promise.reject(new RangeError('rejected'));
  if (event.bigint) return { n: 10n };
  if (event.cycle) { const a = {}; a.self = a; return a; }
  if (event.fn) return () => 1;
  return INSTANCE;
};

exports.syncThrow = (event) => {
  helper('type');
};

exports.callbackError = (event, context, callback) => {
  setTimeout(() => callback(new SyntaxError('callback says no')), 5);
};
"""


def _fails(server: Server, name: str, event: Any = None) -> dict[str, Any]:
    r = server.http.post(f"/v1/functions/{name}/invocations", json=event or {})
    assert r.status_code == 200, r.text
    assert r.headers["X-Nimbus-Function-Error"] == "Unhandled"
    out = dict(r.json())
    assert out["status"] == "failed", out
    return out


def test_handled_errors_are_reported_and_instance_survives(server: Server) -> None:
    deploy(server, "n-raises", {"index.js": ERRORS_APP})
    instance = server.invoke("n-raises")["result"]
    cases = [
        ({"fail": "type"}, "TypeError", "bad value"),
        ({"fail": "custom"}, "ValidationError", "invalid input"),
        ({"fail": "string"}, "string", "plain string"),
        ({"reject": True}, "RangeError", "rejected"),
    ]
    for event, error_type, message in cases:
        failed = _fails(server, "n-raises", event)
        assert failed["error"]["errorType"] == error_type, failed
        assert failed["error"]["errorMessage"] == message, failed
        assert failed["cold_start"] is False
    trace = "\n".join(_fails(server, "n-raises", {"fail": "type"})["error"]["stackTrace"])
    assert "index.js" in trace and "helper" in trace, trace
    assert "bootstrap" not in trace and "node:internal" not in trace, trace  # runtime frames
    for event in ({"bigint": True}, {"cycle": True}, {"fn": True}):
        failed = _fails(server, "n-raises", event)
        assert failed["error"]["errorType"] == "Runtime.MarshalError", failed
    again = server.invoke("n-raises")
    assert again["result"] == instance and again["cold_start"] is False

    deploy(server, "n-syncthrow", {"index.js": ERRORS_APP}, handler="index.syncThrow")
    sync = _fails(server, "n-syncthrow")
    assert sync["error"]["errorType"] == "TypeError" and "helper" in "".join(
        sync["error"]["stackTrace"]
    )
    deploy(server, "n-cberror", {"index.js": ERRORS_APP}, handler="index.callbackError")
    cb = _fails(server, "n-cberror")
    assert (
        cb["error"]["errorType"] == "SyntaxError"
        and cb["error"]["errorMessage"] == "callback says no"
    )
    assert server.invoke("n-cberror")["cold_start"] is False  # still the same instance


CRASH_APP = """\
const INSTANCE = require('crypto').randomUUID();
exports.handler = async (event) => {
  if (event.uncaught) {
    setTimeout(() => { throw new Error('from a timer'); }, 0);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
  if (event.unhandled) {
    Promise.reject(new Error('nobody listens'));
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
  if (event.exit) process.exit(7);
  return INSTANCE;
};
"""


def test_crashes_end_the_instance_and_are_logged(server: Server) -> None:
    """Uncaught exceptions and unhandled rejections end the process, as on Lambda; the call
    fails as an exit, its log says why, and the next call gets a fresh instance."""
    deploy(server, "n-crash", {"index.js": CRASH_APP})
    cases = [
        ({"uncaught": True}, "exit status 129", "[ERROR] Error: from a timer"),
        (
            {"unhandled": True},
            "exit status 128",
            "[ERROR] Runtime.UnhandledPromiseRejection: Error: nobody listens",
        ),
        ({"exit": True}, "exit status 7", None),
    ]
    for event, status, logged in cases:
        instance = server.invoke("n-crash")["result"]
        out = server.invoke("n-crash", event)
        assert out["status"] == "failed", out
        assert out["error"]["errorType"] == "Runtime.ExitError", out
        assert status in out["error"]["errorMessage"], out
        assert out["duration_ms"] < 1500, out  # at once, not after the handler's 2 s wait
        if logged is not None:
            lines = server.logs("n-crash", request_id=out["request_id"])
            assert logged in _messages(lines, "stderr"), lines
        fresh = server.invoke("n-crash")
        assert fresh["cold_start"] is True and fresh["result"] != instance, fresh


def test_init_errors_reach_the_caller(server: Server) -> None:
    cases = {
        "n-importerr": (
            {"index.js": "require('not-a-module-anywhere');\nexports.handler = async () => 1;\n"},
            "Runtime.ImportModuleError",
            "not-a-module-anywhere",
        ),
        "n-syntaxerr": (
            {"index.js": "exports.handler = async (e) => {\n  return 1 +;\n};\n"},
            "Runtime.UserCodeSyntaxError",
            "index",
        ),
        "n-nohandler": (
            {"index.js": "exports.other = async () => 1;\n"},
            "Runtime.HandlerNotFound",
            "handler",
        ),
        "n-initthrow": (
            {
                "index.js": "class ConfigError extends Error {}\n"
                "throw new ConfigError('missing setting');\n"
            },
            "ConfigError",
            "missing setting",
        ),
        "n-initjson": (  # a SyntaxError module code throws is not a syntax error of the code
            {"index.js": "JSON.parse('{bad');\nexports.handler = async () => 1;\n"},
            "SyntaxError",
            "JSON",
        ),
        "n-esm-syntax": (
            {"index.mjs": "export const handler = async () => {;\n"},
            "Runtime.UserCodeSyntaxError",
            "index",
        ),
    }
    for name, (files, error_type, message) in cases.items():
        deploy(server, name, files)
        for _ in range(2):  # every call reports it; no retry storm in between
            result = server.invoke(name)
            assert result["status"] == "failed", result
            assert result["error"]["errorType"] == error_type, result
            assert message in result["error"]["errorMessage"], result
            assert "Require stack" not in result["error"]["errorMessage"], result
            assert result["cold_start"] is True
        init = server.logs(name, request_id="init")
        assert any(f"[ERROR] {error_type}" in x["message"] for x in init), init


def test_module_layouts(server: Server) -> None:
    layouts: dict[str, tuple[dict[str, str], str]] = {
        "n-nested": (
            {"src/app.js": "exports.handler = async () => 'nested';\n"},
            "src/app.handler",
        ),
        "n-mjs": ({"index.mjs": "export const handler = async () => 'mjs';\n"}, "index.handler"),
        "n-typemodule": (
            {
                "package.json": '{"type": "module"}',
                "index.js": "const x = await Promise.resolve('type-module');\n"
                "export async function handler() { return x; }\n",
            },
            "index.handler",
        ),
        "n-cjs": (
            {
                "lib.cjs": "module.exports = { word: 'cjs' };\n",
                "index.cjs": "const lib = require('./lib.cjs');\n"
                "exports.handler = async () => lib.word;\n",
            },
            "index.handler",
        ),
        "n-deps": (
            {
                "node_modules/greet/package.json": '{"name": "greet", "main": "main.js"}',
                "node_modules/greet/main.js": "module.exports = (n) => `hello ${n}`;\n",
                "index.js": "const greet = require('greet');\n"
                "exports.handler = async (e) => greet(e.name);\n",
            },
            "index.handler",
        ),
        "n-property": (
            {"index.js": "exports.api = { get: async () => 'nested property' };\n"},
            "index.api.get",
        ),
    }
    expected = {
        "n-nested": "nested",
        "n-mjs": "mjs",
        "n-typemodule": "type-module",
        "n-cjs": "cjs",
        "n-deps": "hello node",
        "n-property": "nested property",
    }
    for name, (files, handler) in layouts.items():
        deploy(server, name, files, handler=handler)
        out = server.invoke(name, {"name": "node"})
        assert out["status"] == "succeeded" and out["result"] == expected[name], (name, out)


TIMEOUT_APP = """\
const INSTANCE = require('crypto').randomUUID();
exports.handler = async (event) => {
  if (event.spin) for (;;) {} // blocks the event loop: only a kill ends it
  if (event.sleep) await new Promise((resolve) => setTimeout(resolve, event.sleep * 1000));
  return INSTANCE;
};
"""


def _is_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_timeout_kills_the_instance(server: Server) -> None:
    for name, event in (("n-spin", {"spin": True}), ("n-sleep", {"sleep": 5})):
        deploy(server, name, {"index.js": TIMEOUT_APP}, timeout_s=1)
        before = instance_pids(server.data_dir)
        instance = server.invoke(name)["result"]
        (pid,) = instance_pids(server.data_dir) - before
        timed_out = server.invoke(name, event)
        assert timed_out["status"] == "failed", timed_out
        assert timed_out["error"]["errorType"] == "Sandbox.Timedout"
        assert "Task timed out after 1.00 seconds" in timed_out["error"]["errorMessage"]
        assert 900 < timed_out["duration_ms"] < 3000
        fresh = server.invoke(name)
        assert fresh["cold_start"] is True and fresh["result"] != instance
        assert wait_until(lambda pid=pid: not _is_alive(pid))


LARGE_APP = """\
exports.handler = async (event) => {
  if (event.make) return { blob: 'é☃'.repeat(event.make) };
  return { echo: event.blob, length: event.blob.length };
};
"""


def test_large_payloads_both_ways(server: Server) -> None:
    deploy(server, "n-large", {"index.js": LARGE_APP})  # the default 128 MB
    blob = "aé☃𝄞" * 500_000  # 5 MB as UTF-8 (1 + 2 + 3 + 4 bytes)
    body = json.dumps({"blob": blob}, ensure_ascii=False).encode()
    assert 4_900_000 < len(body) < 6 * 1024 * 1024
    for _ in range(3):
        out = invoke_raw(server, "n-large", body)
        assert out["status"] == "succeeded", {k: v for k, v in out.items() if k != "result"}
        assert (
            out["result"]["echo"] == blob
            and out["result"]["length"] == len(blob.encode("utf-16-le")) // 2
        )
    made = server.invoke("n-large", {"make": 1_000_000})  # 5 MB of UTF-8 back
    assert made["status"] == "succeeded"
    assert made["result"]["blob"] == "é☃" * 1_000_000
    too_big = server.invoke("n-large", {"make": 1_300_000})  # 6.5 MB: over the sync limit
    assert too_big["status"] == "failed"
    assert too_big["error"]["errorType"] == "Function.ResponseSizeTooLarge", too_big
    assert server.invoke("n-large", {"make": 1})["status"] == "succeeded"


TAGS_APP = """\
console.log('module loaded');
console.error('module warning');

exports.handler = async (event) => {
  console.log(`out ${event.n}`);
  console.error(`err ${event.n}`);
  return event.n;
};

exports.burst = async (event) => {
  const pad = 'z'.repeat(1000);
  for (let i = 0; i < 2000; i++) console.log(`${i} ${pad}`); // 2 MB: far more than a pipe holds
  process.stderr.write('last words\\n');
  return 'done';
};
"""


def _messages(lines: list[dict[str, Any]], stream: str | None = None) -> list[str]:
    return [x["message"] for x in lines if stream is None or x["stream"] == stream]


def test_logs_are_captured_per_request(server: Server) -> None:
    deploy(server, "n-logs", {"index.js": TAGS_APP})
    calls = [server.invoke("n-logs", {"n": n}) for n in (1, 2)]
    assert [c["status"] for c in calls] == ["succeeded", "succeeded"], calls
    for n, call in zip((1, 2), calls, strict=True):
        rid = call["request_id"]
        lines = server.logs("n-logs", request_id=rid)
        assert all(x["request_id"] == rid for x in lines), lines
        assert _messages(lines, "stdout") == [f"out {n}"], lines
        assert _messages(lines, "stderr") == [f"err {n}"], lines
        reports = [m for m in _messages(lines, "platform") if m.startswith("REPORT RequestId: ")]
        assert len(reports) == 1 and ("Init Duration" in reports[0]) is (n == 1), reports
    init = server.logs("n-logs", request_id="init")
    assert _messages(init, "stdout") == ["module loaded"], init
    assert _messages(init, "stderr") == ["module warning"], init

    tailed = server.invoke("n-logs", {"n": 7}, **{"X-Nimbus-Log-Type": "Tail"})
    tail = tailed["log_tail"].splitlines()
    assert "out 7" in tail and "err 7" in tail and "out 1" not in tail, tail

    deploy(server, "n-burst", {"index.js": TAGS_APP}, handler="index.burst")
    burst = server.invoke("n-burst")
    assert burst["result"] == "done", burst
    lines = server.logs("n-burst", request_id=burst["request_id"], limit=10_000)
    out = _messages(lines, "stdout")
    assert len(out) == 2000 and out[0].startswith("0 z") and out[-1].startswith("1999 z")
    assert _messages(lines, "stderr") == ["last words"]


# ---- isolation (namespaces) -----------------------------------------------------------------

ISOLATION_APP = """\
const fs = require('fs');
const net = require('net');
const os = require('os');

function attempt(fn) {
  try { fn(); return 'ok'; } catch (err) { return err.code || err.name; }
}

function connect(host, port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.setTimeout(2000);
    socket.on('connect', () => { socket.destroy(); resolve('ok'); });
    socket.on('error', (err) => resolve(err.code));
    socket.on('timeout', () => { socket.destroy(); resolve('ETIMEDOUT'); });
  });
}

function ownLoopback(port) {
  return new Promise((resolve) => {
    const server = net.createServer((c) => c.end('hello from a function'));
    server.on('error', (err) => resolve(err.code));
    server.listen(port, '127.0.0.1', () => {
      const client = net.connect({ host: '127.0.0.1', port });
      let data = '';
      client.on('data', (d) => { data += d; });
      client.on('end', () => { server.close(); resolve(data); });
      client.on('error', (err) => { server.close(); resolve(err.code); });
    });
  });
}

exports.handler = async (event) => {
  const targets = {};
  for (const [name, [host, port]] of Object.entries(event.targets)) {
    targets[name] = await connect(host, port);
  }
  return {
    uid: process.getuid(),
    gid: process.getgid(),
    write_new_code: attempt(() => fs.writeFileSync('/var/task/new.js', 'x')),
    overwrite_code: attempt(() => fs.writeFileSync('/var/task/index.js', 'x')),
    write_root: attempt(() => fs.writeFileSync('/' + event.name, 'x')),
    mkdir_root: attempt(() => fs.mkdirSync('/' + event.name)),
    write_usr: attempt(() => fs.writeFileSync('/usr/' + event.name, 'x')),
    write_runtime: attempt(() => fs.writeFileSync(event.bootstrap, 'x')),
    write_tmp: attempt(() => fs.writeFileSync('/tmp/' + event.name, 'x')),
    read_data_dir: attempt(() => fs.readdirSync(event.data_dir)),
    read_shadow: attempt(() => fs.readFileSync('/etc/shadow')),
    interfaces: Object.keys(os.networkInterfaces()).sort(),
    targets,
    own_port: await ownLoopback(event.own_port),
  };
};
"""

PY_PROBE_APP = """\
import os

def handler(event, context):
    return {"sees_node_runtime": os.path.exists(event["path"]), "root": sorted(os.listdir("/"))}
"""


@pytest.fixture(scope="module")
def ns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("node-ns") / "data", {"NIMBUS_SANDBOX": "namespaces"})
    srv.start()
    yield srv
    srv.stop()
    srv.close()


def test_isolation_from_inside_a_node_function(ns: Server) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # control: host reaches it
        listener.accept()[0].close()
        deploy(ns, "n-iso", {"index.js": ISOLATION_APP})
        event = {
            "name": f"nimbus-node-{secrets.token_hex(6)}",
            # Where the sandbox shows the bootstrap (a fixed path, wherever Nimbus is).
            "bootstrap": f"{RUNTIMES_IN_SANDBOX}/{NODE_BOOTSTRAP.relative_to(RUNTIMES_DIR)}",
            "data_dir": str(ns.data_dir.resolve()),
            "targets": {"host listener": ["127.0.0.1", port], "platform": ["127.0.0.1", ns.port]},
            "own_port": port,  # the very port the host listens on: free in the sandbox
        }
        out = ns.invoke("n-iso", event)
    finally:
        listener.close()
    assert out["status"] == "succeeded", out
    r = out["result"]
    assert r["uid"] >= 100_000 and r["gid"] >= 100_000, r  # not root, not a host user
    for probe in ("write_new_code", "overwrite_code", "write_root", "mkdir_root", "write_usr"):
        assert r[probe] in ("EROFS", "EACCES", "EPERM"), (probe, r[probe])
    assert r["write_runtime"] in ("EROFS", "EACCES", "EPERM"), r  # the bootstrap is read-only
    assert r["write_tmp"] == "ok"  # control: /tmp is writable
    assert r["read_data_dir"] == "ENOENT" and r["read_shadow"] == "ENOENT", r
    assert r["interfaces"] == ["lo"], r
    assert r["targets"] == {"host listener": "ECONNREFUSED", "platform": "ECONNREFUSED"}, r
    assert r["own_port"] == "hello from a function", r
    assert not os.path.exists(f"/{event['name']}") and not os.path.exists(f"/usr/{event['name']}")


def test_python_instances_do_not_see_the_node_runtime(ns: Server) -> None:
    ns.deploy("n-pyprobe", {"app.py": PY_PROBE_APP})
    for path in (str(NODE_BOOTSTRAP.parent), f"{RUNTIMES_IN_SANDBOX}/node"):
        out = ns.invoke("n-pyprobe", {"path": path})
        assert out["status"] == "succeeded", out
        assert out["result"]["sees_node_runtime"] is False, (path, out)


MEMORY_APP = """\
const held = [];
exports.handler = async (event) => {
  for (let i = 0; i < (event.mb || 0); i++) held.push(Buffer.alloc(1024 * 1024, 1));
  return { rss_mb: Math.round(process.memoryUsage().rss / 1048576) };
};
"""


def test_memory_floor_and_limit(ns: Server) -> None:
    # The documented floor: 64 MB runs a small handler, call after call.
    deploy(ns, "n-mem64", {"index.js": MEMORY_APP}, memory_mb=64)
    for _ in range(20):
        out = ns.invoke("n-mem64", {})
        assert out["status"] == "succeeded", out
    # The memory cgroup applies to Node as to Python: past the limit, the call fails.
    deploy(ns, "n-mem128", {"index.js": MEMORY_APP})
    assert ns.invoke("n-mem128", {})["status"] == "succeeded"
    oom = ns.invoke("n-mem128", {"mb": 400})
    assert oom["status"] == "failed" and oom["error"]["errorType"] == "Runtime.OutOfMemory", oom
    assert "128 MB" in oom["error"]["errorMessage"]
    assert ns.invoke("n-mem128", {})["cold_start"] is True


def test_hello_node_example(server: Server) -> None:
    """examples/hello-node runs as its README says."""
    from tests.integration.test_custom_runtimes import example_files

    files = {
        k: v.decode() if isinstance(v, bytes) else v for k, v in example_files("hello-node").items()
    }
    deploy(server, "hello-node-example", files)
    r = server.invoke("hello-node-example", {"name": "Ada"})
    assert r["status"] == "succeeded", r
    assert r["result"] == {"message": "Hello, Ada!", "request_id": r["request_id"]}
    assert server.invoke("hello-node-example", {})["result"]["message"] == "Hello, world!"
    assert any("greeting Ada" in line["message"] for line in server.logs("hello-node-example"))
