"""Consumer groups and offsets through confluent-kafka: 3-member rebalance,
committed offset metadata (incl. across kill -9), ListOffsets by
earliest/latest/timestamp."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import OFFSET_END, Producer, TopicPartition
from confluent_kafka.admin import OffsetSpec

from helpers import Deadline, ck_admin, ck_consumer, ck_create_topic, unique_name

SETTLE_LIMIT_S = 10.0


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_three_consumers_rebalance(broker, strategy):
    topic = unique_name("grp-rebalance")
    group = unique_name("grp")
    ck_create_topic(broker.bootstrap, topic, 3)

    consumers = [
        ck_consumer(broker.bootstrap, group, **{
            "partition.assignment.strategy": strategy,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 100,
            "client.id": f"member-{i}",
        })
        for i in range(3)
    ]
    received = {i: [] for i in range(3)}
    try:
        t0 = time.monotonic()
        for c in consumers:
            c.subscribe([topic])

        def poll_all(timeout=0.05):
            for i, c in enumerate(consumers):
                m = c.poll(timeout)
                if m is not None:
                    assert m.error() is None, f"consumer {i} error: {m.error()}"
                    received[i].append((m.partition(), m.value()))

        def assignments():
            return [sorted(tp.partition for tp in c.assignment()) for c in consumers]

        dl = Deadline(SETTLE_LIMIT_S, "group settling to one partition per consumer")
        while True:
            poll_all()
            a = assignments()
            if all(len(x) == 1 for x in a) and sorted(x[0] for x in a) == [0, 1, 2]:
                break
            dl.check(f"(assignments {a})")
        settle = time.monotonic() - t0
        print(f"[{strategy}] group settled in {settle:.2f}s: {a}")

        # Stays stable for a second.
        stable_until = time.monotonic() + 1.0
        while time.monotonic() < stable_until:
            poll_all()
        assert assignments() == a, f"assignment changed after settling: {a} -> {assignments()}"

        # Each consumer gets exactly the record of its own partition.
        p = Producer({"bootstrap.servers": broker.bootstrap})
        for part in range(3):
            p.produce(topic, value=f"p{part}".encode(), partition=part)
        assert p.flush(15) == 0
        owner = {x[0]: i for i, x in enumerate(a)}
        dl = Deadline(20, "each consumer receiving its partition's record")
        while sum(len(v) for v in received.values()) < 3:
            dl.check(f"(received {received})")
            poll_all(0.1)
        for part in range(3):
            assert received[owner[part]] == [(part, f"p{part}".encode())], received
        assert settle < SETTLE_LIMIT_S
    finally:
        for c in consumers:
            c.close()


def test_commit_metadata_roundtrip_and_survives_kill9(broker):
    topic = unique_name("grp-meta")
    group = unique_name("grp-meta")
    ck_create_topic(broker.bootstrap, topic, 3)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for part in range(3):
        for i in range(10):
            p.produce(topic, value=b"x", partition=part)
    assert p.flush(15) == 0

    metas = {0: "plain metadata", 1: "ünïcödé ✓ {\"json\": [1,2]}", 2: "m" * 1000}
    offsets = {0: 3, 1: 7, 2: 10}
    c = ck_consumer(broker.bootstrap, group)
    c.assign([TopicPartition(topic, part, 0) for part in range(3)])
    res = c.commit(offsets=[TopicPartition(topic, part, offsets[part], metadata=metas[part]) for part in range(3)],
                   asynchronous=False)
    for tp in res:
        assert tp.error is None, f"commit error {tp}"
    got = c.committed([TopicPartition(topic, part) for part in range(3)], timeout=15)
    c.close()
    assert {tp.partition: (tp.offset, tp.metadata) for tp in got} == {
        part: (offsets[part], metas[part]) for part in range(3)}

    broker.kill9()
    broker.restart()

    c = ck_consumer(broker.bootstrap, group)
    got = c.committed([TopicPartition(topic, part) for part in range(3)], timeout=15)
    c.close()
    assert {tp.partition: (tp.offset, tp.metadata) for tp in got} == {
        part: (offsets[part], metas[part]) for part in range(3)}, "committed offsets/metadata lost in kill -9"

    # AdminClient view of the same group.
    from confluent_kafka import ConsumerGroupTopicPartitions

    admin = ck_admin(broker.bootstrap)  # keep a reference until the future resolves
    fut = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, part) for part in range(3)])])[group]
    listed = fut.result(timeout=15)
    assert {tp.partition: (tp.offset, tp.metadata) for tp in listed.topic_partitions} == {
        part: (offsets[part], metas[part]) for part in range(3)}


def test_list_offsets_earliest_latest_and_by_time(broker):
    topic = unique_name("list-offsets")
    ck_create_topic(broker.bootstrap, topic, 3)
    t0 = int(time.time() * 1000) - 100_000
    # Partition 0: uncompressed, one record per produce call.
    p0 = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for i in range(10):
        p0.produce(topic, value=f"a{i}".encode(), partition=0, timestamp=t0 + i * 1000)
        p0.flush(10)
    # Partition 2: many records in one compressed batch, timestamps inside it.
    p2 = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 200, "compression.type": "gzip"})
    for i in range(10):
        p2.produce(topic, value=f"b{i}".encode(), partition=2, timestamp=t0 + i * 1000)
    assert p2.flush(15) == 0
    assert p0.flush(15) == 0

    admin = ck_admin(broker.bootstrap)

    def list_offsets(spec):
        futs = admin.list_offsets({TopicPartition(topic, part): spec for part in range(3)}, request_timeout=15)
        return {tp.partition: f.result(timeout=15).offset for tp, f in futs.items()}

    assert list_offsets(OffsetSpec.earliest()) == {0: 0, 1: 0, 2: 0}
    assert list_offsets(OffsetSpec.latest()) == {0: 10, 1: 0, 2: 10}
    # first offset whose timestamp >= the one asked for
    assert list_offsets(OffsetSpec.for_timestamp(t0 + 3000)) == {0: 3, 1: -1, 2: 3}
    assert list_offsets(OffsetSpec.for_timestamp(t0 + 3500)) == {0: 4, 1: -1, 2: 4}
    assert list_offsets(OffsetSpec.for_timestamp(t0 - 50_000)) == {0: 0, 1: -1, 2: 0}
    assert list_offsets(OffsetSpec.for_timestamp(t0 + 60_000)) == {0: -1, 1: -1, 2: -1}

    c = ck_consumer(broker.bootstrap, unique_name("g"))
    assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 10)
    assert c.get_watermark_offsets(TopicPartition(topic, 1), timeout=10) == (0, 0)
    res = c.offsets_for_times([TopicPartition(topic, 0, t0 + 5000), TopicPartition(topic, 2, t0 + 8200),
                               TopicPartition(topic, 1, t0)], timeout=15)
    got = {tp.partition: tp.offset for tp in res}
    assert got == {0: 5, 2: 9, 1: OFFSET_END}, got

    # Reading from the offset found by time yields the record with that timestamp.
    c.assign([TopicPartition(topic, 2, 9)])
    dl = Deadline(15, "reading offset 9 of partition 2")
    while True:
        m = c.poll(0.5)
        if m is not None:
            assert m.error() is None, m.error()
            break
        dl.check()
    assert (m.offset(), m.value(), m.timestamp()[1]) == (9, b"b9", t0 + 9000)
    c.close()
