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

HTTP services: a handler ``module:app`` names a WSGI or ASGI app (``app`` may be an
attribute path). Its events are ASGI scopes; for each, the runtime upgrades a second
connection (``GET .../invocation/{id}/stream``, ``Upgrade: nimbus-asgi``) into a channel
of framed ASGI messages, runs the app on it, closes it and posts the response (or the
error). ASGI apps run on one event loop for the instance's life, after their lifespan
startup (``Runtime.LifespanStartupFailed`` if it fails); WSGI apps run synchronously.

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


def _import(modname: str) -> ModuleType:
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
    return sys.modules[name]


def _load_handler(spec: str) -> Callable[[Any, Any], Any]:
    modname, dot, fname = spec.rpartition(".")
    if not dot or not modname or not fname:
        raise _Fault(
            "Runtime.MalformedHandlerName", f"Bad handler '{spec}': expected module.function"
        )
    module = _import(modname)
    try:
        return getattr(module, fname)
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


# ---- HTTP services (handler ``module:app``) ---------------------------------------------
#
# Every invocation's event is an ASGI scope (JSON: byte strings as latin-1 text). The
# runtime opens the request's channel, a second connection upgraded with
# ``GET .../invocation/{id}/stream`` (``Upgrade: nimbus-asgi``), and exchanges ASGI
# messages over it as frames: ``!II`` (header length, body length), a JSON header, raw
# body bytes (see nimbus/runtime_api/channel.py, of which this is a copy). When the app
# is done the channel is closed and the invocation answered, which frees the instance.
# ASGI apps run on one event loop kept for the instance's life (the lifespan protocol
# once, at init); WSGI apps run synchronously, their response iterable streamed.

_FRAME_HEAD = 8
_MAX_HEAD = 1 << 20
_MAX_BODY = 16 << 20
_PAYLOAD_KEYS = ("body", "bytes", "text")
_UPGRADE = "Connection: Upgrade\r\nUpgrade: nimbus-asgi\r\n"
_SERVED = b'{"statusCode":%d}'
#: How long a runtime waits for the platform to close a request's channel after its own end.
_CLOSE_WAIT_S = 10


def _frame(message: dict[str, Any]) -> list[bytes]:
    """One ASGI message as the pieces of its frame."""
    head: dict[str, Any] = {}
    body = b""
    for key, value in message.items():
        if key in _PAYLOAD_KEYS:
            if value is None:
                continue
            body = value.encode("utf-8") if key == "text" else bytes(value)
            head["~"] = key
        elif key == "headers":
            head[key] = [[bytes(n).decode("latin-1"), bytes(v).decode("latin-1")] for n, v in value]
        else:
            head[key] = value
    raw = json.dumps(head, separators=(",", ":")).encode()
    if len(raw) > _MAX_HEAD or len(body) > _MAX_BODY:
        raise ValueError(f"an ASGI message of {len(raw) + len(body)} bytes is too large")
    return [len(raw).to_bytes(4, "big") + len(body).to_bytes(4, "big"), raw, body]


def _unframe(head: bytes, body: bytes) -> dict[str, Any]:
    message = json.loads(head)
    key = message.pop("~", None)
    if key is not None:
        if key in ("bytes", "text"):
            message["bytes"] = message["text"] = None
        message[key] = body.decode("utf-8") if key == "text" else body
    if "headers" in message:
        message["headers"] = [
            (n.encode("latin-1"), v.encode("latin-1")) for n, v in message["headers"]
        ]
    return message


def _pieces(message: dict[str, Any]) -> list[dict[str, Any]]:
    """An HTTP body larger than one frame, as several ``more_body`` messages."""
    body = message.get("body") or b""
    if message.get("type") != "http.response.body" or len(body) <= _MAX_BODY:
        return [message]
    view = memoryview(body)
    more = message.get("more_body", False)
    parts = [view[i : i + _MAX_BODY] for i in range(0, len(body), _MAX_BODY)]
    last = len(parts) - 1
    return [
        {"type": "http.response.body", "body": bytes(p), "more_body": more or i < last}
        for i, p in enumerate(parts)
    ]


def _asgi_scope(event: bytes) -> dict[str, Any]:
    scope = json.loads(event)
    scope["headers"] = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in scope["headers"]]
    scope["raw_path"] = scope["raw_path"].encode("latin-1")
    scope["query_string"] = scope["query_string"].encode("latin-1")
    for key in ("client", "server"):
        if scope.get(key) is not None:
            scope[key] = tuple(scope[key])
    return scope


def _load_app(spec: str) -> Any:
    modname, _, attrs = spec.partition(":")
    if not modname or not attrs:
        raise _Fault("Runtime.MalformedHandlerName", f"Bad handler '{spec}': expected module:app")
    app: Any = _import(modname)
    for attr in attrs.split("."):
        try:
            app = getattr(app, attr)
        except AttributeError:
            raise _Fault(
                "Runtime.HandlerNotFound", f"App '{attrs}' missing on module '{modname}'"
            ) from None
    return app


def _is_async(fn: Any) -> bool:
    import asyncio
    import inspect

    if fn is None:
        return False
    if inspect.iscoroutinefunction(fn):
        return True
    marker = getattr(asyncio.coroutines, "_is_coroutine", None)  # asgiref's, Python < 3.12
    return marker is not None and getattr(fn, "_is_coroutine", None) is marker


def _call_of(klass: type) -> Any:
    """What calling an instance of ``klass`` runs (as defined, not bound)."""
    for base in klass.__mro__:
        if "__call__" in vars(base):
            return vars(base)["__call__"]
    return None


def _interface(app: Any) -> str:
    """``asgi3``, ``asgi2`` or ``wsgi``, as uvicorn's ``interface=auto`` decides, with WSGI
    for what is not asynchronous: a class is ASGI 3 if awaitable, ASGI 2 if its instances'
    ``__call__`` is a coroutine function, else WSGI; a coroutine function, or an object
    whose ``__call__`` is one, is ASGI 3; anything else callable is WSGI."""
    import inspect

    if inspect.isclass(app):
        if hasattr(app, "__await__"):
            return "asgi3"
        return "asgi2" if _is_async(_call_of(app)) else "wsgi"
    if _is_async(app) or _is_async(_call_of(type(app))):
        return "asgi3"
    if not callable(app):
        raise _Fault(
            "Runtime.HandlerNotFound", f"'{_ENV.get('_HANDLER')}' is not a WSGI or ASGI app"
        )
    return "wsgi"


def _address() -> Any:
    path = _ENV.get("NIMBUS_RUNTIME_API_SOCKET")
    if path:
        return path
    host, _, port = (_ENV.get("AWS_LAMBDA_RUNTIME_API") or "127.0.0.1:9001").rpartition(":")
    return (host.strip("[]"), int(port))


def _stream_request(request_id: str) -> bytes:
    return (
        f"GET {_API}/invocation/{request_id}/stream HTTP/1.1\r\nHost: localhost\r\n{_UPGRADE}\r\n"
    ).encode("latin-1")


def _check_upgrade(head: bytes) -> None:
    status = int(head.split(None, 2)[1])
    if status != 101:
        raise RuntimeError(f"the Runtime API refused the request's stream ({status})")


def _answer(
    request_id: str, served: int | None, exc: BaseException | None
) -> tuple[str, bytes, str]:
    """The invocation's answer: the path to post to, the body, the extra headers."""
    if exc is None:
        return f"{_API}/invocation/{request_id}/response", _SERVED % (served or 0), _JSON
    error = _error(exc)
    error["requestId"] = request_id
    body = json.dumps(error, ensure_ascii=False).encode("utf-8", "replace")
    return f"{_API}/invocation/{request_id}/error", body, _UNHANDLED


# ---- ASGI ---------------------------------------------------------------------------------


class _AsyncClient:
    """The Runtime API on the event loop: one keep-alive connection (answers always carry
    Content-Length), reconnected once when it drops."""

    def __init__(self) -> None:
        self._address = _address()
        self._reader: Any = None
        self._writer: Any = None

    async def connect(self) -> tuple[Any, Any]:
        import asyncio

        if isinstance(self._address, str):
            return await asyncio.open_unix_connection(self._address)
        return await asyncio.open_connection(*self._address)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        import asyncio

        head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}"
        if method != "GET":
            head += f"Content-Length: {len(body)}\r\n"
        data = (head + "\r\n").encode("latin-1") + body
        for attempt in (1, 2):
            try:
                if self._writer is None:
                    self._reader, self._writer = await self.connect()
                self._writer.write(data)
                await self._writer.drain()
                while True:
                    raw = await self._reader.readuntil(b"\r\n\r\n")
                    lines = raw.decode("latin-1").split("\r\n")
                    status = int(lines[0].split(None, 2)[1])
                    found = {}
                    for line in lines[1:-2]:
                        name, _, value = line.partition(":")
                        found[name.strip().lower()] = value.strip()
                    if status >= 200:
                        break
                answer = await self._reader.readexactly(int(found.get("content-length") or 0))
                if found.get("connection", "").lower() == "close":
                    self.close()
                return status, found, answer
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                self.close()
                if attempt == 2:
                    raise ConnectionError("the Runtime API closed the connection") from None
        raise AssertionError("unreachable")


class _AsyncChannel:
    __slots__ = ("_reader", "_writer")

    def __init__(self, reader: Any, writer: Any) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, client: _AsyncClient, request_id: str) -> _AsyncChannel:
        reader, writer = await client.connect()
        writer.write(_stream_request(request_id))
        _check_upgrade(await reader.readuntil(b"\r\n\r\n"))
        return cls(reader, writer)

    async def recv(self) -> dict[str, Any] | None:
        import asyncio

        try:
            prefix = await self._reader.readexactly(_FRAME_HEAD)
            head_len = int.from_bytes(prefix[:4], "big")
            body_len = int.from_bytes(prefix[4:], "big")
            head = await self._reader.readexactly(head_len)
            body = await self._reader.readexactly(body_len) if body_len else b""
        except (OSError, asyncio.IncompleteReadError):
            return None
        return _unframe(head, body)

    async def send(self, message: dict[str, Any]) -> None:
        self._writer.writelines(_frame(message))
        await self._writer.drain()

    async def close(self) -> None:
        """End the channel: half-close, then wait for the platform to close its end.
        (Closing a socket with unread input resets it, and the platform would lose the
        frames it had not read yet, so late frames of the platform's are read and dropped.)"""
        import asyncio

        try:
            if self._writer.can_write_eof():
                self._writer.write_eof()
            await asyncio.wait_for(self._drain(), _CLOSE_WAIT_S)
        except (OSError, asyncio.TimeoutError):  # noqa: UP041 (not TimeoutError before 3.11)
            pass
        finally:
            self._writer.close()

    async def _drain(self) -> None:
        while await self._reader.read(65536):
            pass


async def _asgi_call(app: Any, scope: dict[str, Any], chan: _AsyncChannel) -> int | None:
    """Run one request or WebSocket session; the response's status (None for WebSockets)."""
    http = scope["type"] == "http"
    gone_message = {"type": "http.disconnect"} if http else {"type": "websocket.disconnect"}
    state = {"status": None, "done": False, "gone": False, "closed": False}

    async def receive() -> dict[str, Any]:
        if state["gone"]:
            return dict(gone_message, code=1006) if not http else dict(gone_message)
        message = await chan.recv()
        if message is None:
            state["gone"] = True
            return dict(gone_message, code=1006) if not http else dict(gone_message)
        if message["type"] in ("http.disconnect", "websocket.disconnect"):
            state["gone"] = True
        return message

    async def send(message: dict[str, Any]) -> None:
        kind = message["type"]
        if http:
            if kind == "http.response.start":
                if state["status"] is not None:
                    raise RuntimeError("the response has already started")
                state["status"] = int(message["status"])
            elif kind == "http.response.body":
                if state["status"] is None:
                    raise RuntimeError("send http.response.start before http.response.body")
                if state["done"]:
                    raise RuntimeError("the response has already ended")
                state["done"] = not message.get("more_body", False)
            else:
                raise RuntimeError(f"unexpected ASGI message {kind!r} for an HTTP request")
            if state["gone"]:
                return  # ASGI 2.3: the client left, the response goes nowhere
            try:
                for piece in _pieces(message):
                    await chan.send(piece)
            except OSError:
                state["gone"] = True
            return
        if not kind.startswith("websocket."):
            raise RuntimeError(f"unexpected ASGI message {kind!r} for a WebSocket")
        if state["gone"] or state["closed"]:
            raise OSError("the WebSocket client disconnected")  # as uvicorn does (ASGI 2.4)
        if kind == "websocket.close" or kind == "websocket.http.response.body":
            state["closed"] = kind == "websocket.close" or not message.get("more_body", False)
        await chan.send(message)

    await app(scope, receive, send)
    if http and not state["gone"] and not state["done"]:
        what = "without starting a response" if state["status"] is None else "before its end"
        raise _Fault("Runtime.IncompleteResponse", f"the ASGI app returned {what}")
    return state["status"]


async def _lifespan(app: Any, state: dict[str, Any]) -> Any:
    """Run the app's lifespan startup; the task that keeps it alive (or None when the app
    does not speak the protocol). A failed startup is an init error."""
    import asyncio

    loop = asyncio.get_running_loop()
    inbox: Any = asyncio.Queue()
    inbox.put_nowait({"type": "lifespan.startup"})
    answer: Any = loop.create_future()

    async def send(message: dict[str, Any]) -> None:
        if not answer.done():
            answer.set_result(message)

    async def run() -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        scope["state"] = state
        try:
            await app(scope, inbox.get, send)
        except BaseException as exc:  # before an answer: the app does not speak lifespan
            if not answer.done():
                answer.set_result(None)
            elif not isinstance(exc, asyncio.CancelledError):
                sys.stderr.write(f"[ERROR] the ASGI lifespan failed: {exc!r}\n")
        if not answer.done():
            answer.set_result(None)

    task = loop.create_task(run())
    message = await answer
    if message is None:
        return None
    if message.get("type") == "lifespan.startup.failed":
        text = message.get("message") or "lifespan.startup.failed"
        raise _Fault("Runtime.LifespanStartupFailed", f"the ASGI app's startup failed: {text}")
    return task


async def _serve_asgi(app: Any, state: dict[str, Any]) -> None:
    client = _AsyncClient()
    while True:
        status, headers, body = await client.request("GET", _NEXT)
        if status != 200:
            raise RuntimeError(f"Runtime API answered {status} to next: {body[:500]!r}")
        request_id = _Context.current_request_id = headers.get("lambda-runtime-aws-request-id", "")
        served = error = None
        try:
            scope = _asgi_scope(body)
            scope["state"] = dict(state)
            chan = await _AsyncChannel.open(client, request_id)
            try:
                served = await _asgi_call(app, scope, chan)
            finally:
                await chan.close()
        except Exception as exc:
            error = exc
        path, payload, extra = _answer(request_id, served, error)
        _flush()
        status, _, body = await client.request("POST", path, payload, extra)
        if status >= 300:
            sys.stderr.write(f"[WARN] Runtime API answered {status} to {path}: {body[:500]!r}\n")


def _asgi_runner(app: Any, kind: str) -> Callable[[], None]:
    """Start the app (lifespan) now; the returned function serves requests forever."""
    import asyncio

    if kind == "asgi2":
        asgi2 = app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await asgi2(scope)(receive, send)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    state: dict[str, Any] = {}
    lifespan = loop.run_until_complete(_lifespan(app, state))

    def serve() -> None:
        try:
            loop.run_until_complete(_serve_asgi(app, state))
        finally:
            if lifespan is not None:
                lifespan.cancel()

    return serve


# ---- WSGI ---------------------------------------------------------------------------------


class _SyncChannel:
    """The request's channel, blocking; frames read ahead of the app are kept."""

    __slots__ = ("_buf", "_pending", "_sock", "gone")

    def __init__(self, sock: socket.socket, rest: bytes) -> None:
        import collections

        self._sock = sock
        self._buf = bytearray(rest)
        self._pending: Any = collections.deque()
        self.gone = False

    @classmethod
    def open(cls, request_id: str) -> _SyncChannel:
        address = _address()
        if isinstance(address, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(address)
        else:
            sock = socket.create_connection(address)
        sock.sendall(_stream_request(request_id))
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("the Runtime API closed the request's stream")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        _check_upgrade(head)
        return cls(sock, rest)

    def _parse(self) -> None:
        buf = self._buf
        while len(buf) >= _FRAME_HEAD:
            head_len = int.from_bytes(buf[:4], "big")
            end = _FRAME_HEAD + head_len + int.from_bytes(buf[4:8], "big")
            if len(buf) < end:
                return
            message = _unframe(
                bytes(buf[_FRAME_HEAD : _FRAME_HEAD + head_len]),
                bytes(buf[_FRAME_HEAD + head_len : end]),
            )
            del buf[:end]
            self._pending.append(message)
            if message["type"] == "http.disconnect":
                self.gone = True

    def recv(self) -> dict[str, Any] | None:
        while True:
            self._parse()
            if self._pending:
                return self._pending.popleft()
            try:
                chunk = self._sock.recv(262144)
            except OSError:
                chunk = b""
            if not chunk:
                self.gone = True
                return None
            self._buf += chunk

    def poll(self) -> bool:
        """Read what already arrived, without waiting; True once the client is gone."""
        if not self.gone and len(self._buf) < (1 << 20):
            try:
                chunk = self._sock.recv(262144, socket.MSG_DONTWAIT)
                if chunk:
                    self._buf += chunk
                    self._parse()
                else:
                    self.gone = True
            except BlockingIOError:
                pass
            except OSError:
                self.gone = True
        return self.gone

    def send(self, message: dict[str, Any]) -> None:
        for piece in _pieces(message):
            self._sock.sendall(b"".join(_frame(piece)))

    def close(self) -> None:
        """Half-close, wait for the platform's end to close, close (see _AsyncChannel)."""
        sock = self._sock
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(_CLOSE_WAIT_S)
            while sock.recv(65536):
                pass
        except OSError:
            pass
        finally:
            sock.close()


class _WsgiInput:
    """``wsgi.input``: the request body, read from the channel as the app asks for it."""

    def __init__(self, chan: _SyncChannel) -> None:
        self._chan = chan
        self._buf = bytearray()
        self._done = False

    def _more(self) -> bool:
        if self._done:
            return False
        message = self._chan.recv()
        if message is None or message["type"] != "http.request":
            self._done = True
            return False
        self._buf += message.get("body") or b""
        self._done = not message.get("more_body", False)
        return True

    def _take(self, size: int) -> bytes:
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._more():
                pass
            return self._take(len(self._buf))
        while len(self._buf) < size and self._more():
            pass
        return self._take(size)

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        while True:
            end = self._buf.find(b"\n") + 1
            if end or (limit is not None and len(self._buf) >= limit) or not self._more():
                break
        if not end:
            end = len(self._buf)
        return self._take(end if limit is None else min(end, limit))

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines, total = [], 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Any:
        return iter(self.readline, b"")


def _environ(scope: dict[str, Any], chan: _SyncChannel) -> dict[str, Any]:
    root, path = scope["root_path"], scope["path"]
    if path.startswith(root):
        path = path[len(root) :]
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    query = scope["query_string"].decode("latin-1")
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root.encode("utf-8").decode("latin-1"),
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": query,
        "RAW_URI": scope["raw_path"].decode("latin-1") + ("?" + query if query else ""),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": "HTTP/" + scope.get("http_version", "1.1"),
        "REMOTE_ADDR": str(client[0]),
        "REMOTE_PORT": str(client[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": _WsgiInput(chan),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }
    environ["REQUEST_URI"] = environ["RAW_URI"]
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        key = name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + name
        if key in environ:
            value = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + value
        environ[key] = value
    return environ


def _wsgi_call(app: Any, scope: dict[str, Any], chan: _SyncChannel) -> int | None:
    """Run one request through a WSGI app; the response's status."""
    if scope["type"] != "http":
        chan.send({"type": "websocket.close", "code": 1000})  # WSGI has no WebSockets: 403
        return None
    started: list[Any] = []  # [status, headers] once start_response was called
    sent = [False]

    def start(more: bool, body: bytes) -> None:
        status, headers = started
        chan.send(
            {
                "type": "http.response.start",
                "status": int(status.split(None, 1)[0]),
                "headers": [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers],
            }
        )
        sent[0] = True
        chan.send({"type": "http.response.body", "body": body, "more_body": more})

    def write(data: bytes) -> None:
        if not started:
            raise AssertionError("write() before start_response()")
        if sent[0]:
            chan.send({"type": "http.response.body", "body": bytes(data), "more_body": True})
        else:
            start(True, bytes(data))

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info:
            try:
                if sent[0]:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif started:
            raise AssertionError("start_response() called twice without exc_info")
        started[:] = [status, headers]
        return write

    result = app(_environ(scope, chan), start_response)
    try:
        if isinstance(result, (list, tuple)) and len(result) == 1 and not sent[0]:
            if not started:
                raise AssertionError("the WSGI app returned without calling start_response()")
            start(False, bytes(result[0]))  # the common case: one body, two frames
            return int(started[0].split(None, 1)[0])
        for chunk in result:
            if chunk:
                write(chunk)
            if chan.poll():  # the client left: stop producing
                return int(started[0].split(None, 1)[0]) if started else None
        if not started:
            raise AssertionError("the WSGI app returned without calling start_response()")
        if sent[0]:
            chan.send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            start(False, b"")
        return int(started[0].split(None, 1)[0])
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()


def _wsgi_runner(client: _Client, app: Any) -> Callable[[], None]:
    def serve() -> None:
        while True:
            status, headers, body = client.request("GET", _NEXT)
            if status != 200:
                raise RuntimeError(f"Runtime API answered {status} to next: {body[:500]!r}")
            request_id = headers.get("lambda-runtime-aws-request-id", "")
            _Context.current_request_id = request_id
            served = error = None
            try:
                scope = _asgi_scope(body)
                chan = _SyncChannel.open(request_id)
                try:
                    served = _wsgi_call(app, scope, chan)
                finally:
                    chan.close()
            except Exception as exc:
                error = exc
            path, payload, extra = _answer(request_id, served, error)
            _flush()
            status, _, body = client.request("POST", path, payload, extra)
            if status >= 300:
                sys.stderr.write(
                    f"[WARN] Runtime API answered {status} to {path}: {body[:500]!r}\n"
                )

    return serve


def _service(client: _Client, spec: str) -> Callable[[], None]:
    """Load the app of ``module:app`` and start it; the function that serves it."""
    app = _load_app(spec)
    kind = _interface(app)
    if kind == "wsgi":
        return _wsgi_runner(client, app)
    return _asgi_runner(app, kind)


def _relay_storage(environ: Any) -> None:
    """Relay ``AWS_ENDPOINT_URL_S3`` (``http://127.0.0.1:9001/s3``, TCP, what boto3 speaks)
    to the Runtime API socket, where the platform serves the namespace's object storage.
    One thread accepts, two per connection copy bytes; ``_thread`` costs no import. If the
    port is taken (no network namespace: the ``process`` sandbox), any free port is used
    and the variable says which."""
    path = environ.get("NIMBUS_RUNTIME_API_SOCKET")
    url = environ.get("AWS_ENDPOINT_URL_S3") or ""
    prefix = "http://127.0.0.1:"
    if not path or not url.startswith(prefix):
        return
    import _thread

    port_text, _, rest = url[len(prefix) :].partition("/")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", int(port_text)))
    except (OSError, ValueError):
        listener.bind(("127.0.0.1", 0))
        environ["AWS_ENDPOINT_URL_S3"] = f"{prefix}{listener.getsockname()[1]}/{rest}"
    listener.listen(64)

    def pump(src: socket.socket, dst: socket.socket) -> None:
        # Ends at EOF (passed on as one) or at an error; the sockets close when both
        # directions have ended and nothing refers to them.
        try:
            data = src.recv(262144)
            while data:
                dst.sendall(data)
                data = src.recv(262144)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                upstream.connect(path)
            except OSError:
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _thread.start_new_thread(pump, (conn, upstream))
            _thread.start_new_thread(pump, (upstream, conn))

    _thread.start_new_thread(accept, ())


def main() -> None:
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)
    _Context.configure(_ENV)
    _relay_storage(_ENV)
    task_root = _ENV.get("LAMBDA_TASK_ROOT") or os.getcwd()
    sys.path.insert(0, task_root)
    os.chdir(task_root)
    if "logging" in sys.modules:
        _setup_logging(sys.modules["logging"])
    else:
        sys.meta_path.insert(0, _LoggingHook)
    client = _Client(_ENV)
    spec = _ENV.get("_HANDLER", "")
    try:
        if ":" in spec:  # module:app, an HTTP service
            serve = _service(client, spec)
        else:
            handler = _load_handler(spec)
    except Exception as exc:
        error = _error(exc)
        _flush()
        header = f"{_JSON}Lambda-Runtime-Function-Error-Type: {error['errorType']}\r\n"
        client.request("POST", f"{_API}/init/error", json.dumps(error).encode(), header)
        sys.exit(1)
    try:
        if ":" in spec:
            serve()
        else:
            _serve(client, handler)
    except OSError as exc:  # the Runtime API is gone even after a reconnect: the instance ends
        sys.stderr.write(f"[ERROR] Runtime API unreachable: {exc}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
