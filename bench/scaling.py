"""Scaling: reaction to a step of load, provisioned instances, and the keep-alive trade-off.

1. **Step** (real server, real instances): from zero instances, 32 callers start at
   once and each calls a 50 ms function in a loop for a few seconds. Reported: time
   from the step until the p99 latency of calls (by start time, 500 ms windows) stays
   under 2x the function's own 50 ms, the number of cold starts, throughput.
2. **Step with provisioned instances**: the same step against an alias with 32
   provisioned instances, configured (and ready) before the step. Cold starts must be 0.
3. **Bursty replay** (the pool's real policy, ``decide_scale``, on a simulated clock):
   a synthetic trace of Poisson bursts separated by idle gaps, replayed under the
   default keep-alive policy and under a fixed 10-minute keep-alive; reported: the
   cold-start rate and the idle-instance memory x time each costs. The trace generator:
   gaps between bursts are exponential with mean ``--gap-mean`` seconds (default 240 s),
   a burst lasts an exponential time with mean 20 s, during which calls arrive as a
   Poisson process of 5 calls/s, each taking 50 ms; a fixed seed makes the trace the
   same for both policies. Instance start cost and idle memory are this machine's
   (cold-start init p50 and unique memory per idle instance, measured in step 1).

    .venv/bin/python bench/scaling.py [--step-s 4] [--no-write]
"""

from __future__ import annotations

import argparse
import io
import math
import random
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import procs
import report
from report import Table
from run import RESULTS, TOKEN, BenchError, NimbusServer, check, environment, log

from nimbus.pool.policy import IdleInstance, PoolStats, ScalePolicy, decide_scale

HEADING = "## Scaling\n\nWritten by `bench/scaling.py`."
START, END = "<!-- scaling:start -->", "<!-- scaling:end -->"
SERVICE_S = 0.05
CALLERS = 32
CODE = "import time\n\ndef handler(event, context):\n    time.sleep(0.05)\n    return {'ok': 1}\n"


@dataclass
class StepResult:
    calls: list[tuple[float, float, bool]] = field(default_factory=list)  # start, latency, cold
    errors: int = 0
    init_ms: list[float] = field(default_factory=list)

    def recovery_s(self, window_s: float = 0.5) -> float:
        """Seconds from the step until every later window's p99 is under 2x service time."""
        if not self.calls:
            return math.nan
        t0 = min(c[0] for c in self.calls)
        windows: dict[int, list[float]] = {}
        for start, latency, _cold in self.calls:
            windows.setdefault(int((start - t0) / window_s), []).append(latency)
        bad = [w for w, lat in windows.items() if _p99(lat) >= 2 * SERVICE_S]
        return (max(bad) + 1) * window_s if bad else 0.0


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", CODE)
    return buf.getvalue()


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)


def step(url: str, target: str, duration_s: float) -> StepResult:
    result = StepResult()
    lock = threading.Lock()
    go = threading.Barrier(CALLERS + 1)

    def caller() -> None:
        with _client(url) as c:
            go.wait()
            end = time.monotonic() + duration_s
            while time.monotonic() < end:
                started = time.monotonic()
                r = c.post(f"/v1/functions/{target}/invocations", json={})
                latency = time.monotonic() - started
                with lock:
                    if r.status_code != 200 or r.json().get("status") != "succeeded":
                        result.errors += 1
                        continue
                    body = r.json()
                    result.calls.append((started, latency, bool(body["cold_start"])))
                    if body["cold_start"] and body.get("init_duration_ms"):
                        result.init_ms.append(float(body["init_duration_ms"]))

    threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
    for t in threads:
        t.start()
    go.wait()
    for t in threads:
        t.join()
    return result


def measure_steps(
    work: Path, children: procs.Children, duration_s: float
) -> tuple[dict[str, str], StepResult, StepResult, float]:
    server = NimbusServer(children, work, "scaling", None)
    server.start()
    env = environment(server.sandbox_banner())
    with _client(server.url) as c:
        sha = check(
            c.put("/v1/code", content=_zip(), headers={"Content-Type": "application/zip"}), 201
        )["sha256"]
        body = {"runtime": "python3.11", "handler": "app.handler", "code_sha256": sha}
        for name in ("step", "prov"):
            check(c.put(f"/v1/functions/{name}", json={**body, "max_instances": CALLERS}), 201)
    log(f"step: {CALLERS} callers from zero instances for {duration_s:g} s")
    cold = step(server.url, "step", duration_s)
    time.sleep(0.5)
    pids = procs.instance_pids(server.data_dir)
    idle_bytes = sum(procs.unique_bytes(p) for p in pids) / max(1, len(pids))
    with _client(server.url) as c:
        check(c.post("/v1/functions/prov/versions"), 201)
        check(c.put("/v1/functions/prov/aliases/live", json={"version": 1}), 201)
        check(c.put("/v1/functions/prov/provisioned/live", json={"count": CALLERS}), 200)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = c.get("/v1/functions/prov/provisioned").json()["provisioned"][0]
            if status["ready"] >= CALLERS:
                break
            time.sleep(0.1)
        else:
            raise BenchError(f"provisioned instances not ready after 60 s: {status}")
    log(f"step on an alias with {CALLERS} provisioned instances")
    warm = step(server.url, "prov:live", duration_s)
    server.stop()
    return env, cold, warm, idle_bytes


# ---- bursty replay on a simulated clock --------------------------------------------------


def trace(seed: int, hours: float, gap_mean_s: float) -> list[float]:
    rand = random.Random(seed)
    t, arrivals, end = 0.0, [], hours * 3600
    while t < end:
        t += rand.expovariate(1 / gap_mean_s)
        burst_end = t + rand.expovariate(1 / 20)
        while t < burst_end:
            t += rand.expovariate(5.0)
            arrivals.append(t)
    return arrivals


def replay(arrivals: list[float], policy: ScalePolicy, init_s: float) -> tuple[float, float]:
    """(cold-start rate, idle instance-seconds) of one pool under ``policy``."""
    busy_until: dict[str, float] = {}
    idle_since: dict[str, float] = {}
    counter = 0
    cold = 0
    idle_seconds = 0.0
    last_t = 0.0
    last_scale_out: float | None = None

    def advance(now: float) -> None:
        nonlocal idle_seconds, last_t
        # Instances whose call ended become idle at that moment.
        for iid, until in list(busy_until.items()):
            if until <= now:
                del busy_until[iid]
                idle_since[iid] = until
        for since in idle_since.values():
            idle_seconds += max(0.0, now - max(since, last_t))
        last_t = now
        decision = decide_scale(
            PoolStats(
                waiting=0,
                starting=0,
                total=len(busy_until) + len(idle_since),
                idle=tuple(IdleInstance(i, s) for i, s in idle_since.items()),
                max_instances=1000,
                last_scale_out=last_scale_out,
            ),
            now,
            policy,
        )
        for iid in decision.stop:
            del idle_since[iid]

    tick = 1.0
    next_tick = tick
    for at in arrivals:
        while next_tick < at:
            advance(next_tick)
            next_tick += tick
        advance(at)
        if idle_since:
            iid = max(idle_since, key=lambda i: idle_since[i])  # most recently used
            del idle_since[iid]
            busy_until[iid] = at + SERVICE_S
        else:
            counter += 1
            cold += 1
            last_scale_out = at
            busy_until[f"i{counter}"] = at + init_s + SERVICE_S
    return cold / max(1, len(arrivals)), idle_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step-s", type=float, default=4.0, help="seconds of load per step")
    parser.add_argument("--hours", type=float, default=24.0, help="length of the replayed trace")
    parser.add_argument("--gap-mean", type=float, default=240.0, help="mean idle gap, seconds")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    children = procs.Children()
    with tempfile.TemporaryDirectory(prefix="nimbus-scaling-") as tmp:
        try:
            env, cold, warm, idle_bytes = measure_steps(Path(tmp), children, args.step_s)
        except BenchError as exc:
            print(f"scaling: error: {exc}", file=sys.stderr)
            return 1
        finally:
            children.stop_all()
            for data_dir in Path(tmp).glob("data-*"):
                procs.kill_instances(data_dir)

    init_s = statistics.median(cold.init_ms) / 1000 if cold.init_ms else 0.01
    arrivals = trace(7, args.hours, args.gap_mean)
    default = ScalePolicy(keepalive_s=60, last_keepalive_s=300, scale_in_cooldown_s=10)
    fixed = ScalePolicy(keepalive_s=600, last_keepalive_s=600)
    rows = []
    for label, policy in (("default (60 s, last 300 s)", default), ("fixed 10 min", fixed)):
        rate, idle_s = replay(arrivals, policy, init_s)
        rows.append((label, rate, idle_s))

    steps = Table(
        f"Step: 0 -> {CALLERS} concurrent callers of a 50 ms function",
        ["case", "recovery s", "cold starts", "calls", "errors", "p50 ms", "p99 ms", "calls/s"],
        left=(0,),
    )
    for label, r in (("from zero instances", cold), (f"{CALLERS} provisioned", warm)):
        lat = [c[1] for c in r.calls]
        steps.add(
            label,
            f"{r.recovery_s():.1f}",
            sum(1 for c in r.calls if c[2]),
            len(r.calls),
            r.errors,
            f"{statistics.median(lat) * 1000:.1f}" if lat else "-",
            f"{_p99(lat) * 1000:.1f}" if lat else "-",
            f"{len(r.calls) / args.step_s:.0f}",
        )
    steps.notes.append(
        f"{env['date']}, {env['CPUs']} CPUs ({env['CPU model']}), sandbox {env['sandbox']}; "
        "recovery: from the step until p99 of calls started in every later 500 ms window "
        "stays under 100 ms (2x the function's time); the callers are Python threads on "
        "the same 2 cores"
    )
    burst = Table(
        f"Bursty replay: {len(arrivals):,} calls over {args.hours:g} h (simulated clock)",
        ["keep-alive", "cold-start rate", "idle instance-hours", "idle memory GB-h"],
        left=(0,),
    )
    for label, rate, idle_s in rows:
        burst.add(
            label,
            f"{rate * 100:.2f} %",
            f"{idle_s / 3600:.2f}",
            f"{idle_s / 3600 * idle_bytes / 2**30:.4f}",
        )
    burst.notes.append(
        f"instance start {init_s * 1000:.1f} ms and {idle_bytes / 2**20:.1f} MB per idle "
        "instance, as measured in the step; policy: nimbus.pool.policy.decide_scale"
    )
    print(steps.text())
    print()
    print(burst.text())
    if not args.no_write:
        report.write_section(
            RESULTS, steps.markdown() + "\n\n" + burst.markdown(), START, END, HEADING
        )
        print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
