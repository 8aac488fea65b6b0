"""A typed, synchronous HTTP client for Nimbus's ``/v1`` API.

Shared by the ``nimbus`` CLI and by SDK users::

    with NimbusClient("http://127.0.0.1:8080", token) as client:
        upload = client.upload_code(zip_bytes)
        client.put_function("hello", FunctionSpec("python3.11", "app.handler", upload.sha256))
        outcome = client.invoke("hello", {"name": "world"})
        version, _new = client.publish_version("hello")
        client.put_alias("hello", "prod", int(version.version))
        outcome = client.invoke("hello", {"name": "world"}, qualifier="prod")
        request_id = client.invoke_async("hello", {"name": "later"})  # queued, 202
        status = client.get_invocation(request_id)  # .status, .result, .error
        client.create_trigger("hello", "nightly", "timer", {"schedule": "0 3 * * *"})

Exceptions::

    NimbusClientError             anything this client raises
    ├── ApiError                  the server answered 4xx/5xx (status, code, message)
    └── NimbusUnreachableError    no connection to the server (also a ConnectionError)

Pass ``transport=httpx.MockTransport(handler)`` to test without a server.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from nimbus import __version__

if TYPE_CHECKING:
    import httpx  # loaded lazily in the methods: `nimbus serve` never needs it
    from _typeshed import DataclassInstance

_D = TypeVar("_D", bound="DataclassInstance")

__all__ = [
    "Alias",
    "ApiError",
    "ApiKey",
    "AsyncInvocation",
    "AuditEntry",
    "CodeUpload",
    "Function",
    "FunctionError",
    "FunctionSpec",
    "Invocation",
    "LogLine",
    "Namespace",
    "NamespaceUsage",
    "NewApiKey",
    "NimbusClient",
    "NimbusClientError",
    "NimbusUnreachableError",
    "Provisioned",
    "ProvisionedVersion",
    "Quotas",
    "Runtime",
    "Trigger",
]

#: The qualifier of a function's editable head (as opposed to a published version).
LATEST = "$LATEST"

#: Header naming the namespace a call acts in (admin keys; other keys use their own).
NAMESPACE_HEADER = "X-Nimbus-Namespace"

#: Upload chunk size; progress callbacks fire once per chunk.
UPLOAD_CHUNK_BYTES = 64 * 1024

#: Header choosing how an invocation runs: ``RequestResponse`` (synchronous, the
#: default), ``Event`` (queued, answered at once) or ``DryRun`` (only checked).
INVOCATION_TYPE_HEADER = "X-Nimbus-Invocation-Type"

#: The server's defaults for a function's asynchronous invocations: attempts per event
#: (the first and two retries) and the oldest an event may get before it is given up.
DEFAULT_ASYNC_MAX_ATTEMPTS = 3
DEFAULT_ASYNC_MAX_AGE_S = 6 * 3600

#: Statuses of an asynchronous invocation that will not change any more.
FINISHED_STATUSES = ("succeeded", "failed")


class NimbusClientError(Exception):
    """Base of every error raised by :class:`NimbusClient`."""


class ApiError(NimbusClientError):
    """The server answered with an error status and a ``{"error": {code, message}}`` body."""

    def __init__(
        self, status: int, code: str, message: str, retry_after_s: float | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        #: From the ``Retry-After`` header of a 429, when present.
        self.retry_after_s = retry_after_s


class NimbusUnreachableError(NimbusClientError, ConnectionError):
    """No connection could be made to the Nimbus server."""


@dataclass(frozen=True)
class Runtime:
    name: str
    kind: str
    version: str | None


@dataclass(frozen=True)
class CodeUpload:
    """A stored code package, addressed by its SHA-256."""

    sha256: str
    size: int
    files: int


@dataclass(frozen=True)
class FunctionSpec:
    """The full configuration sent when creating (or replacing) a function."""

    runtime: str
    handler: str
    code_sha256: str
    memory_mb: int | None = None
    timeout_s: float | None = None
    env: dict[str, str] | None = None
    description: str | None = None
    max_instances: int | None = None
    #: Stored encrypted; never returned (see ``Function.secret_env_keys``).
    secret_env: dict[str, str] | None = field(default=None, repr=False)
    #: ``none`` (the server's default) or ``egress``.
    network: str | None = None
    #: Asynchronous invocations: attempts per event (1-3) and the oldest an event may
    #: get, in seconds (60-21600); unset: the server's defaults (3, 6 hours).
    async_max_attempts: int | None = None
    async_max_age_s: int | None = None
    #: Functions of the same namespace that get a record of each asynchronous event's
    #: success, or of its failure after the last attempt; unset: none.
    on_success: str | None = None
    on_failure: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The request body: unset optional fields are left out (server defaults apply)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Function:
    name: str
    namespace: str
    runtime: str
    handler: str
    code_sha256: str
    code_size: int
    memory_mb: int
    timeout_s: float
    env: dict[str, str]
    description: str | None
    max_instances: int | None
    revision: int
    created_at: str
    updated_at: str
    #: Names of its secret environment variables (their values are never returned).
    secret_env_keys: list[str] = field(default_factory=list)
    #: ``none`` or ``egress``.
    network: str = "none"
    #: Cap on the function's concurrent instances, all versions together (0: disabled;
    #: None: no cap of its own). The same on the head and on every version.
    reserved_concurrency: int | None = None
    #: ``$LATEST`` for the editable head, else the published version's number.
    version: str = LATEST
    #: Asynchronous invocations (see :class:`FunctionSpec`). They apply to the function
    #: as a whole, whatever qualifier an event names: read them on the head.
    async_max_attempts: int = DEFAULT_ASYNC_MAX_ATTEMPTS
    async_max_age_s: int = DEFAULT_ASYNC_MAX_AGE_S
    on_success: str | None = None
    on_failure: str | None = None
    #: ``event`` (handler ``module.function``) or ``service`` (``module:app``, an HTTP
    #: service answering at its URL).
    type: str = "event"


@dataclass(frozen=True)
class Alias:
    """A name (``prod``) for a published version, optionally sharing calls with one other."""

    name: str
    function: str
    version: int
    #: Other version → the share of calls (0 < weight < 1) it gets; the rest go to ``version``.
    weights: dict[int, float] = field(default_factory=dict)
    description: str = ""
    revision: int = 1
    created_at: str | None = None
    updated_at: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alias:
        weights = data.get("weights") or {}
        try:
            parsed = {int(k): float(v) for k, v in weights.items()}
        except (AttributeError, TypeError, ValueError) as exc:
            raise NimbusClientError(
                f"unexpected alias weights from the server: {weights!r}"
            ) from exc
        return _load(cls, {**data, "weights": parsed})

    @property
    def routing(self) -> dict[int, float]:
        """Every version the alias runs → its share of calls (the main one gets the rest)."""
        return {self.version: 1.0 - sum(self.weights.values()), **self.weights}


@dataclass(frozen=True)
class ProvisionedVersion:
    """Provisioned instances of one version: how many are wanted, how many are ready."""

    wanted: int
    ready: int


@dataclass(frozen=True)
class Provisioned:
    """Instances kept initialised for a qualifier (a version, or an alias split by weight)."""

    qualifier: str
    requested: int
    #: Initialised instances now, all its versions together.
    ready: int
    #: Version number (as text) → wanted and ready instances of it.
    versions: dict[str, ProvisionedVersion] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Provisioned:
        versions = data.get("versions") or {}
        return _load(
            cls,
            {
                **data,
                "versions": {str(v): _load(ProvisionedVersion, s) for v, s in versions.items()},
            },
        )


@dataclass(frozen=True)
class Trigger:
    """An event source connected to a function: a ``timer`` (a schedule) or an ``http``
    trigger (the function's URL, ``url``)."""

    name: str
    function: str
    #: ``timer`` or ``http``.
    type: str
    #: The version or alias it invokes; None for ``$LATEST``.
    qualifier: str | None = None
    enabled: bool = True
    #: timer: ``schedule``, ``timezone``, ``payload``, ``catch_up``; http: ``auth``.
    config: dict[str, Any] = field(default_factory=dict)
    #: timer: the newest tick fired (ISO 8601, UTC); None before the first.
    last_fired: str | None = None
    #: http: the function URL.
    url: str | None = None
    #: redis-stream: what its consumer does now (consuming, throttled, error, stopped...).
    status: str | None = None
    #: redis-stream: its consumer's newest error, e.g. Redis unreachable.
    last_error: str | None = None
    created_at: str | None = None
    updated_at: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trigger:
        """Tolerant: unknown keys are ignored, a missing or null ``config`` is ``{}``."""
        config = data.get("config")
        return _load(cls, {**data, "config": config if isinstance(config, dict) else {}})


@dataclass(frozen=True)
class Quotas:
    """A namespace's limits; None means unlimited."""

    max_functions: int | None = None
    max_code_bytes: int | None = None
    max_concurrent_instances: int | None = None
    max_requests_per_s: float | None = None


@dataclass(frozen=True)
class NamespaceUsage:
    functions: int
    code_bytes: int
    instances: int


@dataclass(frozen=True)
class Namespace:
    name: str
    created_at: str | None
    quotas: Quotas
    usage: NamespaceUsage | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Namespace:
        usage = data.get("usage")
        return cls(
            name=str(data["name"]),
            created_at=data.get("created_at"),
            quotas=_load(Quotas, data.get("quotas") or {}),
            usage=_load(NamespaceUsage, usage) if isinstance(usage, dict) else None,
        )


@dataclass(frozen=True)
class Bucket:
    """An object storage bucket of the namespace (objects go through the S3 API at
    ``endpoint``, see docs/object-storage.md)."""

    name: str
    namespace: str
    created_at: str | None = None
    objects: int = 0
    bytes: int = 0
    endpoint: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Bucket:
        return _load(cls, data)


@dataclass(frozen=True)
class ApiKey:
    """An API key as listed: never its secret."""

    id: str
    namespace: str
    role: str
    name: str
    created_at: str | None


@dataclass(frozen=True)
class NewApiKey(ApiKey):
    """A key just created: ``secret`` is the key itself, shown only this once."""

    secret: str = field(default="", repr=False)
    #: The key's AWS Signature V4 credentials, for the Lambda-compatible API.
    access_key_id: str = ""
    secret_access_key: str = field(default="", repr=False)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    ts: str
    key_id: str
    key_name: str
    role: str
    namespace: str
    action: str
    target: str
    details: dict[str, Any]


@dataclass(frozen=True)
class FunctionError:
    """What a failed invocation reports (the handler raised, timed out or crashed)."""

    error_type: str
    error_message: str
    stack_trace: list[str]


@dataclass(frozen=True)
class Invocation:
    """The envelope of a synchronous invocation; ``raw`` is the JSON as received."""

    request_id: str
    function_name: str
    version: str
    status: str
    duration_ms: float
    billed_duration_ms: int
    result: Any = None
    error: FunctionError | None = None
    cold_start: bool = False
    init_duration_ms: float | None = None
    log_tail: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Invocation:
        return _load(cls, {**data, "error": _function_error(data.get("error")), "raw": data})


@dataclass(frozen=True)
class AsyncInvocation:
    """An asynchronous invocation as the server keeps it; ``raw`` is the JSON as received.

    ``status``: ``queued`` (waiting for its first attempt or a retry), ``running``,
    ``succeeded`` or ``failed`` (its last attempt failed, or it got too old; it is then
    in the function's dead letters)."""

    request_id: str
    function_name: str
    status: str
    #: Attempts so far, the running one included.
    attempts: int = 0
    max_attempts: int = DEFAULT_ASYNC_MAX_ATTEMPTS
    #: The version or alias the event names; None for ``$LATEST``.
    qualifier: str | None = None
    #: Seconds since the epoch.
    created_at: float | None = None
    finished_at: float | None = None
    #: When a queued event is tried next (seconds since the epoch).
    next_attempt_at: float | None = None
    #: What the handler returned (``succeeded`` only).
    result: Any = None
    #: The most recent failure; kept after a retry succeeds.
    error: FunctionError | None = None
    #: Why it failed for good: ``attempts_exhausted`` or ``age_exceeded``.
    dead_reason: str | None = None
    #: The event as sent.
    event: Any = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """True once it succeeded or failed for good (it will not change any more, unless
        a failed one is re-driven)."""
        return self.status in FINISHED_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AsyncInvocation:
        return _load(cls, {**data, "error": _function_error(data.get("error")), "raw": data})


def _function_error(err: Any) -> FunctionError | None:
    """A ``{"errorType", "errorMessage", "stackTrace"}`` object, or None."""
    if not isinstance(err, dict):
        return None
    return FunctionError(
        error_type=str(err.get("errorType", "Error")),
        error_message=str(err.get("errorMessage", "")),
        stack_trace=[str(line) for line in err.get("stackTrace") or []],
    )


@dataclass(frozen=True)
class LogLine:
    ts: float
    request_id: str | None
    stream: str
    message: str
    instance_id: str


class NimbusClient:
    """One connection pool to one Nimbus server, authenticated with one API key.

    ``namespace`` sends ``X-Nimbus-Namespace`` with every call: the namespace an
    admin key acts in (other keys act in their own and may leave it out).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        namespace: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.namespace = namespace
        headers = {"User-Agent": f"nimbus-client/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if namespace:
            headers[NAMESPACE_HEADER] = namespace
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(timeout_s, connect=5.0),
        )

    def __enter__(self) -> NimbusClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- platform ---------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._json("GET", "/healthz")

    def list_runtimes(self) -> list[Runtime]:
        data = self._json("GET", "/v1/runtimes")
        return [_load(Runtime, r) for r in data["runtimes"]]

    def upload_code(
        self, package: bytes, on_progress: Callable[[int], None] | None = None
    ) -> CodeUpload:
        """Store a zip package; ``on_progress(n)`` is called as each chunk of n bytes is sent."""
        import httpx

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(package), UPLOAD_CHUNK_BYTES):
                chunk = package[start : start + UPLOAD_CHUNK_BYTES]
                yield chunk
                if on_progress is not None:
                    on_progress(len(chunk))

        data = self._json(
            "PUT",
            "/v1/code",
            content=chunks(),
            headers={"Content-Type": "application/zip", "Content-Length": str(len(package))},
            timeout=httpx.Timeout(300.0, connect=5.0),
        )
        return _load(CodeUpload, data)

    # -- functions --------------------------------------------------------------

    def list_functions(self) -> list[Function]:
        data = self._json("GET", "/v1/functions")
        return [_load(Function, f) for f in data["functions"]]

    def get_function(self, name: str) -> Function:
        return _load(Function, self._json("GET", _function_path(name)))

    def find_function(self, name: str) -> Function | None:
        """Like :meth:`get_function`, but ``None`` when there is no such function."""
        try:
            return self.get_function(name)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def put_function(self, name: str, spec: FunctionSpec, *, prewarm: bool = False) -> Function:
        """Create the function, or replace its whole configuration; ``prewarm`` also starts
        one instance now, before the first call."""
        params = {"prewarm": "true"} if prewarm else None
        return _load(
            Function, self._json("PUT", _function_path(name), json=spec.to_json(), params=params)
        )

    def patch_function(self, name: str, changes: dict[str, Any]) -> Function:
        """Change only the given fields (any of :class:`FunctionSpec`'s)."""
        return _load(Function, self._json("PATCH", _function_path(name), json=changes))

    def delete_function(self, name: str) -> None:
        self._request("DELETE", _function_path(name))

    # -- invocations and logs ---------------------------------------------------

    def invoke(
        self, name: str, event: Any, *, log_tail: bool = False, qualifier: str | None = None
    ) -> Invocation:
        """Run the function synchronously; a handler failure is a result, not an exception.

        ``qualifier`` picks what runs: ``$LATEST`` (the default), a version number or an
        alias; ``Invocation.version`` says which version ran."""
        import httpx

        headers = {"Content-Type": "application/json"}
        if log_tail:
            headers["X-Nimbus-Log-Type"] = "Tail"
        data = self._json(
            "POST",
            _function_path(name) + "/invocations",
            content=json.dumps(event).encode(),
            headers=headers,
            params={"qualifier": qualifier} if qualifier else None,
            # The server enforces the function's own timeout.
            timeout=httpx.Timeout(None, connect=5.0),
        )
        return Invocation.from_json(data)

    def invoke_async(self, name: str, event: Any, *, qualifier: str | None = None) -> str:
        """Queue the event for the function and return its request id at once (the server
        has stored it durably). It runs soon after, is retried when it fails, and may run
        more than once: the handler sees the request id as its own, a de-duplication key.
        Follow it with :meth:`get_invocation`. Events are limited to 256 KiB by default
        (``413 Request.PayloadTooLarge``)."""
        data = self._json(
            "POST",
            _function_path(name) + "/invocations",
            content=json.dumps(event).encode(),
            headers={"Content-Type": "application/json", INVOCATION_TYPE_HEADER: "Event"},
            params={"qualifier": qualifier} if qualifier else None,
        )
        request_id = data.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise NimbusClientError(f"the server queued the event but sent no request id: {data}")
        return request_id

    def dry_run(self, name: str, *, qualifier: str | None = None) -> None:
        """Check that the function (and the version or alias) exists and that this key may
        invoke it, without running anything; raises :class:`ApiError` when not."""
        self._request(
            "POST",
            _function_path(name) + "/invocations",
            content=b"{}",
            headers={"Content-Type": "application/json", INVOCATION_TYPE_HEADER: "DryRun"},
            params={"qualifier": qualifier} if qualifier else None,
        )

    def get_invocation(self, request_id: str) -> AsyncInvocation:
        """Status and outcome of an asynchronous invocation (404 ``Invocation.NotFound``
        for an id the server does not know, or one of another namespace)."""
        data = self._json("GET", "/v1/invocations/" + quote(request_id, safe=""))
        return AsyncInvocation.from_json(data)

    def list_dead_letters(self, name: str, limit: int = 100) -> list[AsyncInvocation]:
        """The function's asynchronous events that failed for good, oldest failure first
        (at most ``limit``, 1-1000)."""
        data = self._json(
            "GET", _function_path(name) + "/dead-letters", params={"limit": str(limit)}
        )
        return [AsyncInvocation.from_json(d) for d in data["dead_letters"]]

    def redrive(
        self, name: str, request_ids: Sequence[str] | None = None, *, limit: int = 1000
    ) -> int:
        """Queue dead letters of the function again, with all their attempts anew and the
        same request ids: those in ``request_ids`` (ids that are not its dead letters are
        skipped), else the ``limit`` oldest. Returns how many were queued."""
        body: dict[str, Any] = {"limit": limit}
        if request_ids is not None:
            body["request_ids"] = list(request_ids)
        data = self._json("POST", _function_path(name) + "/dead-letters/redrive", json=body)
        return int(data["redriven"])

    def get_logs(
        self,
        name: str,
        *,
        request_id: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[LogLine]:
        params = _log_params(request_id, since, limit)
        data = self._json("GET", _function_path(name) + "/logs", params=params)
        return [_load(LogLine, line) for line in data["lines"]]

    def follow_logs(
        self,
        name: str,
        *,
        request_id: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> Generator[LogLine, None, None]:
        """Backlog then new lines, until the server ends the stream; ``close()`` it to stop."""
        import httpx

        params = {**_log_params(request_id, since, limit), "follow": "true"}
        path = _function_path(name) + "/logs"
        timeout = httpx.Timeout(None, connect=5.0)
        try:
            with self._http.stream("GET", path, params=params, timeout=timeout) as response:
                if response.is_error:
                    response.read()
                    raise _api_error(response)
                for text in response.iter_lines():
                    if text.strip():
                        yield _load(LogLine, json.loads(text))
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc

    # -- versions and aliases -----------------------------------------------------

    def publish_version(
        self, name: str, description: str | None = None, prewarm: bool = False
    ) -> tuple[Function, bool]:
        """Publish ``$LATEST`` as a new immutable version: (the version, True). When a
        version already has its code and settings: (that version, False), and
        ``description`` is not applied. ``prewarm`` starts one instance of it now."""
        body: dict[str, Any] = {"prewarm": prewarm}
        if description is not None:
            body["description"] = description
        response = self._request("POST", _function_path(name) + "/versions", json=body)
        return _load(Function, _object(response)), response.status_code == 201

    def list_versions(self, name: str) -> list[Function]:
        """The function's published versions, oldest first."""
        data = self._json("GET", _function_path(name) + "/versions")
        return [_load(Function, v) for v in data["versions"]]

    def get_version(self, name: str, number: int) -> Function:
        return _load(Function, self._json("GET", _version_path(name, number)))

    def delete_version(self, name: str, number: int) -> None:
        """Refused (409 ``Function.VersionInUse``) while an alias or provisioned
        instances point to it."""
        self._request("DELETE", _version_path(name, number))

    def put_alias(
        self,
        name: str,
        alias: str,
        version: int,
        weights: Mapping[int, float] | None = None,
        description: str = "",
    ) -> tuple[Alias, bool]:
        """Create (True) or move (False) an alias, atomically. ``weights`` gives at most one
        other version its share of calls, e.g. ``{4: 0.1}``; without it the alias routes
        every call to ``version``. The whole alias is replaced, description included."""
        body = {
            "version": version,
            "weights": {str(v): w for v, w in (weights or {}).items()},
            "description": description,
        }
        response = self._request("PUT", _alias_path(name, alias), json=body)
        return Alias.from_json(_object(response)), response.status_code == 201

    def get_alias(self, name: str, alias: str) -> Alias:
        return Alias.from_json(self._json("GET", _alias_path(name, alias)))

    def find_alias(self, name: str, alias: str) -> Alias | None:
        """Like :meth:`get_alias`, but ``None`` when the function has no such alias."""
        try:
            return self.get_alias(name, alias)
        except ApiError as exc:
            if exc.code == "Function.AliasNotFound":
                return None
            raise

    def list_aliases(self, name: str) -> list[Alias]:
        data = self._json("GET", _function_path(name) + "/aliases")
        return [Alias.from_json(a) for a in data["aliases"]]

    def delete_alias(self, name: str, alias: str) -> None:
        """Also removes the provisioned instances set on the alias."""
        self._request("DELETE", _alias_path(name, alias))

    # -- scaling: reserved concurrency, provisioned instances ---------------------

    def set_concurrency(self, name: str, reserved: int) -> int | None:
        """Cap the function's concurrent instances, all versions together (0 disables
        it: every call answers 429). Returns the reserved concurrency now set."""
        data = self._json("PUT", _function_path(name) + "/concurrency", json={"reserved": reserved})
        value = data.get("reserved")
        return int(value) if value is not None else None

    def delete_concurrency(self, name: str) -> None:
        """Remove the cap (the function is enabled again if it was 0)."""
        self._request("DELETE", _function_path(name) + "/concurrency")

    def set_provisioned(self, name: str, qualifier: str, count: int) -> Provisioned:
        """Keep ``count`` instances of a version or alias initialised (0 removes them)."""
        data = self._json("PUT", _provisioned_path(name, qualifier), json={"count": count})
        return Provisioned.from_json(data)

    def list_provisioned(self, name: str) -> list[Provisioned]:
        data = self._json("GET", _function_path(name) + "/provisioned")
        return [Provisioned.from_json(p) for p in data["provisioned"]]

    def delete_provisioned(self, name: str, qualifier: str) -> None:
        self._request("DELETE", _provisioned_path(name, qualifier))

    # -- triggers -----------------------------------------------------------------

    def create_trigger(
        self,
        name: str,
        trigger: str,
        type_: str,
        config: Mapping[str, Any] | None = None,
        *,
        qualifier: str | None = None,
        enabled: bool = True,
    ) -> Trigger:
        """Connect an event source to the function: ``type_`` ``timer`` (``config``:
        ``schedule``, and optionally ``timezone``, ``payload``, ``catch_up``) or ``http``
        (``config``: ``auth``, ``key`` or ``public``; the answer's ``url`` is the function
        URL). ``qualifier`` picks the version or alias it invokes (default ``$LATEST``)."""
        body: dict[str, Any] = {
            "name": trigger,
            "type": type_,
            "enabled": enabled,
            "config": dict(config or {}),
        }
        if qualifier is not None:
            body["qualifier"] = qualifier
        data = self._json("POST", _function_path(name) + "/triggers", json=body)
        return Trigger.from_json(data)

    def list_triggers(self, name: str) -> list[Trigger]:
        data = self._json("GET", _function_path(name) + "/triggers")
        return [Trigger.from_json(t) for t in data["triggers"]]

    def get_trigger(self, name: str, trigger: str) -> Trigger:
        return Trigger.from_json(self._json("GET", _trigger_path(name, trigger)))

    def set_trigger_enabled(self, name: str, trigger: str, enabled: bool) -> Trigger:
        """Enable or disable a trigger; a disabled one fires nothing (its URL answers 404)."""
        data = self._json("PATCH", _trigger_path(name, trigger), json={"enabled": enabled})
        return Trigger.from_json(data)

    def delete_trigger(self, name: str, trigger: str) -> None:
        self._request("DELETE", _trigger_path(name, trigger))

    # -- namespaces (admin; a developer may read its own) ------------------------

    def create_namespace(self, name: str, **quotas: int | float | None) -> Namespace:
        """Create a namespace; quotas not given take the server's defaults (None: unlimited)."""
        return Namespace.from_json(
            self._json("POST", "/v1/namespaces", json={"name": name, **quotas})
        )

    def list_namespaces(self) -> list[Namespace]:
        data = self._json("GET", "/v1/namespaces")
        return [Namespace.from_json(n) for n in data["namespaces"]]

    def get_namespace(self, name: str) -> Namespace:
        return Namespace.from_json(self._json("GET", _namespace_path(name)))

    def update_namespace(self, name: str, **quotas: int | float | None) -> Namespace:
        """Change the quotas given; None makes one unlimited."""
        return Namespace.from_json(self._json("PATCH", _namespace_path(name), json=quotas))

    def delete_namespace(self, name: str) -> None:
        self._request("DELETE", _namespace_path(name))

    # -- buckets ------------------------------------------------------------------

    def list_buckets(self) -> list[Bucket]:
        return [Bucket.from_json(b) for b in self._json("GET", "/v1/buckets")["buckets"]]

    def create_bucket(self, name: str) -> Bucket:
        return Bucket.from_json(self._json("POST", "/v1/buckets", json={"name": name}))

    def get_bucket(self, name: str) -> Bucket:
        return Bucket.from_json(self._json("GET", "/v1/buckets/" + quote(name, safe="")))

    def delete_bucket(self, name: str) -> None:
        """Delete an empty bucket."""
        self._request("DELETE", "/v1/buckets/" + quote(name, safe=""))

    # -- API keys -----------------------------------------------------------------

    def create_key(self, *, role: str, name: str, namespace: str | None = None) -> NewApiKey:
        """Issue a key (in ``namespace``, else the one this client acts in)."""
        body: dict[str, Any] = {"role": role, "name": name}
        if namespace is not None:
            body["namespace"] = namespace
        return _load(NewApiKey, self._json("POST", "/v1/keys", json=body))

    def list_keys(self, namespace: str | None = None) -> list[ApiKey]:
        params = {"namespace": namespace} if namespace is not None else None
        data = self._json("GET", "/v1/keys", params=params)
        return [_load(ApiKey, k) for k in data["keys"]]

    def revoke_key(self, key_id: str) -> None:
        self._request("DELETE", "/v1/keys/" + quote(key_id, safe=""))

    # -- audit (admin) ------------------------------------------------------------

    def audit(
        self,
        *,
        namespace: str | None = None,
        action: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[AuditEntry]:
        """Audit entries, newest first."""
        params: dict[str, str] = {}
        if namespace is not None:
            params["namespace"] = namespace
        if action is not None:
            params["action"] = action
        if since is not None:
            params["since"] = repr(float(since))
        if limit is not None:
            params["limit"] = str(limit)
        data = self._json("GET", "/v1/audit", params=params)
        return [_load(AuditEntry, e) for e in data["entries"]]

    # -- plumbing ---------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return _object(self._request(method, path, **kwargs))

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        if response.is_error:
            raise _api_error(response)
        return response

    def _transport_error(self, exc: httpx.TransportError) -> NimbusClientError:
        import httpx

        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return NimbusUnreachableError(
                f"cannot reach the Nimbus server at {self.base_url} ({exc}). "
                "Is `nimbus serve` running there? Point elsewhere with --url or NIMBUS_URL."
            )
        return NimbusClientError(f"request to {self.base_url} failed: {exc!r}")


def _load(cls: type[_D], data: Mapping[str, Any]) -> _D:
    """A dataclass from a JSON object: known fields are taken, unknown keys ignored."""
    known = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in known})
    except TypeError as exc:
        raise NimbusClientError(
            f"unexpected answer from the server for {cls.__name__}: {exc}"
        ) from exc


def _object(response: httpx.Response) -> dict[str, Any]:
    """The JSON object a successful answer holds."""
    where = f"{response.request.method} {response.request.url.path}"
    try:
        data = response.json()
    except ValueError as exc:
        raise NimbusClientError(f"{where}: the answer is not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise NimbusClientError(f"{where}: expected a JSON object, got {data!r}")
    return data


def _function_path(name: str) -> str:
    return "/v1/functions/" + quote(name, safe="")


def _version_path(name: str, number: int) -> str:
    return f"{_function_path(name)}/versions/{int(number)}"


def _alias_path(name: str, alias: str) -> str:
    return f"{_function_path(name)}/aliases/" + quote(alias, safe="")


def _provisioned_path(name: str, qualifier: str) -> str:
    return f"{_function_path(name)}/provisioned/" + quote(qualifier, safe="")


def _trigger_path(name: str, trigger: str) -> str:
    return f"{_function_path(name)}/triggers/" + quote(trigger, safe="")


def _namespace_path(name: str) -> str:
    return "/v1/namespaces/" + quote(name, safe="")


def _log_params(request_id: str | None, since: float | None, limit: int | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if request_id is not None:
        params["request_id"] = request_id
    if since is not None:
        params["since"] = repr(float(since))
    if limit is not None:
        params["limit"] = str(limit)
    return params


def _api_error(response: httpx.Response) -> ApiError:
    code = f"HTTP.{response.status_code}"
    message = response.reason_phrase or "error"
    try:
        body = response.json()
    except ValueError:
        body = None
        if response.text.strip():
            message = response.text.strip()[:500]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code", code))
        message = str(body["error"].get("message", message))
    retry_after = response.headers.get("Retry-After", "")
    retry_after_s = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else None
    return ApiError(response.status_code, code, message, retry_after_s)
