"""kcat 1.7.1 running on librdkafka 2.16 (the confluent-kafka wheel's, via
LD_LIBRARY_PATH): idempotent text produce under every codec, balanced-consumer
group consumption with offsets committed on exit, kill -9 + restart mid-way,
exactly-once check. Topics are created with confluent-kafka's AdminClient
(kcat cannot create topics)."""

from __future__ import annotations

import json
import random
import re

from helpers import (
    Rec,
    assert_exactly_once,
    ck_committed,
    ck_create_topic,
    java_partition,
    make_records,
    new_seed,
    unique_name,
)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 200


def test_kcat_uses_librdkafka_2_16(kcat):
    out = kcat.run(["-V"], timeout=10)
    text = (out.stdout + out.stderr).decode()
    m = re.search(r"librdkafka (\d+\.\d+\.\d+)", text)
    assert m, f"kcat -V printed no librdkafka version: {text}"
    assert m.group(1).startswith("2.16."), (
        f"kcat runs librdkafka {m.group(1)}, expected 2.16.x via LD_LIBRARY_PATH={kcat.lib_dir}\n{text}"
    )
    for feature in ("gzip", "snappy", "lz4", "zstd"):
        assert feature in text, f"librdkafka lacks {feature}: {text}"


def kcat_produce(kcat, broker, topic: str, recs: list[Rec], codec: str) -> None:
    """kcat -P: one line per record, KEY:VALUE. kcat sets the same headers on
    every message of one invocation, so the per-record id is in the value."""
    lines = []
    for r in recs:
        assert b"\n" not in r.key + r.value and b":" not in r.key
        lines.append(r.key + b":" + r.value)
    res = kcat.run([
        "-P", "-b", broker.bootstrap, "-t", topic, "-K:", "-z", codec,
        "-H", f"codec={codec}", "-H", "dup=1", "-H", "dup=2",
        "-X", "enable.idempotence=true", "-X", "partitioner=murmur2", "-X", "linger.ms=5",
    ], input=b"\n".join(lines) + b"\n", timeout=60)
    assert res.returncode == 0, f"kcat -P failed ({res.returncode}): {res.stderr.decode()[-4000:]}"
    for r in recs:
        r.partition = java_partition(r.key, 3)
        r.headers = [("codec", codec.encode()), ("dup", b"1"), ("dup", b"2")]


def kcat_consume(kcat, broker, topic: str, group: str, count: int) -> list[Rec]:
    """Balanced consumer (-G); exits after `count` messages, committing the
    offsets of the consumed messages on close."""
    res = kcat.run([
        "-b", broker.bootstrap, "-G", group, "-J", "-c", str(count), "-q",
        "-X", "auto.offset.reset=earliest", "-X", "session.timeout.ms=10000",
        "-X", "heartbeat.interval.ms=500", "-X", "enable.auto.commit=true",
        "-X", "auto.commit.interval.ms=200",
        topic,
    ], timeout=90)
    assert res.returncode == 0, f"kcat -G failed ({res.returncode}): {res.stderr.decode()[-4000:]}"
    out = []
    for line in res.stdout.decode().splitlines():
        if not line.strip():
            continue
        m = json.loads(line)
        hdrs = m.get("headers") or []
        headers = [(hdrs[i], hdrs[i + 1].encode()) for i in range(0, len(hdrs), 2)]
        value = m["payload"].encode()
        out.append(Rec(rid=value.split(b"|", 1)[0].decode(), key=m["key"].encode(), value=value,
                       headers=headers, partition=m["partition"], offset=m["offset"]))
    assert len(out) == count, f"kcat printed {len(out)} records, expected {count}\n{res.stderr.decode()[-2000:]}"
    return out


def test_kcat_roundtrip_all_codecs_with_kill9(broker, kcat):
    rng = random.Random(new_seed())
    topic = unique_name("kcat-roundtrip")
    group = unique_name("kcat-group")
    ck_create_topic(broker.bootstrap, topic, 3)

    batches = {}
    for c in CODECS:
        recs = make_records(rng, PER_CODEC, c, text=True)
        for r in recs:  # the record id leads the value: "codec:i|text..."
            r.value = r.rid.encode() + b"|" + r.value
        batches[c] = recs

    expected: list[Rec] = []
    for c in CODECS[:3]:
        kcat_produce(kcat, broker, topic, batches[c], c)
        expected += batches[c]

    first = kcat_consume(kcat, broker, topic, group, len(expected) // 2)
    committed = ck_committed(broker.bootstrap, group, topic)
    per_part = {}
    for r in first:
        per_part[r.partition] = r.offset + 1
    assert {p: o for p, o in committed.items() if o >= 0} == per_part, (
        f"offsets committed by kcat on exit {committed} != consumed positions {per_part}"
    )

    broker.kill9()
    broker.restart()
    assert ck_committed(broker.bootstrap, group, topic) == committed

    for c in CODECS[3:]:
        kcat_produce(kcat, broker, topic, batches[c], c)
        expected += batches[c]

    rest = kcat_consume(kcat, broker, topic, group, len(expected) - len(first))
    assert_exactly_once(expected, first + rest, check_offsets=False)

    # Offsets: dense per partition, starting at 0, in produce order.
    for p in range(3):
        offs = [r.offset for r in first + rest if r.partition == p]
        assert offs == list(range(len(offs))), f"partition {p}: offsets {offs[:10]}... not 0..n-1"

    # Nothing left: the group's committed offsets are at the log end.
    ends = {p: sum(1 for r in expected if r.partition == p) for p in range(3)}
    assert ck_committed(broker.bootstrap, group, topic) == ends


def test_kcat_metadata(broker, kcat):
    topic = unique_name("kcat-md")
    ck_create_topic(broker.bootstrap, topic, 3)
    res = kcat.run(["-b", broker.bootstrap, "-L", "-J", "-t", topic], timeout=30)
    assert res.returncode == 0, res.stderr.decode()
    md = json.loads(res.stdout)
    assert [b["id"] for b in md["brokers"]] == [0]
    assert md["brokers"][0]["name"] in (f"127.0.0.1:{broker.port}", f"127.0.0.1:{broker.port}/0"), md["brokers"]
    (t,) = md["topics"]
    assert t["topic"] == topic and "error" not in t, t
    assert sorted(p["partition"] for p in t["partitions"]) == [0, 1, 2]
