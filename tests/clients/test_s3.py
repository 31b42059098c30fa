"""vigil on a real S3 server (SeaweedFS, see s3.py): the object store is the
source of truth.

- acked data survives kill -9 plus the loss of the whole --data-dir: with
  --wal local once it has been uploaded, with --wal object at once;
- a second broker on the same prefix takes ownership: the first refuses
  produce requests once it notices (--wal local: at its next manifest write;
  --wal object: at its next WAL write), the second serves what the first had
  made durable in the store and takes new writes;
- the keys under the prefix follow runtime/storage/src/paths.rs
  (manifest/<version>.json, parts/<topic id>/<partition>/<version>.json
  partition manifests, objects/<epoch>/<seq>.dat data objects, and
  data/<topic id>/<partition>/<base>-<epoch>.seg compacted segments) and are
  consistent with the manifest, byte ranges and data object footers included.

A fenced broker writes nothing more: produce and offset commits fail
(NOT_LEADER_OR_FOLLOWER for produce, every request answered), no more
objects are PUT, and it still exits promptly on SIGTERM.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import struct
import subprocess
import time

import crc32c
import pytest
from confluent_kafka import TopicPartition

from helpers import (
    Deadline,
    Rec,
    assert_exactly_once,
    ck_assert_nothing_more,
    ck_consume,
    ck_consumer,
    ck_create_topic,
    ck_produce,
    ck_producer,
    log_end_offsets,
    make_records,
    new_seed,
    unique_name,
)

UPLOAD_MS = ["--upload-interval-ms", "200"]
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
MANIFEST_RE = re.compile(r"manifest/(\d{20})\.json")
EPOCH_CLAIM_RE = re.compile(r"epochs/\d{20}\.json")
STATE_OBJECT_RE = re.compile(rf"state/\d{{20}}-{UUID}\.json")        # key/value shards, producers
DATA_OBJECT_RE = re.compile(r"objects/(\d{10})/(\d{20})\.dat")          # epoch, seq
SEGMENT_RE = re.compile(rf"data/({UUID})/(\d{{5}})/(\d{{20}})-(\d{{10}})\.seg")  # topic, part, base, epoch
WAL_OBJECT_RE = re.compile(r"wal/(\d{10})/(\d{20})\.wal")              # object WAL mode only
PART_RE = re.compile(rf"parts/({UUID})/(\d{{5}})/(\d{{20}})\.json")       # topic, partition, version
NOT_LEADER_OR_FOLLOWER = 6


# ------------------------------------------------------------------ helpers --

def latest_manifest(seaweed, prefix: str) -> dict | None:
    """The newest root manifest under `prefix` (parsed), with each topic's
    `partitions` read from the newest version of each partition manifest
    (a partition without one is empty), or None."""
    versions = sorted(int(m.group(1)) for k in seaweed.list_objects(prefix + "/manifest")
                      if (m := MANIFEST_RE.fullmatch("manifest/" + k)))
    if not versions:
        return None
    root = json.loads(seaweed.get(prefix, f"manifest/{versions[-1]:020}.json"))
    empty = {"log_start_offset": 0, "uploaded_next": 0, "segments": []}
    for t in root["topics"].values():
        assert "partitions" not in t, f"the root manifest holds partitions inline: {t}"
        parts = []
        for i in range(t["partition_count"]):
            sub = f"parts/{t['id']}/{i:05}"
            have = sorted(k for k in seaweed.list_objects(f"{prefix}/{sub}") if k.endswith(".json"))
            parts.append(json.loads(seaweed.get(prefix, f"{sub}/{have[-1]}")) if have else dict(empty))
        t["partitions"] = parts
    return root


def uploaded_next(manifest: dict | None, topic: str) -> dict[int, int]:
    if manifest is None or topic not in manifest["topics"]:
        return {}
    return {i: p["uploaded_next"] for i, p in enumerate(manifest["topics"][topic]["partitions"])}


def object_epoch(key: str) -> int:
    """Writer epoch in a data object or segment key."""
    if m := DATA_OBJECT_RE.fullmatch(key):
        return int(m.group(1))
    if m := SEGMENT_RE.fullmatch(key):
        return int(m.group(4))
    raise AssertionError(f"{key!r} is neither a data object nor a segment key")


def object_epoch_or_none(key: str) -> int | None:
    """Writer epoch in a data object, segment or WAL object key, else None."""
    for rx, group in ((DATA_OBJECT_RE, 1), (SEGMENT_RE, 4), (WAL_OBJECT_RE, 1)):
        if m := rx.fullmatch(key):
            return int(m.group(group))
    return None


def wait_uploaded(broker, seaweed, topic: str, ends: dict[int, int], timeout: float = 30) -> dict:
    """Polls until every acked record is in the object store: /metrics shows
    the upload cycles have written every appended byte
    (vigil_storage_uploaded_bytes_total >= vigil_storage_appended_bytes_total)
    and the newest manifest in S3 covers offset `ends[p]` of each partition.
    Returns that manifest."""
    dl = Deadline(timeout, f"{broker.name}: acked data of {topic} uploaded to S3")
    while True:
        m = broker.metrics()
        manifest = latest_manifest(seaweed, broker.s3_prefix)
        up = uploaded_next(manifest, topic)
        if (m["vigil_storage_uploaded_bytes_total"] >= m["vigil_storage_appended_bytes_total"]
                and all(up.get(p, 0) >= e for p, e in ends.items())):
            return manifest
        if dl.expired():
            storage = {k: v for k, v in m.items() if k.startswith("vigil_storage_")}
            raise AssertionError(
                f"timed out after {timeout}s waiting for the upload of {topic}: acked ends {ends}, "
                f"manifest uploaded_next {up}, metrics {storage}\n{broker.log_tail()}")
        time.sleep(0.05)


def consume_all(bootstrap: str, topic: str, want: int, timeout: float = 60) -> list[Rec]:
    c = ck_consumer(bootstrap, unique_name("g"))
    c.subscribe([topic])
    try:
        got = ck_consume(c, want=want, timeout=timeout, commit=False)
        ck_assert_nothing_more(c)
    finally:
        c.close()
    return got


def watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, tuple[int, int]]:
    c = ck_consumer(bootstrap, unique_name("wm"))
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in range(partitions)}
    finally:
        c.close()


def produce_once(bootstrap: str, topic: str, partition: int, value: bytes, timeout: float = 20):
    """One record through kafka-python with retries=0 (acks=all), so the
    broker's answer reaches the caller as is: (None, offset) when acked,
    (KafkaError instance, None) when refused. (librdkafka would keep retrying
    NOT_LEADER_OR_FOLLOWER until message.timeout.ms whatever `retries` says.)"""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError as KPError

    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=0, linger_ms=0,
                      request_timeout_ms=10000, max_block_ms=10000)
    try:
        md = p.send(topic, key=b"k", value=value, partition=partition).get(timeout=timeout)
        return None, md.offset
    except KPError as e:
        return e, None
    finally:
        p.close(timeout=5)


def wait_until(what: str, cond, timeout: float = 20, detail=lambda: "") -> None:
    dl = Deadline(timeout, what)
    while not cond():
        if dl.expired():
            raise AssertionError(f"timed out after {timeout}s: {what}\n{detail()}")
        time.sleep(0.05)


def batch_chain(body: bytes) -> list[tuple[int, int]]:
    """Walks bytes that must be concatenated Kafka record batches; returns
    [(base_offset, last_offset)] and asserts each batch is magic v2 and the
    chain ends exactly at the end."""
    out = []
    pos = 0
    while pos < len(body):
        assert len(body) - pos >= 61, f"truncated batch header at byte {pos} of {len(body)}"
        base, length = struct.unpack_from(">qi", body, pos)
        magic = body[pos + 16]
        assert magic == 2, f"batch at byte {pos}: magic {magic}, expected 2"
        (last_delta,) = struct.unpack_from(">i", body, pos + 23)
        out.append((base, base + last_delta))
        pos += 12 + length
    assert pos == len(body), f"batch chain ends at byte {pos}, expected {len(body)}"
    return out


def data_object_index(body: bytes, key: str) -> list[dict]:
    """The runs listed in a data object's footer:
    [runs][index JSON][index_len u32 BE][crc32c(index) u32 BE]["VGL1"]."""
    assert len(body) >= 12 and body[-4:] == b"VGL1", f"{key}: no VGL1 footer magic (ends {body[-12:]!r})"
    n, crc = struct.unpack_from(">II", body, len(body) - 12)
    assert n + 12 <= len(body), f"{key}: index length {n} does not fit {len(body)} bytes"
    index = body[len(body) - 12 - n:len(body) - 12]
    assert crc32c.crc32c(index) == crc, f"{key}: footer CRC mismatch"
    return json.loads(index)["runs"]


def test_seaweedfs_and_boto3_pinned(seaweed):
    import boto3

    out = subprocess.run([str(seaweed.weed), "version"], capture_output=True, timeout=10)
    text = (out.stdout + out.stderr).decode()
    assert out.returncode == 0 and " 4.48 " in text, f"weed version: {text}"
    assert boto3.__version__ == "1.44.8", boto3.__version__
    assert seaweed.alive()


@pytest.mark.parametrize("wal", ["local", "object"])
def test_s3_acked_data_survives_kill9_and_losing_the_data_dir(broker_factory, seaweed, wal):
    """acks=all produce, kill -9, delete --data-dir entirely; a broker with a
    new, empty data dir on the same S3 prefix serves every acked record byte
    for byte. With the local WAL that holds once the upload covers every ack
    (polled on /metrics and the manifest before the kill); with --wal object
    it holds right after the last ack: there A never uploads (60 s interval),
    so the new broker must replay A's WAL objects."""
    rng = random.Random(new_seed())
    args = UPLOAD_MS + ["--wal", wal]
    a_args = args if wal == "local" else ["--upload-interval-ms", "60000", "--wal", wal]
    a = broker_factory(a_args, name="vigil-a", store="s3")
    topic = unique_name("s3-durable")
    ck_create_topic(a.bootstrap, topic, 3)
    uploads_before = a.metric("vigil_storage_uploads_total")

    recs: list[Rec] = []
    base_ts = int(time.time() * 1000) - 60_000
    for codec in ("none", "zstd", "gzip"):
        batch = make_records(rng, 250, codec, null_keys=True, null_values=True, null_header_values=True)
        ck_produce(ck_producer(a.bootstrap, codec), topic, batch, base_ts + len(recs))
        recs += batch
    ends = log_end_offsets(recs)
    assert set(ends) == {0, 1, 2}, f"records did not spread over 3 partitions: {ends}"
    uploads_at_last_ack = a.metric("vigil_storage_uploads_total")

    epoch_a = latest_manifest(seaweed, a.s3_prefix)["writer_epoch"]
    if wal == "local":
        manifest = wait_uploaded(a, seaweed, topic, ends)
        m = a.metrics()
        print(f"acked ends {ends}; uploads {uploads_before:.0f} before produce, {uploads_at_last_ack:.0f} at "
              f"the last ack, {m['vigil_storage_uploads_total']:.0f} when uploaded; "
              f"{m['vigil_storage_uploaded_bytes_total']:.0f} bytes uploaded")
        assert m["vigil_storage_uploads_total"] > uploads_before
        assert m["vigil_storage_upload_failures_total"] == 0, f"upload failures: {m}\n{a.log_tail()}"
        assert uploaded_next(manifest, topic) == ends, (
            f"manifest uploaded_next {uploaded_next(manifest, topic)} != acked log ends {ends}")
        assert manifest["writer"] == f"vigil-0@{a.bootstrap}", manifest["writer"]
    else:
        keys = seaweed.list_objects(a.s3_prefix)
        wal_objects = [k for k in keys if WAL_OBJECT_RE.fullmatch(k)]
        print(f"acked ends {ends}; {len(wal_objects)} WAL objects; killing right after the last ack")
        assert wal_objects, f"--wal object acked records but there is no wal/<epoch>/<seq>.wal object: {keys}"
        assert not any(uploaded_next(latest_manifest(seaweed, a.s3_prefix), topic).values()), (
            "A uploaded data although its upload interval is 60 s")

    a.kill9()
    shutil.rmtree(a.data_dir)
    assert not a.data_dir.exists()

    b = broker_factory(args, name="vigil-b", store="s3", s3_prefix=a.s3_prefix, start=False)
    assert b.data_dir != a.data_dir and not any(b.data_dir.iterdir()), "the new broker's data dir is not empty"
    b.start()
    assert watermarks(b.bootstrap, topic, 3) == {p: (0, ends[p]) for p in range(3)}
    got = consume_all(b.bootstrap, topic, len(recs))
    assert_exactly_once(recs, got, check_timestamps=True)
    if wal == "local":
        reads = b.metric("vigil_storage_object_reads_total")
        assert reads > 0, "the new broker served the records without reading a data object"

    # The new owner bumped the writer epoch.
    after = latest_manifest(seaweed, b.s3_prefix)
    assert after["writer"] == f"vigil-0@{b.bootstrap}" and after["writer_epoch"] == epoch_a + 1, (
        f"after the new broker started: writer {after['writer']} epoch {after['writer_epoch']}; "
        f"before: epoch {epoch_a}")


class Fenced:
    """Broker A (fenced) and broker B (owner) on one prefix; see fence()."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def fence(broker_factory, seaweed, rng: random.Random, wal: str = "local") -> Fenced:
    """A produces `first` (acked); B starts on A's prefix (writer epoch + 1).

    --wal local: `first` is uploaded before B starts (B can only see what is
    in the manifest). A learns of B at its next ownership check (lease
    renewal, every 100 ms here) or manifest write, so one record produced to
    A right away may still be acked (the "window write", lost to B) or
    already refused. Returns once A has logged that it was fenced.

    --wal object: A never uploads (60 s interval): acked = in a WAL object,
    and B must replay A's WAL objects. A checks ownership after each WAL
    object PUT, before acking, so the window write must be refused already."""
    args = UPLOAD_MS + ["--wal", wal]
    a_args = args if wal == "local" else ["--upload-interval-ms", "60000", "--wal", wal]
    a = broker_factory(a_args, name="vigil-a", store="s3")
    topic = unique_name("s3-fence")
    ck_create_topic(a.bootstrap, topic, 3)
    base_ts = int(time.time() * 1000) - 60_000
    first = make_records(rng, 300, "first")
    ck_produce(ck_producer(a.bootstrap, "lz4"), topic, first, base_ts)
    ends = log_end_offsets(first)
    if wal == "local":
        epoch_a = wait_uploaded(a, seaweed, topic, ends)["writer_epoch"]
    else:
        epoch_a = latest_manifest(seaweed, a.s3_prefix)["writer_epoch"]

    # A is alive and renewing its lease: B must be told to take over.
    b = broker_factory(args + ["--takeover"], name="vigil-b", store="s3", s3_prefix=a.s3_prefix)
    m_b = latest_manifest(seaweed, a.s3_prefix)
    assert (m_b["writer"], m_b["writer_epoch"]) == (f"vigil-0@{b.bootstrap}", epoch_a + 1), (
        f"B did not take ownership: {m_b['writer']} epoch {m_b['writer_epoch']} (A had {epoch_a})")
    if wal == "local":
        assert uploaded_next(m_b, topic) == ends

    window_err, window_off = produce_once(a.bootstrap, topic, 0, b"window-write")
    if wal == "local" and window_err is None:
        # A's lease renewal checks ownership every interval (100 ms here), so
        # a write that lands before that check is acked from A's disk and lost
        # to B: the documented cost of --takeover with a local WAL.
        print(f"window write: A acked offset {window_off} of partition 0 after B took over "
              f"(B's log ends at {ends[0]}) before its ownership check ran")
    else:
        assert getattr(window_err, "errno", None) == NOT_LEADER_OR_FOLLOWER, (
            f"--wal {wal}: A answered {window_err!r} (offset {window_off}) to a write after B took over, "
            f"expected NOT_LEADER_OR_FOLLOWER\n{a.log_tail()}")
        window_off = None
    wait_until("A noticing it was fenced",
               lambda: "this broker has been fenced" in a.log_text()
               or "another broker took over the log" in a.log_text()
               or "no longer owns the log" in a.log_text(),
               detail=a.log_tail)
    return Fenced(a=a, b=b, topic=topic, first=first, ends=ends, base_ts=base_ts,
                  epoch_a=epoch_a, m_b=m_b, window_off=window_off)


@pytest.mark.parametrize("wal", ["local", "object"])
def test_s3_second_broker_fences_the_first(broker_factory, seaweed, wal):
    """B starts on A's prefix and takes ownership. Once A notices (local WAL:
    at its next manifest write; object WAL: at its next WAL write) its
    produce requests fail with NOT_LEADER_OR_FOLLOWER on every partition (no
    silent success), it stays up and never commits another manifest; B
    serves exactly what A acked before B started (local WAL: what A had
    uploaded), byte for byte, and takes new writes."""
    rng = random.Random(new_seed())
    f = fence(broker_factory, seaweed, rng, wal)
    a, b, topic = f.a, f.b, f.topic

    def produce_errors() -> float:
        return sum(v for k, v in a.metrics().items() if k.startswith('vigil_request_errors_total{api="Produce"'))

    errors_before = produce_errors()
    for part in range(3):
        err, off = produce_once(a.bootstrap, topic, part, f"after-fence-{part}".encode())
        assert err is not None, f"fenced broker A acked a write to partition {part} at offset {off}"
        assert getattr(err, "errno", None) == NOT_LEADER_OR_FOLLOWER, (
            f"partition {part}: fenced broker A answered {err!r}, expected NOT_LEADER_OR_FOLLOWER (6)")
        assert "fenced" in str(err), f"error message does not say why: {err}"
    assert produce_errors() == errors_before + 3
    assert a.alive(), f"fenced broker A exited\n{a.log_tail()}"

    # B serves exactly what A had uploaded before B started.
    wm = watermarks(b.bootstrap, topic, 3)
    assert wm == {p: (0, f.ends[p]) for p in range(3)}, (
        f"B's watermarks {wm} != what A acked before B started {f.ends}")
    assert_exactly_once(f.first, consume_all(b.bootstrap, topic, len(f.first)), check_timestamps=True)
    if f.window_off is not None:
        print(f"the window write A acked at partition 0 offset {f.window_off} is not on B "
              f"(B's partition 0 ends at {wm[0][1]}): lost, as A only learns of B at its next manifest write")

    # B takes writes, continuing the offsets.
    second = make_records(rng, 150, "second")
    ck_produce(ck_producer(b.bootstrap, "none"), topic, second, f.base_ts + 1000)
    for r in second:
        assert r.offset >= f.ends[r.partition], f"{r.rid}: B assigned offset {r.offset} < {f.ends[r.partition]}"
    ends2 = log_end_offsets(f.first + second)
    m_b2 = wait_uploaded(b, seaweed, topic, ends2)
    assert_exactly_once(f.first + second, consume_all(b.bootstrap, topic, len(f.first) + len(second)),
                        check_timestamps=True)

    # Every manifest since B took over is B's; data past A's uploads is in B's objects.
    assert (m_b2["writer"], m_b2["writer_epoch"]) == (f.m_b["writer"], f.m_b["writer_epoch"])
    if wal == "local":
        for i, pm in enumerate(m_b2["topics"][topic]["partitions"]):
            for seg in pm["segments"]:
                want = f.epoch_a if seg["next_offset"] <= f.ends[i] else f.m_b["writer_epoch"]
                assert object_epoch(seg["key"]) == want, (
                    f"partition {i}: offsets {seg['base_offset']}..{seg['next_offset'] - 1} in {seg['key']}, "
                    f"expected an object of epoch {want}")
    # A still refuses, and is still up.
    err, off = produce_once(a.bootstrap, topic, 1, b"late")
    assert err is not None, f"fenced broker A acked a late write at offset {off}"
    assert a.alive()


@pytest.mark.parametrize("wal", ["local", "object"])
def test_s3_fenced_broker_refuses_offset_commits(broker_factory, seaweed, wal):
    """An offset commit to a fenced broker fails (it could never reach the
    store: the new owner would not see it)."""
    f = fence(broker_factory, seaweed, random.Random(new_seed()), wal)
    group = unique_name("fenced-group")
    c = ck_consumer(f.a.bootstrap, group)
    try:
        c.assign([TopicPartition(f.topic, 0, 0)])
        try:
            res = c.commit(offsets=[TopicPartition(f.topic, 0, 5)], asynchronous=False)
            errors = [tp.error for tp in res if tp.error is not None]
        except Exception as e:  # KafkaException: the whole request failed
            errors = [e]
    finally:
        c.close()
    print(f"offset commit on fenced broker A: {errors or 'accepted'}")
    assert errors, (f"fenced broker A accepted an offset commit (group {group}, {f.topic}[0] -> 5); "
                    "the new owner never sees it")


def test_s3_fenced_broker_stops_writing_objects(broker_factory, seaweed):
    """A fenced broker PUTs no more objects, although it holds data it can
    no longer commit. Local WAL only: there the window write leaves A with
    such data, deterministically. (--wal object behaves the same when A holds
    acked but not yet uploaded data at the takeover, but that depends on the
    timing of A's upload ticks.)"""
    f = fence(broker_factory, seaweed, random.Random(new_seed()), "local")

    def count() -> int:
        return sum(1 for k in seaweed.list_objects(f.a.s3_prefix) if object_epoch_or_none(k) == f.epoch_a)

    before = count()
    # No event marks "nothing more will happen": watch 8 upload intervals.
    dl = Deadline(1.6, "")
    while not dl.expired():
        now = count()
        assert now == before, (
            f"fenced broker A (epoch {f.epoch_a}) PUT {now - before} more objects after it was fenced "
            f"({before} -> {now})")
        time.sleep(0.1)


@pytest.mark.parametrize("wal", ["local", "object"])
def test_s3_fenced_broker_answers_every_produce(broker_factory, seaweed, wal):
    """A fenced broker answers every produce request, promptly, with
    NOT_LEADER_OR_FOLLOWER (clients then refresh metadata), including an
    idempotent producer's retries, and still exits quickly on SIGTERM."""
    f = fence(broker_factory, seaweed, random.Random(new_seed()), wal)
    a = f.a
    answers = [produce_once(a.bootstrap, f.topic, part, b"after-fence")[0] for part in range(3)]
    print(f"fenced broker A (--wal {wal}) answered: {answers!r}")

    # An idempotent librdkafka producer retries until message.timeout.ms;
    # every one of its requests must have been answered by then.
    errs = []
    p = ck_producer(a.bootstrap, "none", **{"message.timeout.ms": 3000})
    p.produce(f.topic, value=b"idempotent-after-fence", partition=2, on_delivery=lambda err, msg: errs.append(err))
    assert p.flush(15) == 0 and len(errs) == 1 and errs[0] is not None, f"confluent-kafka produce to A: {errs}"
    del p

    def unanswered() -> float:
        m = a.metrics()
        return m.get('vigil_requests_total{api="Produce"}', 0) - m.get(
            'vigil_request_duration_seconds_count{api="Produce"}', 0)

    dl = Deadline(3, "")
    while unanswered() > 0 and not dl.expired():
        time.sleep(0.05)
    hanging = unanswered()
    t0 = time.monotonic()
    a.stop()
    stop_s = time.monotonic() - t0
    problems = []
    if not all(getattr(e, "errno", None) == NOT_LEADER_OR_FOLLOWER for e in answers):
        problems.append(f"answers {answers!r}, expected NOT_LEADER_OR_FOLLOWER")
    if hanging:
        problems.append(f"{hanging:.0f} produce request(s) never answered (idempotent retry)")
    if stop_s >= 2:
        problems.append(f"took {stop_s:.1f}s to exit on SIGTERM")
    assert not problems, "fenced broker A: " + "; ".join(problems)


def test_s3_object_layout_under_the_prefix(broker_factory, seaweed):
    """Everything the broker writes is under its prefix and follows paths.rs:
    manifest/<20 digits>.json and objects/<epoch>/<seq>.dat (or data/…seg).
    The newest manifest's ranges match the objects: keys exist, sizes agree,
    each range is a chain of v2 batches covering its offsets, data object
    footers (VGL1, CRC-checked index) list the same runs, and no data object
    is unreferenced."""
    rng = random.Random(new_seed())
    b = broker_factory(UPLOAD_MS, store="s3")
    prefix = b.s3_prefix
    topic = unique_name("s3-layout")
    ck_create_topic(b.bootstrap, topic, 2)
    recs = make_records(rng, 200, "layout")
    ck_produce(ck_producer(b.bootstrap, "snappy"), topic, recs, int(time.time() * 1000))
    ends = log_end_offsets(recs)
    wait_uploaded(b, seaweed, topic, ends)
    # More records on partition 1 only, uploaded separately: it gets two ranges.
    more = make_records(rng, 20, "more")
    p = ck_producer(b.bootstrap, "none")
    errs = []
    for r in more:
        p.produce(topic, value=r.value, key=r.key, headers=r.headers, partition=1,
                  on_delivery=lambda err, msg: errs.append(err))
    assert p.flush(30) == 0 and errs == [None] * len(more), errs
    ends[1] += len(more)
    manifest = wait_uploaded(b, seaweed, topic, ends)

    keys = seaweed.list_objects(prefix)
    manifests = sorted(k for k in keys if MANIFEST_RE.fullmatch(k))
    data = sorted(k for k in keys if DATA_OBJECT_RE.fullmatch(k) or SEGMENT_RE.fullmatch(k))
    assert "owner/lease.json" in keys, f"the owner lease is missing: {sorted(keys)}"
    claims = [k for k in keys if EPOCH_CLAIM_RE.fullmatch(k)]
    assert claims, f"the broker's epoch claim is missing: {sorted(keys)}"
    stray = sorted(k for k in keys if k not in manifests and k not in data and not WAL_OBJECT_RE.fullmatch(k)
                   and k != "owner/lease.json" and k not in claims and not STATE_OBJECT_RE.fullmatch(k)
                   and not PART_RE.fullmatch(k))
    assert any(PART_RE.fullmatch(k) for k in keys), f"no partition manifest: {sorted(keys)}"
    print(f"{len(keys)} keys under s3://{seaweed.bucket}/{prefix}: {len(manifests)} manifests, "
          f"{len(data)} data objects, e.g. {manifests[-1]}, {data[:2]}")
    assert manifests, f"no manifest/<version>.json under s3://{seaweed.bucket}/{prefix}: {sorted(keys)}"
    assert data, f"no objects/…dat or data/…seg under s3://{seaweed.bucket}/{prefix}: {sorted(keys)}"
    assert not stray, f"keys under the prefix that paths.rs does not describe: {stray}"
    assert int(MANIFEST_RE.fullmatch(manifests[-1]).group(1)) == manifest["version"]
    for outside in ("manifest", "objects", "data"):
        assert not seaweed.list_objects(outside), f"objects at s3://{seaweed.bucket}/{outside}/, outside any prefix"

    t = manifest["topics"][topic]
    bodies: dict[str, bytes] = {}
    runs_by_key: dict[str, list[dict]] = {}
    for i, pm in enumerate(t["partitions"]):
        assert pm["uploaded_next"] == ends[i]
        next_off = pm["log_start_offset"]
        for seg in pm["segments"]:
            key = seg["key"]
            assert key in keys, f"partition {i}: manifest references {key}, which is not in the bucket"
            assert object_epoch(key) == manifest["writer_epoch"], seg
            if m := SEGMENT_RE.fullmatch(key):
                assert m.group(1) == t["id"] and int(m.group(2)) == i and int(m.group(3)) == seg["base_offset"], seg
            assert seg["base_offset"] == next_off, f"partition {i}: ranges not contiguous at {seg}"
            next_off = seg["next_offset"]
            body = bodies.setdefault(key, seaweed.get(prefix, key))
            assert len(body) == keys[key] == (seg.get("object_size") or seg["size"]), (
                f"{key}: {len(body)} bytes read, {keys[key]} listed, manifest says {seg}")
            start = seg.get("start", 0)
            chain = batch_chain(body[start:start + seg["size"]])
            assert (chain[0][0], chain[-1][1] + 1) == (seg["base_offset"], seg["next_offset"]), (
                f"{key}[{start}:+{seg['size']}]: batches cover {chain[0][0]}..{chain[-1][1]}, manifest says "
                f"{seg['base_offset']}..{seg['next_offset'] - 1}")
            for (_, last), (base, _) in zip(chain, chain[1:]):
                assert base == last + 1, f"{key}: gap or overlap between batches at {last}/{base}"
            runs_by_key.setdefault(key, []).append(
                {"topic_id": t["id"], "partition": i, "base_offset": seg["base_offset"],
                 "next_offset": seg["next_offset"], "start": start, "len": seg["size"]})
        assert next_off == ends[i], f"partition {i}: ranges end at {next_off}, acked {ends[i]}"
    assert len(t["partitions"][1]["segments"]) >= 2, t["partitions"][1]

    for key, want in runs_by_key.items():
        if DATA_OBJECT_RE.fullmatch(key):
            index = [{k: r[k] for k in want[0]} for r in data_object_index(bodies[key], key)]
            assert sorted(index, key=lambda r: r["start"]) == sorted(want, key=lambda r: r["start"]), (
                f"{key}: footer index {index} != manifest ranges {want}")
    unreferenced = sorted(set(data) - set(runs_by_key))
    assert not unreferenced, f"data objects no manifest range points to: {unreferenced}"


def test_s3_second_broker_refuses_to_start_while_the_owner_is_alive(broker_factory, seaweed):
    """Without --takeover, a broker that finds the log's lease being renewed
    exits with a message naming the owner, and the owner keeps serving."""
    a = broker_factory(UPLOAD_MS, name="vigil-a", store="s3")
    b = broker_factory(UPLOAD_MS, name="vigil-b", store="s3", s3_prefix=a.s3_prefix, start=False)
    with pytest.raises(AssertionError):
        b.start()
    assert b.proc is not None and b.proc.poll() not in (None, 0), "B must exit with an error"
    assert "is owned by" in b.log_text() and "--takeover" in b.log_text(), b.log_tail()
    topic = unique_name("s3-owner-alive")
    ck_create_topic(a.bootstrap, topic, 1)
    ck_produce(ck_producer(a.bootstrap, "none"), topic, make_records(random.Random(new_seed()), 10, "x"),
               int(time.time() * 1000))
