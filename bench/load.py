"""Drive load with ``wrk`` and read its figures back.

A generated Lua script sets the method, body and headers, and its ``done()``
hook prints one machine-readable line (exact percentiles from wrk's HDR
histogram, request count, error counters), so nothing depends on the layout
of wrk's human report; that report (``--latency``) is kept in ``LoadResult.output``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MARKER = "BENCH-RESULT "

_DONE = """
local threads = {}
setup = function(thread) table.insert(threads, thread) end

done = function(summary, latency, requests)
  local e = summary.errors
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses") or {}) do
      table.insert(counts, string.format('"%d":%d', status, n))
    end
  end
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,'
    .. '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"statuses":{%s}}\\n',
    "{marker}", summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(counts, ",")))
end
"""

# Counting responses by status costs a Lua call per response, so it is only
# switched on where errors are the figure of interest.
_COUNT_STATUSES = """
statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
"""


@dataclass(frozen=True)
class LoadResult:
    """One wrk run. Latencies in milliseconds."""

    concurrency: int
    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    #: Responses with a status of 400 or more (wrk counts 3xx as fine).
    non_2xx: int
    #: connect + read + write + timeout errors.
    socket_errors: int
    #: Responses by HTTP status, when the script counted them (else empty).
    statuses: dict[int, int]
    output: str

    @property
    def rps(self) -> float:
        """Successful responses per second (wrk's own figure counts failures too)."""
        ok = self.requests - self.non_2xx
        return ok / self.duration_s if self.duration_s else 0.0

    @property
    def all_rps(self) -> float:
        """Every response per second, failures included: wrk's ``Requests/sec``."""
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def write_script(
    path: Path, body: str, headers: Mapping[str, str], *, count_statuses: bool = False
) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body)}"]
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    text = "\n".join(lines) + "\n" + _DONE.replace("{marker}", MARKER)
    if count_statuses:
        text += _COUNT_STATUSES
    path.write_text(text)
    return path


def wrk_version() -> str:
    exe = shutil.which("wrk")
    if exe is None:
        return "not installed"
    out = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=10)
    first = (out.stdout + out.stderr).strip().splitlines()
    match = re.match(r"wrk\s+(\S+)", first[0]) if first else None
    return match.group(1) if match else "unknown"


def wrk_path() -> str:
    exe = shutil.which("wrk")
    if exe is None:
        raise RuntimeError(
            "wrk is not installed; run `make setup` as root (or apt-get install wrk)"
        )
    return exe


def wrk_argv(url: str, script: Path, concurrency: int, duration_s: float) -> list[str]:
    return [
        wrk_path(),
        "-t1",  # one client thread: the machine has two vCPUs, the server needs the other
        f"-c{concurrency}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]


def parse(output: str, concurrency: int) -> LoadResult:
    for line in output.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER) :])
            break
    else:
        raise RuntimeError(f"wrk printed no result line:\n{output}")
    return LoadResult(
        concurrency=concurrency,
        requests=int(data["requests"]),
        duration_s=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        non_2xx=int(data["status"]),
        socket_errors=int(data["connect"] + data["read"] + data["write"] + data["timeout"]),
        statuses={int(k): int(v) for k, v in data.get("statuses", {}).items()},
        output=output,
    )
