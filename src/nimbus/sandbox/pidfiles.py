"""Pidfiles of live instances: ``<run_dir>/pids/<instance id>.pid`` holds ``pid starttime``.

Both backends write one per instance, so operators and benchmarks can find
instance processes, and a platform restarted after SIGKILL can kill exactly
the processes it started (same pid *and* same kernel start time) and no other.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


class PidFiles:
    def __init__(self, run_dir: Path) -> None:
        self.directory = run_dir / "pids"
        self.directory.mkdir(parents=True, exist_ok=True)

    def write(self, instance_id: str, pid: int) -> Path:
        path = self.directory / f"{instance_id}.pid"
        path.write_text(f"{pid} {start_time(pid) or ''}\n")
        return path

    def kill_stale(self, *, group: bool) -> int:
        """SIGKILL processes (their process group when ``group``) left by an earlier run."""
        killed = 0
        for pidfile in self.directory.glob("*.pid"):
            try:
                pid_text, _, started = pidfile.read_text().strip().partition(" ")
                pid = int(pid_text)
            except (OSError, ValueError):
                pidfile.unlink(missing_ok=True)
                continue
            # Same pid and start time: the process we started. A group leader that is gone
            # (it exits when its Runtime API does, and init reaps it) may leave its group
            # behind; a pgid is not reused while its group exists.
            now_started = start_time(pid)
            if started and (now_started == started or (group and now_started is None)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if group:
                        os.killpg(pid, signal.SIGKILL)
                    else:
                        os.kill(pid, signal.SIGKILL)
                    killed += 1
            pidfile.unlink(missing_ok=True)
        return killed
