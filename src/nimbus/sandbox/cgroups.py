"""Per-instance cgroups: memory, pids and CPU limits, OOM detection and whole-tree kill.

:func:`detect` reads ``/proc/self/mountinfo`` and returns a :class:`CgroupLayout`:

- **v1** (one hierarchy per controller; this machine): instance cgroups go to
  ``<memory>/<parent>/<id>``, ``<pids>/...`` and ``<cpu>/...`` (``cpu`` may be mounted joined
  with ``cpuacct``; mountinfo gives the real directory). If a v2 hierarchy is also mounted
  (hybrid mode, ``/sys/fs/cgroup/unified``) and has ``cgroup.kill``, each instance gets a
  directory there too, only so :meth:`InstanceCgroup.kill_all` can end the whole tree in one
  write. Without it, the v1 freezer (when mounted) makes killing race-free.
- **v2** (unified, ``cgroup.controllers`` lists memory and pids): one directory
  ``<root>/<parent>/<id>`` with ``memory.max``, ``memory.swap.max``, ``pids.max``,
  ``cpu.weight``; ``cgroup.kill``; ``memory.events`` for OOM kills. The controllers are
  enabled in ``cgroup.subtree_control`` from the root down to the parent. **The v2 path is
  written from the kernel documentation and is untested**: the machines Nimbus is tested on
  only have v1 controllers.

Ownership: a :class:`Cgroups` manager owns ``<parent>`` in every hierarchy; anything left there
by an earlier run with the same parent is removed by :meth:`Cgroups.cleanup_stale`. Creating an
instance cgroup with limits and removing it take well under a millisecond each here.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

__all__ = ["CgroupError", "CgroupLayout", "CgroupVersion", "Cgroups", "InstanceCgroup", "detect"]

log = logging.getLogger("nimbus.sandbox.cgroups")
_NAME = re.compile(r"[A-Za-z0-9_.@-]+")


class CgroupError(Exception):
    """A cgroup could not be created, configured or joined."""


class CgroupVersion(enum.Enum):
    V1 = "v1"  # one hierarchy per controller (memory/, pids/, cpu/, ...)
    V2 = "v2"  # one unified hierarchy with the memory and pids controllers enabled


@dataclass(frozen=True)
class CgroupLayout:
    """Where the hierarchies are mounted. In v2, memory, pids and cpu are the unified root."""

    version: CgroupVersion
    memory: Path
    pids: Path
    cpu: Path | None  # None: no cpu controller (v2 only; v1 requires it)
    freezer: Path | None  # v1 freezer, for kill_all without cgroup.kill
    unified: Path | None  # a v2 hierarchy (hybrid or pure), for cgroup.kill


def parse_mountinfo(text: str) -> tuple[dict[str, Path], Path | None]:
    """v1 controller → mount point, and the first cgroup2 mount point, from mountinfo text."""
    v1: dict[str, Path] = {}
    v2: Path | None = None
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, fs = left.split(), right.split()
        if len(fields) < 5 or len(fs) < 3:
            continue
        mount = Path(fields[4].replace("\\040", " "))
        if fs[0] == "cgroup2" and v2 is None:
            v2 = mount
        elif fs[0] == "cgroup":
            for option in fs[2].split(","):
                if option in ("memory", "pids", "cpu", "freezer"):
                    v1.setdefault(option, mount)
    return v1, v2


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def detect(mountinfo: str | None = None) -> CgroupLayout | None:
    """The usable layout on this machine, or None (not root, or controllers missing)."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    v1, v2 = parse_mountinfo(mountinfo)
    unified = v2 if v2 is not None and _writable(v2) else None
    if unified is not None and (unified / "cgroup.controllers").exists():
        controllers = (unified / "cgroup.controllers").read_text().split()
        if {"memory", "pids"} <= set(controllers):
            cpu = unified if "cpu" in controllers else None
            return CgroupLayout(CgroupVersion.V2, unified, unified, cpu, None, unified)
    markers = {"memory": "memory.limit_in_bytes", "pids": "cgroup.procs", "cpu": "cpu.shares"}
    if all(c in v1 and _writable(v1[c]) and (v1[c] / f).exists() for c, f in markers.items()):
        freezer = v1.get("freezer")
        freezer = freezer if freezer is not None and _writable(freezer) else None
        return CgroupLayout(CgroupVersion.V1, v1["memory"], v1["pids"], v1["cpu"], freezer, unified)
    return None


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read_key(path: Path, key: str) -> int:
    """The value of ``key N`` in a flat-keyed cgroup file; 0 when the file or key is missing."""
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    return 0


@dataclass(frozen=True)
class InstanceCgroup:
    """The cgroup directories of one instance (one per hierarchy)."""

    instance_id: str
    version: CgroupVersion
    memory_dir: Path
    pids_dir: Path
    dirs: tuple[Path, ...]  # every directory of this instance
    kill_dir: Path | None  # has cgroup.kill
    freezer_dir: Path | None

    @property
    def procs_paths(self) -> list[Path]:
        """Every ``cgroup.procs`` a process must be written into to be fully inside."""
        return [d / "cgroup.procs" for d in self.dirs]

    def attach(self, pid: int) -> None:
        """Move ``pid`` (a whole process) into every hierarchy. Raises CgroupError."""
        for path in self.procs_paths:
            try:
                _write(path, str(pid))
            except OSError as e:
                raise CgroupError(f"cannot move pid {pid} into {path}: {e}") from e

    def pids(self) -> list[int]:
        """Processes in any of this instance's cgroups (empty once removed)."""
        found: set[int] = set()
        for path in self.procs_paths:
            with contextlib.suppress(FileNotFoundError):
                found.update(int(p) for p in path.read_text().split())
        return sorted(found)

    def oom_killed(self) -> bool:
        """True once the kernel's OOM killer has killed a process of this instance."""
        name = "memory.oom_control" if self.version is CgroupVersion.V1 else "memory.events"
        return _read_key(self.memory_dir / name, "oom_kill") > 0

    def pids_max_hit(self) -> bool:
        """True once a fork or clone failed because of ``pids.max``."""
        return _read_key(self.pids_dir / "pids.events", "max") > 0

    def memory_peak_bytes(self) -> int:
        """The highest memory usage recorded (v2 without memory.peak: current usage)."""
        v1 = self.version is CgroupVersion.V1
        for name in ["memory.max_usage_in_bytes"] if v1 else ["memory.peak", "memory.current"]:
            with contextlib.suppress(FileNotFoundError):
                return int((self.memory_dir / name).read_text())
        return 0

    def kill_all(self, timeout_s: float = 1.0) -> bool:
        """SIGKILL every process, including ones that forked, setsid or daemonized.

        Returns True once the cgroups are empty, False if that took longer than ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        if self.kill_dir is not None:
            try:
                _write(self.kill_dir / "cgroup.kill", "1")
            except FileNotFoundError:
                return True  # already removed
        frozen = self.kill_dir is None and self._set_frozen(True, deadline)
        try:
            while pids := self.pids():
                if self.kill_dir is None:
                    for pid in pids:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                if frozen:  # frozen tasks die only once thawed; none can fork meanwhile
                    frozen = self._set_frozen(False, deadline)
                if time.monotonic() > deadline:
                    log.warning("cgroup %s still has processes %s", self.instance_id, pids)
                    return False
                time.sleep(0.0005)
            return True
        finally:
            if frozen:
                self._set_frozen(False, deadline)

    def _set_frozen(self, frozen: bool, deadline: float) -> bool:
        """Freeze or thaw through the v1 freezer; returns whether the cgroup is now frozen."""
        if self.freezer_dir is None:
            return False
        state_file = self.freezer_dir / "freezer.state"
        want = "FROZEN" if frozen else "THAWED"
        try:
            _write(state_file, want)
            while state_file.read_text().strip() != want and time.monotonic() < deadline:
                time.sleep(0.0002)
        except FileNotFoundError:
            return False
        return frozen

    def remove(self, timeout_s: float = 0.5) -> bool:
        """rmdir every directory, retrying while exiting tasks drain. Never raises.

        Returns False (and logs) if a directory is still there: kill the processes first.
        """
        deadline = time.monotonic() + timeout_s
        ok = True
        for path in self.dirs:
            while True:
                try:
                    path.rmdir()
                except OSError as e:
                    if e.errno == errno.EBUSY and time.monotonic() < deadline:
                        time.sleep(0.001)
                        continue
                    if e.errno != errno.ENOENT:
                        log.warning("cannot remove cgroup %s: %s", path, e)
                        ok = False
                break
        return ok


class Cgroups:
    """Creates instance cgroups under ``<parent>`` in each hierarchy of a layout."""

    def __init__(self, parent: str, layout: CgroupLayout | None = None) -> None:
        """``parent`` is a relative path such as ``nimbus-8080``. Raises CgroupError."""
        if not all(_NAME.fullmatch(part) for part in parent.split("/")) or ".." in parent:
            raise CgroupError(f"invalid cgroup parent name {parent!r}")
        layout = detect() if layout is None else layout
        if layout is None:
            raise CgroupError(
                "no usable cgroups: need root and cgroup v1 memory, pids and cpu hierarchies "
                "or cgroup v2 with the memory and pids controllers"
            )
        self.layout, self.parent = layout, parent
        v2, unified = layout.version is CgroupVersion.V2, layout.unified
        roots = [unified] if v2 else [layout.memory, layout.pids, layout.cpu, unified]
        self._roots = list(dict.fromkeys(r for r in roots if r is not None))
        self._kill_root: Path | None = None
        try:
            for root in self._roots:
                (root / parent).mkdir(parents=True, exist_ok=True)
            if v2:  # enable the controllers from the root down to the parent
                wanted = "+memory +pids" + (" +cpu" if layout.cpu is not None else "")
                path = layout.memory
                for part in [*parent.split("/"), ""]:
                    _write(path / "cgroup.subtree_control", wanted)
                    path /= part
            if unified is not None and (unified / parent / "cgroup.kill").exists():
                self._kill_root = unified
            elif not v2:  # no cgroup.kill (Linux < 5.14): kill through the freezer instead
                if unified is not None:
                    (unified / parent).rmdir()
                    self._roots.remove(unified)
                if layout.freezer is not None:
                    (layout.freezer / parent).mkdir(parents=True, exist_ok=True)
                    self._roots.append(layout.freezer)
        except OSError as e:
            raise CgroupError(f"cannot create cgroup parent {parent!r}: {e}") from e

    def instance(self, instance_id: str) -> InstanceCgroup:
        """The cgroups ``instance_id`` has or would have (nothing is created)."""
        if not _NAME.fullmatch(instance_id) or instance_id in (".", ".."):
            raise CgroupError(f"invalid instance id {instance_id!r}")
        layout = self.layout
        dirs = tuple(root / self.parent / instance_id for root in self._roots)
        sub = Path(self.parent, instance_id)
        freezer = layout.freezer if layout.freezer in self._roots else None
        return InstanceCgroup(
            instance_id=instance_id,
            version=layout.version,
            memory_dir=layout.memory / sub,
            pids_dir=layout.pids / sub,
            dirs=dirs,
            kill_dir=self._kill_root / sub if self._kill_root else None,
            freezer_dir=freezer / sub if freezer else None,
        )

    def create(
        self, instance_id: str, *, memory_mb: int, pids_max: int, cpu_weight: int
    ) -> InstanceCgroup:
        """Create the instance's cgroups with limits. Raises CgroupError (nothing left behind).

        ``cpu_weight`` uses cgroup v2 units (1-10000): 100 is one vCPU-equivalent share, which
        is ``cpu.shares`` 1024 in v1. Swap is capped so it cannot extend ``memory_mb``.
        """
        if memory_mb < 1 or pids_max < 1 or not 1 <= cpu_weight <= 10000:
            raise ValueError("need memory_mb >= 1, pids_max >= 1 and 1 <= cpu_weight <= 10000")
        inst, layout = self.instance(instance_id), self.layout
        limit = str(memory_mb * 1024 * 1024)
        created: list[Path] = []
        try:
            for path in inst.dirs:
                path.mkdir()
                created.append(path)
            cpu = layout.cpu / self.parent / instance_id if layout.cpu else None
            if layout.version is CgroupVersion.V1:
                _write(inst.memory_dir / "memory.limit_in_bytes", limit)
                if (inst.memory_dir / "memory.memsw.limit_in_bytes").exists():
                    _write(inst.memory_dir / "memory.memsw.limit_in_bytes", limit)
                with contextlib.suppress(OSError):  # refused by some kernels; memsw caps swap
                    _write(inst.memory_dir / "memory.swappiness", "0")
                if cpu is not None:
                    _write(cpu / "cpu.shares", str(max(2, cpu_weight * 1024 // 100)))
            else:
                _write(inst.memory_dir / "memory.max", limit)
                if (inst.memory_dir / "memory.swap.max").exists():
                    _write(inst.memory_dir / "memory.swap.max", "0")
                if cpu is not None:
                    _write(cpu / "cpu.weight", str(cpu_weight))
            _write(inst.pids_dir / "pids.max", str(pids_max))
        except OSError as e:
            replace(inst, dirs=tuple(created)).remove()
            raise CgroupError(f"cannot create cgroup for {instance_id!r}: {e}") from e
        return inst

    def cleanup_stale(self) -> list[str]:
        """Kill and remove every instance cgroup under this parent (left by an earlier run)."""
        ids = sorted(
            {p.name for r in self._roots for p in (r / self.parent).iterdir() if p.is_dir()}
        )
        for instance_id in ids:
            inst = self.instance(instance_id)
            inst.kill_all()
            inst.remove()
        if ids:
            log.info("removed %d stale cgroups under %s: %s", len(ids), self.parent, ids)
        return ids

    def destroy(self) -> None:
        """Remove every instance cgroup and the parent directories. Never raises."""
        try:
            self.cleanup_stale()
        except OSError as e:
            log.warning("cannot list cgroups under %s: %s", self.parent, e)
        for root in self._roots:
            try:
                (root / self.parent).rmdir()
            except OSError as e:
                if e.errno != errno.ENOENT:
                    log.warning("cannot remove cgroup %s: %s", root / self.parent, e)


def favor_dynamic_migrations(layout: CgroupLayout) -> bool:
    """Ask the kernel to make moving a process between cgroups cheap (``favordynmods``).

    Every instance joins its cgroups when it starts. By default the kernel makes
    that move wait for an RCU grace period (~15-20 ms here), which would be most
    of a cold start. The cgroup2 mount option ``favordynmods`` (Linux 6.0+)
    trades that for slightly dearer forks and exits host-wide. Returns whether
    the option is in effect; never raises.
    """
    if layout.unified is None:
        return False
    mount_point = str(layout.unified)
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split(" - ", 1)
            if fields[0].split()[4] == mount_point and len(fields) == 2:
                if "favordynmods" in fields[1]:
                    return True
                break
        result = subprocess.run(
            ["mount", "-o", "remount,favordynmods", mount_point],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0
