"""Nimbus zygote: a pre-initialised fork server that starts sandboxed instances.

Runs under the bare interpreter of one Python runtime (``python3.X -I -S
zygote.py``) with only the standard library, as root. It imports the built-in
Python runtime once, freezes its heap (``gc.freeze``) and then forks one
instance per request from the platform, so a Python instance starts without
paying for an interpreter start or its imports. Custom runtimes and the
Node.js runtime are exec'd from the same sandbox set-up, by a zygote without
the Python runtime preloaded (one per set of extra read-only paths: the Node
runtime's bootstrap and ``node`` install).

Protocol: a SOCK_SEQPACKET unix socket whose fd number is the first argument. Each message is one JSON
object; spawn requests carry the instance's stdout and stderr pipes and a memfd
holding its environment as SCM_RIGHTS (the environment, secrets included, never
passes through the zygote's memory, which later instances inherit). Platform → zygote: ``init`` (once), ``spawn``. Zygote → platform:
``ready``, ``spawned`` (host pid of the sandbox init), ``failed``, ``exited``
(raw wait status of the runtime process).

At start the zygote enters a mount namespace of its own and builds a
*template root* once: a read-only tmpfs holding read-only binds of the system
directories, the runtime's Python install, a few /etc files and /dev nodes.

Process tree of one instance, and what each step does::

    zygote: unshare(pid) ─fork─► B = PID 1 of a new PID namespace; the zygote
            setns()es back to its own PID namespace for the next fork.
    B: join cgroups, stdio, unshare(mnt|net|ipc|uts|cgroup) (the new mount
       namespace starts as a copy of the zygote's, template included), mount
       its code at /var/task, its Runtime API socket, a size-capped /tmp,
       /dev/shm and /proc into the template, pivot_root into it, hostname,
       loopback up. Then:
       - Python: drop to an unprivileged uid, no new privileges, seccomp, and
         run the already imported runtime in-process (one fork per instance);
       - custom and Node.js: fork C, which drops privileges likewise and execs
         the bootstrap (or ``node bootstrap.cjs``), while B stays as init:
         reaps orphans, relays 127.0.0.1:9001 to the Runtime API socket, and
         reports C's wait status through a pipe when C ends.
    When B ends the kernel kills whatever else ran in its PID namespace.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import fcntl
import gc
import json
import os
import selectors
import signal
import socket
import struct
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_SECCOMP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 22, 36, 38
SECCOMP_MODE_FILTER = 2
SIOCSIFFLAGS, IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x8914, 0x1, 0x8, 0x40
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
RELAY_PORT = 9001
SOCKET_IN_SANDBOX = "/run/nimbus/runtime.sock"

_libc = ctypes.CDLL(None, use_errno=True)
STATE: dict[str, object] = {}


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    _check(
        _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
        f"mount {target}",
    )


def install_seccomp(program: bytes) -> None:
    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(program, len(program))
    prog = SockFprog(len(program) // 8, ctypes.addressof(buf))
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "seccomp")


# ---- sandbox set-up (in B, PID 1 of the new namespaces) ----------------------
def _bind(host: str, root: str, inside: str, writable: bool = False) -> None:
    target = root + inside
    if os.path.islink(host):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.symlink(os.readlink(host), target)
        return
    if os.path.isdir(host):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "ab"):
            pass
    mount(host, target, None, MS_BIND | MS_REC)
    if not writable:
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _write(root: str, path: str, content: str) -> None:
    os.makedirs(os.path.dirname(root + path), exist_ok=True)
    with open(root + path, "w") as f:
        f.write(content)


def build_template(init: dict) -> None:
    """In the zygote's own mount namespace: the read-only root every instance starts from."""
    root = init["root_dir"]
    _check(_libc.unshare(CLONE_NEWNS), "unshare mount namespace")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=755")
    for host in [*init["ro_binds"], *init["etc_files"]]:
        if os.path.lexists(host):
            _bind(host, root, host)
    for host, inside in init.get("ro_maps", ()):
        _bind(host, root, inside)
    _write(root, "/etc/passwd", "root:x:0:0:root:/root:/usr/sbin/nologin\n")
    _write(root, "/etc/group", "root:x:0:\n")
    _write(root, "/etc/hosts", "127.0.0.1 localhost nimbus\n::1 localhost\n")
    _write(root, "/etc/hostname", "nimbus\n")
    for path in ("/var/task", "/tmp", "/proc", "/dev/shm", "/run/nimbus"):
        os.makedirs(root + path)
    with open(root + SOCKET_IN_SANDBOX, "wb"):
        pass
    for dev in ("null", "zero", "full", "random", "urandom"):
        _bind("/dev/" + dev, root, "/dev/" + dev, writable=True)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, root + "/dev/" + name)
    mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    STATE["root"] = root


def _enter_sandbox(req: dict) -> None:
    """In B: own namespaces, this instance's mounts on the template, pivot into it."""
    for path in req["cgroup_procs"]:
        with open(path, "w") as f:
            f.write(str(os.getpid()))
    _check(
        _libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP),
        "unshare",
    )
    root = STATE["root"]
    mount(req["code_dir"], root + "/var/task", None, MS_BIND | MS_REC)
    mount(None, root + "/var/task", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    mount(req["socket"], root + SOCKET_IN_SANDBOX, None, MS_BIND)
    mount(
        "tmpfs",
        root + "/tmp",
        "tmpfs",
        MS_NOSUID | MS_NODEV,
        f"size={int(req['tmp_mb'])}m,mode=1777",
    )
    mount("tmpfs", root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=1777")
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.chdir(root)
    _check(_libc.syscall(SYS_PIVOT_ROOT[os.uname().machine], b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")
    _check(_libc.sethostname(b"nimbus", 6), "sethostname")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags, b""))


def _run_runtime(req: dict) -> None:
    """C: become the unprivileged function process and run the runtime. Never returns."""
    try:
        os.setgroups([])
        os.setgid(req["gid"])
        os.setuid(req["uid"])
        install_seccomp(STATE["seccomp"])
        os.chdir("/var/task")
        env = req["env"]
        os.environ.clear()
        os.environ.update(env)
        if req["mode"] == "exec":
            os.execve(req["argv"][0], req["argv"], env)
        if "random" in sys.modules:  # never share a random state between instances
            sys.modules["random"].seed()
        bootstrap = STATE["bootstrap"]
        sys.argv = ["bootstrap"]
        bootstrap.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:
        os.write(2, f"nimbus sandbox: could not start the runtime: {exc!r}\n".encode())
        code = 127
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _init(req: dict, status_w: int) -> None:
    """B for custom runtimes: PID 1 that starts C, reaps, relays TCP. Never returns."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    listener = None
    if req.get("relay"):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", RELAY_PORT))
        listener.listen(64)
    child = os.fork()
    if child == 0:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in (wake_r, wake_w, status_w):
            os.close(fd)
        if listener is not None:
            listener.close()
        _run_runtime(req)
    sel = selectors.DefaultSelector()
    sel.register(wake_r, selectors.EVENT_READ, "wake")
    if listener is not None:
        sel.register(listener, selectors.EVENT_READ, "accept")
    peers: dict[socket.socket, socket.socket] = {}
    while True:
        for key, _ in sel.select():
            if key.data == "wake":
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
                while True:
                    try:
                        pid, status = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
                    if pid == child:
                        os.write(status_w, f"status {status}".encode())
                        os._exit(0)
            elif key.data == "accept":
                assert listener is not None
                conn, _ = listener.accept()
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    upstream.connect(SOCKET_IN_SANDBOX)
                except OSError:
                    conn.close()
                    upstream.close()
                    continue
                peers[conn], peers[upstream] = upstream, conn
                sel.register(conn, selectors.EVENT_READ, "relay")
                sel.register(upstream, selectors.EVENT_READ, "relay")
            else:
                src = key.fileobj
                assert isinstance(src, socket.socket)
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b""
                dst = peers.get(src)
                if data and dst is not None:
                    try:
                        dst.sendall(data)
                        continue
                    except OSError:
                        pass
                for sock in (src, dst):
                    if sock is not None:
                        peers.pop(sock, None)
                        sel.unregister(sock)
                        sock.close()


# ---- the fork server -----------------------------------------------------------
def _instance(
    req: dict, out_fd: int, err_fd: int, env_fd: int, status_w: int, go_r: int, ready_w: int
) -> None:
    """B, PID 1 of the new PID namespace. Never returns."""
    try:
        # The environment (secrets included) comes straight from the platform, never
        # through the zygote, whose memory every later instance inherits.
        req["env"] = json.loads(os.pread(env_fd, os.fstat(env_fd).st_size, 0))
        os.close(env_fd)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        # Nothing of the zygote (its socket, other instances' pipes) stays open in here.
        keep = sorted(fd for fd in (status_w, go_r, ready_w) if fd >= 0)
        low = 3
        for fd in keep:
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, 1 << 16)
        _enter_sandbox(req)
        if ready_w >= 0:  # egress: tell the platform our network namespace exists
            os.write(ready_w, b"1")
            os.close(ready_w)
        if go_r >= 0:  # egress: wait until the platform has set up the link
            if os.read(go_r, 1) != b"1":
                raise OSError("the platform could not set up the instance's network")
            os.close(go_r)
    except BaseException as exc:
        message = f"nimbus sandbox: set-up failed: {exc}"
        os.write(2, (message + "\n").encode())
        os.write(status_w, ("error " + message).encode())
        os._exit(126)
    if req["mode"] == "python":
        os.close(status_w)
        _run_runtime(req)
    _init(req, status_w)


def _spawn(req: dict, fds: list[int]) -> dict:
    out_fd, err_fd, env_fd = fds[:3]
    ready_w = fds[3] if len(fds) > 3 else -1  # egress: written once B has its namespaces
    status_r, status_w = os.pipe()
    go_r, go_w = os.pipe() if req.get("network") == "egress" else (-1, -1)
    try:
        # The next child starts a new PID namespace as its PID 1; then the zygote
        # returns to its own, so every instance gets a namespace of its own.
        _check(_libc.unshare(CLONE_NEWPID), "unshare pid namespace")
        try:
            pid = os.fork()
        finally:
            if pid_is_parent():
                _check(_libc.setns(STATE["pidns_fd"], CLONE_NEWPID), "setns pid namespace")
        if pid == 0:
            if go_w >= 0:
                os.close(go_w)
            _instance(req, out_fd, err_fd, env_fd, status_w, go_r, ready_w)
    except OSError as exc:
        for fd in (status_r, go_w):
            if fd >= 0:
                os.close(fd)
        return {"op": "failed", "id": req["id"], "error": str(exc)}
    finally:
        if pid_is_parent():
            for fd in (out_fd, err_fd, env_fd, status_w, go_r, ready_w):
                if fd >= 0:
                    os.close(fd)
    if go_w >= 0:
        STATE.setdefault("go", {})[req["id"]] = go_w
    os.set_blocking(status_r, False)
    STATE.setdefault("children", {})[pid] = (req["id"], status_r)
    return {"op": "spawned", "id": req["id"], "pid": pid}


def pid_is_parent() -> bool:
    """True in the zygote itself (a forked instance sees a different pid)."""
    return os.getpid() == STATE["pid"]


def _reap(ctl: socket.socket) -> None:
    children: dict[int, tuple[str, int]] = STATE.setdefault("children", {})
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        entry = children.pop(pid, None)
        if entry is None:
            continue  # not an instance (nothing else is forked today)
        instance_id, status_r = entry
        go_w = STATE.get("go", {}).pop(instance_id, None)
        if go_w is not None:
            os.close(go_w)
        note = ""
        with contextlib.suppress(BlockingIOError, OSError):
            note = os.read(status_r, 4096).decode()
        os.close(status_r)
        message: dict[str, object] = {"op": "exited", "id": instance_id, "pid": pid}
        if note.startswith("status "):
            message["status"] = int(note[7:])
        else:
            message["status"] = status
            if note.startswith("error "):
                message["error"] = note[6:]
        _send(ctl, message)


def _send(ctl: socket.socket, message: dict) -> None:
    ctl.send(json.dumps(message).encode())


def main() -> None:
    STATE["ctl_fd"] = int(sys.argv[1])
    ctl = socket.socket(fileno=STATE["ctl_fd"])
    init = json.loads(ctl.recv(1 << 20))
    STATE["seccomp"] = bytes.fromhex(init["seccomp"])
    STATE["pid"] = os.getpid()
    STATE["pidns_fd"] = os.open("/proc/self/ns/pid", os.O_RDONLY)
    build_template(init)
    if init.get("bootstrap"):
        import importlib.util

        spec = importlib.util.spec_from_file_location("nimbus_bootstrap", init["bootstrap"])
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        STATE["bootstrap"] = module
    for name in init.get("preload", ()):
        with contextlib.suppress(ImportError):
            __import__(name)
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "subreaper")
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    gc.collect()
    gc.freeze()  # forked instances share these pages instead of copying them on first GC
    _send(ctl, {"op": "ready", "pid": os.getpid(), "version": list(sys.version_info[:3])})
    sel = selectors.DefaultSelector()
    sel.register(ctl, selectors.EVENT_READ, "ctl")
    sel.register(wake_r, selectors.EVENT_READ, "wake")
    fd_size = array.array("i").itemsize
    while True:
        for key, _ in sel.select():
            if key.data == "wake":
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
                _reap(ctl)
                continue
            data, ancdata, _flags, _addr = ctl.recvmsg(1 << 20, socket.CMSG_SPACE(3 * fd_size))
            if not data:  # the platform is gone: so are its instances
                for pid in list(STATE.get("children", {})):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                os._exit(0)
            fds: list[int] = []
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.extend(array.array("i", payload[: len(payload) - len(payload) % fd_size]))
            req = json.loads(data)
            if req.get("op") == "go":
                go_w = STATE.get("go", {}).pop(req.get("id"), None)
                if go_w is not None:
                    with contextlib.suppress(OSError):
                        os.write(go_w, b"1" if req.get("ok") else b"0")
                    os.close(go_w)
            elif req.get("op") == "spawn" and len(fds) in (3, 4):
                try:
                    _send(ctl, _spawn(req, fds))
                except OSError as exc:
                    _send(ctl, {"op": "failed", "id": req.get("id"), "error": str(exc)})
            else:
                for fd in fds:
                    os.close(fd)


if __name__ == "__main__":
    main()
