"""Isolation of the ``namespaces`` sandbox, proven by functions that try to break it.

Every test deploys real functions into a real ``nimbus serve`` that runs the
``namespaces`` sandbox (whatever ``NIMBUS_TEST_SANDBOX`` says), lets them attack
one property from the inside, and asserts the attack fails. Each attack comes
with a positive control (the same probe succeeding where it should, or the
target existing on the host) so that a broken probe cannot pass vacuously.
``docs/security.md`` maps each property to the test that proves it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from nimbus.sandbox import cgroups
from nimbus.sandbox.seccomp import syscall_numbers
from tests.integration.harness import TOKEN, Server, children_of, wait_until

NAMESPACES = {"NIMBUS_SANDBOX": "namespaces"}
TMP_MB = 16
PIDS_MAX = 32
CANARY = secrets.token_hex(32)
#: Errors that all mean "you may not write here".
DENIED_WRITE = {"EROFS", "EACCES", "EPERM"}


@pytest.fixture(scope="module")
def ns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One namespaces server for the tests whose settings agree (small /tmp and pids caps)."""
    env = {
        **NAMESPACES,
        "NIMBUS_TMP_MB": str(TMP_MB),
        "NIMBUS_PIDS_MAX": str(PIDS_MAX),
        "NIMBUS_ISOLATION_CANARY": CANARY,  # a platform secret no function may see
    }
    srv = Server(tmp_path_factory.mktemp("isolation") / "data", env).start()
    yield srv
    srv.stop()
    srv.close()


# ---- helpers (host side) ------------------------------------------------------------------


def _instance_pidfiles(server: Server) -> dict[str, int]:
    """Instance id → host pid of the instance's init, for live instances of ``server``."""
    found = {}
    for f in (server.data_dir / "run" / "pids").glob("*.pid"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            found[f.stem] = int(f.read_text().split()[0])
    return found


def _new_instance(server: Server, before: dict[str, int]) -> tuple[str, int]:
    """Wait for an instance that was not in ``before`` and return (id, host pid)."""
    new: dict[str, int] = {}
    assert wait_until(
        lambda: bool(new.update(_instance_pidfiles(server)) or set(new) - set(before))
    )
    (instance_id,) = set(new) - set(before)
    return instance_id, new[instance_id]


def _status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _host_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _pids_in_namespace(ns_link: str) -> list[int]:
    return [pid for pid in _host_pids() if _pid_namespace(pid) == ns_link]


def _processes_with_argv(argv: list[str]) -> list[int]:
    wanted = ("\0".join(argv) + "\0").encode()
    found = []
    for pid in _host_pids():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes() == wanted:
                found.append(pid)
    return found


def _cgroup_parent(server: Server) -> str:
    """The cgroup parent the platform uses for ``server`` (same rule as ``nimbus.app``)."""
    digest = hashlib.sha256(str(server.data_dir.resolve()).encode()).hexdigest()[:10]
    return f"nimbus-{digest}"


def _pids_cgroup(server: Server, instance_id: str) -> Path:
    layout = cgroups.detect()
    assert layout is not None, "the namespaces sandbox needs cgroups"
    return layout.pids / _cgroup_parent(server) / instance_id


def _in_background(fn: Callable[[], Any]) -> Future[Any]:
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn)
    pool.shutdown(wait=False)
    return future


# Shared by the probes below: run an attempt, return "ok" or the errno's name.
ATTEMPT = """
import errno

def attempt(fn, *args):
    try:
        fn(*args)
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
"""


# ---- processes -----------------------------------------------------------------------------

PROCS_APP = (
    ATTEMPT
    + """
import os, signal, socket, subprocess

def fds():
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            found[fd] = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            continue  # the directory listing's own descriptor
        if found[fd].startswith("socket:"):  # where does it lead?
            with socket.socket(fileno=os.dup(int(fd))) as s:
                try:
                    found[fd] = "socket:" + str(s.getpeername())
                except OSError:  # not connected: a listening socket
                    found[fd] = "listening:" + str(s.getsockname())
    return found

def handler(event, context):
    child = subprocess.Popen(["sleep", "30"])
    try:
        visible = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        # SIGKILL for the victim the test started, signal 0 (a permission/existence check)
        # for the platform and the test itself, so that a broken sandbox fails the test
        # instead of killing the test run.
        kills = {
            str(pid): attempt(os.kill, pid, signal.SIGKILL if pid == event["victim"] else 0)
            for pid in event["host_pids"]
        }
        status = dict(
            line.split(":\\t", 1) for line in open("/proc/self/status") if ":\\t" in line
        )
        return {
            "me": os.getpid(),
            "child": child.pid,
            "visible": visible,
            "kills": kills,
            "kill_own_child": attempt(os.kill, child.pid, 0),
            "uid": [os.getuid(), os.geteuid(), os.getgid(), os.getegid()],
            "groups": os.getgroups(),
            "caps": {k: v.strip() for k, v in status.items() if k.startswith("Cap")},
            "fds": fds(),
        }
    finally:
        child.kill()
        child.wait()
"""
)


def test_processes_see_only_their_own_pid_namespace(ns: Server) -> None:
    ns.deploy("iso-procs", {"app.py": PROCS_APP})
    ns.deploy("iso-procs-other", {"app.py": PROCS_APP})
    before = _instance_pidfiles(ns)
    assert ns.invoke("iso-procs-other", {"host_pids": [], "victim": 0})["status"] == "succeeded"
    _, other_pid = _new_instance(ns, before)
    other = _instance_pidfiles(ns)
    victim = subprocess.Popen(["sleep", "60"])  # a host process the function tries to kill
    try:
        assert ns.proc is not None
        host_pids = {
            "victim": victim.pid,
            "platform": ns.proc.pid,
            "test": os.getpid(),
            "other instance": other_pid,
            **{f"platform child {p}": p for p in children_of(ns.proc.pid)},  # zygotes
        }
        event = {"host_pids": list(host_pids.values()), "victim": victim.pid}
        result = ns.invoke("iso-procs", event)
        assert result["status"] == "succeeded", result
        r = result["result"]
        # Control: its own child is visible and signalable, so the probes work.
        assert r["child"] in r["visible"] and r["kill_own_child"] == "ok"
        assert set(r["visible"]) <= {1, r["me"], r["child"]}, r["visible"]
        assert not set(host_pids.values()) & set(r["visible"])
        for name, pid in host_pids.items():
            assert r["kills"][str(pid)] == "ESRCH", (name, pid, r["kills"])
        assert victim.poll() is None, "the function killed a host process"
    finally:
        victim.kill()
        victim.wait()
    # Nothing of the platform or the zygote is open in there: stdio and its Runtime API only
    # (and the runtime's relay of 127.0.0.1:9001 to it, for object storage).
    instance_id, host_pid = _new_instance(ns, other)
    own_socket = f"socket:{ns.data_dir.resolve()}/run/sockets/{instance_id}.sock"
    relay = "listening:('127.0.0.1', 9001)"
    for fd, target in r["fds"].items():
        assert target in ("/dev/null", own_socket, relay) or target.startswith("pipe:"), (
            fd,
            target,
        )
    assert {"0", "1", "2"} <= set(r["fds"]), r["fds"]
    uid, euid, gid, egid = r["uid"]
    assert uid != 0 and euid != 0 and gid != 0 and egid != 0 and r["groups"] == []
    assert all(int(r["caps"][k], 16) == 0 for k in ("CapInh", "CapPrm", "CapEff", "CapAmb"))
    # Seen from the host: the instance runs as that uid, in a PID namespace of its own.
    host_view = _status(host_pid)
    assert host_view["Uid"].split() == [str(uid)] * 4
    assert _pid_namespace(host_pid) != _pid_namespace(os.getpid())
    assert host_view["NSpid"].split()[-1] == "1"
    # Every instance gets a uid of its own.
    other_uid = ns.invoke("iso-procs-other", {"host_pids": [], "victim": 0})["result"]["uid"][0]
    assert other_uid not in (0, uid)


# ---- filesystem ----------------------------------------------------------------------------

FS_APP = (
    ATTEMPT
    + """
import os, sys

def create(path):  # a new file, removed again at once should the sandbox allow it
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    os.unlink(path)

def open_for_writing(path):  # the permission check only: nothing is written
    os.close(os.open(path, os.O_WRONLY))

def make_dir(path):
    os.mkdir(path)
    os.rmdir(path)

def read(path):
    with open(path, "rb") as f:
        return f.read()

def fill(path, limit):
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    chunk = b"\\1" * (1 << 20)
    try:
        while written < limit:
            written += os.write(fd, chunk)
        return written, "ok"
    except OSError as e:
        return written, errno.errorcode.get(e.errno, str(e.errno))
    finally:
        os.close(fd)
        os.unlink(path)

def handler(event, context):
    prefix = sys.base_prefix
    root_entries = []
    for top, dirs, files in os.walk("/root"):
        root_entries += [os.path.join(top, n) for n in dirs + files]
        dirs[:] = [d for d in dirs if os.path.join(top, d) != prefix]
    return {
        "prefix": prefix,
        "creates": {p: attempt(create, p) for p in event["create"]},
        "mkdir": {p: attempt(make_dir, p) for p in event["mkdir"]},
        "opens": {
            p: attempt(open_for_writing, p) for p in [*event["open_for_writing"], sys.executable]
        },
        "tmp": attempt(create, "/tmp/" + event["name"]),
        "shm": attempt(create, "/dev/shm/" + event["name"]),
        "tmp_fill": fill("/tmp/fill", event["fill_mb"] << 20),
        "reads": {p: attempt(read, p) for p in event["read"]},
        "lists": {p: attempt(os.listdir, p) for p in event["read"]},
        "passwd": read("/etc/passwd").decode(),
        "root_entries": root_entries,
        "proc1_root": sorted(os.listdir("/proc/1/root")),
        "slash": sorted(os.listdir("/")),
        "sys": sorted(os.listdir("/sys")) if os.path.exists("/sys") else None,
        "dev": sorted(os.listdir("/dev")),
    }
"""
)


def test_filesystem_is_read_only_private_and_minimal(ns: Server) -> None:
    data_dir = ns.data_dir.resolve()
    assert (data_dir / "nimbus.db").exists()  # control: the platform's data is there
    name = f"nimbus-isolation-{secrets.token_hex(6)}"  # no file of the host has this name
    secret_file = Path("/root") / f".{name}"
    secret_file.write_text("host secret\n")
    try:
        ns.deploy("iso-fs", {"app.py": FS_APP})
        event = {
            "name": name,
            "create": [f"{d}/{name}" for d in ("", "/usr", "/usr/lib", "/var/task", "/etc")],
            "mkdir": [f"{d}/{name}" for d in ("", "/var/task", "/etc", "/run/nimbus")],
            "open_for_writing": [
                "/var/task/app.py",
                "/etc/passwd",
                "/proc/sys/kernel/hostname",
                "/proc/sys/vm/drop_caches",
                "/proc/sysrq-trigger",
                "/proc/self/uid_map",
            ],
            "read": [
                "/etc/shadow",
                str(secret_file),
                str(data_dir),
                str(data_dir / "nimbus.db"),
                str(data_dir / "code"),
                "/proc/1/root/etc/shadow",
            ],
            "fill_mb": 2 * TMP_MB,
        }
        result = ns.invoke("iso-fs", event)
    finally:
        secret_file.unlink()
    assert result["status"] == "succeeded", result
    r = result["result"]
    for path, outcome in {**r["creates"], **r["mkdir"]}.items():
        assert outcome in DENIED_WRITE, (path, outcome)
    assert len(r["opens"]) == len(event["open_for_writing"]) + 1  # + the interpreter
    for path, outcome in r["opens"].items():  # /proc/sysrq-trigger may not even be there
        allowed = DENIED_WRITE | ({"ENOENT"} if path == "/proc/sysrq-trigger" else set())
        assert outcome in allowed, (path, outcome)
    # /tmp and /dev/shm are writable (control), and /tmp stops at its cap with ENOSPC.
    assert r["tmp"] == "ok" and r["shm"] == "ok"
    written, outcome = r["tmp_fill"]
    assert outcome == "ENOSPC", r["tmp_fill"]
    assert (TMP_MB - 4) << 20 <= written <= TMP_MB << 20, written
    # Nothing of the host's secrets, the platform's data or the host root is visible.
    for path in event["read"]:
        assert r["reads"][path] in ("ENOENT", "EACCES"), (path, r["reads"][path])
        assert r["lists"][path] in ("ENOENT", "EACCES", "ENOTDIR"), (path, r["lists"][path])
    host_passwd = Path("/etc/passwd").read_text()
    assert "daemon:" in host_passwd and "daemon:" not in r["passwd"]
    # /root holds only the path down to the runtime's Python install (not its other files).
    prefix = r["prefix"]
    for entry in r["root_entries"]:
        assert entry == prefix or prefix.startswith(entry + "/"), entry
    # /proc/1 is the function itself: its root is the sandbox's, not the host's.
    assert r["proc1_root"] == r["slash"]
    host_only = set(os.listdir("/")) - set(r["slash"])
    assert host_only, "the host root should have directories the sandbox lacks"
    assert {"tmp", "usr", "var", "proc", "dev", "etc"} <= set(r["slash"])
    assert r["sys"] is None  # no sysfs: no cgroup files, no devices, no kernel knobs
    assert set(r["dev"]) <= {"null", "zero", "full", "random", "urandom", "shm"} | {
        "fd",
        "stdin",
        "stdout",
        "stderr",
        "pts",
        "ptmx",
    }, r["dev"]


READER_APP = (
    ATTEMPT
    + """
import os

def handler(event, context):
    target = event["target"]
    return {
        "task": sorted(os.listdir("/var/task")),
        "own": attempt(lambda: open("/var/task/b_only.txt").read()),
        "list_target": attempt(os.listdir, target),
        "read_target": attempt(lambda: open(os.path.join(target, "a_only.txt")).read()),
        "list_unpacked": attempt(os.listdir, os.path.dirname(target)),
    }
"""
)


def test_a_function_cannot_read_another_functions_code(ns: Server) -> None:
    a = ns.deploy("iso-code-a", {"app.py": READER_APP, "a_only.txt": "A's secret\n"})
    ns.deploy("iso-code-b", {"app.py": READER_APP, "b_only.txt": "B's own\n"})
    a_dir = ns.data_dir.resolve() / "code" / "unpacked" / a["code_sha256"]
    # A runs (its code is unpacked and mounted) and can read its own file.
    a_result = ns.invoke("iso-code-a", {"target": str(a_dir)})
    assert a_result["status"] == "succeeded", a_result
    assert (a_dir / "a_only.txt").read_text() == "A's secret\n"  # control: it is there
    r = ns.invoke("iso-code-b", {"target": str(a_dir)})["result"]
    assert r["own"] == "ok"
    assert set(r["task"]) - {"__pycache__"} == {"app.py", "b_only.txt"}, r["task"]
    for key in ("list_target", "read_target", "list_unpacked"):
        assert r[key] == "ENOENT", (key, r[key])


# ---- network -------------------------------------------------------------------------------

NET_APP = (
    ATTEMPT
    + """
import socket

def connect(address, family=socket.AF_INET):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(tuple(address) if isinstance(address, list) else address)
        s.sendall(b"hello from a function")

def own_listener(port):
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        connect(["127.0.0.1", port])
        conn, _ = server.accept()
        data = conn.recv(100)
        conn.close()
        return data.decode()

def own_abstract(name):
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(name)
        server.listen()
        connect(name, socket.AF_UNIX)
        return "ok"

def handler(event, context):
    abstract = "\\0" + event["abstract"]
    return {
        "interfaces": [name for _, name in socket.if_nameindex()],
        "targets": {k: attempt(connect, v) for k, v in event["targets"].items()},
        "abstract": attempt(connect, abstract, socket.AF_UNIX),
        "own_port": own_listener(event["targets"]["host listener"][1]),
        "own_abstract": own_abstract(abstract),
    }
"""
)


def _default_route_address() -> str | None:
    """This host's address on its default route, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
            address = str(s.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_network_is_loopback_only_and_private(ns: Server) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 0))
    listener.listen()
    port = listener.getsockname()[1]
    abstract = socket.socket(socket.AF_UNIX)
    abstract_name = f"nimbus-isolation-{secrets.token_hex(6)}"
    abstract.bind("\0" + abstract_name)
    abstract.listen()
    try:
        # Control: both listeners accept connections from the host.
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        listener.accept()[0].close()
        targets = {"host listener": ["127.0.0.1", port], "platform": ["127.0.0.1", ns.port]}
        if (address := _default_route_address()) is not None:
            targets["host address"] = [address, port]
        ns.deploy("iso-net", {"app.py": NET_APP})
        result = ns.invoke("iso-net", {"targets": targets, "abstract": abstract_name})
        assert result["status"] == "succeeded", result
        r = result["result"]
        assert r["interfaces"] == ["lo"]
        # Control: the function's own loopback works, on the very port the host listens on.
        assert r["own_port"] == "hello from a function" and r["own_abstract"] == "ok"
        assert r["targets"]["host listener"] == "ECONNREFUSED", r
        assert r["targets"]["platform"] == "ECONNREFUSED", r
        if "host address" in targets:
            assert r["targets"]["host address"] == "ENETUNREACH", r
        assert r["abstract"] == "ECONNREFUSED", r
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing reached the host listener
    finally:
        listener.close()
        abstract.close()


PEER_APP = (
    ATTEMPT
    + """
import ctypes, os, socket, threading

def serve(server):
    while True:
        conn, _ = server.accept()
        conn.sendall(b"peer")
        conn.close()

def listen(address, family):
    server = socket.socket(family, socket.SOCK_STREAM)
    server.bind(address)
    server.listen()
    threading.Thread(target=serve, args=(server,), daemon=True).start()

def fetch(address, family):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(address)
        if s.recv(10) != b"peer":
            raise OSError(errno.EPROTO, "unexpected reply")

libc = ctypes.CDLL(None, use_errno=True)
SYSV_KEY, IPC_CREAT = 0x4E494D42, 0o1000

def sysv_segment(flags):
    if libc.shmget(SYSV_KEY, 4096, flags) == -1:
        raise OSError(ctypes.get_errno(), "shmget")

def handler(event, context):
    tcp, abstract = ("127.0.0.1", 7777), "\\0nimbus-isolation-peer"
    if event.get("listen"):
        listen(tcp, socket.AF_INET)
        listen(abstract, socket.AF_UNIX)
        sysv_segment(IPC_CREAT | 0o666)
        open("/dev/shm/nimbus-isolation-peer", "w").close()
    return {
        "tcp": attempt(fetch, tcp, socket.AF_INET),
        "abstract": attempt(fetch, abstract, socket.AF_UNIX),
        "sysv shm": attempt(sysv_segment, 0),
        "posix shm": attempt(os.stat, "/dev/shm/nimbus-isolation-peer"),
    }
"""
)


def test_instances_cannot_reach_each_other(ns: Server) -> None:
    ns.deploy("iso-peer-a", {"app.py": PEER_APP})
    ns.deploy("iso-peer-b", {"app.py": PEER_APP})
    # A listens on 127.0.0.1:7777 and an abstract unix socket, creates a SysV shared memory
    # segment and a POSIX one, and reaches all four (control).
    reachable = dict.fromkeys(("tcp", "abstract", "sysv shm", "posix shm"), "ok")
    a = ns.invoke("iso-peer-a", {"listen": True})
    assert a["result"] == reachable, a
    again = ns.invoke("iso-peer-a")  # they outlive the call in the warm instance
    assert again["cold_start"] is False and again["result"] == reachable, again
    b = ns.invoke("iso-peer-b")
    assert b["result"] == {
        "tcp": "ECONNREFUSED",
        "abstract": "ECONNREFUSED",
        "sysv shm": "ENOENT",
        "posix shm": "ENOENT",
    }, b


# ---- memory contents ---------------------------------------------------------------------

# Reads its own memory (heap, stack, anonymous mappings: what an instance inherits from the
# zygote it was forked from) and returns what a thief would look for: long hex runs (any hex
# secret) and ``NAME=value`` strings of the platform's variables.
SCAN_APP = """
import ctypes, re

def handler(event, context):
    runs, variables = set(), set()
    for line in open("/proc/self/maps"):
        fields = line.split()
        name = fields[5] if len(fields) > 5 else ""
        if fields[1][0] != "r" or name not in ("", "[heap]", "[stack]"):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        memory = ctypes.string_at(start, end - start)
        runs.update(m.group().decode() for m in re.finditer(rb"[0-9a-f]{64,}", memory))
        for m in re.finditer(rb"NIMBUS_[A-Z_]+=[ -~]*", memory):
            variables.add(m.group().decode())
    return {"runs": sorted(runs), "variables": sorted(variables)}
"""


def _fragments_of(secret: str, runs: list[str], size: int = 64) -> list[str]:
    """The runs that contain a ``size``-character piece of ``secret``."""
    pieces = {secret[i : i + size] for i in range(len(secret) - size + 1)}
    return [r for r in runs if any(r[i : i + size] in pieces for i in range(len(r) - size + 1))]


def test_instances_inherit_no_other_functions_secrets(ns: Server) -> None:
    """Instances are forks of a zygote that serves every function: nothing of another
    function's start request (its environment and secret variables) and nothing of the
    platform's environment (its admin key, its secret key) may be in there."""
    secret, plain, mine = (secrets.token_hex(900) for _ in range(3))  # 1800 hex digits each
    ns.deploy(
        "iso-victim",
        {"app.py": HOG_APP},
        memory_mb=64,
        secret_env={"TLS_KEY": secret},
        env={"SIGNING_KEY": plain},
    )
    for _ in range(3):  # three instances, three start requests through the zygote
        assert ns.invoke("iso-victim")["status"] == "succeeded"
        assert ns.invoke("iso-victim", {"mb": 100})["status"] == "failed"  # out of memory
    ns.deploy("iso-thief", {"app.py": SCAN_APP}, secret_env={"MY_KEY": mine})
    result = ns.invoke("iso-thief")
    assert result["status"] == "succeeded", result
    runs, variables = result["result"]["runs"], result["result"]["variables"]
    assert _fragments_of(mine, runs), "control: the scan finds the thief's own secret"
    assert "NIMBUS_NAMESPACE=default" in variables, "control: and its own variables"
    assert not _fragments_of(secret, runs), "another function's secret_env is in this instance"
    assert not _fragments_of(plain, runs), "another function's env is in this instance"
    assert not _fragments_of(CANARY, runs), "the platform's environment is in this instance"
    leaked = [v for v in variables if TOKEN in v or v.startswith(("NIMBUS_ADMIN", "NIMBUS_SEC"))]
    assert not leaked, leaked


# ---- memory --------------------------------------------------------------------------------

HOG_APP = """
import time, uuid
INSTANCE = uuid.uuid4().hex

def handler(event, context):
    hoard = [b"x" * (1 << 20) for _ in range(event.get("mb", 0))]  # touched, not lazy
    time.sleep(event.get("sleep", 0))
    return {"instance": INSTANCE, "held_mb": len(hoard)}
"""


def test_memory_limit_kills_only_the_offender(ns: Server) -> None:
    ns.deploy("iso-hog", {"app.py": HOG_APP}, memory_mb=64, timeout_s=10)
    ns.deploy("iso-steady", {"app.py": HOG_APP}, memory_mb=128, timeout_s=10)
    small = ns.invoke("iso-hog", {"mb": 16})  # control: it runs within its limit
    assert small["result"]["held_mb"] == 16, small
    steady = ns.invoke("iso-steady")["result"]["instance"]
    neighbour = _in_background(lambda: ns.invoke("iso-steady", {"mb": 32, "sleep": 1.5}))
    time.sleep(0.2)  # let the neighbour's call start; it runs until well after the OOM kill
    oom = ns.invoke("iso-hog", {"mb": 200})
    assert oom["status"] == "failed", oom
    assert oom["error"]["errorType"] == "Runtime.OutOfMemory", oom
    assert "64 MB" in oom["error"]["errorMessage"]
    n = neighbour.result(timeout=30)
    assert n["status"] == "succeeded" and n["result"] == {"instance": steady, "held_mb": 32}, n
    fresh = ns.invoke("iso-hog", {"mb": 16})
    assert fresh["status"] == "succeeded" and fresh["cold_start"] is True, fresh
    assert fresh["result"]["instance"] != small["result"]["instance"]


# ---- fork bomb -----------------------------------------------------------------------------

# Every child runs the loop too. The bomb stops growing at 500 processes visible in its /proc
# (a safety net, in case both the pids cgroup and the PID namespace fail; the test asserts 32).
BOMB_APP = """
import os

def handler(event, context):
    while True:
        if len(os.listdir("/proc")) < 500:
            try:
                os.fork()
            except OSError:
                pass
"""


def test_fork_bomb_is_contained_and_reported(ns: Server) -> None:
    ns.deploy("iso-bomb", {"app.py": BOMB_APP}, timeout_s=3)
    ns.deploy("iso-calm", {"app.py": HOG_APP})
    calm = ns.invoke("iso-calm")["result"]["instance"]  # warm before the bomb
    host_before = len(_host_pids())
    before = _instance_pidfiles(ns)
    started = time.monotonic()
    bomb = _in_background(lambda: ns.invoke("iso-bomb"))
    instance_id, init_pid = _new_instance(ns, before)
    cgroup = _pids_cgroup(ns, instance_id)
    ns_link = _pid_namespace(init_pid)
    assert ns_link is not None
    # The bomb reaches the cap (control: it really forks) ...
    assert wait_until(lambda: int((cgroup / "pids.current").read_text()) >= PIDS_MAX - 2)
    peak_in_namespace, peak_host = 0, 0
    # ... and while it is at the cap, the platform and other functions answer promptly.
    for _ in range(3):
        t0 = time.monotonic()
        assert httpx.get(ns.url + "/healthz", timeout=5).status_code == 200
        r = ns.invoke("iso-calm")
        assert r["status"] == "succeeded" and r["result"]["instance"] == calm
        assert time.monotonic() - t0 < 2.0
        peak_in_namespace = max(peak_in_namespace, len(_pids_in_namespace(ns_link)))
        peak_host = max(peak_host, len(_host_pids()))
    assert 1 < peak_in_namespace <= PIDS_MAX
    assert peak_host - host_before < PIDS_MAX + 200  # an unbounded bomb makes thousands
    assert int((cgroup / "pids.max").read_text()) == PIDS_MAX
    result = bomb.result(timeout=30)
    assert result["status"] == "failed"
    assert result["error"]["errorType"] == "Sandbox.Timedout", result
    assert time.monotonic() - started < 3 + 5
    # Nothing of it remains: no process in its namespace, its cgroup is gone.
    assert wait_until(lambda: not _pids_in_namespace(ns_link), timeout=10)
    assert wait_until(lambda: not cgroup.exists(), timeout=10)
    assert instance_id not in _instance_pidfiles(ns)
    # It is reported: the platform logs that the instance hit its process limit.
    assert wait_until(
        lambda: any(
            line["stream"] == "platform" and "process limit" in line["message"]
            for line in ns.logs("iso-bomb")
        ),
        timeout=10,
    ), ns.logs("iso-bomb")
    assert ns.invoke("iso-calm")["result"]["instance"] == calm


# ---- seccomp -------------------------------------------------------------------------------

SECCOMP_APP = """
import ctypes, errno, os, socket, subprocess, time

libc = ctypes.CDLL(None, use_errno=True)

def syscall(nr, *args):
    result = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    if result == -1:
        return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
    return "ok"

def fork_and_wait():
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    return "ok" if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7 else "?"

def handler(event, context):
    nr = event["nr"]
    CLONE_NEWUSER, CLONE_NEWNET, SIGCHLD = 0x10000000, 0x40000000, 17
    AF_INET, AF_VSOCK, SOCK_STREAM = 2, 40, 1
    PTRACE_ATTACH, ADDR_NO_RANDOMIZE = 16, 0x0040000
    child = subprocess.Popen(["sleep", "30"])
    try:
        denied = {
            "unshare(CLONE_NEWUSER)": syscall(nr["unshare"], CLONE_NEWUSER),
            "unshare(CLONE_NEWNET)": syscall(nr["unshare"], CLONE_NEWNET),
            "clone(CLONE_NEWUSER)": syscall(nr["clone"], CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0),
            "mount(tmpfs)": syscall(nr["mount"], 0, 0, 0, 0, 0),
            "ptrace(ATTACH, 1)": syscall(nr["ptrace"], PTRACE_ATTACH, 1, 0, 0),
            "ptrace(ATTACH, child)": syscall(nr["ptrace"], PTRACE_ATTACH, child.pid, 0, 0),
            "bpf(bad command)": syscall(nr["bpf"], 9999, 0, 0),
            "keyctl(GET_KEYRING_ID)": syscall(nr["keyctl"], 0, -2, 1),
            "socket(AF_VSOCK)": syscall(nr["socket"], AF_VSOCK, SOCK_STREAM, 0),
            "personality(ADDR_NO_RANDOMIZE)": syscall(nr["personality"], ADDR_NO_RANDOMIZE),
            "setns": syscall(nr["setns"], 0, 0),
        }
    finally:
        child.kill()
        child.wait()
    fd = libc.syscall(ctypes.c_long(nr["socket"]), AF_INET, SOCK_STREAM, 0)
    allowed = {
        "socket(AF_INET)": "ok" if fd >= 0 else str(ctypes.get_errno()),
        "personality(query)": syscall(nr["personality"], 0xFFFFFFFF),
        "fork": fork_and_wait(),
    }
    if fd >= 0:
        os.close(fd)
    status = open("/proc/self/status").read()
    return {"denied": denied, "allowed": allowed, "seccomp": "Seccomp:\\t2" in status}
"""


def test_seccomp_refuses_dangerous_syscalls(ns: Server) -> None:
    ns.deploy("iso-seccomp", {"app.py": SECCOMP_APP})
    nr = syscall_numbers(platform.machine())
    result = ns.invoke("iso-seccomp", {"nr": nr})
    assert result["status"] == "succeeded", result
    r = result["result"]
    assert r["seccomp"] is True
    # Controls: the same syscalls with harmless arguments, and a plain fork, are allowed.
    assert r["allowed"] == {"socket(AF_INET)": "ok", "personality(query)": "ok", "fork": "ok"}
    # Unprivileged, most of these would succeed (or fail with another errno) without the
    # filter: user namespaces, keyrings, vsock and ptrace of one's own child are allowed
    # to any uid here, and bpf() with a bad command is EINVAL.
    assert r["denied"] == dict.fromkeys(r["denied"], "EPERM"), r["denied"]


# ---- privileges ----------------------------------------------------------------------------

PRIV_APP = (
    ATTEMPT
    + """
import os, subprocess, time

def handler(event, context):
    su = event["su"]
    st = os.stat(su)
    proc = subprocess.Popen(
        [su, "root", "-c", "id -u"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    uids = []  # (real, effective, saved) uids of the setuid-root program once it runs
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not uids:
        try:
            status = open(f"/proc/{proc.pid}/status").read()
        except OSError:
            break
        fields = dict(line.split(":\\t", 1) for line in status.splitlines() if ":\\t" in line)
        if fields["Name"] == "su":
            uids = [int(u) for u in fields["Uid"].split()[:3]]
        time.sleep(0.001)
    proc.kill()
    out, err = proc.communicate()
    status = open("/proc/self/status").read()
    mounts = open("/proc/self/mountinfo").read().splitlines()
    return {
        "su_mode": [st.st_uid, bool(st.st_mode & 0o4000)],
        "su_uids": uids,
        "su_out": out.decode(),
        "after": [os.getuid(), os.geteuid()],
        "setuid": attempt(os.setuid, 0),
        "seteuid": attempt(os.seteuid, 0),
        "setresuid": attempt(os.setresuid, 0, 0, 0),
        "setgid": attempt(os.setgid, 0),
        "setgroups": attempt(os.setgroups, [0]),
        "no_new_privs": "NoNewPrivs:\\t1" in status,
        "usr_mount": [m for m in mounts if m.split()[4] == "/usr"],
    }
"""
)


def test_no_privilege_escalation(ns: Server) -> None:
    su = "/usr/bin/su" if os.path.exists("/usr/bin/su") else "/bin/su"
    assert os.stat(su).st_mode & 0o4000, "the test needs a setuid-root su on the host"
    ns.deploy("iso-priv", {"app.py": PRIV_APP})
    result = ns.invoke("iso-priv", {"su": su})
    assert result["status"] == "succeeded", result
    r = result["result"]
    assert r["su_mode"] == [0, True]  # control: a setuid-root program is in reach
    assert r["su_uids"], "su never ran"
    assert 0 not in r["su_uids"], r["su_uids"]  # the setuid bit gave it nothing
    assert r["su_out"].strip() != "0"
    assert 0 not in r["after"]
    for key in ("setuid", "seteuid", "setresuid", "setgid", "setgroups"):
        assert r[key] == "EPERM", (key, r[key])
    assert r["no_new_privs"] is True
    (usr,) = r["usr_mount"]
    assert "nosuid" in usr.split()[5].split(","), usr


# ---- background processes ------------------------------------------------------------------

BACKGROUND_APP = """
import os, subprocess, time

def running(argv):
    wanted = ("\\0".join(argv) + "\\0").encode()
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            count += open(f"/proc/{pid}/cmdline", "rb").read() == wanted
        except OSError:
            pass
    return count

def handler(event, context):
    argv = ["sleep", event["seconds"]]
    subprocess.Popen(argv)  # a plain child, never waited for
    subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL)
    pid = os.fork()  # a daemon: double fork and setsid, reparented to PID 1
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", argv)
        os._exit(0)
    os.waitpid(pid, 0)
    deadline = time.monotonic() + 5
    while running(argv) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    return running(argv)
"""


def _sleep_argv() -> list[str]:
    """A ``sleep`` command line no other process on the host has."""
    return ["sleep", f"1000.{secrets.randbelow(10**9):09d}"]


def test_background_processes_die_with_their_instance(make_server: Callable[..., Server]) -> None:
    srv = make_server(
        sandbox="namespaces", keepalive_s=0.2, last_keepalive_s=0.2, scale_in_cooldown_s=0
    )
    srv.deploy("iso-bg", {"app.py": BACKGROUND_APP})
    argv = _sleep_argv()
    before = _instance_pidfiles(srv)
    result = srv.invoke("iso-bg", {"seconds": argv[1]})
    assert result["result"] == 3, result  # control: all three were running at return
    instance_id, _ = _new_instance(srv, before)
    # The idle instance is released after 0.2 s, and everything it started goes with it.
    assert wait_until(lambda: instance_id not in _instance_pidfiles(srv), timeout=10)
    assert wait_until(lambda: not _processes_with_argv(argv), timeout=10), _processes_with_argv(
        argv
    )
    assert srv.proc is not None and srv.proc.poll() is None


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["stop", "crash"])
def test_background_processes_die_with_the_server(
    make_server: Callable[..., Server], stop_signal: int
) -> None:
    srv = make_server(sandbox="namespaces")
    srv.deploy("iso-bg", {"app.py": BACKGROUND_APP})
    argv = _sleep_argv()
    assert srv.invoke("iso-bg", {"seconds": argv[1]})["result"] == 3
    assert len(_processes_with_argv(argv)) == 3  # control: the host sees them running
    assert srv.proc is not None
    platform_pid = srv.proc.pid
    helpers = children_of(platform_pid)  # zygotes and instances
    assert helpers
    srv.stop(stop_signal)
    assert wait_until(lambda: not _processes_with_argv(argv), timeout=10), _processes_with_argv(
        argv
    )
    assert wait_until(lambda: not any(Path(f"/proc/{p}").exists() for p in helpers), timeout=10)
