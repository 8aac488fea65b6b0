"""The sandbox interface: how an instance process is started, watched and killed.

A :class:`Sandbox` turns an :class:`InstanceSpec` into a running
:class:`SandboxProcess`. Backends are named after their mechanism:
``process`` (plain child processes, no isolation, for development) today;
Linux namespaces + cgroups + seccomp next. The rest of Nimbus sees only this
module, so a backend can start instances however it likes (exec, or a fork of a
pre-initialised zygote) as long as it keeps these contracts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class InstanceSpec:
    """Everything a backend needs to start one instance."""

    instance_id: str
    #: Program and arguments, resolved by the runtime registry.
    argv: tuple[str, ...]
    env: dict[str, str]
    #: Unpacked, read-only code package; also the working directory.
    code_dir: Path
    #: Unix socket serving this instance's Runtime API.
    runtime_socket: Path
    memory_mb: int
    #: ``python`` (the built-in runtime under ``interpreter``), or ``node`` / ``custom``
    #: (exec ``argv``).
    runtime_kind: str = "custom"
    interpreter: Path | None = None
    #: Host paths the runtime needs, visible read-only at the same path in a sandbox
    #: (the Node runtime's bootstrap and ``node`` install).
    ro_paths: tuple[str, ...] = ()
    #: ``none`` (loopback only) or ``egress`` (outside networks, never the host).
    network: str = "none"
    #: Size cap of the instance's private /tmp, in MiB.
    tmp_mb: int = 512
    #: Labels for logs and process listings.
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExitStatus:
    """How an instance process ended."""

    code: int | None  # exit code, when it exited
    signal: int | None  # signal number, when it was killed
    #: A limit the sandbox saw being hit: ``memory`` (killed by the OOM killer), ``pids``.
    limit: str | None = None

    def describe(self) -> str:
        if self.signal is not None:
            import signal as _signal

            try:
                name = _signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"signal: {name}"
        return f"exit status {self.code}"


class SandboxProcess(Protocol):
    """A started instance. ``stdout_fd``/``stderr_fd`` are non-blocking read ends."""

    pid: int
    stdout_fd: int
    stderr_fd: int

    async def wait(self) -> ExitStatus:
        """Resolve once the instance's main process has ended."""

    def kill(self) -> None:
        """Kill the instance and everything it started; idempotent, never raises."""

    def close(self) -> None:
        """Release the backend's resources (fds, bookkeeping) after the process ended."""


@dataclass(frozen=True)
class InstanceView:
    """Paths and addresses as the instance sees them (they differ inside a sandbox)."""

    task_root: str
    runtime_socket: str
    #: ``host:port`` for runtimes that speak TCP, or None when the platform must listen
    #: on a loopback port of its own for this instance.
    runtime_api: str | None
    #: Where the platform's runtime files (``nimbus/runtimes``) are; None: at their host
    #: path.
    runtimes_root: str | None = None


class Sandbox(Protocol):
    name: str
    #: Whether instances are isolated from each other and from the platform.
    isolated: bool

    def view(self, code_dir: Path, runtime_socket: Path) -> InstanceView:
        """Where the instance finds its code and its Runtime API."""

    async def start(self, spec: InstanceSpec) -> SandboxProcess:
        """Start an instance; raise :class:`SandboxError` if it could not be started."""

    async def prepare(self) -> None:
        """Warm up at platform start (e.g. start zygotes) so the first cold start is fast."""

    async def close(self) -> None:
        """Stop helpers the backend runs; instances are killed by the pools before this."""

    def describe(self) -> str:
        """One line for ``nimbus serve`` to print at start: what runs and why."""

    def cleanup_stale(self) -> int:
        """Kill instances left behind by an earlier run that died; return how many."""


class SandboxError(Exception):
    """The backend could not start an instance (missing executable, no resources...)."""
