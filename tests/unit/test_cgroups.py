"""Per-instance cgroups on the real kernel: limits, OOM and pids detection, kill, cleanup.

These tests need root and cgroups (v1 on the test machines). They fail, never skip, when
:func:`detect` finds nothing usable: CI runs them as root.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nimbus.sandbox.cgroups import (
    CgroupError,
    CgroupLayout,
    Cgroups,
    CgroupVersion,
    detect,
    parse_mountinfo,
)

# A child that moves itself into the cgroups named on its command line, then runs its body.
ATTACH_SELF = """\
import os, sys
for path in sys.argv[1:]:
    with open(path, "w") as f:
        f.write(str(os.getpid()))
"""


@pytest.fixture
def layout() -> CgroupLayout:
    found = detect()
    if found is None:
        pytest.fail(
            "no usable cgroups (detect() returned None): these tests must run as root on a "
            "machine with cgroup v1 memory, pids and cpu hierarchies (or cgroup v2)"
        )
    return found


def make_cgroups(layout: CgroupLayout) -> Cgroups:
    return Cgroups(f"nimbus-test-{os.getpid()}-{uuid.uuid4().hex[:8]}", layout)


@pytest.fixture
def cgroups(layout: CgroupLayout) -> Iterator[Cgroups]:
    manager = make_cgroups(layout)
    yield manager
    manager.destroy()


def run_attached(procs: list[Path], body: str) -> subprocess.Popen[str]:
    script = ATTACH_SELF + body
    argv = [sys.executable, "-c", script, *map(str, procs)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def sessions(pids: list[int]) -> set[int]:
    found = set()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            found.add(os.getsid(pid))
    return found


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def test_limits_are_written(layout: CgroupLayout, cgroups: Cgroups) -> None:
    assert layout.version is CgroupVersion.V1, "the test machines have cgroup v1"
    inst = cgroups.create("limits", memory_mb=48, pids_max=9, cpu_weight=50)
    assert (inst.memory_dir / "memory.limit_in_bytes").read_text().strip() == str(48 << 20)
    assert (inst.pids_dir / "pids.max").read_text().strip() == "9"
    assert layout.cpu is not None
    shares = layout.cpu / cgroups.parent / "limits" / "cpu.shares"
    assert shares.read_text().strip() == "512"
    memsw = inst.memory_dir / "memory.memsw.limit_in_bytes"
    if memsw.exists():
        assert memsw.read_text().strip() == str(48 << 20)
    assert all(p.exists() for p in inst.procs_paths)
    if layout.unified is not None:  # this machine's hybrid layout: cgroup.kill is used
        assert inst.kill_dir is not None and (inst.kill_dir / "cgroup.kill").exists()
    with pytest.raises(CgroupError):  # it exists already
        cgroups.create("limits", memory_mb=48, pids_max=9, cpu_weight=50)
    with pytest.raises(CgroupError):
        cgroups.create("../escape", memory_mb=48, pids_max=9, cpu_weight=50)
    assert inst.remove()
    assert not any(d.exists() for d in inst.dirs)


def test_memory_limit_oom_kills_and_is_reported(cgroups: Cgroups) -> None:
    inst = cgroups.create("oom", memory_mb=32, pids_max=64, cpu_weight=100)
    proc = run_attached(inst.procs_paths, "data = b'x' * (100 << 20)\nprint('survived')\n")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (out, err)
    assert inst.oom_killed()
    assert 24 << 20 < inst.memory_peak_bytes() <= 32 << 20
    assert inst.remove()


def test_within_the_limit_nothing_is_reported(cgroups: Cgroups) -> None:
    inst = cgroups.create("fits", memory_mb=64, pids_max=64, cpu_weight=100)
    proc = run_attached(inst.procs_paths, "data = b'x' * (8 << 20)\nprint('ok')\n")
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out.strip()) == (0, "ok"), err
    assert not inst.oom_killed()
    assert not inst.pids_max_hit()
    assert inst.memory_peak_bytes() >= 8 << 20
    assert inst.remove()


def test_pids_limit_makes_fork_fail_with_eagain(cgroups: Cgroups) -> None:
    inst = cgroups.create("forks", memory_mb=256, pids_max=8, cpu_weight=100)
    body = """\
import errno, time
kids, failure = [], None
for _ in range(20):
    try:
        pid = os.fork()
    except OSError as e:
        failure = errno.errorcode[e.errno]
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
print(len(kids), failure)
"""
    proc = run_attached(inst.procs_paths, body)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.split() == ["7", "EAGAIN"]  # 8 tasks: the parent and 7 sleepers
    assert inst.pids_max_hit()
    assert inst.remove()


TREE = """\
import subprocess, time
subprocess.Popen(["sh", "-c", "sleep 100 & sleep 100 & wait"])
subprocess.Popen(["setsid", "sleep", "100"])
if os.fork() == 0:  # a daemon: new session, parent gone, reparented away from us
    os.setsid()
    if os.fork() == 0:
        time.sleep(100)
    os._exit(0)
print("ready", flush=True)
time.sleep(100)
"""


@pytest.mark.parametrize("mode", ["cgroup.kill", "freezer", "signals"])
def test_kill_all_ends_the_whole_tree(layout: CgroupLayout, mode: str) -> None:
    if mode != "cgroup.kill":  # force the fallbacks used on kernels without cgroup.kill
        layout = dataclasses.replace(layout, unified=None)
    if mode == "signals":
        layout = dataclasses.replace(layout, freezer=None)
    cgroups = make_cgroups(layout)
    try:
        inst = cgroups.create("tree", memory_mb=256, pids_max=64, cpu_weight=100)
        assert (inst.kill_dir is not None) == (mode == "cgroup.kill")
        assert (inst.freezer_dir is not None) == (mode == "freezer")
        proc = run_attached(inst.procs_paths, TREE)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        # python, sh + 2 sleeps, setsid sleep, daemon; in 3 sessions (ours, setsid, daemon)
        deadline = time.monotonic() + 10
        while not (len(pids := inst.pids()) >= 6 and len(sessions(pids)) >= 3):
            assert time.monotonic() < deadline, f"the tree did not start: {pids}"
            time.sleep(0.005)
        assert inst.kill_all()
        proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        assert inst.pids() == []
        assert not any(alive(pid) for pid in pids)
        assert inst.remove()
        assert not any(d.exists() for d in inst.dirs)
    finally:
        cgroups.destroy()


def test_remove_never_raises_and_destroy_leaves_nothing(layout: CgroupLayout) -> None:
    cgroups = make_cgroups(layout)
    inst = cgroups.create("busy", memory_mb=64, pids_max=16, cpu_weight=100)
    sleeper = subprocess.Popen(["sleep", "100"])
    try:
        inst.attach(sleeper.pid)
        assert inst.pids() == [sleeper.pid]
        assert inst.remove(timeout_s=0.01) is False  # still has a process: reported, not raised
        assert inst.kill_all()
        assert sleeper.wait(timeout=10) == -signal.SIGKILL
        assert inst.remove()
        assert inst.remove()  # already gone: still fine
    finally:
        sleeper.kill()
        sleeper.wait()
        cgroups.destroy()
    assert not any(d.exists() for d in inst.dirs)
    assert not any((d.parent).exists() for d in inst.dirs)


def test_cleanup_stale_removes_a_previous_runs_cgroups(layout: CgroupLayout) -> None:
    previous = make_cgroups(layout)
    sleepers = []
    try:
        for name in ("a", "b"):
            inst = previous.create(name, memory_mb=64, pids_max=16, cpu_weight=100)
            sleeper = subprocess.Popen(["sleep", "100"])
            sleepers.append(sleeper)
            inst.attach(sleeper.pid)
        # A new run with the same parent finds what the previous one left behind.
        current = Cgroups(previous.parent, layout)
        assert current.cleanup_stale() == ["a", "b"]
        assert [s.wait(timeout=10) for s in sleepers] == [-signal.SIGKILL] * 2
        assert not any(current.instance(n).pids() for n in ("a", "b"))
        assert not any(d.exists() for n in ("a", "b") for d in current.instance(n).dirs)
        assert current.cleanup_stale() == []
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()
        previous.destroy()


def test_parse_mountinfo_finds_each_hierarchy() -> None:
    hybrid = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
    v1, v2 = parse_mountinfo(hybrid)
    root = Path("/sys/fs/cgroup")
    assert v1 == {
        "cpu": root / "cpu,cpuacct",
        "memory": root / "memory",
        "freezer": root / "freezer",
        "pids": root / "pids",
    }
    assert v2 == root / "unified"
    pure = "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
    assert parse_mountinfo(pure) == ({}, root)
