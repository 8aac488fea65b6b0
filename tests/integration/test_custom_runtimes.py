"""Runtime ``custom``: a package's ``bootstrap`` drives the Runtime API itself.

Every instance here is a real process: shell scripts speaking the Tencent SCF or
AWS Lambda paths with curl, and the unmodified ``awslambdaric`` package.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.integration.harness import Server, make_zip

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_files(name: str) -> dict[str, str | bytes]:
    """The files of ``examples/<name>`` as a package (the example itself is what runs)."""
    root = EXAMPLES / name
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


# Shell helpers shared by the bootstraps below: header lookup in a curl -D dump.
_HEADER_FN = """
header() {  # header NAME FILE -> value of that response header (case-insensitive)
  grep -i "^$1:" "$2" | head -n 1 | cut -d: -f2- | sed 's/^ *//' | tr -d '\\r'
}
"""

LAMBDA_ECHO = (
    """#!/bin/sh
set -eu
API="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
H=$(mktemp)
"""
    + _HEADER_FN
    + """
while true; do
  EVENT=$(curl -sS -D "$H" "$API/invocation/next")
  ID=$(header Lambda-Runtime-Aws-Request-Id "$H")
  DEADLINE=$(header Lambda-Runtime-Deadline-Ms "$H")
  ARN=$(header Lambda-Runtime-Invoked-Function-Arn "$H")
  TRACE=$(header Lambda-Runtime-Trace-Id "$H")
  echo "lambda loop handling $ID"
  curl -sS -o /dev/null -X POST "$API/invocation/$ID/response" \\
    -H 'Content-Type: application/json' \\
    -d "{\\"id\\": \\"$ID\\", \\"deadline_ms\\": $DEADLINE, \\"arn\\": \\"$ARN\\",
         \\"trace\\": \\"$TRACE\\", \\"event\\": $EVENT}"
done
"""
)

LAMBDA_ERROR = (
    """#!/bin/sh
set -eu
API="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
H=$(mktemp)
"""
    + _HEADER_FN
    + """
while true; do
  curl -sS -o /dev/null -D "$H" "$API/invocation/next"
  ID=$(header Lambda-Runtime-Aws-Request-Id "$H")
  # The type comes from the header only: the body has no errorType.
  curl -sS -o /dev/null -X POST "$API/invocation/$ID/error" \\
    -H 'Lambda-Runtime-Function-Error-Type: Custom.PaymentDeclined' \\
    -d "{\\"errorMessage\\": \\"card declined in $ID\\"}"
done
"""
)

LAMBDA_INIT_ERROR = """#!/bin/sh
curl -sS -o /dev/null -X POST "http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/init/error" \\
  -H 'Lambda-Runtime-Function-Error-Type: Custom.ConfigMissing' \\
  -d '{"errorType": "Custom.ConfigMissing", "errorMessage": "DATABASE_URL is not set"}'
# A runtime that failed to initialise may linger; the platform must not wait for it.
sleep 60
"""

SCF_HEADERS = (
    """#!/bin/sh
set -eu
API="http://$SCF_RUNTIME_API:$SCF_RUNTIME_API_PORT/runtime"
H=$(mktemp)
"""
    + _HEADER_FN
    + """
curl -sS -o /dev/null -X POST "$API/init/ready"
while true; do
  curl -sS -o /dev/null -D "$H" "$API/invocation/next"
  RID=$(header Request_Id "$H")
  FN=$(header Function_Name "$H")
  MEM=$(header Memory_Limit_In_Mb "$H")
  LIMIT=$(header Time_Limit_In_Ms "$H")
  curl -sS -o /dev/null -X POST "$API/invocation/response" \\
    -d "{\\"request_id\\": \\"$RID\\", \\"function_name\\": \\"$FN\\",
         \\"memory_mb\\": \\"$MEM\\", \\"time_limit_ms\\": \\"$LIMIT\\"}"
done
"""
)

# Posts a 1.5 MB response with "Expect: 100-continue" and waits up to a minute for the
# interim answer, as curl does (for a second) by default for large bodies.
LAMBDA_EXPECT_CONTINUE = (
    """#!/bin/sh
set -eu
API="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
H=$(mktemp)
BODY=$(mktemp)
"""
    + _HEADER_FN
    + """
{ printf '{"pad": "'; head -c 1500000 /dev/zero | tr '\\0' a; printf '"}'; } > "$BODY"
while true; do
  curl -sS -o /dev/null -D "$H" "$API/invocation/next"
  ID=$(header Lambda-Runtime-Aws-Request-Id "$H")
  curl -sS -o /dev/null --expect100-timeout 60 -H 'Expect: 100-continue' \\
    -X POST "$API/invocation/$ID/response" --data-binary "@$BODY"
done
"""
)


def ric_bootstrap() -> str:
    """awslambdaric, unmodified and vendored in the package (see :func:`vendored_ric`), run
    by the base interpreter of the test's Python, which instances can see."""
    python = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    return f"#!/bin/sh\nexec {python} -m awslambdaric app.handler\n"


def vendored_ric() -> dict[str, str | bytes]:
    """awslambdaric and its dependencies, copied from site-packages into the package, as
    `pip install awslambdaric --target .` would put them."""
    import awslambdaric

    site = Path(awslambdaric.__file__).parent.parent
    files: dict[str, str | bytes] = {}
    for top in ("awslambdaric", "simplejson", "snapshot_restore_py.py", "runtime_client"):
        for path in [site / top] if (site / top).is_file() else sorted((site / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                files[str(path.relative_to(site))] = path.read_bytes()
    for so in site.glob("runtime_client*.so"):
        files[so.name] = so.read_bytes()
    return files


# ---- Tencent SCF paths ---------------------------------------------------------------


def test_shell_bootstrap_example_scf_paths(server: Server) -> None:
    files = example_files("shell-bootstrap")
    assert "bootstrap" in files
    server.deploy(
        "shell-echo",
        files,
        runtime="custom",
        handler="bootstrap",
        executables=("bootstrap",),
        timeout_s=10,
    )

    first = server.invoke("shell-echo", {"hello": "scf", "n": [1, 2]})
    assert first["status"] == "succeeded", first
    assert first["cold_start"] is True
    assert first["result"] == {
        "echo": {"hello": "scf", "n": [1, 2]},
        "request_id": first["request_id"],
    }

    second = server.invoke("shell-echo", {"again": True})
    assert second["status"] == "succeeded", second
    assert second["cold_start"] is False
    assert second["request_id"] != first["request_id"]
    assert second["result"] == {"echo": {"again": True}, "request_id": second["request_id"]}

    # The bootstrap's own stdout is the call's log.
    lines = server.logs("shell-echo", request_id=second["request_id"])
    assert any(
        x["message"] == f"handling {second['request_id']}" and x["stream"] == "stdout"
        for x in lines
    ), lines


def test_scf_next_headers(server: Server) -> None:
    server.deploy(
        "scf-headers",
        {"bootstrap": SCF_HEADERS},
        runtime="custom",
        handler="bootstrap",
        executables=("bootstrap",),
        memory_mb=256,
        timeout_s=7,
    )
    r = server.invoke("scf-headers", {})
    assert r["status"] == "succeeded", r
    assert r["result"] == {
        "request_id": r["request_id"],
        "function_name": "scf-headers",
        "memory_mb": "256",
        "time_limit_ms": "7000",
    }


# ---- AWS Lambda paths ----------------------------------------------------------------


def test_shell_bootstrap_lambda_paths(server: Server) -> None:
    server.deploy(
        "lambda-echo",
        {"bootstrap": LAMBDA_ECHO},
        runtime="custom",
        handler="bootstrap",
        executables=("bootstrap",),
        timeout_s=10,
    )
    for cold, event in ((True, {"a": 1}), (False, ["x", None])):
        before_ms = time.time() * 1000
        r = server.invoke("lambda-echo", event)
        assert r["status"] == "succeeded", r
        assert r["cold_start"] is cold
        result = r["result"]
        assert result["id"] == r["request_id"]
        assert result["event"] == event
        assert result["arn"].endswith(":function:lambda-echo")
        assert result["trace"].startswith("Root=")
        # The deadline is "now + timeout" in epoch milliseconds.
        assert before_ms + 5_000 < result["deadline_ms"] < time.time() * 1000 + 10_000 + 1_000


def test_shell_bootstrap_lambda_error(server: Server) -> None:
    server.deploy(
        "lambda-error",
        {"bootstrap": LAMBDA_ERROR},
        runtime="custom",
        handler="bootstrap",
        executables=("bootstrap",),
        timeout_s=10,
    )
    first = server.invoke("lambda-error", {})
    assert first["status"] == "failed", first
    assert first["error"]["errorType"] == "Custom.PaymentDeclined"
    assert first["error"]["errorMessage"] == f"card declined in {first['request_id']}"
    assert "result" not in first
    # A reported error is a normal outcome: the instance stays and serves the next call.
    second = server.invoke("lambda-error", {})
    assert second["status"] == "failed", second
    assert second["cold_start"] is False
    assert second["error"]["errorMessage"] == f"card declined in {second['request_id']}"


def test_shell_bootstrap_lambda_init_error(server: Server) -> None:
    server.deploy(
        "lambda-init-error",
        {"bootstrap": LAMBDA_INIT_ERROR},
        runtime="custom",
        handler="bootstrap",
        executables=("bootstrap",),
        timeout_s=10,
    )
    started = time.monotonic()
    r = server.invoke("lambda-init-error", {})
    assert r["status"] == "failed", r
    assert r["error"]["errorType"] == "Custom.ConfigMissing"
    assert r["error"]["errorMessage"] == "DATABASE_URL is not set"
    assert r["cold_start"] is True
    # Reported at once, not after the init timeout (10 s by default) or the sleep.
    assert time.monotonic() - started < 8


def test_response_with_expect_100_continue(server: Server) -> None:
    """curl asks "Expect: 100-continue" before large bodies; the Runtime API must answer."""
    server.deploy(
        "lambda-expect",
        {"bootstrap": LAMBDA_EXPECT_CONTINUE},
        runtime="custom",
        handler="bootstrap",
        executables=("bootstrap",),
        timeout_s=5,
    )
    r = server.invoke("lambda-expect", {})
    assert r["status"] == "succeeded", r.get("error")
    assert r["result"] == {"pad": "a" * 1_500_000}


# ---- awslambdaric ------------------------------------------------------------------


def test_awslambdaric_example_handler(server: Server) -> None:
    app = example_files("awslambdaric")["app.py"]
    server.deploy(
        "ric",
        {"app.py": app, "bootstrap": ric_bootstrap(), **vendored_ric()},
        runtime="custom",
        handler="app.handler",
        executables=("bootstrap",),
        timeout_s=6,
    )
    first = server.invoke("ric", {"hello": "lambda"})
    assert first["status"] == "succeeded", first
    assert first["cold_start"] is True
    result = first["result"]
    assert result["event"] == {"hello": "lambda"}
    assert result["request_id"] == first["request_id"]
    assert result["function_name"] == "ric"
    # Remaining time comes from Lambda-Runtime-Deadline-Ms: below the 6 s timeout, well above 0.
    assert 1_000 < result["remaining_ms"] <= 6_000

    second = server.invoke("ric", {"n": 2})
    assert second["status"] == "succeeded", second
    assert second["cold_start"] is False
    assert second["result"]["request_id"] == second["request_id"] != first["request_id"]
    assert second["result"]["event"] == {"n": 2}
    lines = server.logs("ric", request_id=second["request_id"])
    assert any(x["message"] == "event: {'n': 2}" for x in lines), lines


def test_awslambdaric_handler_exception(server: Server) -> None:
    app = (
        "class PaymentDeclined(Exception):\n"
        "    pass\n\n"
        "def handler(event, context):\n"
        "    if event.get('ok'):\n"
        "        return {'ok': context.aws_request_id}\n"
        "    raise PaymentDeclined(f\"card {event['card']} declined\")\n"
    )
    server.deploy(
        "ric-raise",
        {"app.py": app, "bootstrap": ric_bootstrap(), **vendored_ric()},
        runtime="custom",
        handler="app.handler",
        executables=("bootstrap",),
        timeout_s=6,
    )
    failed = server.invoke("ric-raise", {"card": "4242"})
    assert failed["status"] == "failed", failed
    assert failed["error"]["errorType"] == "PaymentDeclined"
    assert failed["error"]["errorMessage"] == "card 4242 declined"
    # The runtime survives its handler's exception.
    ok = server.invoke("ric-raise", {"ok": True})
    assert ok["status"] == "succeeded", ok
    assert ok["cold_start"] is False
    assert ok["result"] == {"ok": ok["request_id"]}


def test_awslambdaric_import_error(server: Server) -> None:
    server.deploy(
        "ric-broken",
        {"app.py": "import no_such_module_here\n", "bootstrap": ric_bootstrap(), **vendored_ric()},
        runtime="custom",
        handler="app.handler",
        executables=("bootstrap",),
    )
    r = server.invoke("ric-broken", {})
    assert r["status"] == "failed", r
    assert r["error"]["errorType"] == "Runtime.ImportModuleError"
    assert "no_such_module_here" in r["error"]["errorMessage"]


# ---- deploy-time checks --------------------------------------------------------------


def test_custom_without_executable_bootstrap_is_refused(server: Server) -> None:
    cases = {
        "not executable": make_zip({"bootstrap": "#!/bin/sh\necho hi\n"}),
        "missing": make_zip({"app.py": "def handler(e, c):\n    return 1\n"}),
    }
    for case, package in cases.items():
        sha = server.upload(package)
        r = server.http.put(
            "/v1/functions/custom-refused",
            json={"runtime": "custom", "handler": "bootstrap", "code_sha256": sha},
        )
        assert r.status_code == 400, (case, r.text)
        assert r.json()["error"]["code"] == "Code.HandlerNotFound", (case, r.text)
        assert "bootstrap" in r.json()["error"]["message"]
    assert server.http.get("/v1/functions/custom-refused").status_code == 404


# ---- the other example ---------------------------------------------------------------


def test_hello_python_example(server: Server) -> None:
    """examples/hello-python (built-in runtime) runs as its README says."""
    server.deploy("hello-example", example_files("hello-python"), handler="app.handler")
    r = server.invoke("hello-example", {"name": "Ada"})
    assert r["status"] == "succeeded", r
    assert r["result"] == {"message": "Hello, Ada!", "request_id": r["request_id"]}
    assert server.invoke("hello-example", {})["result"]["message"] == "Hello, world!"
