"""One instance: a sandboxed process running a runtime, serving one call at a time.

The instance object is the Runtime API handler of its own endpoint: the
runtime's ``/next`` long poll is how it says it is ready, and ``/response`` or
``/error`` complete the call in flight. Timeouts and crashes are detected here
and reported as Lambda-shaped :class:`FunctionError` values.

    STARTING ──first /next──► IDLE ◄──response/error──┐
        │                       └──call──► BUSY ──────┘
        └─init error, exit, init timeout──► DEAD ◄── timeout, crash, stop
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nimbus.config import Settings
from nimbus.domain.function import FunctionConfig
from nimbus.domain.invocation import FunctionError
from nimbus.logs.capture import StreamCapture
from nimbus.logs.store import LogLine, LogStore
from nimbus.runtime_api.channel import Channel
from nimbus.runtime_api.server import NextEvent, RuntimeEndpoint
from nimbus.runtime_api.storage import StorageGate
from nimbus.runtimes.registry import Runtime, RuntimeRegistry
from nimbus.sandbox.base import ExitStatus, InstanceSpec, Sandbox, SandboxError, SandboxProcess

log = logging.getLogger("nimbus.pool")
TAIL_BYTES = 4096


class InstanceState(enum.Enum):
    STARTING = "starting"  # process started, runtime initialising
    IDLE = "idle"  # ready, no call in flight
    BUSY = "busy"  # a call is in flight (or reserved for one)
    DEAD = "dead"  # stopped, crashed or killed; never reused


class InitFailed(Exception):
    """The instance could not initialise; ``error`` is what the caller sees."""

    def __init__(self, error: FunctionError, init_duration_ms: float, log_tail: str) -> None:
        super().__init__(error.error_message)
        self.error = error
        self.init_duration_ms = init_duration_ms
        self.log_tail = log_tail


@dataclass
class CallOutcome:
    payload: bytes | None
    error: FunctionError | None
    duration_ms: float
    log_tail: str | None


@dataclass
class _Call:
    request_id: str
    started: float
    future: asyncio.Future[CallOutcome]
    timer: asyncio.TimerHandle | None = None
    want_tail: bool = False
    tail: list[str] = field(default_factory=list)
    tail_bytes: int = 0


class Instance:
    def __init__(
        self,
        *,
        instance_id: str,
        config: FunctionConfig,
        runtime: Runtime,
        settings: Settings,
        logs: LogStore,
        on_dead: Callable[[Instance], None],
        storage: StorageGate | None = None,
    ) -> None:
        self.id = instance_id
        self._storage = storage  # object storage on the Runtime API socket
        self.config = config
        self.runtime = runtime
        self.state = InstanceState.STARTING
        self.idle_since = time.monotonic()
        self.served = 0
        self.init_duration_ms: float | None = None
        #: When it became ready (monotonic): a call that waited for that was a cold start.
        self.ready_at = float("inf")
        self._settings = settings
        self._logs = logs
        self._on_dead = on_dead
        self._loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[None] = self._loop.create_future()
        self._started_at = time.monotonic()
        self._next_waiter: asyncio.Future[NextEvent] | None = None
        self._mailbox: NextEvent | None = None
        self._call: _Call | None = None
        self._last_request_id: str | None = None  # for limits seen after the call ended
        self._init_error: FunctionError | None = None
        self._init_lines: list[str] = []
        self._proc: SandboxProcess | None = None
        self._endpoint: RuntimeEndpoint | None = None
        self._captures: list[StreamCapture] = []
        self._init_timer: asyncio.TimerHandle | None = None
        self.stopping = False
        self._watcher: asyncio.Future[None] | None = None
        self._arn = f"arn:nimbus:lambda:local:{config.namespace}:function:{config.name}"

    # ---- lifecycle -------------------------------------------------------
    async def launch(
        self, sandbox: Sandbox, registry: RuntimeRegistry, code_dir: Path, socket_dir: Path
    ) -> None:
        """Start the process; readiness is reported through :meth:`ready`."""
        endpoint = RuntimeEndpoint(
            self,
            self._settings.max_sync_payload_bytes,
            storage=self._storage.for_instance(
                self.config.namespace, self.config.name, self.running_request_id
            )
            if self._storage is not None
            else None,
        )
        self._endpoint = endpoint
        socket_path = socket_dir / f"{self.id}.sock"
        await endpoint.listen_unix(socket_path)
        view = sandbox.view(code_dir, socket_path)
        runtime_api = view.runtime_api
        if runtime_api is None and self.runtime.kind != "python":
            runtime_api = f"127.0.0.1:{await endpoint.listen_tcp()}"
        spec = InstanceSpec(
            instance_id=self.id,
            argv=registry.argv(
                self.runtime, view.task_root, self.config.memory_mb, view.runtimes_root
            ),
            env=self._environment(view.task_root, view.runtime_socket, runtime_api),
            code_dir=code_dir,
            runtime_socket=socket_path,
            memory_mb=self.config.memory_mb,
            runtime_kind=self.runtime.kind,
            interpreter=self.runtime.executable,
            ro_paths=registry.ro_paths(self.runtime),
            tmp_mb=self._settings.tmp_mb,
            network=self.config.network,
            labels={"namespace": self.config.namespace, "function": self.config.name},
        )
        try:
            self._proc = await sandbox.start(spec)
        except SandboxError as exc:
            self._fail_init(FunctionError("Runtime.StartError", str(exc)))
            return
        for fd, stream in ((self._proc.stdout_fd, "stdout"), (self._proc.stderr_fd, "stderr")):
            capture = StreamCapture(fd, self._line_sink(stream), self._settings.max_log_line_bytes)
            capture.start()
            self._captures.append(capture)
        self._init_timer = self._loop.call_later(
            self._settings.init_timeout_s, self._on_init_timeout
        )
        self._watcher = asyncio.ensure_future(self._watch(self._proc))

    def _environment(
        self, task_root: str, runtime_socket: str, runtime_api: str | None
    ) -> dict[str, str]:
        cfg = self.config
        # Defaults a function may override, then the function's own, then the platform's.
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": "/tmp",
            "TZ": "UTC",
        }
        if self._storage is not None:
            # Object storage through the Runtime API (runtime_api/storage.py): an unmodified
            # boto3.client("s3") reaches the namespace's buckets; the keys are placeholders.
            env["AWS_ENDPOINT_URL_S3"] = f"http://{runtime_api or '127.0.0.1:9001'}/s3"
            env["AWS_ACCESS_KEY_ID"] = env["AWS_SECRET_ACCESS_KEY"] = "nimbus"
            env["AWS_DEFAULT_REGION"] = "us-east-1"
        env.update(cfg.env)
        env.update(cfg.secret_env)  # decrypted only in memory, handed over like env
        env.update(
            {
                "_HANDLER": cfg.handler,
                "LAMBDA_TASK_ROOT": task_root,
                "AWS_LAMBDA_FUNCTION_NAME": cfg.name,
                "AWS_LAMBDA_FUNCTION_VERSION": cfg.version,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg.memory_mb),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/nimbus/{cfg.namespace}/{cfg.name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": self.id,
                "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
                "NIMBUS_NAMESPACE": cfg.namespace,
                "NIMBUS_RUNTIME_API_SOCKET": runtime_socket,
                "SCF_FUNCTIONNAME": cfg.name,
                "SCF_FUNCTIONVERSION": "$LATEST",
                "SCF_NAMESPACE": cfg.namespace,
            }
        )
        if runtime_api is not None:
            host, _, port = runtime_api.rpartition(":")
            env["AWS_LAMBDA_RUNTIME_API"] = runtime_api
            env["SCF_RUNTIME_API"] = host
            env["SCF_RUNTIME_API_PORT"] = port
        return env

    @property
    def usable(self) -> bool:
        """Ready for a call: initialised, alive, not being stopped."""
        return self.state is InstanceState.IDLE and not self.stopping

    async def ready(self) -> None:
        """Resolve when the runtime asked for work; raise :class:`InitFailed` otherwise."""
        await asyncio.shield(self._ready)

    async def _watch(self, proc: SandboxProcess) -> None:
        status = await proc.wait()
        self._on_exit(status)

    def _on_exit(self, status: ExitStatus) -> None:
        for capture in self._captures:
            capture.drain()
            capture.stop()
        if not self._ready.done():
            error = self._init_error or FunctionError(
                "Runtime.ExitError",
                f"Runtime exited during initialisation with {status.describe()}",
            )
            if status.limit == "memory":
                error = self._exit_error("init", status)
            self._fail_init(error)
        call = self._call
        if status.limit == "pids":  # a fork bomb or a thread leak, seen only once it exits
            request_id = call.request_id if call is not None else self._last_request_id
            text = (
                f"the instance reached its process limit ({self._settings.pids_max} processes "
                f"and threads): forks failed; it ended with {status.describe()}"
            )
            log.warning(
                "%s/%s instance %s: %s", self.config.namespace, self.config.name, self.id, text
            )
            self._emit_platform(request_id, text)
        if call is not None:
            self._finish(call, None, self._exit_error(call.request_id, status))
        self._die()

    def _exit_error(self, request_id: str, status: ExitStatus) -> FunctionError:
        if status.limit == "memory":
            return FunctionError(
                "Runtime.OutOfMemory",
                f"RequestId: {request_id} Error: Runtime exited: the function used more than "
                f"its memory limit of {self.config.memory_mb} MB; raise memory_mb or use less",
            )
        return FunctionError(
            "Runtime.ExitError",
            f"RequestId: {request_id} Error: Runtime exited with error: {status.describe()}",
        )

    def _fail_init(self, error: FunctionError) -> None:
        if self._ready.done():
            return
        self.init_duration_ms = (time.monotonic() - self._started_at) * 1000
        tail = "\n".join(self._init_lines)[-TAIL_BYTES:]
        self._ready.set_exception(InitFailed(error, self.init_duration_ms, tail))
        self._ready.exception()  # mark retrieved: not every failure has a waiter
        self.stop()

    def _on_init_timeout(self) -> None:
        self._fail_init(
            FunctionError(
                "Runtime.InitTimeout",
                f"the runtime did not finish initialising within {self._settings.init_timeout_s:g}"
                " seconds",
            )
        )

    def stop(self) -> None:
        """Kill the instance; what remains is cleaned up once the process has exited."""
        self.stopping = True
        if self._init_timer is not None:
            self._init_timer.cancel()
        if self._proc is not None:
            self._proc.kill()
        else:
            self._die()

    def _die(self) -> None:
        if self.state is InstanceState.DEAD:
            return
        self.state = InstanceState.DEAD
        if self._init_timer is not None:
            self._init_timer.cancel()
        if self._next_waiter is not None and not self._next_waiter.done():
            self._next_waiter.cancel()
        if self._endpoint is not None:
            self._endpoint.close()
        if self._proc is not None:
            self._proc.close()
        self._on_dead(self)

    def running_request_id(self) -> str | None:
        """The call in flight, else the last one: what this instance's storage writes are
        attributed to."""
        return self._call.request_id if self._call is not None else self._last_request_id

    # ---- calls -----------------------------------------------------------
    def call(
        self, request_id: str, payload: bytes, want_tail: bool, timeout_s: float | None = None
    ) -> asyncio.Future[CallOutcome]:
        """Hand one event to the runtime; the future resolves with its outcome.
        ``timeout_s``: when the instance is killed, if not the function's timeout."""
        timeout_s = timeout_s or self.config.timeout_s
        future: asyncio.Future[CallOutcome] = self._loop.create_future()
        call = _Call(request_id, time.monotonic(), future, want_tail=want_tail)
        call.timer = self._loop.call_later(timeout_s, self._on_timeout, call)
        self._call = call
        self.state = InstanceState.BUSY
        cfg = self.config
        event = NextEvent(
            request_id=request_id,
            payload=payload,
            deadline_ms=int((time.time() + timeout_s) * 1000),
            function_arn=self._arn,
            trace_id=f"Root=1-{int(time.time()):08x}-{request_id.replace('-', '')[:24]}",
            scf_headers=(
                (b"Function_Name", cfg.name.encode()),
                (b"Function_Version", b"$LATEST"),
                (b"Namespace", cfg.namespace.encode()),
                (b"Memory_Limit_In_Mb", str(cfg.memory_mb).encode()),
                (b"Time_Limit_In_Ms", str(timeout_s * 1000).encode()),
            ),
        )
        waiter = self._next_waiter
        if waiter is not None and not waiter.done():
            self._next_waiter = None
            waiter.set_result(event)
        else:
            self._mailbox = event
        return future

    def expect_stream(self, request_id: str) -> asyncio.Future[Channel]:
        """The ASGI channel an HTTP service's runtime opens for ``request_id`` (see
        :mod:`nimbus.runtime_api.channel`); call before :meth:`call`."""
        assert self._endpoint is not None
        return self._endpoint.expect_stream(request_id)

    def _finish(self, call: _Call, payload: bytes | None, error: FunctionError | None) -> None:
        if self._call is not call:
            return
        self._call = None
        self._last_request_id = call.request_id
        if call.timer is not None:
            call.timer.cancel()
        duration_ms = (time.monotonic() - call.started) * 1000
        self.served += 1
        self.idle_since = time.monotonic()
        if self.state is InstanceState.BUSY and not self.stopping:
            self.state = InstanceState.IDLE
        tail = "\n".join(call.tail) if call.want_tail else None
        self._emit_platform(call.request_id, self._report(call.request_id, duration_ms))
        if not call.future.done():
            call.future.set_result(CallOutcome(payload, error, duration_ms, tail))

    def _report(self, request_id: str, duration_ms: float) -> str:
        billed = max(1, int(-(-duration_ms // 1)))
        line = (
            f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {billed} ms\tMemory Size: {self.config.memory_mb} MB"
        )
        if self.served == 1 and self.init_duration_ms is not None:
            line += f"\tInit Duration: {self.init_duration_ms:.2f} ms"
        return line

    def _on_timeout(self, call: _Call) -> None:
        if self._call is not call:
            return
        # The runtime may be stuck anywhere: the instance is never reused.
        self.stop()
        self._finish(
            call,
            None,
            FunctionError(
                "Sandbox.Timedout", f"Task timed out after {self.config.timeout_s:.2f} seconds"
            ),
        )

    # ---- Runtime API handler -------------------------------------------
    def next_invocation(self) -> asyncio.Future[NextEvent]:
        if not self._ready.done():
            self._mark_ready()
        future: asyncio.Future[NextEvent] = self._loop.create_future()
        if self._mailbox is not None:
            future.set_result(self._mailbox)
            self._mailbox = None
        else:
            if self._next_waiter is not None and not self._next_waiter.done():
                self._next_waiter.cancel()
            self._next_waiter = future
        return future

    def on_init_ready(self) -> None:
        if not self._ready.done():
            self._mark_ready()

    def _mark_ready(self) -> None:
        self._drain_output()  # init output still in the pipe is tagged as init
        if self._init_timer is not None:
            self._init_timer.cancel()
        self.ready_at = time.monotonic()
        self.init_duration_ms = (self.ready_at - self._started_at) * 1000
        self.state = InstanceState.IDLE
        self.idle_since = time.monotonic()
        self._init_lines.clear()
        self._ready.set_result(None)

    def _drain_output(self) -> None:
        for capture in self._captures:
            capture.drain()

    def on_response(self, request_id: str | None, body: bytes) -> bool:
        call = self._call
        if call is None or (request_id is not None and request_id != call.request_id):
            return False
        self._drain_output()
        self._finish(call, body, None)
        return True

    def on_error(self, request_id: str | None, body: bytes, error_type: str | None) -> bool:
        call = self._call
        if call is None or (request_id is not None and request_id != call.request_id):
            return False
        self._drain_output()
        self._finish(call, None, _parse_error(body, error_type or "Unhandled"))
        return True

    def on_init_error(self, body: bytes, error_type: str | None) -> None:
        self._drain_output()
        self._init_error = _parse_error(body, error_type or "Runtime.InitError")
        self._fail_init(self._init_error)

    # ---- logs --------------------------------------------------------------
    def _line_sink(self, stream: str) -> Callable[[str], None]:
        cfg = self.config
        emit = self._logs.emit

        def on_line(text: str) -> None:
            call = self._call
            if call is not None:
                request_id: str | None = call.request_id
                if call.want_tail:
                    call.tail.append(text)
                    call.tail_bytes += len(text) + 1
                    while call.tail_bytes > TAIL_BYTES and len(call.tail) > 1:
                        call.tail_bytes -= len(call.tail.pop(0)) + 1
            elif not self._ready.done():
                request_id = "init"
                self._init_lines.append(text)
                if len(self._init_lines) > 64:
                    del self._init_lines[0]
            else:
                request_id = None
            emit(LogLine(time.time(), cfg.namespace, cfg.name, self.id, request_id, stream, text))

        return on_line

    def _emit_platform(self, request_id: str | None, text: str) -> None:
        cfg = self.config
        self._logs.emit(
            LogLine(time.time(), cfg.namespace, cfg.name, self.id, request_id, "platform", text)
        )


def _parse_error(body: bytes, default_type: str) -> FunctionError:
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        payload = {"errorMessage": body.decode("utf-8", "replace")}
    return FunctionError.from_payload(payload, default_type)
