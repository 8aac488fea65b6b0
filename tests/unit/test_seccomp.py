"""The seccomp deny list: each rule checked in a child process that installs the real filter."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nimbus.sandbox.seccomp import (
    DENIED_SYSCALLS,
    SeccompUnsupportedError,
    build_filter,
    install,
    syscall_numbers,
)

SRC = Path(__file__).resolve().parents[2] / "src"
ARCH = platform.machine()
NS_FLAGS = {
    "NEWNS": 0x20000,
    "NEWCGROUP": 0x02000000,
    "NEWUTS": 0x04000000,
    "NEWIPC": 0x08000000,
    "NEWUSER": 0x10000000,
    "NEWPID": 0x20000000,
    "NEWNET": 0x40000000,
    "NEWTIME": 0x80,
}

PRELUDE = """\
import ctypes, errno, json, os, subprocess, sys
from nimbus.sandbox.seccomp import build_filter, install
libc = ctypes.CDLL(None, use_errno=True)
NR = {numbers!r}
NS_FLAGS = {ns_flags!r}

def res(ret):
    return "ok" if ret != -1 else errno.errorcode[ctypes.get_errno()]

def oserr(fn, *args):
    try:
        fn(*args)
    except OSError as e:
        return errno.errorcode[e.errno]
    return "ok"

if {with_filter}:
    install(build_filter())
result = {{}}
"""


def run_child(body: str, *, with_filter: bool = True) -> dict[str, object]:
    """Run ``body`` in a fresh interpreter (filtered unless told otherwise); return ``result``."""
    prelude = PRELUDE.format(
        numbers=syscall_numbers(ARCH), ns_flags=NS_FLAGS, with_filter=with_filter
    )
    script = prelude + textwrap.dedent(body) + "\nprint(json.dumps(result))\n"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, f"child failed ({proc.returncode}): {proc.stderr}"
    parsed: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return parsed


# ---- what is denied ------------------------------------------------------------


def test_unshare_is_denied() -> None:
    result = run_child("""
        for name, flag in NS_FLAGS.items():
            result[name] = res(libc.unshare(flag))
        result["FILES"] = res(libc.unshare(0x400))
        if hasattr(os, "unshare"):
            result["os.unshare"] = oserr(os.unshare, os.CLONE_NEWUSER)
        result["setns"] = res(libc.setns(0, 0))
    """)
    assert set(result.values()) == {"EPERM"}, result


def test_clone_with_namespace_flags_is_denied_and_clone3_is_enosys() -> None:
    result = run_child("""
        for name, flag in NS_FLAGS.items():
            r = libc.syscall(NR["clone"], ctypes.c_ulong(flag | 17), 0, 0, 0, 0)
            if r == 0:
                os._exit(0)  # the filter failed and this is the child: leave at once
            if r > 0:
                os.waitpid(r, 0)
            result[name] = res(r)
        result["clone3"] = res(libc.syscall(NR["clone3"], None, 0))
    """)
    assert result.pop("clone3") == "ENOSYS"
    assert result == dict.fromkeys(NS_FLAGS, "EPERM")


def test_mounts_and_root_changes_are_denied() -> None:
    result = run_child("""
        result["mount"] = res(libc.mount(b"none", b"/nonexistent-nimbus", b"tmpfs", 0, None))
        result["umount2"] = res(libc.umount2(b"/nonexistent-nimbus", 2))
        result["chroot"] = res(libc.chroot(b"/"))
        result["pivot_root"] = res(libc.syscall(NR["pivot_root"], b"/", b"/"))
        result["fsopen"] = res(libc.syscall(NR["fsopen"], b"tmpfs", 0))
    """)
    assert set(result.values()) == {"EPERM"}, result


def test_ptrace_and_cross_process_access_are_denied() -> None:
    result = run_child("""
        result["ptrace"] = res(libc.ptrace(ctypes.c_long(0), 0, None, None))  # PTRACE_TRACEME
        result["process_vm_readv"] = res(
            libc.syscall(NR["process_vm_readv"], os.getppid(), None, 0, None, 0, 0))
        result["bpf"] = res(libc.syscall(NR["bpf"], 0, None, 0))
        result["perf_event_open"] = res(libc.syscall(NR["perf_event_open"], None, 0, -1, -1, 0))
        result["keyctl"] = res(libc.syscall(NR["keyctl"], 0, 0, 0, 0, 0))
    """)
    assert set(result.values()) == {"EPERM"}, result


def test_tiocsti_is_denied_even_with_high_bits_set() -> None:
    result = run_child("""
        import fcntl, pty, termios
        master, slave = pty.openpty()
        result["TIOCSTI"] = oserr(fcntl.ioctl, slave, termios.TIOCSTI, b"x")
        result["TIOCSTI|1<<32"] = res(
            libc.syscall(NR["ioctl"], slave, ctypes.c_ulong(0x1_0000_5412), b"x"))
        result["TIOCGWINSZ"] = oserr(fcntl.ioctl, slave, termios.TIOCGWINSZ, b"\\0" * 8)
    """)
    assert result == {"TIOCSTI": "EPERM", "TIOCSTI|1<<32": "EPERM", "TIOCGWINSZ": "ok"}


def test_personality_allows_only_the_docker_values() -> None:
    result = run_child("""
        result["query"] = res(libc.personality(ctypes.c_ulong(0xFFFFFFFF)))
        result["PER_LINUX"] = res(libc.personality(ctypes.c_ulong(0)))
        result["ADDR_NO_RANDOMIZE"] = res(libc.personality(ctypes.c_ulong(0x0040000)))
    """)
    assert result == {"query": "ok", "PER_LINUX": "ok", "ADDR_NO_RANDOMIZE": "EPERM"}


def test_vsock_is_denied_other_sockets_are_not() -> None:
    result = run_child("""
        import socket
        result["vsock"] = oserr(socket.socket, socket.AF_VSOCK, socket.SOCK_STREAM)
        result["unix"] = oserr(socket.socketpair)
    """)
    assert result == {"vsock": "EPERM", "unix": "ok"}


@pytest.mark.skipif(ARCH != "x86_64", reason="the x32 ABI exists only on x86_64")
def test_x32_abi_is_denied() -> None:
    result = run_child('result["x32 getpid"] = res(libc.syscall(0x40000000 | 39))')
    assert result == {"x32 getpid": "EPERM"}


def test_filter_survives_execve() -> None:
    result = run_child("""
        code = "import ctypes; raise SystemExit(ctypes.CDLL(None).unshare(0x10000000))"
        result["python"] = subprocess.run([sys.executable, "-c", code]).returncode
        result["sh true"] = subprocess.run(["sh", "-c", "true"]).returncode
        p = subprocess.run(["sh", "-c", "unshare -U true"], capture_output=True, text=True)
        result["unshare -U"] = [p.returncode, p.stderr]
    """)
    assert result["python"] == 255  # unshare() returned -1 in the exec'd interpreter
    assert result["sh true"] == 0
    if shutil.which("unshare"):  # util-linux, always present on Debian
        unshare = result["unshare -U"]
        assert isinstance(unshare, list)
        code, stderr = unshare
        assert code != 0 and "Operation not permitted" in str(stderr), result


def test_without_the_filter_the_same_calls_succeed() -> None:
    """Control: the EPERMs above come from the filter, not from this machine."""
    result = run_child(
        """
        result["mount"] = res(libc.mount(b"none", b"/nonexistent-nimbus", b"tmpfs", 0, None))
        pid = os.fork()
        if pid == 0:
            os._exit(0 if libc.unshare(0x10000000) == 0 else 1)
        result["unshare"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        """,
        with_filter=False,
    )
    assert result == {"mount": "ENOENT", "unshare": 0}


# ---- what still works ----------------------------------------------------------


def test_processes_and_threads_work() -> None:
    result = run_child("""
        import threading
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        result["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        result["subprocess"] = subprocess.run(["/bin/true"]).returncode
        seen = []
        threads = [threading.Thread(target=seen.append, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        result["threads"] = sorted(seen)
    """)
    assert result == {"fork": 7, "subprocess": 0, "threads": [0, 1, 2, 3]}


def test_files_sockets_time_and_mmap_work() -> None:
    result = run_child("""
        import mmap, socket, time
        with open("/proc/self/status") as f:
            result["file"] = f.read().startswith("Name:")
        server = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
        client.sendall(b"ping")
        result["tcp"] = conn.recv(4).decode()
        result["time"] = time.time() > 1.7e9 and time.monotonic() > 0
        m = mmap.mmap(-1, 1 << 20)
        m[:5] = b"hello"
        result["mmap"] = m[:5].decode()
    """)
    assert result == {"file": True, "tcp": "ping", "time": True, "mmap": "hello"}


# ---- the program itself --------------------------------------------------------


def test_unknown_architectures_are_rejected() -> None:
    for arch in ("mips", "i686", "riscv64", ""):
        with pytest.raises(SeccompUnsupportedError):
            build_filter(arch)


def test_install_rejects_a_malformed_program() -> None:
    with pytest.raises(ValueError):
        install(b"\x06\x00\x00\x00")


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_program_shape(arch: str) -> None:
    program = build_filter(arch)
    insns = [struct.unpack("<HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]
    assert 0 < len(insns) < 4096
    audit = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}[arch]
    assert insns[0] == (0x20, 0, 0, 4)  # load seccomp_data.arch
    assert insns[1][0] == 0x15 and insns[1][3] == audit
    assert insns[-1] == (0x06, 0, 0, 0x80000000)  # the arch mismatch target: kill
    for pc, (code, jt, jf, _) in enumerate(insns):
        if code & 0x07 == 0x05:  # every jump lands inside the program
            assert pc + 1 + max(jt, jf) < len(insns)
    assert {"mount", "ptrace", "unshare", "bpf", "kexec_load"} <= set(DENIED_SYSCALLS)


# ---- syscall numbers, checked against independent sources ----------------------

WELL_KNOWN = {
    "x86_64": {"ioctl": 16, "socket": 41, "clone": 56, "ptrace": 101, "mount": 165, "unshare": 272},
    "aarch64": {
        "ioctl": 29,
        "mount": 40,
        "unshare": 97,
        "ptrace": 117,
        "socket": 198,
        "clone": 220,
    },
}


def header_numbers(arch: str) -> dict[str, int] | None:
    """``__NR_*`` from the installed kernel headers, or None without gcc or headers."""
    if arch == "x86_64" and ARCH == "x86_64":
        source, defines = "#include <sys/syscall.h>\n", []
    elif arch == "aarch64":  # arm64 uses the generic table
        source = "#include <asm-generic/unistd.h>\n"
        defines = ["-D__BITS_PER_LONG=64", "-D__ARCH_WANT_SYS_CLONE3"]
    else:
        return None
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    proc = subprocess.run(
        [gcc, "-E", "-dM", *defines, "-"], input=source, capture_output=True, text=True
    )
    if proc.returncode != 0:
        return None
    found = re.findall(r"^#define __NR_(\w+) (\d+)$", proc.stdout, re.MULTILINE)
    return {name: int(nr) for name, nr in found}


def libseccomp_numbers(arch: str, names: list[str]) -> dict[str, int] | None:
    """Numbers from libseccomp's own tables (independent of the kernel headers)."""
    path = ctypes.util.find_library("seccomp")
    if path is None:
        return None
    lib = ctypes.CDLL(path)
    resolve = lib.seccomp_syscall_resolve_name_arch
    resolve.argtypes, resolve.restype = [ctypes.c_uint32, ctypes.c_char_p], ctypes.c_int
    token = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}[arch]
    numbers = {name: resolve(token, name.encode()) for name in names}
    return {name: nr for name, nr in numbers.items() if nr >= 0}  # < 0: unknown or not on arch


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_syscall_numbers_match_independent_sources(arch: str) -> None:
    ours = syscall_numbers(arch)
    assert WELL_KNOWN[arch].items() <= ours.items()
    all_names = [*DENIED_SYSCALLS, "clone", "clone3", "ioctl", "personality", "socket"]
    checked = []
    for label, source in [
        ("kernel headers", header_numbers(arch)),
        ("libseccomp", libseccomp_numbers(arch, all_names)),
    ]:
        if source is None:
            continue
        checked.append(label)
        newest = max(source.values())
        for name in all_names:
            if name in source:
                assert ours.get(name) == source[name], f"{arch} {name}: {label} says {source[name]}"
            elif name in ours:  # only syscalls newer than the source may be missing from it
                assert ours[name] > newest, f"{arch} {name}: missing from {label}"
    # Without gcc/headers and libseccomp only the well-known numbers above were checked.
    print(f"{arch}: checked against {checked or ['well-known numbers only']}")
