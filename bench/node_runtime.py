"""The built-in Node.js runtime against the Python runtime, measured in the same run.

    .venv/bin/python bench/node_runtime.py [--cold-n 30] [--duration 5] [--sandbox NAME]

One ``nimbus serve`` runs the same hello handler in Python (``bench/hello/app.py``)
and in Node (``NODE_HELLO`` below), each with the default settings (128 MB):

- **Cold start**: ``--cold-n`` fresh deployments per runtime, Python and Node
  alternating so slow drifts of the host hit both alike; the first invoke of each
  is timed end to end (client) and its ``init_duration_ms`` kept. The very first
  Node instance after the server started also starts the zygote Node instances are
  exec'd from; it is timed apart and left out of the percentiles.
- **Warm call**: ``wrk -t1 -c1`` for ``--duration`` seconds per runtime (alternating,
  two rounds each, after an unreported warm-up), POST ``{"name":"bench"}``; plus the
  ``duration_ms`` Nimbus reports for 200 sequential calls (the time in the instance).
- **Idle memory**: unique memory of each runtime's warm instance (its processes'
  Private_Clean + Private_Dirty), as ``bench/run.py`` measures it.

It prints a table and writes nothing (``bench/RESULTS.md`` is edited by hand).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import procs
from report import Table, ms, percentile, rate
from run import (
    EVENT,
    EXPECTED,
    HELLO,
    TOKEN,
    BenchError,
    NimbusServer,
    api_client,
    check,
    environment,
    log,
    run_wrk,
)

NODE_HELLO = "exports.handler = async (event) => ({ hello: event.name || 'world' });\n"
#: Runtime key → (package file name, handler).
LAYOUT = {"python": ("app.py", "app.handler"), "node": ("index.js", "index.handler")}


def package(name: str, source: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
        info.external_attr = 0o100644 << 16
        zf.writestr(info, source)
    return buf.getvalue()


def node_runtime(client: httpx.Client) -> tuple[str, str]:
    """Name and version of the newest ``nodejsN`` runtime the server offers."""
    runtimes = check(client.get("/v1/runtimes"), 200)["runtimes"]
    node = [r for r in runtimes if r["kind"] == "node"]
    if not node:
        raise BenchError("the server offers no nodejsN runtime; install Node.js 18+ (nodejs)")
    best = max(node, key=lambda r: int(r["name"].removeprefix("nodejs")))
    return str(best["name"]), str(best["version"])


def deploy(client: httpx.Client, name: str, runtime: str, kind: str, sha256: str) -> None:
    handler = LAYOUT[kind][1]
    body = {"runtime": runtime, "handler": handler, "code_sha256": sha256}
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


def timed_first_call(client: httpx.Client, name: str) -> tuple[float, float | None]:
    started = time.monotonic()
    out = invoke(client, name)
    client_ms = (time.monotonic() - started) * 1000
    init = out.get("init_duration_ms") if out.get("cold_start") else None
    return client_ms, float(init) if init is not None else None


def dirty_bytes(pid: int) -> int:
    """Private_Dirty of ``pid``: what it wrote itself, never shared with another instance."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key == "Private_Dirty":
            return int(rest.split()[0]) * 1024
    return 0


def instance_memory(server: NimbusServer) -> dict[str, list[tuple[int, int]]]:
    """(unique, dirty) bytes of each live instance's process tree, by runtime (from its
    cmdline)."""
    out: dict[str, list[tuple[int, int]]] = {"python": [], "node": []}
    for pid in procs.instance_pids(server.data_dir):
        tree = {pid} | procs.descendants(pid)
        cmdlines = []
        for p in tree:
            try:
                cmdlines.append(Path(f"/proc/{p}/cmdline").read_bytes())
            except OSError:
                continue
        kind = "node" if any(b"bootstrap.cjs" in c for c in cmdlines) else "python"
        out[kind].append(
            (sum(procs.unique_bytes(p) for p in tree), sum(dirty_bytes(p) for p in tree))
        )
    return out


def measure(args: argparse.Namespace, children: procs.Children, work: Path) -> list[Table]:
    server = NimbusServer(children, work, "node", args.sandbox)
    server.start()
    env = environment(server.sandbox_banner())
    client = api_client(server.url)
    runtime_of = {"python": "python3.11"}
    node_name, node_version = node_runtime(client)
    runtime_of["node"] = node_name
    sources = {"python": HELLO.read_text(), "node": NODE_HELLO}
    sha = {}
    for kind, source in sources.items():
        upload = client.put(
            "/v1/code",
            content=package(LAYOUT[kind][0], source),
            headers={"Content-Type": "application/zip"},
        )
        sha[kind] = check(upload, 201)["sha256"]

    log("first Node instance after start (starts the zygote Node instances come from)")
    deploy(client, "node-first", node_name, "node", sha["node"])
    first_node_ms, first_node_init = timed_first_call(client, "node-first")
    check(client.delete("/v1/functions/node-first"), 204)

    cold: dict[str, list[float]] = {"python": [], "node": []}
    init: dict[str, list[float]] = {"python": [], "node": []}
    not_cold = 0
    batch: list[str] = []
    for i in range(args.cold_n):
        for kind in ("python", "node"):
            name = f"cold-{kind}-{i:03d}"
            deploy(client, name, runtime_of[kind], kind, sha[kind])
            client_ms, init_ms = timed_first_call(client, name)
            cold[kind].append(client_ms)
            if init_ms is None:
                not_cold += 1
            else:
                init[kind].append(init_ms)
            batch.append(name)
        if len(batch) >= 20 or i == args.cold_n - 1:
            for name in batch:  # retire the pools: at most one batch of idle instances
                check(client.delete(f"/v1/functions/{name}"), 204)
            batch.clear()
            log(f"cold starts: {i + 1}/{args.cold_n} per runtime")

    for kind in ("python", "node"):
        deploy(client, f"warm-{kind}", runtime_of[kind], kind, sha[kind])
        for _ in range(5):
            invoke(client, f"warm-{kind}")
    in_instance: dict[str, list[float]] = {"python": [], "node": []}
    for _ in range(200):
        for kind in ("python", "node"):
            in_instance[kind].append(float(invoke(client, f"warm-{kind}")["duration_ms"]))
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    warm: dict[str, list[tuple[float, float, float]]] = {"python": [], "node": []}
    for round_ in range(3):
        for kind in ("python", "node"):
            url = f"{server.url}/v1/functions/warm-{kind}/invocations"
            seconds = 1.0 if round_ == 0 else args.duration
            result = run_wrk(children, work, url, headers, 1, seconds)
            if result.errors:
                raise BenchError(f"wrk saw {result.errors} errors against warm-{kind}")
            if round_ > 0:  # round 0 is the warm-up
                warm[kind].append((result.p50_ms, result.p99_ms, result.rps))
                log(f"wrk {kind}: p50 {result.p50_ms:.3f} ms, {result.rps:,.0f} req/s")
    time.sleep(0.5)  # let the instances settle into their /next long poll
    memory = instance_memory(server)
    client.close()
    server.stop()

    table = Table(
        f"Node.js runtime ({node_name}, Node {node_version}) against python3.11",
        ["figure", "python3.11", node_name, "detail"],
        left=(0, 3),
    )

    def row(figure: str, values: dict[str, list[float]], q: float, detail: str) -> None:
        table.add(
            figure,
            f"{ms(percentile(values['python'], q))} ms",
            f"{ms(percentile(values['node'], q))} ms",
            detail,
        )

    row("cold start, client p50", cold, 50, f"first invoke of a fresh function, n={args.cold_n}")
    row("cold start, client p99", cold, 99, "")
    row("cold start, init_duration p50", init, 50, "init_duration_ms reported by Nimbus")
    row("cold start, init_duration p99", init, 99, "")
    zygote = "starts the exec zygote too; " if env["sandbox"].startswith("namespaces") else ""
    table.add(
        "first Node call after server start",
        "-",
        f"{ms(first_node_ms)} ms",
        f"{zygote}init {ms(first_node_init or float('nan'))} ms; not in the rows above",
    )

    def warm_figure(kind: str, index: int) -> float:
        return statistics.median(w[index] for w in warm[kind])

    table.add(
        "warm call, client p50 (wrk c=1)",
        f"{ms(warm_figure('python', 0))} ms",
        f"{ms(warm_figure('node', 0))} ms",
        f"median of 2 x {args.duration:g} s per runtime",
    )
    table.add(
        "warm call, client p99 (wrk c=1)",
        f"{ms(warm_figure('python', 1))} ms",
        f"{ms(warm_figure('node', 1))} ms",
        "",
    )
    table.add(
        "warm calls per second (c=1)",
        rate(warm_figure("python", 2)),
        rate(warm_figure("node", 2)),
        "",
    )
    row("warm call, duration_ms p50", in_instance, 50, "in the instance, n=200 sequential calls")
    for index, figure, detail in (
        (0, "idle warm instance, unique memory", "Private_Clean + Private_Dirty, as bench/run.py"),
        (1, "idle warm instance, dirty memory", "Private_Dirty: the part a 2nd one cannot share"),
    ):
        mib = {k: [v[index] / 2**20 for v in vals] for k, vals in memory.items()}
        table.add(
            figure,
            f"{statistics.mean(mib['python']):.1f} MiB" if mib["python"] else "-",
            f"{statistics.mean(mib['node']):.1f} MiB" if mib["node"] else "-",
            detail,
        )
    table.notes.append(
        f"{env['date']}, {env['CPUs']} CPUs ({env['CPU model']}), sandbox {env['sandbox']}; "
        f"default settings (memory_mb 128){'; ' + str(not_cold) + ' calls were not cold' if not_cold else ''}"
    )
    return [table]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold-n", type=int, default=30, help="fresh deployments per runtime")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--sandbox", help="passed to nimbus serve --sandbox")
    args = parser.parse_args(argv)
    children = procs.Children()
    with tempfile.TemporaryDirectory(prefix="nimbus-node-") as tmp:
        try:
            tables = measure(args, children, Path(tmp))
        except BenchError as exc:
            print(f"node_runtime: error: {exc}", file=sys.stderr)
            return 1
        finally:
            children.stop_all()
            for data_dir in Path(tmp).glob("data-*"):
                procs.kill_instances(data_dir)
    print("\n\n".join(t.text() for t in tables))
    print()
    print("\n\n".join(t.markdown() for t in tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
