"""The object store (files + SQLite) and the pure event rules, without a server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities.parser.models import S3Model

from nimbus.domain.trigger import Trigger
from nimbus.objects import events
from nimbus.objects.errors import S3Error
from nimbus.objects.model import Change, Notification, ObjectInfo, Part, no_events
from nimbus.objects.names import bucket_name_problem
from nimbus.objects.store import ObjectStore


def _put(store: ObjectStore, key: str, body: bytes = b"x", cause: str | None = None) -> ObjectInfo:
    temp = store.temp_path()
    temp.write_bytes(body)
    blob = store.adopt(temp)
    info = ObjectInfo(bucket="b", key=key, size=len(body), etag="e", content_type="t", blob=blob)
    return store.put(
        info, event_name="ObjectCreated:Put", cause=cause, plan=no_events, now=1.0
    ).info


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    s = ObjectStore(tmp_path / "objects")
    s.create_bucket("b", "default", 0.0)
    return s


def test_listing_rolls_up_common_prefixes_and_pages(store: ObjectStore) -> None:
    keys = ["a/1", "a/2", "a/b/3", "b", "c/1", "c/2", "d", "é/x", "z"]
    for key in keys:
        _put(store, key)
    flat = store.list_objects("b", prefix="", delimiter="", after=None, max_keys=1000)
    assert [o.key for o in flat.objects] == sorted(keys, key=lambda k: k.encode())
    assert not flat.truncated
    rolled = store.list_objects("b", prefix="", delimiter="/", after=None, max_keys=1000)
    assert [o.key for o in rolled.objects] == ["b", "d", "z"]
    assert rolled.prefixes == ["a/", "c/", "é/"]
    inside = store.list_objects("b", prefix="a/", delimiter="/", after=None, max_keys=1000)
    assert [o.key for o in inside.objects] == ["a/1", "a/2"] and inside.prefixes == ["a/b/"]
    # Pages of two, each resuming after the last key or common prefix of the one before.
    seen: list[str] = []
    after = None
    while True:
        page = store.list_objects("b", prefix="", delimiter="/", after=after, max_keys=2)
        seen += [o.key for o in page.objects] + page.prefixes
        assert len(page.objects) + len(page.prefixes) <= 2
        if not page.truncated:
            break
        after = page.last
    assert sorted(seen) == sorted(["a/", "b", "c/", "d", "z", "é/"])
    assert len(seen) == len(set(seen))


def test_writes_free_replaced_blobs_and_a_sweep_removes_leftovers(store: ObjectStore) -> None:
    first = _put(store, "k", b"one")
    second = _put(store, "k", b"two")
    assert store.path(second.blob).read_bytes() == b"two"
    assert second.seq > first.seq
    # The replaced blob is still on disk until the caller frees it; the sweep finds it.
    leftover = store.temp_path()
    leftover.write_bytes(b"half")
    assert store.sweep() == 2
    assert not store.path(first.blob).exists() and store.path(second.blob).exists()
    assert not leftover.exists()


def test_events_are_planned_in_the_write_and_chain_depth_grows(store: ObjectStore) -> None:
    def plan(change: Change) -> list[Notification]:
        return [
            Notification(
                f"ev-{change.info.key}",
                "default",
                "fn",
                None,
                b"{}",
                change.depth,
                stopped="too deep" if change.depth > 2 else None,
            )
        ]

    def put(key: str, cause: str | None) -> tuple[Notification, ...]:
        temp = store.temp_path()
        temp.write_bytes(b"x")
        info = ObjectInfo(bucket="b", key=key, size=1, etag="e", content_type="t")
        info = ObjectInfo(**{**info.__dict__, "blob": store.adopt(temp)})
        return tuple(
            store.put(
                info, event_name="ObjectCreated:Put", cause=cause, plan=plan, now=1.0
            ).notifications
        )

    assert [n.depth for n in put("k1", None)] == [1]
    assert [n.depth for n in put("k2", "ev-k1")] == [2]  # written while handling ev-k1
    stopped = put("k3", "ev-k2")
    assert stopped[0].depth == 3 and stopped[0].stopped == "too deep"
    assert [n.id for n in store.pending()] == ["ev-k1", "ev-k2"]  # a stopped one is not stored
    store.delivered(["ev-k1"])
    assert [n.id for n in store.pending()] == ["ev-k2"]
    assert store.depth_of("ev-k2") == 2 and store.depth_of("nothing") == 0


def test_buckets_are_global_and_only_empty_ones_go(store: ObjectStore) -> None:
    with pytest.raises(S3Error) as err:
        store.create_bucket("b", "default", 0.0)
    assert err.value.code == "BucketAlreadyOwnedByYou"
    with pytest.raises(S3Error) as err:
        store.create_bucket("b", "other", 0.0)
    assert err.value.code == "BucketAlreadyExists"
    _put(store, "k")
    with pytest.raises(S3Error) as err:
        store.delete_bucket("b")
    assert err.value.code == "BucketNotEmpty"
    store.delete("b", ["k"], cause=None, plan=no_events, now=2.0)
    store.delete_bucket("b")
    assert store.bucket("b") is None


def test_multipart_complete_refuses_a_part_that_changed(store: ObjectStore) -> None:
    upload = store.create_upload("b", "big", content_type="t", metadata={}, headers={}, now=0.0)
    blobs = []
    for n in (1, 2):
        temp = store.temp_path()
        temp.write_bytes(b"p")
        blob = store.adopt(temp)
        blobs.append(blob)
        store.put_part(upload.id, Part(n, 1, f"etag{n}", 0.0, blob))
    used = store.parts(upload.id)
    temp = store.temp_path()
    temp.write_bytes(b"pp")
    info = ObjectInfo("b", "big", 2, "x-2", "t", blob=store.adopt(temp))
    stale = [Part(1, 1, "old", 0.0, blobs[0]), used[1]]
    with pytest.raises(S3Error) as err:
        store.complete(upload, stale, info, cause=None, plan=no_events, now=1.0)
    assert err.value.code == "InvalidPart"
    done = store.complete(upload, used, info, cause=None, plan=no_events, now=1.0)
    assert set(done.freed) >= set(blobs)
    assert store.upload(upload.id) is None
    assert os.path.exists(store.path(done.info.blob))


def test_bucket_names_follow_s3s_rules() -> None:
    for good in ("photos", "my.bucket-1", "a1b"):
        assert bucket_name_problem(good) is None, good
    for bad in ("ab", "Photos", "a..b", "-ab", "ab-", "192.168.1.1", "xn--ab", "a_b", "a" * 64):
        assert bucket_name_problem(bad) is not None, bad


def _trigger(**config: object) -> Trigger:
    return Trigger("default", "fn", "t", "object", None, True, {"bucket": "b", **config})


def test_matching_by_event_prefix_and_suffix() -> None:
    info = ObjectInfo("b", "in/cat.jpg", 3, "e", "t", seq=42)
    put = Change("ObjectCreated:Put", info, 1, 0.0)
    gone = Change("ObjectRemoved:Delete", info, 1, 0.0)
    assert events.matches(_trigger(), put) and not events.matches(_trigger(), gone)
    assert events.matches(_trigger(events=["s3:ObjectRemoved:*"]), gone)
    assert events.matches(_trigger(events=["s3:ObjectCreated:Put"]), put)
    assert not events.matches(_trigger(events=["s3:ObjectCreated:Copy"]), put)
    assert events.matches(_trigger(prefix="in/", suffix=".jpg"), put)
    assert not events.matches(_trigger(prefix="out/"), put)
    assert not events.matches(_trigger(suffix=".png"), put)
    assert not events.matches(_trigger(bucket="other"), put)


def test_the_event_is_s3s_notification_and_its_id_is_stable() -> None:
    info = ObjectInfo("photos", "my cats/tom+1.jpg", 1234, "abc", "image/jpeg", seq=42)
    change = Change("ObjectCreated:Put", info, 1, 1_700_000_000.25)
    record = events.s3_record(
        change,
        configuration_id="thumbs",
        owner="123456789012",
        principal="AWS:NIMB",
        source_ip="127.0.0.1",
        request_id="R1",
    )
    payload = json.loads(events.event_payload(record))
    parsed = S3Model(**payload)
    obj = parsed.Records[0].s3.object
    assert obj.key == "my+cats/tom%2B1.jpg" and obj.size == 1234 and obj.eTag == "abc"
    assert obj.sequencer == "000000000000002A"
    assert payload["Records"][0]["eventTime"] == "2023-11-14T22:13:20.250Z"
    removed = events.s3_record(
        Change("ObjectRemoved:Delete", info, 1, 0.0),
        configuration_id="t",
        owner="1",
        principal="p",
        source_ip="127.0.0.1",
        request_id="R",
    )
    S3Model(**json.loads(events.event_payload(removed)))
    assert "size" not in removed["s3"]["object"]
    trigger = _trigger()
    assert events.event_id(trigger, change) == events.event_id(trigger, change)
    later = Change("ObjectCreated:Put", ObjectInfo(**{**info.__dict__, "seq": 43}), 1, 0.0)
    assert events.event_id(trigger, change) != events.event_id(trigger, later)
