"""Nimbus's built-in Python runtime: runs inside an instance, imports nothing from Nimbus.

Started as ``python3.X -I -S bootstrap.py`` (standard library only, Python 3.8+).

Environment: ``_HANDLER`` (``app.handler``, ``pkg.mod.fn``, ``subdir/app.handler``),
``LAMBDA_TASK_ROOT`` (the code; put first on sys.path and made the cwd),
``NIMBUS_RUNTIME_API_SOCKET`` (unix socket of the Runtime API) or else
``AWS_LAMBDA_RUNTIME_API`` (``host:port``), and the ``AWS_LAMBDA_FUNCTION_*``
descriptors, ``NIMBUS_NAMESPACE``, ``AWS_REGION``, ``AWS_LAMBDA_LOG_LEVEL``.

Protocol (AWS Lambda Runtime API, HTTP/1.1, one keep-alive connection, reconnected
once when it drops):

1. Init: import the handler module once, look the function up. On failure
   ``POST /2018-06-01/runtime/init/error`` (header ``Lambda-Runtime-Function-Error-Type``,
   body ``{errorType, errorMessage, stackTrace}``), then exit 1. Types:
   ``Runtime.MalformedHandlerName``, ``Runtime.ImportModuleError``,
   ``Runtime.UserCodeSyntaxError``, ``Runtime.HandlerNotFound``, or the class name of
   any other exception raised by module-level code.
2. Loop: ``GET /2018-06-01/runtime/invocation/next`` gives the event (JSON body, empty
   means ``{}``) and headers ``Lambda-Runtime-Aws-Request-Id``, ``-Deadline-Ms``,
   ``-Invoked-Function-Arn``, ``-Trace-Id``, ``-Client-Context``, ``-Cognito-Identity``.
3. ``handler(event, context)``; its JSON goes to ``POST .../invocation/{id}/response``.
4. An ``Exception`` goes to ``POST .../invocation/{id}/error`` (header ``Unhandled``,
   body ``{errorType, errorMessage, requestId, stackTrace}``, user frames only); a result
   that is not JSON gives ``Runtime.MarshalError``. ``SystemExit`` ends the process.

stdout/stderr are line-buffered and flushed before every post, so all output of a call
is in the platform's pipe before its answer. The root logger is configured (stdout,
Lambda's line format with the request id) when user code first imports ``logging``.
The HTTP client is hand-written: ``http.client`` alone costs ~18 ms of cold start.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from types import SimpleNamespace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType, TracebackType
    from typing import Any

_API = "/2018-06-01/runtime"
_NEXT = f"{_API}/invocation/next"
_JSON = "Content-Type: application/json\r\n"
_UNHANDLED = _JSON + "Lambda-Runtime-Function-Error-Type: Unhandled\r\n"
_ENV = os.environ


class _Fault(Exception):
    """A failure of the runtime contract (not of user code), with a stable ``Runtime.*`` type."""

    def __init__(self, error_type: str, message: str, stack: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.stack = stack or []


class _Client:
    """Minimal HTTP/1.1 keep-alive client for the Runtime API, over a unix socket or TCP."""

    __slots__ = ("_address", "_buf", "_host", "_sock")

    def __init__(self, environ: Any) -> None:
        path = environ.get("NIMBUS_RUNTIME_API_SOCKET")
        api = environ.get("AWS_LAMBDA_RUNTIME_API") or "127.0.0.1:9001"
        host, _, port = api.rpartition(":")
        self._address: str | tuple[str, int] = path or (host.strip("[]"), int(port))
        self._host = "localhost" if path else api
        self._buf = bytearray()
        self._sock: socket.socket | None = None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buf.clear()

    def _connect(self) -> socket.socket:
        if isinstance(self._address, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self._address)
        else:
            sock = socket.create_connection(self._address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        return sock

    def request(
        self, method: str, path: str, body: bytes = b"", headers: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request (reconnecting once if the connection dropped); return the answer."""
        head = f"{method} {path} HTTP/1.1\r\nHost: {self._host}\r\n{headers}"
        if method != "GET":
            head += f"Content-Length: {len(body)}\r\n"
        data = (head + "\r\n").encode("latin-1") + body
        for attempt in (1, 2):
            try:
                sock = self._sock or self._connect()
                sock.sendall(data)
                return self._response()
            except OSError:  # ConnectionError included; a second failure ends the runtime
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _fill(self) -> None:
        chunk = self._sock.recv(65536) if self._sock else b""
        if not chunk:
            raise ConnectionError("the Runtime API closed the connection")
        self._buf += chunk

    def _take(self, size: int) -> bytes:
        buf = self._buf
        while len(buf) < size:
            self._fill()
        data = bytes(buf[:size])
        del buf[:size]
        return data

    def _line(self) -> bytes:
        while (end := self._buf.find(b"\r\n")) < 0:
            self._fill()
        return self._take(end + 2)[:-2]

    def _response(self) -> tuple[int, dict[str, str], bytes]:
        buf = self._buf
        while True:
            while (end := buf.find(b"\r\n\r\n")) < 0:
                self._fill()
            lines = self._take(end + 4).decode("latin-1").split("\r\n")
            status = int(lines[0].split(None, 2)[1])
            headers = {}
            for line in lines[1:-2]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if status >= 200:
                break  # 1xx answers are interim: skip them
        if status in (204, 304):
            body = b""
        elif "content-length" in headers:
            body = self._take(int(headers["content-length"]))
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while (size := int(self._line().split(b";", 1)[0], 16)) > 0:
                parts.append(self._take(size))
                self._take(2)
            while self._line():  # trailers
                pass
            body = b"".join(parts)
        else:  # delimited by the end of the connection
            try:
                while True:
                    self._fill()
            except ConnectionError:
                pass
            body = bytes(buf)
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body


class _Context:
    """Lambda's ``context`` and SCF's in one object; per-process values are class attributes."""

    __slots__ = (
        "_deadline_ms",
        "aws_request_id",
        "client_context",
        "identity",
        "invoked_function_arn",
        "time_limit_in_ms",
    )
    current_request_id = ""  # of the call being served, for the logging filter
    _KEYS = ("request_id", "function_name", "function_version", "namespace")
    _KEYS += ("time_limit_in_ms", "memory_limit_in_mb", "environ")
    # Per-process values, set by configure() when the runtime starts (not at import:
    # a zygote imports this module once and forks many instances from it).
    function_name = function_version = memory_limit_in_mb = ""
    log_group_name = log_stream_name = namespace = region = environ = ""

    @classmethod
    def configure(cls, env: Any) -> None:
        cls.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME") or "function"
        cls.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION") or "$LATEST"
        cls.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or "128"
        cls.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME") or (
            f"/aws/lambda/{cls.function_name}"
        )
        cls.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME") or (
            f"{time.strftime('%Y/%m/%d', time.gmtime())}/[{cls.function_version}]{os.getpid():032x}"
        )
        cls.namespace = env.get("NIMBUS_NAMESPACE") or "default"
        cls.region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        cls.environ = ";".join(f"{k}={v}" for k, v in env.items())

    def __init__(self, request_id: str, headers: dict[str, str], now_ms: int) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = headers.get("lambda-runtime-invoked-function-arn") or (
            f"arn:aws:lambda:{self.region}:000000000000:function:{self.function_name}"
        )
        deadline = headers.get("lambda-runtime-deadline-ms")
        self._deadline_ms = int(deadline) if deadline else now_ms + 900_000
        self.time_limit_in_ms = max(self._deadline_ms - now_ms, 0)
        self.identity = _NO_IDENTITY
        self.client_context = None
        cognito = headers.get("lambda-runtime-cognito-identity")
        client = headers.get("lambda-runtime-client-context")
        if cognito or client:
            self._parse_json_headers(cognito, client)

    def _parse_json_headers(self, cognito: str | None, client: str | None) -> None:
        try:
            if cognito:
                ids = json.loads(cognito)
                self.identity = SimpleNamespace(
                    cognito_identity_id=ids.get("cognitoIdentityId"),
                    cognito_identity_pool_id=ids.get("cognitoIdentityPoolId"),
                )
            if client:
                cc = json.loads(client)
                app = cc.get("client")
                self.client_context = SimpleNamespace(
                    client=SimpleNamespace(**{f: app.get(f) for f in _CLIENT_FIELDS})
                    if app
                    else None,
                    custom=cc.get("custom"),
                    env=cc.get("env"),
                )
        except (ValueError, AttributeError) as exc:
            raise _Fault("Runtime.LambdaContextUnmarshalError", f"Bad context: {exc}") from None

    @property
    def request_id(self) -> str:
        return self.aws_request_id

    def get_remaining_time_in_millis(self) -> int:
        remaining = self._deadline_ms - int(time.time() * 1000)
        return remaining if remaining > 0 else 0

    def __getitem__(self, key: str) -> Any:
        if key in self._KEYS:
            return getattr(self, key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self._KEYS else default

    def __contains__(self, key: object) -> bool:
        return key in self._KEYS

    def keys(self) -> tuple[str, ...]:
        return self._KEYS

    def __repr__(self) -> str:
        return f"LambdaContext(request_id={self.aws_request_id!r}, function_name={self.function_name!r})"


_NO_IDENTITY = SimpleNamespace(cognito_identity_id=None, cognito_identity_pool_id=None)
_CLIENT_FIELDS = ("installation_id", "app_title", "app_version_name", "app_version_code")
_CLIENT_FIELDS += ("app_package_name",)


def _setup_logging(logging: ModuleType) -> None:
    """Root logger → stdout in Lambda's format, the current request id on every line."""

    class RequestIdFilter(logging.Filter):
        def filter(self, record: Any) -> bool:
            record.aws_request_id = _Context.current_request_id
            return True

    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
        "%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = logging.getLevelName((_ENV.get("AWS_LAMBDA_LOG_LEVEL") or "INFO").upper())
    root.setLevel(level if isinstance(level, int) else logging.INFO)


class _LoggingHook:
    """Configures ``logging`` when user code first imports it (up front it costs ~8 ms).

    The class is a meta path finder; its instances wrap the real loader of ``logging``.
    """

    __slots__ = ("_loader",)

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _setup_logging(module)

    @classmethod
    def find_spec(cls, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "logging":
            return None
        sys.meta_path.remove(cls)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find else None
            if spec is not None and spec.loader is not None:
                spec.loader = cls(spec.loader)
                return spec
        return None


def _stack(tb: TracebackType | None) -> list[str]:
    """Lambda-style ``stackTrace`` lines, without the runtime's own and importlib's frames."""
    import linecache  # only on errors: keeps it off the cold start

    lines = []
    while tb is not None:
        code = tb.tb_frame.f_code
        filename = code.co_filename
        if filename != _OWN_FILE and not filename.startswith("<frozen importlib"):
            entry = f'  File "{filename}", line {tb.tb_lineno}, in {code.co_name}\n'
            source = linecache.getline(filename, tb.tb_lineno, tb.tb_frame.f_globals).strip()
            lines.append(f"{entry}    {source}\n" if source else entry)
        tb = tb.tb_next
    return lines


_OWN_FILE = _stack.__code__.co_filename


def _error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, _Fault):
        error_type, stack = exc.error_type, exc.stack
    else:
        error_type, stack = type(exc).__name__, _stack(exc.__traceback__)
    message = str(exc)
    trace = f"\nTraceback (most recent call last):\n{''.join(stack)}" if stack else "\n"
    sys.stderr.write(f"[ERROR] {error_type}: {message}{trace}")
    return {"errorType": error_type, "errorMessage": message, "stackTrace": stack}


def _flush() -> None:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # the user closed or broke a stream
        pass


def _load_handler(spec: str) -> Callable[[Any, Any], Any]:
    modname, dot, fname = spec.rpartition(".")
    if not dot or not modname or not fname:
        raise _Fault(
            "Runtime.MalformedHandlerName", f"Bad handler '{spec}': expected module.function"
        )
    name = modname.replace("/", ".")
    try:
        __import__(name)
    except ImportError as exc:
        message = f"Unable to import module '{modname}': {exc}"
        raise _Fault("Runtime.ImportModuleError", message, _stack(exc.__traceback__)) from None
    except SyntaxError as exc:
        stack = [f'  File "{exc.filename}", line {exc.lineno}\n    {(exc.text or "").strip()}\n']
        message = f"Syntax error in module '{modname}': {exc}"
        raise _Fault("Runtime.UserCodeSyntaxError", message, stack) from None
    try:
        return getattr(sys.modules[name], fname)
    except AttributeError:
        raise _Fault(
            "Runtime.HandlerNotFound", f"Handler '{fname}' missing on module '{modname}'"
        ) from None


def _invoke(
    handler: Callable[[Any, Any], Any], request_id: str, headers: dict[str, str], body: bytes
) -> bytes:
    context = _Context(request_id, headers, int(time.time() * 1000))
    try:
        event = json.loads(body) if body else {}
    except ValueError as exc:
        raise _Fault("Runtime.UnmarshalError", f"Unable to unmarshal input: {exc}") from None
    result = handler(event, context)
    try:
        return json.dumps(result, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError, OverflowError) as exc:
        raise _Fault("Runtime.MarshalError", f"Unable to marshal response: {exc}") from None


def _serve(client: _Client, handler: Callable[[Any, Any], Any]) -> None:
    environ, dumps = _ENV, json.dumps
    while True:
        status, headers, body = client.request("GET", _NEXT)
        if status != 200:
            raise RuntimeError(f"Runtime API answered {status} to next: {body[:500]!r}")
        request_id = _Context.current_request_id = headers.get("lambda-runtime-aws-request-id", "")
        trace_id = headers.get("lambda-runtime-trace-id")
        if trace_id:
            environ["_X_AMZN_TRACE_ID"] = trace_id
        elif "_X_AMZN_TRACE_ID" in environ:
            del environ["_X_AMZN_TRACE_ID"]
        try:
            payload = _invoke(handler, request_id, headers, body)
            path, extra = f"{_API}/invocation/{request_id}/response", _JSON
        except Exception as exc:
            error = _error(exc)
            error["requestId"] = request_id
            payload = dumps(error, ensure_ascii=False).encode("utf-8", "replace")
            path, extra = f"{_API}/invocation/{request_id}/error", _UNHANDLED
        _flush()
        status, _, body = client.request("POST", path, payload, extra)
        if status >= 300:
            sys.stderr.write(f"[WARN] Runtime API answered {status} to {path}: {body[:500]!r}\n")


def main() -> None:
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)
    _Context.configure(_ENV)
    task_root = _ENV.get("LAMBDA_TASK_ROOT") or os.getcwd()
    sys.path.insert(0, task_root)
    os.chdir(task_root)
    if "logging" in sys.modules:
        _setup_logging(sys.modules["logging"])
    else:
        sys.meta_path.insert(0, _LoggingHook)
    client = _Client(_ENV)
    try:
        handler = _load_handler(_ENV.get("_HANDLER", ""))
    except Exception as exc:
        error = _error(exc)
        _flush()
        header = f"{_JSON}Lambda-Runtime-Function-Error-Type: {error['errorType']}\r\n"
        client.request("POST", f"{_API}/init/error", json.dumps(error).encode(), header)
        sys.exit(1)
    try:
        _serve(client, handler)
    except OSError as exc:  # the Runtime API is gone even after a reconnect: the instance ends
        sys.stderr.write(f"[ERROR] Runtime API unreachable: {exc}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
