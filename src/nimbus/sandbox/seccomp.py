"""A seccomp deny list for function instances, as a classic-BPF program (standard library only).

:func:`build_filter` returns the raw ``struct sock_filter`` array; :func:`install` loads it into
the calling thread with ``prctl``. The filter is one layer under namespaces, capabilities and
cgroups: it refuses the syscalls a function never needs and that widen the kernel's attack
surface or escape the other layers. What it does, in order:

1. ``seccomp_data.arch`` is not the expected audit arch → ``SECCOMP_RET_KILL_PROCESS``
   (stops i386 ``int 0x80`` and other foreign-ABI entry points).
2. x86_64 only: x32 ABI syscalls (``nr >= 0x40000000``) → ``EPERM``.
3. :data:`DENIED_SYSCALLS` → ``EPERM`` (mount family, modules, kexec, bpf, ptrace and
   cross-process memory access, new namespaces, keyrings, clocks, swap, io_uring, ...).
4. ``clone`` with any ``CLONE_NEW*`` flag → ``EPERM``; plain fork/vfork/threads are allowed.
   ``clone3`` → ``ENOSYS``: its flags live in memory a filter cannot read, and glibc then
   falls back to ``clone``, whose flags are checked.
5. ``ioctl(fd, TIOCSTI | TIOCLINUX, ...)`` → ``EPERM`` (typing into a terminal).
6. ``personality``: allowed only for the values Docker allows (query ``0xffffffff``,
   ``PER_LINUX``, ``PER_LINUX32``, ``UNAME26`` and their combination); anything else, such as
   ``ADDR_NO_RANDOMIZE``, → ``EPERM``.
7. ``socket(AF_VSOCK, ...)`` → ``EPERM``: in a VM, vsock reaches the hypervisor host and no
   network namespace isolates it.
8. Everything else → ``SECCOMP_RET_ALLOW``.

Argument checks read only the low 32 bits of an argument because the kernel itself truncates
these arguments (``clone`` flags, ``ioctl`` command, ``personality``, socket family) to 32
bits, so setting high bits cannot sneak past them. Since Linux 5.11 the kernel caches syscalls
whose result is ALLOW regardless of arguments, so the linear list of compares costs nothing on
the hot path. Syscall numbers are a hard-coded table checked against the kernel headers and
libseccomp by ``tests/unit/test_seccomp.py``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from typing import TypeAlias

__all__ = [
    "DENIED_SYSCALLS",
    "SeccompUnsupportedError",
    "build_filter",
    "install",
    "syscall_numbers",
]


class SeccompUnsupportedError(Exception):
    """No seccomp filter is known for this CPU architecture."""


# name: (x86_64, aarch64); None where the syscall does not exist on that architecture.
# Verified against <sys/syscall.h> (x86_64), <asm-generic/unistd.h> (aarch64) and libseccomp.
_DENIED: dict[str, tuple[int | None, int | None]] = {
    # Mounts and the root directory.
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "mount_setattr": (442, 442),
    "open_tree_attr": (467, 467),  # Linux 6.15, newer than Debian 12's headers
    # Kernel code, reboot, kernel-wide settings.
    "reboot": (169, 142),
    "kexec_load": (246, 104),
    "kexec_file_load": (320, 294),
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
    "create_module": (174, None),
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "lookup_dcookie": (212, 18),
    "fanotify_init": (300, 262),
    "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    "swapon": (167, 224),
    "swapoff": (168, 225),
    "syslog": (103, 116),
    "acct": (163, 89),
    "vhangup": (153, 58),
    "quotactl": (179, 60),
    "quotactl_fd": (443, 443),
    "nfsservctl": (180, 42),
    "uselib": (134, None),
    "iopl": (172, None),
    "ioperm": (173, None),
    "modify_ldt": (154, None),
    # Clocks and host identity.
    "settimeofday": (164, 170),
    "clock_settime": (227, 112),
    "clock_adjtime": (305, 266),
    "adjtimex": (159, 171),
    "sethostname": (170, 161),
    "setdomainname": (171, 162),
    # Other processes.
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "process_madvise": (440, 440),
    "pidfd_getfd": (438, 438),
    "kcmp": (312, 272),
    # Namespaces (clone is checked by flags below), keyrings, file handles.
    "unshare": (272, 97),
    "setns": (308, 268),
    "keyctl": (250, 219),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "open_by_handle_at": (304, 265),
    "name_to_handle_at": (303, 264),
}
# Syscalls with argument checks.
_CHECKED: dict[str, tuple[int | None, int | None]] = {
    "clone": (56, 220),
    "clone3": (435, 435),
    "ioctl": (16, 29),
    "personality": (135, 92),
    "socket": (41, 198),
}
_ARCHES = {"x86_64": (0, 0xC000003E), "aarch64": (1, 0xC00000B7)}  # table column, AUDIT_ARCH_*

#: Syscalls always refused with EPERM (arguments are checked for clone, clone3, ioctl,
#: personality and socket; see the module docstring).
DENIED_SYSCALLS: tuple[str, ...] = tuple(sorted(_DENIED))

_NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000  # NEWNS CGROUP UTS IPC
_NS_FLAGS |= 0x10000000 | 0x20000000 | 0x40000000 | 0x00000080  # NEWUSER PID NET TIME
_TIOCSTI, _TIOCLINUX, _AF_VSOCK = 0x5412, 0x541C, 40
_PERSONALITIES_OK = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
_X32_SYSCALL_BIT = 0x40000000

# BPF opcodes and seccomp constants (<linux/filter.h>, <linux/seccomp.h>).
_LD_ABS_W, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_KILL_PROCESS, _RET_ERRNO, _RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
_OFF_NR, _OFF_ARCH = 0, 4


def _arg_low(index: int) -> int:
    """Offset of the low 32 bits of ``seccomp_data.args[index]`` (little-endian)."""
    return 16 + 8 * index


def syscall_numbers(arch: str) -> dict[str, int]:
    """Every syscall number this filter uses on ``arch`` (for verification and docs)."""
    column = _column(arch)[0]
    numbers: dict[str, int] = {}
    for name, per_arch in {**_DENIED, **_CHECKED}.items():
        if (number := per_arch[column]) is not None:
            numbers[name] = number
    return numbers


def _column(arch: str) -> tuple[int, int]:
    try:
        return _ARCHES[arch]
    except KeyError:
        raise SeccompUnsupportedError(f"no seccomp filter for architecture {arch!r}") from None


Jump: TypeAlias = int | str  # 0 = fall through, or a label defined later


def build_filter(arch: str | None = None) -> bytes:
    """The filter as packed ``struct sock_filter`` entries for ``arch`` (default: this machine)."""
    arch = platform.machine() if arch is None else arch
    audit_arch = _column(arch)[1]
    nr = syscall_numbers(arch)
    code: list[tuple[int, Jump, Jump, int]] = []
    labels: dict[str, int] = {}

    def op(opcode: int, k: int, jt: Jump = 0, jf: Jump = 0) -> None:
        code.append((opcode, jt, jf, k))

    op(_LD_ABS_W, _OFF_ARCH)
    op(_JEQ, audit_arch, 0, "kill")
    op(_LD_ABS_W, _OFF_NR)
    if arch == "x86_64":
        op(_JGE, _X32_SYSCALL_BIT, "eperm")
    for number in sorted(nr[name] for name in _DENIED if name in nr):
        op(_JEQ, number, "eperm")
    for name, target in [
        ("clone", "clone"),
        ("clone3", "enosys"),
        ("ioctl", "ioctl"),
        ("personality", "personality"),
        ("socket", "socket"),
    ]:
        op(_JEQ, nr[name], target)
    op(_RET, _RET_ALLOW)

    labels["clone"] = len(code)
    op(_LD_ABS_W, _arg_low(0))
    op(_JSET, _NS_FLAGS, "eperm", "allow")
    labels["ioctl"] = len(code)
    op(_LD_ABS_W, _arg_low(1))
    op(_JEQ, _TIOCSTI, "eperm")
    op(_JEQ, _TIOCLINUX, "eperm", "allow")
    labels["personality"] = len(code)
    op(_LD_ABS_W, _arg_low(0))
    for value in _PERSONALITIES_OK:
        op(_JEQ, value, "allow")
    op(_RET, _RET_ERRNO | errno.EPERM)
    labels["socket"] = len(code)
    op(_LD_ABS_W, _arg_low(0))
    op(_JEQ, _AF_VSOCK, "eperm", "allow")
    for label, action in [
        ("allow", _RET_ALLOW),
        ("eperm", _RET_ERRNO | errno.EPERM),
        ("enosys", _RET_ERRNO | errno.ENOSYS),
        ("kill", _RET_KILL_PROCESS),
    ]:
        labels[label] = len(code)
        op(_RET, action)

    assert len(code) < 4096, "seccomp programs are limited to 4096 instructions"
    out = bytearray()
    for pc, (opcode, jt, jf, k) in enumerate(code):
        offsets = [j if isinstance(j, int) else labels[j] - pc - 1 for j in (jt, jf)]
        assert all(0 <= o <= 255 for o in offsets), f"jump out of range at {pc}: {offsets}"
        out += struct.pack("<HBBI", opcode, offsets[0], offsets[1], k)
    return bytes(out)


_PR_SET_SECCOMP, _PR_SET_NO_NEW_PRIVS, _SECCOMP_MODE_FILTER = 22, 38, 2


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(program: bytes) -> None:
    """Set no_new_privs and load ``program`` into the calling thread (and its future children).

    Only the calling thread is filtered: install before starting threads. Raises OSError.
    """
    if not program or len(program) % 8:
        raise ValueError("program must be a non-empty array of 8-byte sock_filter entries")
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    for args in (
        (_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
        (_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0),
    ):
        if libc.prctl(*(ctypes.c_ulong(a) for a in args)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
