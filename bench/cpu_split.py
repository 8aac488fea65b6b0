"""Where the CPU of one warm call goes: the gateway, the instance, the load generator.

    .venv/bin/python bench/cpu_split.py                 # 10 s per side at c=16
    .venv/bin/python bench/cpu_split.py --smoke         # a short pass, writes nothing

Runs bare uvicorn (the baseline) and ``nimbus serve`` with one warm hello
function, loads each with wrk at the same concurrency, and reads every
process's CPU time (user + system, from /proc/PID/stat) before and after. The
CPU of each group divided by the requests answered is the CPU one request costs
there: on a 2-core machine, throughput is bounded by the sum of these divided
by two. Groups: ``gateway`` (the ``nimbus serve`` process), ``instances`` (the
zygote and everything forked from it), ``wrk``, ``baseline`` (uvicorn) and
``other`` (anything else that ran meanwhile: noise).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import procs
import report
from report import Table
from run import (
    TOKEN,
    BenchError,
    NimbusServer,
    api_client,
    check,
    deploy,
    hello_zip,
    invoke,
    run_wrk,
    start_baseline,
)

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_times() -> dict[int, tuple[float, str]]:
    """CPU seconds (user + system) and command line of every process now."""
    out: dict[int, tuple[float, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        out[int(entry.name)] = ((int(fields[11]) + int(fields[12])) / TICKS, cmdline)
    return out


@dataclass
class Split:
    requests: int
    seconds: float
    by_group: dict[str, float]  # CPU seconds

    def per_request_us(self, group: str) -> float:
        return self.by_group.get(group, 0.0) / max(self.requests, 1) * 1e6


def measure(run: Callable[[], tuple[int, float]], classify: Callable[[int, str], str]) -> Split:
    before = cpu_times()
    reaped = os.times()
    requests, seconds = run()
    after = cpu_times()
    done = os.times()
    groups: dict[str, float] = {}
    # wrk has exited and been reaped by now: its CPU is in this process's children times.
    groups["wrk"] = (done.children_user - reaped.children_user) + (
        done.children_system - reaped.children_system
    )
    for pid, (cpu, cmdline) in after.items():
        spent = cpu - before.get(pid, (0.0, ""))[0]
        if spent > 0:
            group = classify(pid, cmdline)
            groups[group] = groups.get(group, 0.0) + spent
    return Split(requests, seconds, groups)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a short pass; writes no results")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=None)
    args = parser.parse_args(argv)
    duration = args.duration or (2.0 if args.smoke else 10.0)
    children = procs.Children()
    try:
        with tempfile.TemporaryDirectory(prefix="nimbus-cpu-") as tmp:
            work = Path(tmp)
            baseline_url, baseline = start_baseline(children, work)
            server = NimbusServer(children, work, "cpu", None)
            server.start()
            assert server.proc is not None
            gateway_pid = server.proc.pid
            with api_client(server.url) as client:
                sha = check(
                    client.put(
                        "/v1/code",
                        content=hello_zip(),
                        headers={"Content-Type": "application/zip"},
                    ),
                    200,
                    201,
                )["sha256"]
                deploy(client, "hello", sha)
                invoke(client, "hello")
            json_header = {"Content-Type": "application/json"}
            targets = {
                "baseline": (baseline_url + "/", json_header, baseline.pid),
                "nimbus": (
                    server.url + "/v1/functions/hello/invocations",
                    {**json_header, "Authorization": f"Bearer {TOKEN}"},
                    gateway_pid,
                ),
            }
            splits: dict[str, Split] = {}
            for name, (url, headers, server_pid) in targets.items():
                # Warm-up (unmeasured): lets Nimbus scale out to this load first.
                run_wrk(children, work, url, headers, args.concurrency, min(duration, 3.0))

                def classify(pid: int, cmdline: str, server_pid: int = server_pid) -> str:
                    if pid == server_pid:
                        return "gateway" if server_pid == gateway_pid else "baseline"
                    if "zygote" in cmdline or "runtimes/python" in cmdline:
                        return "instances"
                    return "other"

                def run(url: str = url, headers: dict[str, str] = headers) -> tuple[int, float]:
                    result = run_wrk(children, work, url, headers, args.concurrency, duration)
                    return round(result.rps * duration), result.rps

                splits[name] = measure(run, classify)
            server.stop()
    except BenchError as exc:
        print(f"cpu_split: {exc}", file=sys.stderr)
        return 1
    finally:
        children.stop_all()

    groups = ("baseline", "gateway", "instances", "wrk", "other")
    table = Table(
        f"CPU per warm call at c={args.concurrency}: microseconds of CPU per request, "
        "by process group (wrk, 10 s)",
        ["side", "req/s", *groups, "total"],
    )
    for name, split in splits.items():
        cells = [split.per_request_us(g) for g in groups]
        table.add(
            name,
            report.rate(split.seconds),
            *[f"{v:.0f}" if v else "-" for v in cells],
            f"{sum(cells):.0f}",
        )
    nimbus = splits["nimbus"]
    base = splits["baseline"]
    added = (
        sum(nimbus.by_group.values()) / max(nimbus.requests, 1)
        - sum(base.by_group.values()) / max(base.requests, 1)
    ) * 1e6
    notes = [
        f"added CPU per call: {added:.0f} µs (gateway {nimbus.per_request_us('gateway'):.0f} µs vs uvicorn's "
        f"{base.per_request_us('baseline'):.0f} µs; instance {nimbus.per_request_us('instances'):.0f} µs)",
        f"machine: {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
    ]
    for note in notes:
        table.notes.append(note)
    print(report.render_text([table]))
    if not args.smoke:
        report.write_section(
            RESULTS,
            report.render_markdown([table]),
            "<!-- cpu-split:start -->",
            "<!-- cpu-split:end -->",
            heading="## Where a warm call's CPU goes\n\nWritten by `bench/cpu_split.py`.",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
