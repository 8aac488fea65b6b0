"""Benchmark Nimbus against bare uvicorn running the same handler.

    .venv/bin/python bench/run.py            # full run, rewrites bench/RESULTS.md
    .venv/bin/python bench/run.py --smoke    # a quick pass over every step, writes nothing

Everything runs from this process: a baseline server, ``nimbus serve`` (three
times, for its startup time), ``wrk`` for warm load, an httpx client for cold
starts. Every process it starts is stopped by pid when it ends, however it ends.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import load
import procs
import report
from report import Table, ms, percentile, rate

BENCH = Path(__file__).resolve().parent
HELLO = BENCH / "hello" / "app.py"
#: The same handler behind a heavy module-level import (asyncio, HTTP/TLS, XML, SQLite...).
HEAVY = BENCH / "heavy" / "app.py"
RESULTS = BENCH / "RESULTS.md"
NIMBUS = Path(sys.executable).with_name("nimbus")
TOKEN = "bench-admin-key-0123456789abcdef"
EVENT = '{"name":"bench"}'
EXPECTED = {"hello": "bench"}


@dataclass(frozen=True)
class Plan:
    duration_s: float
    concurrencies: tuple[int, ...]
    #: Concurrency levels where only errors are reported (latency there is queueing).
    errors_only: tuple[int, ...]
    cold_n: int
    startup_runs: int
    warmup_s: float
    cold_batch: int = 20


FULL = Plan(10, (1, 16, 64, 256), (256,), cold_n=200, startup_runs=3, warmup_s=2)
SMOKE = Plan(1, (1, 16), (), cold_n=5, startup_runs=1, warmup_s=0)


class BenchError(Exception):
    """The benchmark could not run a step; the message says which and why."""


@dataclass
class Results:
    env: dict[str, str] = field(default_factory=dict)
    startup_ms: list[float] = field(default_factory=list)
    warm: dict[tuple[str, int], load.LoadResult] = field(default_factory=dict)
    cold_client_ms: list[float] = field(default_factory=list)
    cold_init_ms: list[float] = field(default_factory=list)
    cold_not_cold: int = 0
    #: Cold starts of the heavy-import function (a quarter as many).
    heavy_cold_client_ms: list[float] = field(default_factory=list)
    heavy_cold_init_ms: list[float] = field(default_factory=list)
    #: The same cold starts with ``--sandbox process`` (no isolation), for the sandbox's cost.
    process_cold_client_ms: list[float] = field(default_factory=list)
    process_cold_init_ms: list[float] = field(default_factory=list)
    idle_instances: int = 0
    idle_unique_bytes: int = 0
    server_unique_bytes: int = 0
    steal_pct: float = float("nan")
    other_pct: float = float("nan")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---- servers ------------------------------------------------------------------


class NimbusServer:
    """One ``nimbus serve`` with its own data dir, started through :class:`procs.Children`."""

    def __init__(self, children: procs.Children, work: Path, tag: str, sandbox: str | None):
        self.children = children
        self.data_dir = work / f"data-{tag}"
        self.log_path = work / f"serve-{tag}.log"
        self.port = procs.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sandbox = sandbox
        self.proc: subprocess.Popen[Any] | None = None

    def start(self) -> float:
        """Spawn the server; return ms from spawn to ``/healthz`` answering 200."""
        if not NIMBUS.exists():
            raise BenchError(f"{NIMBUS} not found; run `make setup` and use .venv/bin/python")
        argv = [str(NIMBUS), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--data-dir", str(self.data_dir)]
        if self.sandbox:
            argv += ["--sandbox", self.sandbox]
        env = {**os.environ, "NIMBUS_ADMIN_TOKEN": TOKEN}
        with self.log_path.open("wb") as out:
            started = time.monotonic()
            self.proc = self.children.spawn(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            ready = procs.wait_healthy(self.url + "/healthz", self.proc, timeout_s=60)
        except RuntimeError as exc:
            raise BenchError(f"nimbus serve did not start: {exc}") from exc
        return (ready - started) * 1000

    def sandbox_banner(self) -> str:
        """The backend named on the banner line ``sandbox: ...``."""
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("sandbox:"):
                return line.removeprefix("sandbox:").split(" - ", 1)[0].strip()
        return "unknown (no `sandbox:` line on the banner)"

    def stop(self) -> None:
        if self.proc is not None:
            self.children.stop(self.proc, grace_s=20)
        # Safety net: instances are in their own sessions; if the server died
        # without stopping them, kill what its pidfiles still name.
        if killed := procs.kill_instances(self.data_dir):
            log(f"killed {killed} instance(s) left behind by {self.url}")


def start_baseline(children: procs.Children, work: Path) -> tuple[str, subprocess.Popen[Any]]:
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    out = (work / "baseline.log").open("wb")
    argv = [sys.executable, str(BENCH / "baseline.py"), "--port", str(port)]
    proc = children.spawn(argv, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    try:
        procs.wait_healthy(url + "/", proc, timeout_s=30)
    except RuntimeError as exc:
        log_text = (work / "baseline.log").read_text(errors="replace")
        raise BenchError(f"baseline did not start: {exc}\n{log_text}") from exc
    return url, proc


# ---- the API, as a client ---------------------------------------------------------


def hello_zip(source: Path = HELLO) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("app.py", date_time=(2024, 1, 1, 0, 0, 0))
        info.external_attr = (0o100644) << 16
        zf.writestr(info, source.read_bytes())
    return buf.getvalue()


def api_client(url: str) -> httpx.Client:
    return httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=httpx.Timeout(60)
    )


def check(response: httpx.Response, *statuses: int) -> Any:
    if response.status_code not in statuses:
        raise BenchError(
            f"{response.request.method} {response.request.url.path}: "
            f"HTTP {response.status_code}: {response.text[:500]}"
        )
    return response.json() if response.content else None


def deploy(client: httpx.Client, name: str, sha256: str) -> None:
    body = {"runtime": "python3.11", "handler": "app.handler", "code_sha256": sha256}
    check(client.put(f"/v1/functions/{name}", json=body), 200, 201)


def invoke(client: httpx.Client, name: str) -> dict[str, Any]:
    response = client.post(
        f"/v1/functions/{name}/invocations",
        content=EVENT,
        headers={"Content-Type": "application/json"},
    )
    out: dict[str, Any] = check(response, 200)
    if out.get("status") != "succeeded" or out.get("result") != EXPECTED:
        raise BenchError(f"{name}: unexpected invocation result {out}")
    return out


# ---- steps --------------------------------------------------------------------------


def environment(sandbox: str) -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "CPUs": str(os.cpu_count()),
        "CPU model": model,
        "Python": f"{platform.python_version()} ({platform.python_implementation()})",
        "kernel": platform.release(),
        "sandbox": sandbox,
        "wrk": load.wrk_version(),
    }


def run_wrk(
    children: procs.Children,
    work: Path,
    url: str,
    headers: dict[str, str],
    concurrency: int,
    duration_s: float,
    *,
    count_statuses: bool = False,
) -> load.LoadResult:
    script = load.write_script(
        work / f"wrk-{len(headers)}-{concurrency}.lua",
        EVENT,
        headers,
        count_statuses=count_statuses,
    )
    argv = load.wrk_argv(url, script, concurrency, duration_s)
    proc = children.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=duration_s + 60)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish: {' '.join(argv)}") from exc
    finally:
        children.stop(proc)
    if proc.returncode != 0:
        raise BenchError(f"wrk exited with {proc.returncode}:\n{output}")
    try:
        return load.parse(output, concurrency)
    except RuntimeError as exc:
        raise BenchError(str(exc)) from exc


def warm_load(
    children: procs.Children, work: Path, plan: Plan, baseline_url: str, nimbus_url: str
) -> dict[tuple[str, int], load.LoadResult]:
    json_header = {"Content-Type": "application/json"}
    targets = {
        "baseline": (baseline_url + "/", json_header),
        "nimbus": (
            nimbus_url + "/v1/functions/hello/invocations",
            {**json_header, "Authorization": f"Bearer {TOKEN}"},
        ),
    }
    out: dict[tuple[str, int], load.LoadResult] = {}
    # Both targets at one concurrency back to back, so slow drifts of the noisy
    # host hit both sides of each ratio alike.
    for c in plan.concurrencies:
        for name, (url, headers) in targets.items():
            if plan.warmup_s:
                # Unreported: lets Nimbus scale out to this load before it is measured.
                log(f"warm-up: {name} c={c} for {plan.warmup_s:g} s")
                run_wrk(children, work, url, headers, c, plan.warmup_s)
            log(f"wrk: {name} c={c} for {plan.duration_s:g} s")
            result = run_wrk(
                children,
                work,
                url,
                headers,
                c,
                plan.duration_s,
                count_statuses=c in plan.errors_only,
            )
            out[(name, c)] = result
            log(
                f"     {result.rps:,.0f} ok req/s, p50 {result.p50_ms:.3f} ms, "
                f"p99 {result.p99_ms:.3f} ms, errors {result.errors}"
            )
            time.sleep(0.5)
    return out


def cold_starts(
    server: NimbusServer,
    plan: Plan,
    sha256: str,
    results: Results,
    *,
    client_ms: list[float] | None = None,
    init_ms: list[float] | None = None,
) -> None:
    """Deploy ``plan.cold_n`` fresh functions; time each one's first invoke (into
    ``client_ms``/``init_ms``, by default the results' main cold-start lists)."""
    client_ms = results.cold_client_ms if client_ms is None else client_ms
    init_ms = results.cold_init_ms if init_ms is None else init_ms
    with api_client(server.url) as client:
        done = 0
        while done < plan.cold_n:
            batch = [f"cold-{i:04d}" for i in range(done, min(done + plan.cold_batch, plan.cold_n))]
            for name in batch:
                deploy(client, name, sha256)
                started = time.monotonic()
                out = invoke(client, name)
                client_ms.append((time.monotonic() - started) * 1000)
                if out.get("cold_start") and out.get("init_duration_ms") is not None:
                    init_ms.append(float(out["init_duration_ms"]))
                else:
                    results.cold_not_cold += 1
            # Deleting retires the pools, so the server never holds more than
            # one batch of idle instances.
            for name in batch:
                check(client.delete(f"/v1/functions/{name}"), 204)
            done += len(batch)
            log(f"cold starts: {done}/{plan.cold_n}")


def idle_memory(server: NimbusServer, results: Results) -> None:
    time.sleep(0.5)  # let the instance settle into its /next long poll
    pids = procs.instance_pids(server.data_dir)
    if not pids:
        raise BenchError(f"no live instance pidfile under {server.data_dir}/run/pids")
    results.idle_instances = len(pids)
    instance_trees = {q for p in pids for q in {p} | procs.descendants(p)}
    results.idle_unique_bytes = sum(procs.unique_bytes(p) for p in instance_trees)
    # The platform's own share: the server and helpers it started (a zygote...).
    assert server.proc is not None
    platform = {server.proc.pid} | procs.descendants(server.proc.pid)
    results.server_unique_bytes = sum(procs.unique_bytes(p) for p in platform - instance_trees)


# ---- the report ------------------------------------------------------------------


def tables(plan: Plan, r: Results, smoke: bool) -> list[Table]:
    env = Table("Environment", ["item", "value"], left=(0, 1))
    for item, value in r.env.items():
        env.add(item, value)
    env.add("CPU steal", f"{r.steal_pct:.1f}% of CPU time during the run (hypervisor)")
    env.add(
        "other load",
        f"{r.other_pct:.1f}% of CPU time during the run went to processes outside the benchmark",
    )
    env.add("mode", "smoke" if smoke else "full")

    warm = Table(
        f"Warm invoke: POST {EVENT}, wrk -t1, {plan.duration_s:g} s per point",
        [
            "concurrency",
            "baseline p50 ms",
            "baseline p99 ms",
            "baseline req/s",
            "nimbus p50 ms",
            "nimbus p99 ms",
            "nimbus req/s",
            "nimbus/baseline req/s",
            "errors baseline/nimbus",
        ],
    )
    for c in plan.concurrencies:
        b, n = r.warm[("baseline", c)], r.warm[("nimbus", c)]
        lat = c not in plan.errors_only
        warm.add(
            f"warm c={c}",
            ms(b.p50_ms) if lat else "-",
            ms(b.p99_ms) if lat else "-",
            rate(b.rps),
            ms(n.p50_ms) if lat else "-",
            ms(n.p99_ms) if lat else "-",
            rate(n.rps),
            f"{n.rps / b.rps:.2f}" if b.rps else "-",
            f"{b.errors}/{n.errors}",
        )
        for name, res in (("baseline", b), ("nimbus", n)):
            if res.errors:
                statuses = ", ".join(f"{k}: {v}" for k, v in sorted(res.statuses.items()))
                warm.notes.append(
                    f"c={c} {name}: {res.non_2xx} non-2xx responses, {res.socket_errors} socket"
                    f" errors, {res.all_rps:,.0f} responses/s in all"
                    + (f" (by status: {statuses})" if statuses else "")
                )
    warm.notes.insert(
        0,
        "req/s counts successful responses only" + ("; errors:" if warm.notes else "; no errors"),
    )

    summary = Table("Summary", ["figure", "value", "detail"], left=(0, 2))
    if 1 in plan.concurrencies:
        added = r.warm[("nimbus", 1)].p50_ms - r.warm[("baseline", 1)].p50_ms
        summary.add("added p50 at c=1", f"{added:.3f} ms", "nimbus p50 - baseline p50")
    cold_n = len(r.cold_client_ms)
    summary.add(
        "cold start, client p50",
        f"{ms(percentile(r.cold_client_ms, 50))} ms",
        f"first invoke of a fresh function, end to end, n={cold_n}",
    )
    summary.add("cold start, client p99", f"{ms(percentile(r.cold_client_ms, 99))} ms", "")
    summary.add(
        "cold start, init_duration p50",
        f"{ms(percentile(r.cold_init_ms, 50))} ms",
        "init_duration_ms reported by Nimbus"
        + (f"; {r.cold_not_cold} calls were not cold" if r.cold_not_cold else ""),
    )
    summary.add("cold start, init_duration p99", f"{ms(percentile(r.cold_init_ms, 99))} ms", "")
    if r.heavy_cold_client_ms:
        summary.add(
            "cold start, heavy import, client p50",
            f"{ms(percentile(r.heavy_cold_client_ms, 50))} ms",
            "the same handler importing asyncio, http.client, ssl, urllib.request, xml, "
            f"sqlite3, email (bench/heavy), n={len(r.heavy_cold_client_ms)}",
        )
        summary.add(
            "cold start, heavy import, client p99",
            f"{ms(percentile(r.heavy_cold_client_ms, 99))} ms",
            "",
        )
    if r.process_cold_client_ms:
        bare_p50 = percentile(r.process_cold_client_ms, 50)
        summary.add(
            "cold start without isolation, client p50",
            f"{ms(bare_p50)} ms",
            f"the same, --sandbox process (plain exec, no zygote), n={len(r.process_cold_client_ms)}",
        )
        summary.add(
            "cold start without isolation, init_duration p50",
            f"{ms(percentile(r.process_cold_init_ms, 50))} ms",
            "",
        )
        summary.add(
            "sandbox's cold-start cost, client p50",
            f"{percentile(r.cold_client_ms, 50) - bare_p50:+.2f} ms",
            "default sandbox minus process backend (negative: the zygote more than pays "
            "for the namespaces)",
        )
    runs = ", ".join(f"{v:.0f}" for v in r.startup_ms)
    summary.add(
        "serve startup",
        f"{statistics.median(r.startup_ms):.0f} ms",
        f"spawn to /healthz 200, median of {len(r.startup_ms)} ({runs} ms)",
    )
    per_instance = r.idle_unique_bytes / max(1, r.idle_instances) / 2**20
    summary.add(
        "idle instance memory",
        f"{per_instance:.1f} MB",
        f"unique (Private_Clean+Private_Dirty), {r.idle_instances} idle instance(s)",
    )
    summary.add(
        "nimbus serve memory",
        f"{r.server_unique_bytes / 2**20:.1f} MB",
        "unique, the server and its helpers (zygote...) without instances, after warm-up",
    )
    return [env, warm, summary]


# ---- main --------------------------------------------------------------------------


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM (and SIGHUP) into SystemExit so every ``finally`` runs."""

    def raise_exit(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int | None] = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, raise_exit)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def bench(args: argparse.Namespace, plan: Plan, children: procs.Children, work: Path) -> Results:
    results = Results()
    try:
        load.wrk_path()  # fail before starting anything when wrk is missing
    except RuntimeError as exc:
        raise BenchError(str(exc)) from exc

    log("starting the baseline (uvicorn + uvloop + httptools, in-process handler)")
    baseline_url, _baseline = start_baseline(children, work)

    server: NimbusServer | None = None
    for i in range(plan.startup_runs):
        if server is not None:
            server.stop()
        server = NimbusServer(children, work, f"startup{i}", args.sandbox)
        results.startup_ms.append(server.start())
        log(f"nimbus serve startup {i + 1}/{plan.startup_runs}: {results.startup_ms[-1]:.0f} ms")
    assert server is not None
    results.env = environment(server.sandbox_banner())

    with api_client(server.url) as client:
        sha256 = check(
            client.put(
                "/v1/code", content=hello_zip(), headers={"Content-Type": "application/zip"}
            ),
            201,
        )["sha256"]
        deploy(client, "hello", sha256)
        for _ in range(5):
            invoke(client, "hello")
    log("deployed and warmed hello")
    idle_memory(server, results)

    results.warm = warm_load(children, work, plan, baseline_url, server.url)
    cold_starts(server, plan, sha256, results)
    with api_client(server.url) as client:
        heavy_sha = check(
            client.put(
                "/v1/code",
                content=hello_zip(HEAVY),
                headers={"Content-Type": "application/zip"},
            ),
            201,
        )["sha256"]
    log("cold starts of the heavy-import function")
    cold_starts(
        server,
        dataclasses.replace(plan, cold_n=max(1, plan.cold_n // 4)),
        heavy_sha,
        results,
        client_ms=results.heavy_cold_client_ms,
        init_ms=results.heavy_cold_init_ms,
    )
    server.stop()
    if args.sandbox != "process":
        # The same cold starts without isolation: what the sandbox adds.
        log("cold starts again with --sandbox process (no isolation), for comparison")
        bare = NimbusServer(children, work, "process", "process")
        bare.start()
        with api_client(bare.url) as client:
            sha = check(
                client.put(
                    "/v1/code", content=hello_zip(), headers={"Content-Type": "application/zip"}
                ),
                201,
            )["sha256"]
        cold_starts(
            bare,
            plan,
            sha,
            results,
            client_ms=results.process_cold_client_ms,
            init_ms=results.process_cold_init_ms,
        )
        bare.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark Nimbus against bare uvicorn running the same handler."
    )
    parser.add_argument("--smoke", action="store_true", help="a short pass; writes no results")
    parser.add_argument("--sandbox", help="passed to `nimbus serve --sandbox` (default: its own)")
    parser.add_argument(
        "--output",
        type=Path,
        help=f"markdown file to update (default in full mode: {RESULTS.relative_to(BENCH.parent)})",
    )
    parser.add_argument("--duration", type=float, help="seconds per wrk point (overrides mode)")
    parser.add_argument("--cold-n", type=int, help="fresh deployments to time (overrides mode)")
    args = parser.parse_args(argv)

    plan = SMOKE if args.smoke else FULL
    if args.duration is not None:
        plan = dataclasses.replace(plan, duration_s=args.duration)
    if args.cold_n is not None:
        plan = dataclasses.replace(plan, cold_n=max(1, args.cold_n))

    children = procs.Children()
    cpu_before = procs.CpuSample.now()
    with sigterm_as_exit(), tempfile.TemporaryDirectory(prefix="nimbus-bench-") as tmp:
        try:
            results = bench(args, plan, children, Path(tmp))
        except BenchError as exc:
            print(f"bench: error: {exc}", file=sys.stderr)
            logs = sorted(Path(tmp).glob("serve-*.log"), key=lambda p: p.stat().st_mtime)
            if logs:
                tail = logs[-1].read_text(errors="replace").splitlines()[-20:]
                print(f"--- {logs[-1].name} (tail) ---", *tail, sep="\n", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("bench: interrupted", file=sys.stderr)
            return 130
        except SystemExit:
            print("bench: terminated by a signal; stopping what it started", file=sys.stderr)
            raise
        finally:
            children.stop_all()
            for data_dir in Path(tmp).glob("data-*"):
                procs.kill_instances(data_dir)

    results.steal_pct, results.other_pct = procs.cpu_shares(cpu_before, procs.CpuSample.now())
    out = tables(plan, results, args.smoke)
    print()
    print(report.render_text(out), flush=True)
    target = args.output if args.output is not None else (None if args.smoke else RESULTS)
    if args.smoke and target is not None and target.resolve() == RESULTS:
        target = None  # a smoke run's figures are not results
    if target is not None:
        report.write_results(target, report.render_markdown(out))
        print(f"\nwrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
