"""Message-queue (``redis-stream``) trigger throughput, end to end, for a no-op function,
against raw Redis Streams throughput of the same redis-server in the same run.

    .venv/bin/python bench/redis_stream.py [--messages 5000] [--smoke] [--write]

One redis-server (loopback, no persistence) and one ``nimbus serve`` (default sandbox)
are started from this process and stopped by pid at the end. For each batch size
(1, 10, 100):

- **raw**: a fresh stream is filled with ``--messages`` entries (100-byte field), then
  one asyncio redis-py consumer drains it as the trigger does, minus the function:
  ``XREADGROUP COUNT batch`` then ``XACK`` of the batch, one batch at a time.
- **nimbus**: a fresh stream is filled the same way, then a trigger with that
  ``batch_size`` and ``start: "0"`` is created for a no-op function (one warm
  instance); the time runs from the create request until the group has every
  entry delivered and none pending (``XINFO GROUPS``, polled every 10 ms).

Prints the table; ``--write`` also writes it to bench/RESULTS.md between its markers.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import procs
import redis
import redis.asyncio as aioredis
import report
from report import Table
from run import RESULTS, TOKEN, BenchError, NimbusServer, check, environment, log

HEADING = "## Message-queue triggers (Redis Streams)\n\nWritten by `bench/redis_stream.py`."
START, END = "<!-- redis-stream:start -->", "<!-- redis-stream:end -->"
BATCHES = (1, 10, 100)
NOOP = "def handler(event, context):\n    return None\n"
FIELD = {"order": "x" * 100}


@dataclass(frozen=True)
class Figures:
    batch: int
    messages: int
    raw_s: float
    nimbus_s: float
    invocations: int

    def row(self) -> list[str]:
        raw, nimbus = self.messages / self.raw_s, self.messages / self.nimbus_s
        return [
            str(self.batch),
            f"{self.messages:,}",
            f"{raw:,.0f}",
            f"{nimbus:,.0f}",
            f"{nimbus / raw:.0%}",
            f"{self.invocations / self.nimbus_s:,.0f}",
        ]


def start_redis(children: procs.Children, work: Path) -> int:
    if not shutil.which("redis-server"):
        raise BenchError("redis-server is not installed: run `make setup` (as root)")
    port = procs.free_port()
    data = work / "redis"
    data.mkdir()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--dir", str(data)]
    with (work / "redis.log").open("wb") as out:
        proc = children.spawn(argv, stdout=out, stderr=subprocess.STDOUT)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"redis-server exited: {(work / 'redis.log').read_text()}")
        try:
            client.ping()
            client.close()
            return port
        except redis.ConnectionError:
            time.sleep(0.02)
    raise BenchError("redis-server did not answer PING")


def fill(client: redis.Redis, stream: str, messages: int) -> None:
    for first in range(0, messages, 1000):
        with client.pipeline(transaction=False) as pipe:
            for _ in range(min(1000, messages - first)):
                pipe.xadd(stream, FIELD)
            pipe.execute()


async def drain_raw(port: int, stream: str, batch: int, messages: int) -> float:
    """Seconds for one consumer to read and ack ``messages`` entries, ``batch`` at a time."""
    client = aioredis.Redis(port=port)
    await client.xgroup_create(stream, "raw", "0")
    done = 0
    started = time.perf_counter()
    while done < messages:
        answer = await client.xreadgroup("raw", "c", {stream: ">"}, count=batch, block=1000)
        if not answer:
            raise BenchError(f"raw consumer: nothing left after {done} of {messages}")
        ids = [mid for _, entries in answer for mid, _ in entries]
        await client.xack(stream, "raw", *ids)
        done += len(ids)
    elapsed = time.perf_counter() - started
    await client.aclose()
    return elapsed


def drained(client: redis.Redis, stream: str, group: str, messages: int) -> bool:
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:
        return False
    for g in groups:
        if g["name"] == group.encode():
            return bool(g["entries-read"] == messages and g["pending"] == 0)
    return False


def invocations(api: httpx.Client, function: str) -> int:
    total = 0.0
    for line in api.get("/metrics").text.splitlines():
        if line.startswith("nimbus_invocations_total{") and f'function="{function}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def measure(messages: int, work: Path, children: procs.Children) -> Table:
    port = start_redis(children, work)
    client = redis.Redis(port=port)
    server = NimbusServer(children, work, "redis", None)
    server.start()
    env = environment(server.sandbox_banner())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", NOOP)
    figures: list[Figures] = []
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
    ) as api:
        code = buf.getvalue()
        sha = check(
            api.put("/v1/code", content=code, headers={"Content-Type": "application/zip"}), 201
        )["sha256"]
        body = {"runtime": "python3.11", "handler": "app.handler", "code_sha256": sha}
        check(api.put("/v1/functions/noop", json=body), 201)
        check(api.post("/v1/functions/noop/invocations", json={}), 200)  # one warm instance
        for batch in BATCHES:
            raw_stream, stream = f"raw-{batch}", f"nimbus-{batch}"
            fill(client, raw_stream, messages)
            raw_s = asyncio.run(drain_raw(port, raw_stream, batch, messages))
            fill(client, stream, messages)
            before = invocations(api, "noop")
            log(f"batch {batch}: raw {messages / raw_s:,.0f} msg/s; draining through Nimbus")
            config = {
                "url": f"redis://127.0.0.1:{port}/0",
                "stream": stream,
                "batch_size": batch,
                "start": "0",
            }
            started = time.perf_counter()
            check(
                api.post(
                    "/v1/functions/noop/triggers",
                    json={"name": f"b{batch}", "type": "redis-stream", "config": config},
                ),
                201,
            )
            deadline = time.monotonic() + max(120.0, messages / 50)
            while not drained(client, stream, "nimbus-noop", messages):
                if time.monotonic() > deadline:
                    raise BenchError(f"batch {batch}: the trigger did not drain {stream}")
                time.sleep(0.01)
            nimbus_s = time.perf_counter() - started
            check(api.delete(f"/v1/functions/noop/triggers/b{batch}"), 204)
            calls = invocations(api, "noop") - before
            figures.append(Figures(batch, messages, raw_s, nimbus_s, calls))
            client.delete(raw_stream, stream)
    client.close()
    server.stop()
    table = Table(
        "Redis Streams trigger, no-op function",
        ["batch", "messages", "raw msg/s", "nimbus msg/s", "of raw", "invocations/s"],
    )
    for f in figures:
        table.add(*f.row())
    table.notes.append(
        f"{env['date']}, {env['CPUs']} CPUs ({env['CPU model']}), sandbox {env['sandbox']}; "
        f"redis-server {redis_version()} on loopback, no persistence; one consumer per "
        "trigger, one batch at a time; raw = XREADGROUP + XACK per batch from one asyncio "
        "redis-py client, no function"
    )
    return table


def redis_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    for part in out.split():
        if part.startswith("v="):
            return part[2:]
    return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--smoke", action="store_true", help="200 messages, to check it runs")
    parser.add_argument("--write", action="store_true", help="write the table to RESULTS.md")
    args = parser.parse_args(argv)
    messages = 200 if args.smoke else args.messages
    children = procs.Children()
    with tempfile.TemporaryDirectory(prefix="nimbus-redis-") as tmp:
        try:
            table = measure(messages, Path(tmp), children)
        except BenchError as exc:
            print(f"redis-stream: error: {exc}", file=sys.stderr)
            return 1
        finally:
            children.stop_all()
            for data_dir in Path(tmp).glob("data-*"):
                procs.kill_instances(data_dir)
    print(table.text())
    if args.write and not args.smoke:
        report.write_section(RESULTS, table.markdown(), START, END, HEADING)
        print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
