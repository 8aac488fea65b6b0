"""Asynchronous invocation throughput, end to end, for a no-op function.

Submits N events (``X-Nimbus-Invocation-Type: Event``) from 8 client threads to a
real ``nimbus serve`` and measures: the submit rate (202s per second), and the
end-to-end rate, from the first submit until every event has succeeded (checked
event by event at the end; progress is followed on the last-submitted ids).
The queue's own enqueue/lease/ack throughput, without HTTP or functions, is
``bench/queue_throughput.py``.

    .venv/bin/python bench/async_events.py [--events 3000] [--no-write]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import procs
import report
from report import Table
from run import RESULTS, TOKEN, BenchError, NimbusServer, check, environment, log

HEADING = "## Asynchronous invocation\n\nWritten by `bench/async_events.py`."
START, END = "<!-- async:start -->", "<!-- async:end -->"
NOOP = "def handler(event, context):\n    return None\n"


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)


def measure(events: int, work: Path, children: procs.Children) -> Table:
    server = NimbusServer(children, work, "async", None)
    server.start()
    env = environment(server.sandbox_banner())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", NOOP)
    with _client(server.url) as c:
        sha = check(
            c.put("/v1/code", content=buf.getvalue(), headers={"Content-Type": "application/zip"}),
            201,
        )["sha256"]
        body = {"runtime": "python3.11", "handler": "app.handler", "code_sha256": sha}
        check(c.put("/v1/functions/noop", json=body), 201)
        check(c.post("/v1/functions/noop/invocations", json={}), 200)  # one warm instance

    clients = [_client(server.url) for _ in range(8)]

    def submit(i: int) -> str:
        c = clients[i % len(clients)]
        r = c.post(
            "/v1/functions/noop/invocations",
            json={"i": i},
            headers={"X-Nimbus-Invocation-Type": "Event"},
        )
        return str(check(r, 202)["request_id"])

    log(f"submitting {events} events")
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(submit, range(events)))
    submitted = time.monotonic()
    with _client(server.url) as c:
        for request_id in reversed(ids[-20:]):
            while c.get(f"/v1/invocations/{request_id}").json()["status"] != "succeeded":
                time.sleep(0.01)
        done = time.monotonic()
        failed = sum(
            1 for i in ids if c.get(f"/v1/invocations/{i}").json()["status"] != "succeeded"
        )
    for c in clients:
        c.close()
    server.stop()
    if failed:
        raise BenchError(f"{failed} of {events} events did not succeed")

    table = Table("Asynchronous invocation, no-op function", ["figure", "value"], left=(0, 1))
    table.add("events", f"{events:,} from 8 client threads")
    table.add("submit rate (202 answers)", f"{events / (submitted - started):,.0f} events/s")
    table.add("end to end (submit to all succeeded)", f"{events / (done - started):,.0f} events/s")
    table.add("succeeded", f"{events - failed:,} / {events:,}")
    table.notes.append(
        f"{env['date']}, {env['CPUs']} CPUs ({env['CPU model']}), sandbox {env['sandbox']}; "
        "default settings (async_concurrency 64, max_instances 10)"
    )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    children = procs.Children()
    with tempfile.TemporaryDirectory(prefix="nimbus-async-") as tmp:
        try:
            table = measure(args.events, Path(tmp), children)
        except BenchError as exc:
            print(f"async: error: {exc}", file=sys.stderr)
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
