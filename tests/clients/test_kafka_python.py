"""kafka-python 3.0: admin create, idempotent produce under every codec
(snappy/lz4/zstd via python-snappy, lz4, zstandard), group consume with
synchronous commits, kill -9 + restart mid-way, exactly-once check."""

from __future__ import annotations

import random
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.codec import has_gzip, has_lz4, has_snappy, has_zstd

from helpers import (
    Deadline,
    Rec,
    assert_exactly_once,
    ck_committed,
    java_partition,
    make_records,
    new_seed,
    rid_of,
    unique_name,
)

CODECS = [None, "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 300


def test_kafka_python_codecs_available():
    assert has_gzip() and has_snappy() and has_lz4() and has_zstd(), (
        "kafka-python codec libraries missing (python-snappy, lz4, zstandard in tests/clients/requirements.txt)"
    )


def kp_create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        res = admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1}},
                                  timeout_ms=15000, wait_for_metadata=True)
        print(f"kafka-python create_topics: {res}")
        described = admin.describe_topics([topic])
        assert len(described) == 1 and len(described[0]["partitions"]) == partitions, described
    finally:
        admin.close()


def kp_produce(bootstrap: str, topic: str, recs: list[Rec], codec: str | None, base_ts: int) -> None:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        compression_type=codec,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        request_timeout_ms=15000,
        max_block_ms=30000,
    )
    try:
        futs = []
        for i, r in enumerate(recs):
            r.timestamp = base_ts + i
            futs.append((r, producer.send(topic, key=r.key, value=r.value, headers=r.headers,
                                          timestamp_ms=r.timestamp)))
        producer.flush(timeout=60)
        for r, f in futs:
            md = f.get(timeout=30)
            r.partition, r.offset = md.partition, md.offset
    finally:
        producer.close(timeout=10)


def kp_consumer(bootstrap: str, group: str, topic: str) -> KafkaConsumer:
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=10000,
        heartbeat_interval_ms=500,
        request_timeout_ms=30000,
    )


def kp_consume(consumer: KafkaConsumer, want: int, timeout: float) -> list[Rec]:
    out: list[Rec] = []
    dl = Deadline(timeout, f"kafka-python consuming {want} records")
    while len(out) < want:
        dl.check(f"(got {len(out)}; assignment {consumer.assignment()})")
        polled = consumer.poll(timeout_ms=500, max_records=100)
        n = 0
        for tp, msgs in polled.items():
            for m in msgs:
                headers = list(m.headers or [])
                out.append(Rec(rid=rid_of(headers), key=m.key, value=m.value, headers=headers,
                               partition=m.partition, offset=m.offset, timestamp=m.timestamp))
                n += 1
        if n:
            consumer.commit()  # synchronous commit of the current positions
    return out


def test_kafka_python_roundtrip_all_codecs_with_kill9(broker):
    rng = random.Random(new_seed())
    topic = unique_name("kp-roundtrip")
    group = unique_name("kp-group")
    kp_create_topic(broker.bootstrap, topic, 3)

    batches = {c: make_records(rng, PER_CODEC, str(c), null_keys=False) for c in CODECS}
    expected: list[Rec] = []
    base_ts = int(time.time() * 1000) - 600_000
    for c in CODECS[:3]:
        kp_produce(broker.bootstrap, topic, batches[c], c, base_ts + len(expected))
        expected += batches[c]
    for r in expected:
        assert r.partition == java_partition(r.key, 3), f"{r.rid}: partition {r.partition} is not murmur2(key)"

    c1 = kp_consumer(broker.bootstrap, group, topic)
    consumed = kp_consume(c1, len(expected) // 2, timeout=60)
    committed = {tp.partition: c1.committed(tp) for tp in c1.assignment()}
    c1.close(autocommit=False)
    print(f"phase 1: produced {len(expected)}, consumed {len(consumed)}, committed {committed}")

    broker.kill9()
    broker.restart()

    after = ck_committed(broker.bootstrap, group, topic)
    for p, off in committed.items():
        assert after[p] == (off if off is not None else -1001), f"committed offsets {after} != before kill {committed}"

    for c in CODECS[3:]:
        kp_produce(broker.bootstrap, topic, batches[c], c, base_ts + len(expected))
        expected += batches[c]

    c2 = kp_consumer(broker.bootstrap, group, topic)
    rest = kp_consume(c2, len(expected) - len(consumed), timeout=90)
    extra = kp_consume_for(c2, 1.5)
    assert not extra, f"{len(extra)} extra records after all were consumed: {[r.rid for r in extra][:10]}"
    c2.close(autocommit=False)
    assert_exactly_once(expected, consumed + rest, check_timestamps=True)

    final = ck_committed(broker.bootstrap, group, topic)
    ends = {}
    for r in expected:
        ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
    assert final == ends, f"final committed {final} != log end offsets {ends}"


def kp_consume_for(consumer: KafkaConsumer, seconds: float) -> list[Rec]:
    out = []
    dl = Deadline(seconds, "")
    while not dl.expired():
        for tp, msgs in consumer.poll(timeout_ms=200).items():
            for m in msgs:
                out.append(Rec(rid=rid_of(m.headers), key=m.key, value=m.value, headers=list(m.headers)))
    return out


def test_kafka_python_offsets_and_seek(broker):
    """end_offsets/beginning_offsets/offsets_for_times via kafka-python."""
    topic = unique_name("kp-offsets")
    kp_create_topic(broker.bootstrap, topic, 3)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", compression_type="gzip")
    t0 = int(time.time() * 1000) - 100_000
    for i in range(20):
        producer.send(topic, value=f"v{i}".encode(), partition=1, timestamp_ms=t0 + i * 1000)
    producer.flush(timeout=30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    tps = [TopicPartition(topic, p) for p in range(3)]
    assert consumer.beginning_offsets(tps) == {tp: 0 for tp in tps}
    assert consumer.end_offsets(tps) == {tps[0]: 0, tps[1]: 20, tps[2]: 0}
    found = consumer.offsets_for_times({tps[1]: t0 + 7500})
    assert found[tps[1]].offset == 8 and found[tps[1]].timestamp == t0 + 8000, found
    consumer.assign([tps[1]])
    consumer.seek(tps[1], 15)
    values = []
    dl = Deadline(30, "reading offsets 15..19")
    while len(values) < 5:
        dl.check(f"(got {values})")
        for _, msgs in consumer.poll(timeout_ms=500).items():
            values += [(m.offset, m.value) for m in msgs]
    assert values == [(i, f"v{i}".encode()) for i in range(15, 20)]
    consumer.close()
