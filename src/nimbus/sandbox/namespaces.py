"""The ``namespaces`` backend (default on Linux): instances in their own namespaces.

Every instance is forked by a zygote (``sandbox/zygote.py``, one per Python
runtime, started ahead of the first call) into new mount, PID, network, IPC,
UTS and cgroup namespaces, with a read-only root made of the system's
libraries, its own code at ``/var/task`` and a private size-capped ``/tmp``. It
runs as an unprivileged uid, without new privileges, under a seccomp filter,
in cgroups that cap its memory, processes and CPU share. Its only way out is
its own Runtime API socket, bind-mounted at ``/run/nimbus/runtime.sock`` (and
relayed on 127.0.0.1:9001 inside its network namespace for runtimes that
speak TCP).

This module is the platform side: it starts the zygotes, creates cgroups,
hands each zygote a spawn request with the instance's stdout/stderr pipes,
and turns the zygote's ``exited`` reports into :class:`ExitStatus` values.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nimbus.runtimes.registry import BOOTSTRAP, RUNTIMES_DIR, RUNTIMES_IN_SANDBOX
from nimbus.sandbox import cgroups as cg
from nimbus.sandbox.base import ExitStatus, InstanceSpec, InstanceView, SandboxError
from nimbus.sandbox.network import EgressNetwork, NetworkUnavailableError
from nimbus.sandbox.pidfiles import PidFiles
from nimbus.sandbox.seccomp import build_filter

log = logging.getLogger("nimbus.sandbox")
ZYGOTE = Path(__file__).with_name("zygote.py")
TASK_ROOT = "/var/task"
SOCKET_IN_SANDBOX = "/run/nimbus/runtime.sock"
RELAY_ADDRESS = "127.0.0.1:9001"
#: The zygote's whole environment; each instance gets its own from its spawn request.
ZYGOTE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
#: Host directories an instance sees, read-only (symlinks are recreated as symlinks).
SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin")
#: Host files from /etc an instance needs (dynamic linker cache, certificates, time zones).
ETC_FILES = (
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/host.conf",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/mime.types",
    "/etc/alternatives",
)
#: Modules the Python zygote imports once so that instances do not pay for them.
PRELOAD = (
    "json",
    "socket",
    "selectors",
    "traceback",
    "linecache",
    "logging",
    "base64",
    "datetime",
    "decimal",
    "uuid",
    "random",
    "hashlib",
    "urllib.parse",
    "collections",
    "dataclasses",
    "typing",
    "re",
    "struct",
    "time",
    "io",
    "tempfile",
    "zlib",
    # Heavier, and common in functions: asyncio, the HTTP/TLS stack, email, XML, SQLite
    # (~45 ms to import in a fresh interpreter; inherited for nothing by every fork).
    "asyncio",
    "concurrent.futures",
    "email.parser",
    "http.client",
    "ssl",
    "urllib.request",
    "xml.etree.ElementTree",
    "sqlite3",
)
#: Function processes run as uids from this range (one per instance, never reused at once).
UID_BASE = 100_000
UID_COUNT = 50_000
MB_PER_CPU = 1769  # as Lambda: a full vCPU share at 1,769 MB


def availability() -> str | None:
    """None when this machine can run the backend, else the reason it cannot."""
    if sys.platform != "linux":
        return "Linux namespaces are only available on Linux"
    if os.geteuid() != 0:
        return "creating namespaces, mounts and cgroups needs root (run nimbus serve as root)"
    if cg.detect() is None:
        return "no usable cgroup hierarchy with memory and pids controllers was found"
    try:
        build_filter()
    except Exception as exc:
        return f"no seccomp filter for this architecture: {exc}"
    return None


def _is_runtime(path: str) -> bool:
    """Whether ``path`` is one of the platform's runtime files (:data:`RUNTIMES_DIR`)."""
    root = str(RUNTIMES_DIR)
    return path == root or path.startswith(root + "/")


def _extra_binds(paths: list[str], covered: list[str]) -> list[str]:
    """The ``paths`` not already inside one of the ``covered`` binds (nor repeated)."""
    extra: list[str] = []
    for path in paths:
        inside = [*covered, *extra]
        if not any(path == c or path.startswith(c.rstrip("/") + "/") for c in inside):
            extra.append(path)
    return extra


class _Zygote:
    """One zygote process and the requests in flight to it."""

    def __init__(self, interpreter: Path, python_mode: bool, ro_paths: tuple[str, ...]) -> None:
        self.interpreter = interpreter
        self.python_mode = python_mode
        #: Host paths a runtime needs (the Node runtime's): one zygote per set of them.
        self.ro_paths = ro_paths
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._exits: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ready: asyncio.Future[dict[str, Any]] | None = None

    async def start(self, seccomp_hex: str, root_dir: Path) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [str(self.interpreter), "-I", "-S", str(ZYGOTE), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                close_fds=True,
                # Not the platform's environment (admin key, secret key...): Python
                # instances are forks of the zygote and could read it from their stack.
                env=ZYGOTE_ENV,
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._on_readable)
        ro_binds = [*SYSTEM_DIRS, str(self.interpreter.resolve().parent.parent)]
        ours.send(
            json.dumps(
                {
                    "seccomp": seccomp_hex,
                    "bootstrap": str(BOOTSTRAP) if self.python_mode else None,
                    "preload": PRELOAD if self.python_mode else (),
                    "root_dir": str(root_dir),
                    "ro_binds": ro_binds
                    + _extra_binds([p for p in self.ro_paths if not _is_runtime(p)], ro_binds),
                    # The platform's runtime files at a fixed path (the host's may be under
                    # /tmp, which every instance mounts its own over).
                    "ro_maps": [
                        [p, RUNTIMES_IN_SANDBOX + p[len(str(RUNTIMES_DIR)) :]]
                        for p in self.ro_paths
                        if _is_runtime(p)
                    ],
                    "etc_files": list(ETC_FILES),
                }
            ).encode()
        )
        try:
            await asyncio.wait_for(self._ready, timeout=30)
        except TimeoutError as exc:
            raise SandboxError(f"the zygote for {self.interpreter} did not start") from exc

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and self._sock is not None

    def _on_readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            msg = json.loads(data)
            op = msg.get("op")
            if op == "ready":
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(msg)
            elif op in ("spawned", "failed"):
                fut = self._pending.pop(msg["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            elif op == "exited":
                exit_fut = self._exits.pop(msg["id"], None)
                if exit_fut is not None and not exit_fut.done():
                    exit_fut.set_result(msg)

    def _lost(self) -> None:
        """The zygote died: every instance it ran is gone (its inits were its children)."""
        loop = asyncio.get_running_loop()
        if self._sock is not None:
            loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        for fut in [*self._pending.values(), *self._exits.values()]:
            if not fut.done():
                fut.set_result({"op": "failed", "error": "the zygote exited", "status": 9 << 8})
        self._pending.clear()
        self._exits.clear()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(SandboxError("the zygote exited during start"))

    async def spawn(
        self, request: dict[str, Any], fds: tuple[int, ...]
    ) -> tuple[int, asyncio.Future[dict[str, Any]]]:
        if self._sock is None:
            raise SandboxError("the zygote is not running")
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[dict[str, Any]] = loop.create_future()
        exited: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[request["id"]] = answer
        self._exits[request["id"]] = exited
        self._sock.sendmsg(
            [json.dumps(request).encode()],
            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))],
        )
        msg = await answer
        if msg["op"] != "spawned":
            self._exits.pop(request["id"], None)
            raise SandboxError(f"could not start the sandbox: {msg.get('error')}")
        return int(msg["pid"]), exited

    def go(self, instance_id: str, ok: bool) -> None:
        """Let an instance that waits for its network continue (or fail, when not ``ok``)."""
        if self._sock is not None:
            self._sock.send(json.dumps({"op": "go", "id": instance_id, "ok": ok}).encode())

    def stop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()  # EOF: the zygote kills its instances and exits
            self._sock = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


class SandboxedInstance:
    def __init__(
        self,
        pid: int,
        stdout_fd: int,
        stderr_fd: int,
        exited: asyncio.Future[dict[str, Any]],
        cgroup: cg.InstanceCgroup,
        release: Callable[[], None],
        pidfile: Path,
    ) -> None:
        self._pidfile = pidfile
        self.pid = pid
        self.stdout_fd = stdout_fd
        self.stderr_fd = stderr_fd
        self._exited = exited
        self._cgroup = cgroup
        self._release = release
        self._closed = False

    async def wait(self) -> ExitStatus:
        msg = await asyncio.shield(self._exited)
        raw = int(msg.get("status", 0))
        limit = None
        if self._cgroup.oom_killed():
            limit = "memory"
        elif self._cgroup.pids_max_hit():
            limit = "pids"
        if os.WIFSIGNALED(raw):
            return ExitStatus(code=None, signal=os.WTERMSIG(raw), limit=limit)
        return ExitStatus(
            code=os.WEXITSTATUS(raw) if os.WIFEXITED(raw) else raw, signal=None, limit=limit
        )

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, signal.SIGKILL)  # PID 1 of its namespace: everything goes
        self._cgroup.kill_all()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._exited.done():
            self.kill()
        for fd in (self.stdout_fd, self.stderr_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._cgroup.remove()
        self._release()
        self._pidfile.unlink(missing_ok=True)


async def _wait_readable(fd: int, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await asyncio.wait_for(ready, timeout)
    except TimeoutError as exc:
        raise NetworkUnavailableError("the instance did not start its namespaces") from exc
    finally:
        loop.remove_reader(fd)


class NamespaceSandbox:
    name = "namespaces"
    isolated = True

    def __init__(
        self,
        run_dir: Path,
        *,
        pids_max: int,
        default_interpreter: Path,
        cgroup_parent: str,
        egress: EgressNetwork,
    ) -> None:
        layout = cg.detect()
        if layout is None:
            raise SandboxError("no usable cgroup hierarchy")
        self._cgroups = cg.Cgroups(cgroup_parent, layout)
        self._fast_migrations = cg.favor_dynamic_migrations(layout)
        self._pidfiles = PidFiles(run_dir)
        self._network = egress
        self._root_dir = run_dir / "sandbox-root"
        self._root_dir.mkdir(parents=True, exist_ok=True)
        self._pids_max = pids_max
        self._default_interpreter = default_interpreter
        self._seccomp_hex = build_filter().hex()
        self._zygotes: dict[tuple[Path, bool, tuple[str, ...]], _Zygote] = {}
        self._starting: dict[tuple[Path, bool, tuple[str, ...]], asyncio.Task[_Zygote]] = {}
        self._uids = itertools.cycle(range(UID_BASE, UID_BASE + UID_COUNT))
        self._uids_in_use: set[int] = set()
        self._counter = itertools.count()

    def describe(self) -> str:
        tuning = (
            "cgroup moves tuned (favordynmods)"
            if self._fast_migrations
            else "cgroup moves NOT tuned: cold starts pay ~15 ms more (kernel without favordynmods)"
        )
        return (
            "sandbox: namespaces (default on Linux) - each instance gets its own mount, PID, "
            "network, IPC and UTS namespaces, a read-only root, cgroup limits and seccomp; "
            + tuning
        )

    def view(self, code_dir: Path, runtime_socket: Path) -> InstanceView:
        return InstanceView(TASK_ROOT, SOCKET_IN_SANDBOX, RELAY_ADDRESS, RUNTIMES_IN_SANDBOX)

    async def prepare(self) -> None:
        await self._zygote(self._default_interpreter, python_mode=True)

    async def _zygote(
        self, interpreter: Path, python_mode: bool, ro_paths: tuple[str, ...] = ()
    ) -> _Zygote:
        key = (interpreter, python_mode, ro_paths)
        zygote = self._zygotes.get(key)
        if zygote is not None and zygote.alive:
            return zygote
        task = self._starting.get(key)
        if task is None:
            task = asyncio.ensure_future(self._start_zygote(interpreter, python_mode, ro_paths))
            self._starting[key] = task
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._starting.pop(key, None)

    async def _start_zygote(
        self, interpreter: Path, python_mode: bool, ro_paths: tuple[str, ...]
    ) -> _Zygote:
        zygote = _Zygote(interpreter, python_mode, ro_paths)
        await zygote.start(self._seccomp_hex, self._root_dir)
        self._zygotes[(interpreter, python_mode, ro_paths)] = zygote
        return zygote

    def _allocate_uid(self) -> int:
        for _ in range(UID_COUNT):
            uid = next(self._uids)
            if uid not in self._uids_in_use:
                self._uids_in_use.add(uid)
                return uid
        raise SandboxError("no free sandbox uid")

    async def start(self, spec: InstanceSpec) -> SandboxedInstance:
        python_mode = spec.runtime_kind == "python"
        interpreter = (
            spec.interpreter if python_mode and spec.interpreter else (self._default_interpreter)
        )
        zygote = await self._zygote(interpreter, python_mode, spec.ro_paths)
        uid = self._allocate_uid()
        cpu_weight = max(1, spec.memory_mb * 100 // MB_PER_CPU)  # 100 = one vCPU
        try:
            cgroup = self._cgroups.create(
                spec.instance_id,
                memory_mb=spec.memory_mb,
                pids_max=self._pids_max,
                cpu_weight=cpu_weight,
            )
        except OSError as exc:
            self._uids_in_use.discard(uid)
            raise SandboxError(f"could not create cgroups: {exc}") from exc
        os.chown(spec.runtime_socket, uid, uid)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        # The environment goes to the instance in a memfd, not in the request: the zygote
        # must never hold it, since every instance it forks later inherits its memory.
        env_fd = os.memfd_create("nimbus-env", os.MFD_CLOEXEC)
        os.write(env_fd, json.dumps(spec.env).encode())
        request = {
            "op": "spawn",
            "id": spec.instance_id,
            "mode": "python" if python_mode else "exec",
            "argv": list(spec.argv) if not python_mode else [],
            "code_dir": str(spec.code_dir),
            "socket": str(spec.runtime_socket),
            "uid": uid,
            "gid": uid,
            "tmp_mb": spec.tmp_mb,
            "relay": not python_mode,
            "network": spec.network,
            "cgroup_procs": [str(p) for p in cgroup.procs_paths],
        }
        # egress: the instance writes here once its network namespace exists
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC) if spec.network == "egress" else (-1, -1)
        fds = (out_w, err_w, env_fd) + ((ready_w,) if ready_w >= 0 else ())
        try:
            pid, exited = await zygote.spawn(request, fds)
        except (SandboxError, OSError) as exc:
            for fd in (out_r, err_r, ready_r):
                if fd >= 0:
                    os.close(fd)
            cgroup.remove()
            self._uids_in_use.discard(uid)
            raise SandboxError(str(exc)) from exc
        finally:
            for fd in fds:
                os.close(fd)
        lease = None
        if spec.network == "egress":
            try:
                await _wait_readable(ready_r, timeout=10)
                if os.read(ready_r, 1) != b"1":
                    raise NetworkUnavailableError("the instance exited while starting")
                lease = await asyncio.to_thread(self._network.attach, pid)
            except NetworkUnavailableError as exc:
                zygote.go(spec.instance_id, False)  # the instance exits without running code
                for fd in (out_r, err_r):
                    os.close(fd)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(exited), 2)
                os.close(ready_r)
                cgroup.remove()
                self._uids_in_use.discard(uid)
                raise SandboxError(f"could not give the instance egress networking: {exc}") from exc
            os.close(ready_r)
            zygote.go(spec.instance_id, True)
        os.set_blocking(out_r, False)
        os.set_blocking(err_r, False)

        def release() -> None:
            self._uids_in_use.discard(uid)
            if lease is not None:
                self._network.release(lease)

        return SandboxedInstance(
            pid, out_r, err_r, exited, cgroup, release, self._pidfiles.write(spec.instance_id, pid)
        )

    def cleanup_stale(self) -> int:
        killed = self._pidfiles.kill_stale(group=False)
        return killed + len(self._cgroups.cleanup_stale())

    async def close(self) -> None:
        for zygote in self._zygotes.values():
            zygote.stop()
        self._zygotes.clear()
        self._network.close()
