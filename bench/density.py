"""Density: many idle warm instances of many different functions on one machine.

Deploys N functions (same hello code, different names), calls each once (a cold
start, leaving one idle warm instance per function), measures the unique memory
of all instances and of the platform, then calls each function again and counts
how many of those calls were warm. Figures go to the density section of
bench/RESULTS.md (full runs) and to stdout.

    .venv/bin/python bench/density.py [--functions 1000] [--sandbox NAME] [--no-write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import procs
import report
from report import Table
from run import (
    RESULTS,
    BenchError,
    NimbusServer,
    api_client,
    check,
    deploy,
    environment,
    hello_zip,
    invoke,
    log,
)

HEADING = "## Density\n\nWritten by `bench/density.py`."
START, END = "<!-- density:start -->", "<!-- density:end -->"


def measure(functions: int, sandbox: str | None, work: Path, children: procs.Children) -> Table:
    server = NimbusServer(children, work, "density", sandbox)
    server.start()
    env = environment(server.sandbox_banner())
    names = [f"dense-{i:04d}" for i in range(functions)]
    with api_client(server.url) as client:
        sha = check(
            client.put(
                "/v1/code", content=hello_zip(), headers={"Content-Type": "application/zip"}
            ),
            201,
        )["sha256"]
        started = time.monotonic()
        for name in names:
            deploy(client, name, sha)
        deploy_s = time.monotonic() - started
        log(f"deployed {functions} functions in {deploy_s:.1f} s")

    local = threading.local()  # one client per caller thread: making one costs ~10 ms

    def call(name: str) -> dict[str, object]:
        if not hasattr(local, "client"):
            local.client = api_client(server.url)
        return invoke(local.client, name)

    # Two callers at a time: the machine has two cores, and each call is a cold start.
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = list(pool.map(call, names))
    cold_s = time.monotonic() - started
    cold = sum(1 for r in first if r.get("cold_start"))
    init_ms = [float(str(r["init_duration_ms"])) for r in first if r.get("init_duration_ms")]
    log(f"first call of each: {cold} cold starts in {cold_s:.1f} s")

    time.sleep(1.0)  # every instance settles into its /next long poll
    pids = procs.instance_pids(server.data_dir)
    trees = {q for p in pids for q in {p} | procs.descendants(p)}
    instance_bytes = sum(procs.unique_bytes(p) for p in trees)
    assert server.proc is not None
    platform = {server.proc.pid} | procs.descendants(server.proc.pid)
    platform_bytes = sum(procs.unique_bytes(p) for p in platform - trees)
    log(f"{len(pids)} live instances: {instance_bytes / 2**20:.0f} MB unique in all")

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        second = list(pool.map(call, names))
    warm_s = time.monotonic() - started
    warm = sum(1 for r in second if not r.get("cold_start"))
    warm_ms = [float(str(r["duration_ms"])) for r in second]
    server.stop()

    table = Table(
        "Density: idle warm instances of different functions", ["figure", "value"], left=(0, 1)
    )
    table.add("date", env["date"])
    table.add("sandbox", env["sandbox"])
    table.add("CPUs / CPU model", f"{env['CPUs']} / {env['CPU model']}")
    table.add("functions deployed", f"{functions} (in {deploy_s:.1f} s)")
    table.add("first calls (cold starts)", f"{cold}/{functions} in {cold_s:.1f} s, 2 callers")
    table.add("cold start init_duration p50", f"{statistics.median(init_ms):.2f} ms")
    table.add("live instances after the first calls", str(len(pids)))
    table.add("unique memory of all instances", f"{instance_bytes / 2**20:,.0f} MB")
    table.add(
        "unique memory per idle instance",
        f"{instance_bytes / max(1, len(pids)) / 2**20:.2f} MB",
    )
    table.add("platform unique memory (server, zygote)", f"{platform_bytes / 2**20:.0f} MB")
    table.add("second calls that were warm", f"{warm}/{functions} in {warm_s:.1f} s")
    table.add("warm call duration p50", f"{statistics.median(warm_ms):.3f} ms")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--functions", type=int, default=1000)
    parser.add_argument("--sandbox", help="passed to `nimbus serve --sandbox`")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    children = procs.Children()
    with tempfile.TemporaryDirectory(prefix="nimbus-density-") as tmp:
        try:
            table = measure(args.functions, args.sandbox, Path(tmp), children)
        except BenchError as exc:
            print(f"density: error: {exc}", file=sys.stderr)
            return 1
        finally:
            children.stop_all()
            for data_dir in Path(tmp).glob("data-*"):
                procs.kill_instances(data_dir)
    print(table.text())
    if not args.no_write:
        report.write_section(RESULTS, table.markdown(), START, END, HEADING)
        print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
