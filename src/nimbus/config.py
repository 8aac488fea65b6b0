"""One frozen :class:`Settings`, built from a mapping you pass in.

``Settings.from_mapping(os.environ, port=9000)`` reads ``NIMBUS_*`` variables
from the mapping, then applies explicit overrides (command-line flags). Nothing
here reads the process environment on its own, so tests build settings freely.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nimbus.errors import InvalidSettingError


@dataclass(frozen=True)
class PackageLimits:
    """Caps applied to every uploaded code package."""

    max_zip_bytes: int = 50 * 1024 * 1024
    max_unpacked_bytes: int = 250 * 1024 * 1024
    max_files: int = 10_000


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path(".nimbus")
    #: Preset admin API key; when empty, one is generated on first start.
    admin_token: str = field(default="", repr=False)
    #: Key that encrypts secret environment variables at rest: 32 bytes, base64. When
    #: empty, ``<data_dir>/secret.key`` is used (created with mode 0600 on first start).
    secret_key: str = field(default="", repr=False)
    #: Instance launcher: ``auto`` (namespaces, refusing to start without isolation),
    #: ``namespaces``, or ``process`` (plain child processes, no isolation: development only).
    sandbox: str = "auto"
    #: Size of each instance's private /tmp, in MiB (namespaces sandbox).
    tmp_mb: int = 512
    #: Most processes and threads one instance may run (namespaces sandbox).
    pids_max: int = 256
    #: IPv4 block the /30 links of ``network: egress`` instances come from (namespaces
    #: sandbox); give each Nimbus server on one host its own.
    egress_subnet: str = "10.213.0.0/16"
    #: Default cap on concurrent instances of one function version.
    max_instances: int = 10
    #: Calls that may wait for an instance when all are busy, per function version.
    max_queued: int = 1000
    #: How long a call may wait for a free instance before it is throttled.
    queue_timeout_s: float = 10.0
    #: Idle instances beyond the last one are released after this long.
    keepalive_s: float = 60.0
    #: The last idle instance of a function version is kept this long.
    last_keepalive_s: float = 300.0
    #: Autoscaling (see docs/scaling.md). Calls waiting per instance above which more
    #: instances start (0: every waiting call gets an instance of its own at once).
    scale_target_waiting: float = 0.0
    #: Most instances one scaling decision starts (a burst); the next may add more.
    scale_max_burst: int = 32
    #: After instances were started, idle ones are not released for this long.
    scale_in_cooldown_s: float = 10.0
    #: Time an instance has to initialise (import the handler) before it is killed.
    init_timeout_s: float = 10.0
    #: On SIGTERM, how long in-flight calls may take to finish.
    shutdown_grace_s: float = 10.0
    #: How long a client may take to send a request line after connecting, all headers
    #: of a request, or the next piece of a body; then it is disconnected.
    client_timeout_s: float = 30.0
    #: Largest asynchronous invocation event, in bytes (as Lambda: 256 KB).
    max_async_payload_bytes: int = 256 * 1024
    #: Asynchronous events one node runs at once (each holds an instance while it runs).
    async_concurrency: int = 64
    #: First retry delay of a failed asynchronous event; doubles each attempt (with full
    #: jitter) up to ``async_retry_cap_s``.
    async_retry_base_s: float = 5.0
    async_retry_cap_s: float = 300.0
    #: How long the status and result of a succeeded asynchronous event are kept.
    async_result_retention_s: float = 86_400.0
    #: Largest synchronous invocation payload, in bytes (as Lambda: 6 MB).
    max_sync_payload_bytes: int = 6 * 1024 * 1024
    #: Longest stored log line; longer lines are cut and marked.
    max_log_line_bytes: int = 16 * 1024
    #: Log lines kept per function (oldest dropped first).
    max_log_lines_per_function: int = 100_000
    #: Largest body of one object storage PutObject or UploadPart request (as S3: 5 GiB);
    #: larger objects are uploaded in parts.
    max_put_object_bytes: int = 5 * 1024**3
    #: Object events caused by functions writing objects while they handle object events
    #: form chains; an event deeper than this is not delivered (a loop is stopped).
    max_event_depth: int = 16
    #: Quotas a new namespace gets when its creator does not set them (None: unlimited).
    #: Functions in the namespace.
    default_quota_max_functions: int | None = None
    #: Total code package bytes of the namespace's functions.
    default_quota_max_code_bytes: int | None = None
    #: Instances of all the namespace's functions running at once.
    default_quota_max_concurrent_instances: int | None = None
    #: Invocations per second (token bucket, burst twice the rate).
    default_quota_max_requests_per_s: float | None = None
    package_limits: PackageLimits = field(default_factory=PackageLimits)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "nimbus.db"

    @property
    def logs_db_path(self) -> Path:
        return self.data_dir / "logs.db"

    @property
    def code_dir(self) -> Path:
        return self.data_dir / "code"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @classmethod
    def from_mapping(cls, env: Mapping[str, str], **overrides: Any) -> Settings:
        """Settings from ``NIMBUS_*`` keys of ``env``, then ``overrides`` (None means unset)."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "package_limits":
                continue
            key = "NIMBUS_" + f.name.upper()
            if key in env and env[key] != "":
                values[f.name] = _parse(f.name, f.type, env[key])
        if "NIMBUS_ADMIN_TOKEN" in env:
            values["admin_token"] = env["NIMBUS_ADMIN_TOKEN"]
        for name, value in overrides.items():
            if value is not None:
                values[name] = value
        if "data_dir" in values:
            values["data_dir"] = Path(values["data_dir"]).expanduser().resolve()
        else:
            values["data_dir"] = Path(".nimbus").resolve()
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise InvalidSettingError(f"port {self.port} is out of range 0..65535")
        if self.sandbox not in ("auto", "namespaces", "process"):
            raise InvalidSettingError(
                f"unknown sandbox {self.sandbox!r}; choose one of: auto, namespaces, process"
            )
        for name in (
            "max_instances",
            "max_queued",
            "tmp_mb",
            "pids_max",
            "max_sync_payload_bytes",
            "max_log_line_bytes",
            "max_log_lines_per_function",
            "scale_max_burst",
            "max_async_payload_bytes",
            "async_concurrency",
            "max_put_object_bytes",
            "max_event_depth",
        ):
            if getattr(self, name) < 1:
                raise InvalidSettingError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in (
            "queue_timeout_s",
            "init_timeout_s",
            "client_timeout_s",
            "async_retry_base_s",
            "async_retry_cap_s",
            "async_result_retention_s",
        ):
            if getattr(self, name) <= 0:
                raise InvalidSettingError(f"{name} must be positive, got {getattr(self, name)}")
        for name in (
            "keepalive_s",
            "last_keepalive_s",
            "shutdown_grace_s",
            "scale_target_waiting",
            "scale_in_cooldown_s",
        ):
            if getattr(self, name) < 0:
                raise InvalidSettingError(f"{name} may not be negative, got {getattr(self, name)}")
        try:
            subnet = ipaddress.ip_network(self.egress_subnet)
        except ValueError as exc:
            raise InvalidSettingError(f"egress_subnet: {exc}") from exc
        if subnet.version != 4 or subnet.prefixlen > 28:
            raise InvalidSettingError(
                f"egress_subnet must be an IPv4 block of /28 or larger, got {self.egress_subnet}"
            )
        if self.async_retry_base_s > self.async_retry_cap_s:
            raise InvalidSettingError(
                f"async_retry_base_s ({self.async_retry_base_s:g}) must not exceed "
                f"async_retry_cap_s ({self.async_retry_cap_s:g})"
            )
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("default_quota_") and value is not None and value <= 0:
                raise InvalidSettingError(
                    f"{f.name} must be positive (leave it unset for no limit), got {value}"
                )


def _parse(name: str, type_name: Any, raw: str) -> Any:
    kind = str(type_name)
    if kind.endswith(" | None"):
        if raw.strip().lower() in ("none", "unlimited"):
            return None
        kind = kind.removesuffix(" | None")
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
    except ValueError as exc:
        raise InvalidSettingError(f"NIMBUS_{name.upper()}={raw!r} is not a valid {kind}") from exc
    return raw
