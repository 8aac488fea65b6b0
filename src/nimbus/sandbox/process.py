"""The ``process`` backend: each instance is a plain child process.

No isolation: instances run as the platform's user, see its files and network.
Chosen explicitly for development on machines without Linux namespaces; Nimbus
warns when it runs. Each instance is the leader of its own process group, so
killing the group stops what it started (unless it escapes with ``setsid``).

Exit is watched through a pidfd, so no thread or SIGCHLD handler is involved.
Every live instance leaves a pidfile (pid and kernel start time) in the run
directory; a platform restarted after SIGKILL kills the leftovers it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from pathlib import Path

from nimbus.sandbox.base import ExitStatus, InstanceSpec, InstanceView, SandboxError
from nimbus.sandbox.pidfiles import PidFiles


class ProcessInstance:
    def __init__(
        self, popen: subprocess.Popen[bytes], stdout_fd: int, stderr_fd: int, pidfile: Path
    ) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.stdout_fd = stdout_fd
        self.stderr_fd = stderr_fd
        self._pidfile = pidfile
        loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[ExitStatus] = loop.create_future()
        self._pidfd = os.pidfd_open(self.pid)
        loop.add_reader(self._pidfd, self._on_exit)
        self._loop = loop

    def _on_exit(self) -> None:
        self._loop.remove_reader(self._pidfd)
        rc = self._popen.wait()
        # Whatever the leader left running in its group goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        status = ExitStatus(code=None, signal=-rc) if rc < 0 else ExitStatus(code=rc, signal=None)
        if not self._exited.done():
            self._exited.set_result(status)

    async def wait(self) -> ExitStatus:
        return await asyncio.shield(self._exited)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def close(self) -> None:
        if not self._exited.done():
            self.kill()
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._pidfd)
        for fd in (self._pidfd, self.stdout_fd, self.stderr_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._pidfile.unlink(missing_ok=True)


class ProcessSandbox:
    name = "process"
    isolated = False

    def __init__(self, run_dir: Path) -> None:
        self._pidfiles = PidFiles(run_dir)

    def view(self, code_dir: Path, runtime_socket: Path) -> InstanceView:
        return InstanceView(str(code_dir), str(runtime_socket), None)

    async def prepare(self) -> None:
        """Nothing to warm up: every instance is a fresh process."""

    async def close(self) -> None:
        """Nothing to release."""

    def describe(self) -> str:
        return (
            "sandbox: process (chosen explicitly) - WARNING: instances are NOT isolated from "
            "each other or from the platform; use it for development only"
        )

    async def start(self, spec: InstanceSpec) -> ProcessInstance:
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            popen = subprocess.Popen(
                spec.argv,
                env=spec.env,
                cwd=spec.code_dir,
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:
            for fd in (out_r, out_w, err_r, err_w):
                os.close(fd)
            raise SandboxError(f"could not start {spec.argv[0]}: {exc.strerror or exc}") from exc
        os.close(out_w)
        os.close(err_w)
        os.set_blocking(out_r, False)
        os.set_blocking(err_r, False)
        pidfile = self._pidfiles.write(spec.instance_id, popen.pid)
        return ProcessInstance(popen, out_r, err_r, pidfile)

    def cleanup_stale(self) -> int:
        return self._pidfiles.kill_stale(group=True)
