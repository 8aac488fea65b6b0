"""Object storage: PUT/GET throughput and latency with boto3, upload-to-thumbnail latency,
and what the Python runtime's storage relay costs a cold start.

Against a real ``nimbus serve`` (its default sandbox):

1. **PUT/GET, 4 KiB and 4 MiB objects**, boto3's s3 client over loopback HTTP (SigV4,
   signed payloads, as boto3 sends them by default): one client in a loop (latency p50
   and p99, operations per second) and 8 clients in threads (aggregate throughput).
2. **Upload to thumbnails done**: examples/thumbnails deployed with Pillow and boto3,
   an ``object`` trigger on ``photos``; a 1600x1200 JPEG is uploaded and the clock stops
   when the last of its three thumbnails exists (polled every 5 ms). The first upload
   includes the function's cold start; the others find it warm.
3. **Cold start with and without the storage relay**: fresh hello functions, invoked
   once each, alternately with the relay (the default: ``AWS_ENDPOINT_URL_S3`` set, the
   runtime starts a thread listening on 127.0.0.1:9001) and without it (the function
   sets ``AWS_ENDPOINT_URL_S3`` to empty, so the runtime skips the relay).

    .venv/bin/python bench/object_storage.py [--small 500] [--large 40] [--uploads 10]
        [--cold-n 60] [--no-write]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

import boto3
import procs
import report
from botocore.config import Config
from report import Table, ms, percentile
from run import (
    RESULTS,
    BenchError,
    NimbusServer,
    api_client,
    check,
    environment,
    invoke,
    log,
)

HEADING = "## Object storage\n\nWritten by `bench/object_storage.py`."
START, END = "<!-- objects:start -->", "<!-- objects:end -->"
ROOT = Path(__file__).resolve().parents[1]
HELLO = (Path(__file__).resolve().parent / "hello" / "app.py").read_text()
KiB, MiB = 1024, 1024 * 1024


def _s3(url: str, key: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=f"{url}/s3",
        region_name="us-east-1",
        aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=key["secret_access_key"],
        config=Config(retries={"max_attempts": 1}, max_pool_connections=16),
    )


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def _vendored(*names: str) -> dict[str, bytes]:
    """Installed distributions (and their requirements) as files of a code package."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    wanted: set[str] = set()
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in wanted:
            continue
        wanted.add(name)
        for line in metadata.distribution(name).requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    files: dict[str, bytes] = {}
    for name in wanted:
        dist = metadata.distribution(name)
        for entry in dist.files or []:
            parts = Path(str(entry)).parts
            path = Path(str(dist.locate_file(entry)))
            if parts[0].endswith(".dist-info") or parts[0] == ".." or "__pycache__" in parts:
                continue
            if parts[:2] == ("botocore", "data") and len(parts) > 3 and parts[2] != "s3":
                continue  # only S3's service model
            if path.is_file():
                files[str(entry)] = path.read_bytes()
    return files


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def put_get(table: Table, s3: Any, clients: list[Any], size: int, n: int) -> None:
    body = os.urandom(size)
    label = f"{size // KiB} KiB" if size < MiB else f"{size // MiB} MiB"
    for i in range(min(5, n)):  # connections and buffers warm
        s3.put_object(Bucket="bench", Key=f"warm-{i}", Body=body)
    puts = [
        _timed(lambda i=i: s3.put_object(Bucket="bench", Key=f"o-{i}", Body=body)) for i in range(n)
    ]
    gets = [
        _timed(lambda i=i: s3.get_object(Bucket="bench", Key=f"o-{i}")["Body"].read())
        for i in range(n)
    ]

    def parallel(op: Callable[[Any, int], object]) -> float:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(clients)) as pool:
            list(pool.map(lambda i: op(clients[i % len(clients)], i), range(n * 2)))
        return n * 2 / (time.perf_counter() - started)

    put_rate = parallel(lambda c, i: c.put_object(Bucket="bench", Key=f"p-{i}", Body=body))
    get_rate = parallel(lambda c, i: c.get_object(Bucket="bench", Key=f"p-{i}")["Body"].read())
    for name, times, rate in (("PUT", puts, put_rate), ("GET", gets, get_rate)):
        one = 1000 / percentile(times, 50)
        table.add(
            f"{name} {label}",
            f"{ms(percentile(times, 50))} ms",
            f"{ms(percentile(times, 99))} ms",
            f"{one:,.0f}/s" + (f" ({one * size / MiB:,.0f} MiB/s)" if size >= MiB else ""),
            f"{rate:,.0f}/s" + (f" ({rate * size / MiB:,.0f} MiB/s)" if size >= MiB else ""),
        )


def thumbnails(server: NimbusServer, s3: Any, uploads: int) -> Table:
    from PIL import Image, ImageDraw

    files = {"app.py": (ROOT / "examples" / "thumbnails" / "app.py").read_bytes()}
    files.update(_vendored("pillow", "boto3"))
    with api_client(server.url) as c:
        sha = check(
            c.put("/v1/code", content=_zip(files), headers={"Content-Type": "application/zip"}),
            201,
        )["sha256"]
        body = {
            "runtime": "python3.11",
            "handler": "app.handler",
            "code_sha256": sha,
            "memory_mb": 512,
            "timeout_s": 60,
        }
        check(c.put("/v1/functions/thumbnails", json=body), 201)
        trigger = {"name": "photos", "type": "object", "config": {"bucket": "photos"}}
        check(c.post("/v1/functions/thumbnails/triggers", json=trigger), 201)
    image = Image.new("RGB", (1600, 1200), "skyblue")
    ImageDraw.Draw(image).ellipse((500, 300, 1100, 900), fill="orange")
    jpeg = io.BytesIO()
    image.save(jpeg, "JPEG", quality=90)
    times: list[float] = []
    for i in range(uploads):
        key = f"img-{i}.jpg"
        started = time.perf_counter()
        s3.put_object(Bucket="photos", Key=key, Body=jpeg.getvalue(), ContentType="image/jpeg")
        deadline = time.monotonic() + 60
        while True:
            listing = s3.list_objects_v2(Bucket="thumbnails", Prefix="", MaxKeys=1000)
            have = {o["Key"] for o in listing.get("Contents", [])}
            if {f"{s}/{key}" for s in (64, 256, 1024)} <= have:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"no thumbnails for {key} after 60 s")
            time.sleep(0.005)
        times.append((time.perf_counter() - started) * 1000)
    table = Table(
        "Upload to thumbnails done (examples/thumbnails)", ["upload", "latency"], left=(0,)
    )
    table.add("first (cold start: Pillow and boto3 imported)", f"{ms(times[0])} ms")
    warm = times[1:]
    if warm:
        table.add(f"warm, p50 of {len(warm)}", f"{ms(percentile(warm, 50))} ms")
        table.add(f"warm, max of {len(warm)}", f"{ms(max(warm))} ms")
    table.notes.append(
        "a 1600x1200 JPEG (about 50 KB) PUT with boto3; the clock stops when list_objects_v2 "
        "shows its 64, 256 and 1024 px thumbnails (polled every 5 ms); the function reads the "
        "image and writes the thumbnails through its Runtime API socket"
    )
    return table


def cold_starts(server: NimbusServer, n: int) -> Table:
    with api_client(server.url) as c:
        sha = check(
            c.put(
                "/v1/code",
                content=_zip({"app.py": HELLO.encode()}),
                headers={"Content-Type": "application/zip"},
            ),
            201,
        )["sha256"]
        samples: dict[str, list[float]] = {"with relay": [], "without relay": []}
        inits: dict[str, list[float]] = {"with relay": [], "without relay": []}
        for i in range(n * 2):
            variant = "with relay" if i % 2 == 0 else "without relay"
            name = f"cold-{i:04d}"
            # One PUT each, the same size of environment: only the relay differs.
            endpoint = "http://127.0.0.1:9001/s3" if variant == "with relay" else ""
            body = {
                "runtime": "python3.11",
                "handler": "app.handler",
                "code_sha256": sha,
                "env": {"AWS_ENDPOINT_URL_S3": endpoint},
            }
            check(c.put(f"/v1/functions/{name}", json=body), 201)
            started = time.perf_counter()
            out = invoke(c, name)
            samples[variant].append((time.perf_counter() - started) * 1000)
            if out.get("cold_start") and out.get("init_duration_ms") is not None:
                inits[variant].append(float(out["init_duration_ms"]))
            check(c.delete(f"/v1/functions/{name}"), 204)
    table = Table(
        "Cold start with and without the storage relay",
        ["variant", "client p50", "client p99", "init p50", "init p99"],
    )
    for variant in samples:
        table.add(
            variant,
            f"{ms(percentile(samples[variant], 50))} ms",
            f"{ms(percentile(samples[variant], 99))} ms",
            f"{ms(percentile(inits[variant], 50))} ms",
            f"{ms(percentile(inits[variant], 99))} ms",
        )
    table.notes.append(
        f"n={n} each, interleaved; bench/hello; each function is one PUT whose env sets "
        "AWS_ENDPOINT_URL_S3, to its default (the runtime binds 127.0.0.1:9001 and starts the "
        "relay's thread) or to empty (it skips both)"
    )
    return table


def measure(args: argparse.Namespace, work: Path, children: procs.Children) -> list[Table]:
    server = NimbusServer(children, work, "objects", None)
    server.start()
    env = environment(server.sandbox_banner())
    with api_client(server.url) as c:
        key = check(c.post("/v1/keys", json={"role": "developer", "name": "bench"}), 201)
    s3 = _s3(server.url, key)
    for bucket in ("bench", "photos", "thumbnails"):
        s3.create_bucket(Bucket=bucket)
    clients = [_s3(server.url, key) for _ in range(8)]
    table = Table(
        "Object storage PUT/GET with boto3",
        ["operation", "p50", "p99", "1 client", "8 clients"],
    )
    log(f"PUT/GET 4 KiB x {args.small}")
    put_get(table, s3, clients, 4 * KiB, args.small)
    log(f"PUT/GET 4 MiB x {args.large}")
    put_get(table, s3, clients, 4 * MiB, args.large)
    table.notes.append(
        f"{env['date']}, {env['CPUs']} CPUs ({env['CPU model']}), sandbox {env['sandbox']}; "
        "loopback HTTP, SigV4 with signed payloads (boto3's default over http), objects "
        "fsynced before the answer; p50/p99 and '1 client' from one client in a loop, "
        "'8 clients' from 8 threads with a client each"
    )
    tables = [table]
    if args.uploads:
        log(f"thumbnails x {args.uploads}")
        tables.append(thumbnails(server, s3, args.uploads))
    if args.cold_n:
        log(f"cold starts x {args.cold_n} x 2")
        tables.append(cold_starts(server, args.cold_n))
    server.stop()
    return tables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=500, help="4 KiB objects per step")
    parser.add_argument("--large", type=int, default=40, help="4 MiB objects per step")
    parser.add_argument("--uploads", type=int, default=10, help="images for thumbnails (0: skip)")
    parser.add_argument("--cold-n", type=int, default=60, help="cold starts per variant (0: skip)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    children = procs.Children()
    with tempfile.TemporaryDirectory(prefix="nimbus-objects-") as tmp:
        try:
            tables = measure(args, Path(tmp), children)
        except BenchError as exc:
            print(f"objects: error: {exc}", file=sys.stderr)
            return 1
        finally:
            children.stop_all()
            for data_dir in Path(tmp).glob("data-*"):
                procs.kill_instances(data_dir)
    print(report.render_text(tables))
    if not args.no_write:
        report.write_section(RESULTS, report.render_markdown(tables), START, END, HEADING)
        print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
