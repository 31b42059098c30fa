"""confluent-kafka (librdkafka 2.16): produce under every codec with an
idempotent producer, consume through a group with synchronous commits, kill -9
the broker mid-way, and check every record exactly once, byte for byte."""

from __future__ import annotations

import random
import threading
import time

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from helpers import (
    Deadline,
    Rec,
    assert_exactly_once,
    ck_assert_nothing_more,
    ck_committed,
    ck_consume,
    ck_consumer,
    ck_create_topic,
    ck_produce,
    ck_producer,
    make_records,
    new_seed,
    unique_name,
)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 400


def test_confluent_roundtrip_all_codecs_with_kill9(broker):
    rng = random.Random(new_seed())
    topic = unique_name("ck-roundtrip")
    group = unique_name("ck-group")
    ck_create_topic(broker.bootstrap, topic, 3)

    batches = {c: make_records(rng, PER_CODEC, c, null_keys=True, null_values=True, null_header_values=True)
               for c in CODECS}
    first_codecs, second_codecs = CODECS[:3], CODECS[3:]
    expected: list[Rec] = []
    base_ts = int(time.time() * 1000) - 3_600_000

    # Phase 1: half the codecs, all acked.
    for c in first_codecs:
        p = ck_producer(broker.bootstrap, c)
        ck_produce(p, topic, batches[c], base_ts + len(expected))
        expected += batches[c]
    assert {r.partition for r in expected} == {0, 1, 2}, "records did not spread over 3 partitions"

    # Consume about half of what is there, committing synchronously after each batch.
    c1 = ck_consumer(broker.bootstrap, group)
    c1.subscribe([topic])
    consumed = ck_consume(c1, want=len(expected) // 2, timeout=60, batch=50)
    committed_positions = {tp.partition: tp.offset for tp in c1.position(
        [TopicPartition(topic, p) for p in range(3)])}
    c1.close()
    committed = ck_committed(broker.bootstrap, group, topic)
    for part, off in committed.items():
        if off >= 0:
            assert off == committed_positions[part], f"committed {committed} != positions {committed_positions}"
    print(f"phase 1: produced {len(expected)}, consumed+committed {len(consumed)}, committed offsets {committed}")

    # Crash and restart.
    broker.kill9()
    broker.restart()
    assert ck_committed(broker.bootstrap, group, topic) == committed, "committed offsets changed across kill -9"

    # Phase 2: the other codecs.
    for c in second_codecs:
        p = ck_producer(broker.bootstrap, c)
        ck_produce(p, topic, batches[c], base_ts + len(expected))
        expected += batches[c]

    # New consumer in the same group resumes from the committed offsets.
    c2 = ck_consumer(broker.bootstrap, group)
    c2.subscribe([topic])
    rest = ck_consume(c2, want=len(expected) - len(consumed), timeout=90)
    first_off = {}
    for r in rest:
        first_off.setdefault(r.partition, r.offset)
    for part, off in first_off.items():
        start = committed.get(part, -1001)
        assert off == (start if start >= 0 else 0), (
            f"partition {part}: resumed at offset {off}, committed was {start}"
        )
    ck_assert_nothing_more(c2)
    c2.close()

    assert_exactly_once(expected, consumed + rest, check_timestamps=True)
    final = ck_committed(broker.bootstrap, group, topic)
    ends = {}
    for r in expected:
        ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
    assert final == ends, f"final committed offsets {final} != log end offsets {ends}"


def test_confluent_idempotent_producer_survives_restart(broker):
    """One idempotent producer keeps producing across a broker kill -9 +
    restart (the broker must recover the producer's sequence state from the
    log); nothing is lost or duplicated."""
    rng = random.Random(new_seed())
    topic = unique_name("ck-idem")
    ck_create_topic(broker.bootstrap, topic, 3)
    p = ck_producer(broker.bootstrap, "lz4", **{"message.timeout.ms": 90000, "retry.backoff.ms": 100})
    recs = make_records(rng, 600, "idem")
    base_ts = int(time.time() * 1000)
    ck_produce(p, topic, recs[:300], base_ts)
    broker.kill9()
    broker.restart()
    ck_produce(p, topic, recs[300:], base_ts + 300, timeout=90)

    c = ck_consumer(broker.bootstrap, unique_name("g"))
    c.subscribe([topic])
    got = ck_consume(c, want=len(recs), timeout=60)
    ck_assert_nothing_more(c)
    c.close()
    assert_exactly_once(recs, got, check_timestamps=True)


def test_confluent_idempotent_inflight_kill(broker):
    """kill -9 while an idempotent producer has requests in flight: after the
    restart the producer retries; every message is delivered exactly once (no
    duplicates, no gaps, per-partition order kept)."""
    rng = random.Random(new_seed())
    topic = unique_name("ck-inflight")
    ck_create_topic(broker.bootstrap, topic, 3)
    p = ck_producer(broker.bootstrap, "zstd", **{
        "message.timeout.ms": 120000, "retry.backoff.ms": 100, "linger.ms": 2, "batch.num.messages": 20})
    recs = make_records(rng, 1500, "inflight", max_value=300)
    errors = []
    delivered = threading.Event()
    counter = {"n": 0}

    def on_delivery(r, err, msg):
        if err is not None:
            errors.append(err)
            return
        r.partition, r.offset = msg.partition(), msg.offset()
        counter["n"] += 1
        if counter["n"] >= 300:
            delivered.set()

    for r in recs:  # enqueue everything; librdkafka keeps up to 5 requests in flight
        p.produce(topic, value=r.value, key=r.key, headers=r.headers,
                  on_delivery=lambda err, msg, r=r: on_delivery(r, err, msg))
    dl = Deadline(60, "first 300 acks")
    while not delivered.is_set():
        dl.check(f"(acked {counter['n']}, errors {errors[:3]})")
        p.poll(0.001)
    # Acks are flowing and most of the records are still queued or in flight.
    in_flight_at_kill = len(recs) - counter["n"]
    broker.kill9()
    broker.restart()
    print(f"killed with {in_flight_at_kill} of {len(recs)} records not yet acked")
    assert in_flight_at_kill > 0, "everything was acked before the kill; nothing tested"
    remaining = p.flush(120)
    assert remaining == 0, f"{remaining} messages undelivered 120s after restart"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[0]}"

    c = ck_consumer(broker.bootstrap, unique_name("g"))
    c.subscribe([topic])
    got = ck_consume(c, want=len(recs), timeout=60)
    ck_assert_nothing_more(c)
    c.close()
    assert_exactly_once(recs, got)


def test_confluent_produce_to_unknown_partition_fails(broker):
    topic = unique_name("ck-badpart")
    ck_create_topic(broker.bootstrap, topic, 3)
    p = ck_producer(broker.bootstrap, "none", **{"message.timeout.ms": 5000})
    errs = []
    p.produce(topic, value=b"x", partition=7, on_delivery=lambda err, msg: errs.append(err))
    p.flush(15)
    assert len(errs) == 1 and errs[0] is not None, f"produce to partition 7 of 3 should fail, got {errs}"
    assert errs[0].code() in (KafkaError._UNKNOWN_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART), errs[0]


def test_confluent_list_topics_and_describe(broker):
    topic = unique_name("ck-md")
    ck_create_topic(broker.bootstrap, topic, 3)
    md = ck_consumer(broker.bootstrap, "unused").list_topics(timeout=10)
    assert topic in md.topics
    assert sorted(md.topics[topic].partitions) == [0, 1, 2]
    assert list(md.brokers) == [0], f"expected a single broker with node id 0, got {md.brokers}"
    b = md.brokers[0]
    assert (b.host, b.port) == ("127.0.0.1", broker.port)
    for p in md.topics[topic].partitions.values():
        assert p.leader == 0 and list(p.replicas) == [0] and list(p.isrs) == [0]
    # creating it again fails with TOPIC_ALREADY_EXISTS
    from confluent_kafka.admin import NewTopic

    from helpers import ck_admin

    admin = ck_admin(broker.bootstrap)  # keep a reference until the future resolves
    fut = admin.create_topics([NewTopic(topic, 3, 1)])[topic]
    try:
        fut.result(timeout=15)
        raise AssertionError("creating an existing topic succeeded")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, e


def test_confluent_large_records_with_tiny_fetch_limits(broker):
    """Records far larger than the consumer's fetch limits still arrive (a
    broker returns at least one whole batch), byte for byte."""
    rng = random.Random(new_seed())
    topic = unique_name("ck-large")
    ck_create_topic(broker.bootstrap, topic, 3)
    sizes = [0, 1, 100_000, 500_000, 900_000, 64 * 1024, 300_000, 10]
    recs = []
    for i, n in enumerate(sizes):
        value = bytes(rng.getrandbits(8) for _ in range(min(n, 4096))) * (n // 4096 + 1)
        recs.append(Rec(rid=f"large:{i}", key=f"k{i}".encode(), value=value[:n],
                        headers=[("vigil-id", f"large:{i}".encode())]))
    p = ck_producer(broker.bootstrap, "none", **{"linger.ms": 0})
    ck_produce(p, topic, recs, int(time.time() * 1000))
    c = ck_consumer(broker.bootstrap, unique_name("g"), **{
        "fetch.max.bytes": 1024, "message.max.bytes": 1000, "max.partition.fetch.bytes": 1024,
        "fetch.min.bytes": 1, "receive.message.max.bytes": 2_000_000})
    c.subscribe([topic])
    got = ck_consume(c, want=len(recs), timeout=60)
    c.close()
    assert_exactly_once(recs, got, check_timestamps=True)
