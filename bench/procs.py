"""Child processes of the benchmark, and what /proc says about processes.

Every process the benchmark starts goes through :class:`Children`, which stops
them all by pid (SIGTERM, then SIGKILL after a grace period) when the run ends,
however it ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Children:
    """The processes this run started, stopped by pid in reverse order of start."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[Any]] = []

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        stdout: IO[Any] | int | None = None,
        stderr: IO[Any] | int | None = None,
        text: bool = False,
    ) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(
            list(argv), env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, text=text
        )
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], grace_s: float = 15.0) -> int:
        """SIGTERM ``proc``, SIGKILL it if it has not exited within ``grace_s``; reap it."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=10)
        if proc in self._procs:
            self._procs.remove(proc)
        return int(proc.returncode)

    def stop_all(self) -> None:
        for proc in reversed(list(self._procs)):
            with contextlib.suppress(Exception):
                self.stop(proc)


def wait_healthy(url: str, proc: subprocess.Popen[Any], timeout_s: float = 30.0) -> float:
    """Poll ``url`` until it answers 200; return when it did (monotonic seconds)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with status {proc.returncode}")
            try:
                if client.get(url).status_code == 200:
                    return time.monotonic()
            except httpx.TransportError:
                pass
            time.sleep(0.005)
    raise RuntimeError(f"{url} did not answer 200 within {timeout_s:g} s")


# ---- /proc ------------------------------------------------------------------


def start_time(pid: int) -> str | None:
    """Kernel start time of ``pid`` (field 22 of /proc/PID/stat), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid``."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, ValueError, IndexError):
            continue
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def instance_pids(data_dir: Path) -> list[int]:
    """Pids of live instances, from the pidfiles ``<data_dir>/run/pids/*.pid``."""
    pids: list[int] = []
    for f in sorted((data_dir / "run" / "pids").glob("*.pid")):
        try:
            fields = f.read_text().split()
            pid = int(fields[0])
        except (OSError, ValueError, IndexError):
            continue
        started = fields[1] if len(fields) > 1 else None
        if start_time(pid) is not None and (started is None or start_time(pid) == started):
            pids.append(pid)
    return pids


def kill_instances(data_dir: Path) -> int:
    """SIGKILL instance process groups a stopped server left behind (safety net)."""
    killed = 0
    for pid in instance_pids(data_dir):
        for victim in [*descendants(pid), pid]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(victim, signal.SIGKILL)
        # A process-sandbox instance leads its own group: whatever escaped goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        killed += 1
    return killed


def unique_bytes(pid: int) -> int:
    """Private_Clean + Private_Dirty of ``pid`` (its unique set size), 0 if it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    total_kb = 0
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Private_Clean", "Private_Dirty"):
            total_kb += int(rest.split()[0])
    return total_kb * 1024


@dataclass(frozen=True)
class CpuSample:
    """Machine-wide CPU seconds (all CPUs) from /proc/stat, and this process tree's own."""

    busy_s: float  # user + nice + system + irq + softirq
    steal_s: float
    total_s: float
    #: This process and its reaped children (os.times), so every child once stopped.
    ours_s: float

    @classmethod
    def now(cls) -> CpuSample:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        tick = os.sysconf("SC_CLK_TCK")
        t = os.times()
        return cls(
            busy_s=(user + nice + system + irq + softirq) / tick,
            steal_s=steal / tick,
            total_s=sum(fields) / tick,
            ours_s=t.user + t.system + t.children_user + t.children_system,
        )


def cpu_shares(before: CpuSample, after: CpuSample) -> tuple[float, float]:
    """(steal %, other %) of the machine's CPU time between two samples.

    "Other" is CPU time spent by processes outside this benchmark's tree (another
    test suite, a build): busy time minus ours. Exact once every child was reaped.
    """
    total = after.total_s - before.total_s
    if total <= 0:
        return 0.0, 0.0
    steal = after.steal_s - before.steal_s
    other = (after.busy_s - before.busy_s) - (after.ours_s - before.ours_s)
    return 100 * steal / total, max(0.0, 100 * other / total)
