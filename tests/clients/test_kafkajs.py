"""kafkajs 2.2.4 (node, driven through js/kafkajs_driver.js): admin create,
idempotent produce with none + gzip (the codecs kafkajs ships), group consume
with synchronous commits, kill -9 + restart mid-way, exactly-once check."""

from __future__ import annotations

import base64
import random
import time

from helpers import (
    Rec,
    assert_exactly_once,
    ck_committed,
    java_partition,
    make_records,
    new_seed,
    rid_of,
    unique_name,
)

CODECS = ["none", "gzip"]
PER_CODEC = 500


def b64(b: bytes | None) -> str | None:
    return None if b is None else base64.b64encode(b).decode()


def unb64(s: str | None) -> bytes | None:
    return None if s is None else base64.b64decode(s)


def js_produce(node_driver, broker, workdir, topic, recs: list[Rec], codec: str, base_ts: int) -> None:
    for i, r in enumerate(recs):
        r.timestamp = base_ts + i
    res = node_driver.run({
        "action": "produce",
        "brokers": [broker.bootstrap],
        "topic": topic,
        "compression": codec,
        "idempotent": True,
        "records": [{"key": b64(r.key), "value": b64(r.value), "timestamp": r.timestamp,
                     "headers": [[k, b64(v)] for k, v in r.headers]} for r in recs],
    }, workdir)
    assert len(res["results"]) == len(recs)
    for r, out in zip(recs, res["results"]):
        r.partition, r.offset = out["partition"], out["offset"]


def js_consume(node_driver, broker, workdir, topic, group, want: int, settle_ms: int = 0) -> list[Rec]:
    res = node_driver.run({
        "action": "consume",
        "brokers": [broker.bootstrap],
        "topic": topic,
        "group": group,
        "max": want,
        "settleMs": settle_ms,
        "timeoutMs": 60000,
    }, workdir, timeout=90)
    out = []
    for m in res["records"]:
        headers = [(k, unb64(v)) for k, v in m["headers"]]
        out.append(Rec(rid=rid_of(headers), key=unb64(m["key"]), value=unb64(m["value"]), headers=headers,
                       partition=m["partition"], offset=m["offset"], timestamp=m["timestamp"]))
    return out


def test_kafkajs_roundtrip_with_kill9(broker, node_driver, tmp_path):
    rng = random.Random(new_seed())
    topic = unique_name("js-roundtrip")
    group = unique_name("js-group")
    res = node_driver.run({"action": "create-topic", "brokers": [broker.bootstrap], "topic": topic,
                           "partitions": 3}, tmp_path)
    assert res == {"created": True, "partitions": [0, 1, 2]}, res

    # kafkajs has no null header values; keys always set so the partition is murmur2(key).
    batches = {c: make_records(rng, PER_CODEC, c, null_values=True) for c in CODECS}
    base_ts = int(time.time() * 1000) - 600_000

    js_produce(node_driver, broker, tmp_path, topic, batches["none"], "none", base_ts)
    expected = list(batches["none"])
    for r in expected:
        assert r.partition == java_partition(r.key, 3)

    consumed = js_consume(node_driver, broker, tmp_path, topic, group, len(expected) // 2)
    committed = ck_committed(broker.bootstrap, group, topic)
    # What was consumed is exactly what was committed.
    per_part = {}
    for r in consumed:
        per_part[r.partition] = r.offset + 1
    assert {p: o for p, o in committed.items() if o >= 0} == per_part, (committed, per_part)
    print(f"phase 1: produced {len(expected)}, consumed {len(consumed)}, committed {committed}")

    broker.kill9()
    broker.restart()
    assert ck_committed(broker.bootstrap, group, topic) == committed
    js_committed = node_driver.run({"action": "committed", "brokers": [broker.bootstrap], "topic": topic,
                                    "group": group}, tmp_path)["offsets"]
    assert {int(p): o for p, o in js_committed.items()} == {
        p: (o if o >= 0 else -1) for p, o in committed.items()}, js_committed

    js_produce(node_driver, broker, tmp_path, topic, batches["gzip"], "gzip", base_ts + len(expected))
    expected += batches["gzip"]

    rest = js_consume(node_driver, broker, tmp_path, topic, group, len(expected) - len(consumed), settle_ms=1500)
    assert_exactly_once(expected, consumed + rest, check_timestamps=True)
    final = ck_committed(broker.bootstrap, group, topic)
    ends = {}
    for r in expected:
        ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
    assert final == ends, f"final committed {final} != log end offsets {ends}"
