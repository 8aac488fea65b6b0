"""Object triggers against a real server: S3 event notifications invoke functions, functions
reach their namespace's buckets through their Runtime API socket (and no other namespace's),
and a function that writes into its own trigger's bucket is stopped at the chain limit."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.parser.models import S3Model

from tests.integration.harness import RECORDER, TOKEN, Server, recorded_events, wait_until
from tests.integration.s3_helpers import access_key, boto3_package, s3_client

#: Reads and writes through the unmodified boto3 client, configured by the environment
#: alone (AWS_ENDPOINT_URL_S3 and placeholder keys set by the platform).
STORAGE_PROBE = """
import boto3

s3 = boto3.client("s3")

def handler(event, context):
    out = {}
    def attempt(name, call):
        try:
            out[name] = call()
        except Exception as exc:
            out[name] = "error:" + str(getattr(exc, "response", {}).get("Error", {}).get("Code", exc))
    if event.get("namespace_header"):
        def add(request, **_):
            request.headers["X-Nimbus-Namespace"] = event["namespace_header"]
        s3.meta.events.register("before-sign.s3.*", add)
    attempt("buckets", lambda: sorted(b["Name"] for b in s3.list_buckets()["Buckets"]))
    attempt("put_own", lambda: s3.put_object(Bucket=event["own"], Key="probe", Body=b"mine")["ETag"])
    attempt("get_own", lambda: s3.get_object(Bucket=event["own"], Key="probe")["Body"].read().decode())
    attempt("get_other", lambda: s3.get_object(Bucket=event["other"], Key="secret")["Body"].read().decode())
    attempt("put_other", lambda: s3.put_object(Bucket=event["other"], Key="x", Body=b"x")["ETag"])
    attempt("list_other", lambda: s3.list_objects_v2(Bucket=event["other"])["KeyCount"])
    attempt("delete_other", lambda: s3.delete_object(Bucket=event["other"], Key="secret") and "deleted")
    return out
"""

#: Copies every object it is told about back into the same bucket, under a new key: a
#: loop, as a function that writes into its own trigger's bucket would make by mistake.
COPIER = """
import urllib.parse
import boto3

s3 = boto3.client("s3")

def handler(event, context):
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        s3.copy_object(Bucket=bucket, Key=key + ".copy", CopySource={"Bucket": bucket, "Key": key})
        print("COPIED " + key)
"""


def _trigger(srv: Server, function: str, name: str, **config: Any) -> Any:
    return srv.http.post(
        f"/v1/functions/{function}/triggers",
        json={"name": name, "type": "object", "config": config},
    )


def _nimbus(srv: Server, *args: str) -> str:
    env = {**os.environ, "NIMBUS_URL": srv.url, "NIMBUS_TOKEN": TOKEN}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("nimbus")), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_object_triggers_are_checked_and_shown(server: Server) -> None:
    server.deploy("ev-crud", {"app.py": RECORDER})
    s3 = s3_client(server, access_key(server))
    s3.create_bucket(Bucket="ev-crud-bucket")
    out = _nimbus(
        server,
        "trigger",
        "add-object",
        "ev-crud",
        "uploads",
        "--bucket",
        "ev-crud-bucket",
        "--event",
        "s3:ObjectCreated:*",
        "--event",
        "s3:ObjectRemoved:Delete",
        "--prefix",
        "in/",
        "--suffix",
        ".jpg",
    )
    assert "created object trigger ev-crud/uploads" in out and "ev-crud-bucket in/*.jpg" in out
    listed = _nimbus(server, "trigger", "list", "ev-crud")
    assert "object" in listed and "ev-crud-bucket in/*.jpg" in listed
    shown = _nimbus(server, "trigger", "show", "ev-crud", "uploads")
    assert "s3:ObjectCreated:*, s3:ObjectRemoved:Delete" in shown and "in/" in shown
    stored = server.http.get("/v1/functions/ev-crud/triggers/uploads").json()
    assert stored["config"] == {
        "bucket": "ev-crud-bucket",
        "events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:Delete"],
        "prefix": "in/",
        "suffix": ".jpg",
        "flavour": "lambda",
    }
    # The bucket must exist, in the trigger's namespace; the events must be S3's.
    s3_client(server, access_key(server, namespace="ev-crud-ns")).create_bucket(
        Bucket="ev-crud-theirs"
    )
    for config in (
        {"bucket": "ev-crud-none"},
        {"bucket": "ev-crud-theirs"},
        {"bucket": "Not_A_Bucket"},
        {"bucket": "ev-crud-bucket", "events": ["s3:ObjectCreated:Nope"]},
        {"bucket": "ev-crud-bucket", "extra": 1},
        {},
    ):
        r = _trigger(server, "ev-crud", "bad", **config)
        assert r.status_code == 400 and r.json()["error"]["code"] == "Trigger.Invalid", r.text
    theirs = _trigger(server, "ev-crud", "bad", bucket="ev-crud-theirs").json()["error"]["message"]
    assert "does not exist in namespace 'default'" in theirs


def test_object_events_invoke_the_function(server: Server) -> None:
    server.deploy("ev-rec", {"app.py": RECORDER})
    key = access_key(server)
    s3 = s3_client(server, key)
    s3.create_bucket(Bucket="ev-rec-bucket")
    r = _trigger(
        server,
        "ev-rec",
        "txt",
        bucket="ev-rec-bucket",
        events=["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
        prefix="in/",
        suffix=".txt",
    )
    assert r.status_code == 201, r.text
    s3.put_object(Bucket="ev-rec-bucket", Key="in/a b+c.txt", Body=b"hello")
    s3.put_object(Bucket="ev-rec-bucket", Key="in/skip.bin", Body=b"no")  # suffix
    s3.put_object(Bucket="ev-rec-bucket", Key="out/skip.txt", Body=b"no")  # prefix
    s3.copy_object(
        Bucket="ev-rec-bucket", Key="in/copy.txt", CopySource="ev-rec-bucket/in/a b+c.txt"
    )
    upload = s3.create_multipart_upload(Bucket="ev-rec-bucket", Key="in/multi.txt")
    part = s3.upload_part(
        Bucket="ev-rec-bucket",
        Key="in/multi.txt",
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=b"m",
    )
    s3.complete_multipart_upload(
        Bucket="ev-rec-bucket",
        Key="in/multi.txt",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    s3.delete_object(Bucket="ev-rec-bucket", Key="in/copy.txt")
    assert wait_until(lambda: len(recorded_events(server, "ev-rec")) >= 4, timeout=20)
    time.sleep(1)  # nothing else comes
    events = recorded_events(server, "ev-rec")
    records = [S3Model(**e).Records[0] for e in events]
    assert len(records) == 4
    by_name = {(r.eventName, r.s3.object.key) for r in records}
    assert by_name == {
        ("ObjectCreated:Put", "in/a+b%2Bc.txt"),
        ("ObjectCreated:Copy", "in/copy.txt"),
        ("ObjectCreated:CompleteMultipartUpload", "in/multi.txt"),
        ("ObjectRemoved:Delete", "in/copy.txt"),
    }
    put = next(r for r in records if r.eventName == "ObjectCreated:Put")
    assert put.s3.object.size == 5 and put.s3.bucket.name == "ev-rec-bucket"
    assert put.s3.object.eTag == "5d41402abc4b2a76b9719d911017c592"
    assert put.s3.configurationId == "txt"
    assert put.userIdentity.principalId == f"AWS:{key['access_key_id']}"
    sequencers = [r.s3.object.sequencer for r in records]
    assert len(set(sequencers)) == 4 and sequencers == sorted(sequencers)
    # Each record was one asynchronous invocation, with its own request id.
    request_ids = {
        line["request_id"] for line in server.logs("ev-rec") if line["message"].startswith("EVENT ")
    }
    assert len(request_ids) == 4
    # A disabled trigger sends nothing; enabled again, it does.
    server.http.patch("/v1/functions/ev-rec/triggers/txt", json={"enabled": False})
    s3.put_object(Bucket="ev-rec-bucket", Key="in/while-off.txt", Body=b"x")
    server.http.patch("/v1/functions/ev-rec/triggers/txt", json={"enabled": True})
    s3.put_object(Bucket="ev-rec-bucket", Key="in/after.txt", Body=b"x")
    assert wait_until(lambda: len(recorded_events(server, "ev-rec")) >= 5, timeout=20)
    time.sleep(0.5)
    keys = [S3Model(**e).Records[0].s3.object.key for e in recorded_events(server, "ev-rec")]
    assert "in/after.txt" in keys and "in/while-off.txt" not in keys


def test_functions_reach_their_namespace_buckets_and_no_others(server: Server) -> None:
    """docs/security.md: a function's storage identity is its namespace; another
    namespace's buckets answer AccessDenied, whatever the function sends."""
    s3 = s3_client(server, access_key(server))
    s3.create_bucket(Bucket="ev-sec-own")
    theirs = s3_client(server, access_key(server, namespace="ev-sec-other"))
    theirs.create_bucket(Bucket="ev-sec-theirs")
    theirs.put_object(Bucket="ev-sec-theirs", Key="secret", Body=b"not yours")
    server.deploy(
        "ev-sec", {"app.py": STORAGE_PROBE, **boto3_package()}, timeout_s=60, memory_mb=256
    )
    event = {"own": "ev-sec-own", "other": "ev-sec-theirs"}
    for attempt in (event, {**event, "namespace_header": "ev-sec-other"}):
        result = server.invoke("ev-sec", attempt)
        out = (
            json.loads(result["result"]) if isinstance(result["result"], str) else result["result"]
        )
        assert "ev-sec-own" in out["buckets"] and "ev-sec-theirs" not in out["buckets"], out
        assert out["get_own"] == "mine" and not str(out["put_own"]).startswith("error"), out
        for name in ("get_other", "put_other", "list_other", "delete_other"):
            assert out[name] == "error:AccessDenied", (name, out)
    # The function's write is its own, and the other namespace's object is untouched.
    assert s3.get_object(Bucket="ev-sec-own", Key="probe")["Body"].read() == b"mine"
    assert theirs.get_object(Bucket="ev-sec-theirs", Key="secret")["Body"].read() == b"not yours"
    assert theirs.list_objects_v2(Bucket="ev-sec-theirs")["KeyCount"] == 1


#: A custom runtime (no SDK at all): plain HTTP to AWS_ENDPOINT_URL_S3, unsigned.
CUSTOM_BOOTSTRAP = """#!/usr/bin/python3 -I
import json, os, urllib.request

api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
s3 = os.environ["AWS_ENDPOINT_URL_S3"]
while True:
    with urllib.request.urlopen(api + "next") as r:
        request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(r.read())
    url = s3 + "/" + event["bucket"] + "/from-custom"
    urllib.request.urlopen(urllib.request.Request(url, data=b"custom", method="PUT")).read()
    body = urllib.request.urlopen(url).read().decode()
    answer = json.dumps({"read": body, "endpoint": s3}).encode()
    urllib.request.urlopen(urllib.request.Request(api + request_id + "/response", data=answer)).read()
"""


def test_custom_runtimes_reach_storage_through_their_init_relay(server: Server) -> None:
    s3 = s3_client(server, access_key(server))
    s3.create_bucket(Bucket="ev-custom")
    server.deploy(
        "ev-custom",
        {"bootstrap": CUSTOM_BOOTSTRAP},
        runtime="custom",
        executables=("bootstrap",),
    )
    out = server.invoke("ev-custom", {"bucket": "ev-custom"})
    assert out["result"]["read"] == "custom", out
    # 127.0.0.1:9001 in the namespaces sandbox; the Runtime API's own port in `process`.
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/s3", out["result"]["endpoint"]), out
    assert s3.get_object(Bucket="ev-custom", Key="from-custom")["Body"].read() == b"custom"


def _metric(srv: Server, name: str, **labels: str) -> float:
    text = srv.http.get("/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{"):
            got = line[len(name) + 1 : line.index("}")]
            if all(part in got.split(",") for part in want.split(",")):
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_function_writing_into_its_own_bucket_is_stopped(
    make_server: Callable[..., Server],
) -> None:
    srv = make_server()  # NIMBUS_MAX_EVENT_DEPTH at its default, 16
    limit = 16
    s3 = s3_client(srv, access_key(srv))
    s3.create_bucket(Bucket="ev-loop")
    srv.deploy("ev-copier", {"app.py": COPIER, **boto3_package()}, timeout_s=60, memory_mb=256)
    srv.deploy("ev-other", {"app.py": "def handler(event, context):\n    return 'still here'\n"})
    r = _trigger(srv, "ev-copier", "loop", bucket="ev-loop")
    assert r.status_code == 201, r.text

    # Another function keeps answering while the chain runs.
    slowest: list[float] = []
    stop = threading.Event()

    def keep_calling() -> None:
        while not stop.is_set():
            started = time.monotonic()
            assert srv.invoke("ev-other")["result"] == "still here"
            slowest.append(time.monotonic() - started)
            time.sleep(0.05)

    caller = threading.Thread(target=keep_calling)
    caller.start()
    try:
        s3.put_object(Bucket="ev-loop", Key="seed", Body=b"one object")
        assert wait_until(
            lambda: _metric(srv, "nimbus_event_loops_stopped_total", function="ev-copier") >= 1,
            timeout=90,
        ), srv.output()[-3000:]
        time.sleep(2)  # nothing more runs after the stop
    finally:
        stop.set()
        caller.join()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="ev-loop")["Contents"]]
    # The seed (depth 0) caused event 1; each copy made while handling event d caused
    # event d + 1; event 17 was not delivered: 16 copies.
    assert len(keys) == 1 + limit, keys
    assert max(keys, key=len) == "seed" + ".copy" * limit
    copied = [line for line in srv.logs("ev-copier") if line["message"].startswith("COPIED ")]
    assert len(copied) == limit
    stopped = [line for line in srv.logs("ev-copier") if "loop stopped" in line["message"]]
    assert len(stopped) == 1 and "NIMBUS_MAX_EVENT_DEPTH=16" in stopped[0]["message"]
    assert _metric(srv, "nimbus_event_loops_stopped_total", function="ev-copier") == 1
    assert slowest and max(slowest) < 5, max(slowest)


def test_events_survive_a_crash_right_after_the_write(make_server: Callable[..., Server]) -> None:
    """The object and its event are committed together: kill -9 right after the PUTs
    answered, and every event still runs after the restart."""

    srv = make_server()
    srv.deploy("ev-crash", {"app.py": RECORDER})
    key = access_key(srv)
    s3 = s3_client(srv, key)
    s3.create_bucket(Bucket="ev-crash")
    assert _trigger(srv, "ev-crash", "all", bucket="ev-crash").status_code == 201
    # Disabled (reserved concurrency 0): its events wait, so none runs (and logs, which are
    # buffered) before the crash; wherever they are (outbox or queue), none may be lost.
    r = srv.http.put("/v1/functions/ev-crash/concurrency", json={"reserved": 0})
    assert r.status_code == 200, r.text
    for i in range(5):
        s3.put_object(Bucket="ev-crash", Key=f"k{i}", Body=b"x")
    srv.stop(signal.SIGKILL)
    srv.start()
    assert srv.http.delete("/v1/functions/ev-crash/concurrency").status_code == 204

    def keys() -> set[str]:
        return {S3Model(**e).Records[0].s3.object.key for e in recorded_events(srv, "ev-crash")}

    # Held-back events are retried after at most 30 s.
    assert wait_until(lambda: keys() == {f"k{i}" for i in range(5)}, timeout=60), keys()


def test_scf_flavour_sends_cosrecorded_events(server: Server) -> None:
    server.deploy("ev-cos", {"index.py": RECORDER}, handler="index.handler")
    s3 = s3_client(server, access_key(server))
    s3.create_bucket(Bucket="ev-cos-bucket")
    r = _trigger(server, "ev-cos", "cos", bucket="ev-cos-bucket", flavour="scf")
    assert r.status_code == 201, r.text
    assert r.json()["config"]["flavour"] == "scf"
    s3.put_object(Bucket="ev-cos-bucket", Key="pics/a.jpg", Body=b"12345")
    assert wait_until(lambda: len(recorded_events(server, "ev-cos")) >= 1, timeout=20)
    (event,) = recorded_events(server, "ev-cos")
    (record,) = event["Records"]
    assert record["cos"]["cosBucket"]["name"] == "ev-cos-bucket"
    assert record["cos"]["cosObject"]["key"].endswith("/ev-cos-bucket/pics/a.jpg")
    assert record["cos"]["cosObject"]["size"] == 5
    assert record["event"]["eventName"] == "cos:ObjectCreated:Put"
    assert record["event"]["eventSource"] == "qcs::cos"
    bad = _trigger(server, "ev-cos", "bad", bucket="ev-cos-bucket", flavour="gcs")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "Trigger.Invalid"
