"""aiokafka 0.14: admin create, idempotent produce under every codec (via
cramjam), group consume with synchronous commits, kill -9 + restart mid-way,
exactly-once check."""

from __future__ import annotations

import asyncio
import random
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

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


async def ak_produce(bootstrap: str, topic: str, recs: list[Rec], codec: str | None, base_ts: int) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        compression_type=codec,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        request_timeout_ms=15000,
    )
    await asyncio.wait_for(producer.start(), 30)
    try:
        parts = await asyncio.wait_for(producer.partitions_for(topic), 30)
        assert parts == {0, 1, 2}, f"aiokafka sees partitions {parts} for {topic}"
        futs = []
        for i, r in enumerate(recs):
            r.timestamp = base_ts + i
            futs.append((r, await producer.send(topic, key=r.key, value=r.value, headers=r.headers,
                                                timestamp_ms=r.timestamp)))
        for r, f in futs:
            md = await asyncio.wait_for(f, 60)
            r.partition, r.offset = md.partition, md.offset
    finally:
        await asyncio.wait_for(producer.stop(), 30)


def ak_consumer(bootstrap: str, group: str, topic: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=10000,
        heartbeat_interval_ms=500,
        request_timeout_ms=30000,
    )


async def ak_consume(consumer: AIOKafkaConsumer, want: int, timeout: float, settle: float = 0) -> list[Rec]:
    out: list[Rec] = []
    dl = Deadline(timeout, f"aiokafka consuming {want} records")
    extra_until = None
    while True:
        if len(out) >= want:
            if settle <= 0:
                break
            if extra_until is None:
                extra_until = time.monotonic() + settle
            if time.monotonic() >= extra_until:
                break
        else:
            dl.check(f"(got {len(out)}; assignment {consumer.assignment()})")
        polled = await consumer.getmany(timeout_ms=300, max_records=100)
        n = 0
        for tp, msgs in polled.items():
            for m in msgs:
                headers = list(m.headers or [])
                out.append(Rec(rid=rid_of(headers), key=m.key, value=m.value, headers=headers,
                               partition=m.partition, offset=m.offset, timestamp=m.timestamp))
                n += 1
        if n:
            await consumer.commit()  # synchronous commit of the consumed positions
    return out


async def _roundtrip(broker) -> None:
    rng = random.Random(new_seed())
    topic = unique_name("ak-roundtrip")
    group = unique_name("ak-group")
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    await asyncio.wait_for(admin.start(), 30)
    try:
        await asyncio.wait_for(admin.create_topics([NewTopic(topic, 3, 1)]), 30)
        described = await asyncio.wait_for(admin.describe_topics([topic]), 30)
        assert len(described) == 1 and len(described[0]["partitions"]) == 3, described
    finally:
        await admin.close()

    batches = {c: make_records(rng, PER_CODEC, str(c)) for c in CODECS}
    expected: list[Rec] = []
    base_ts = int(time.time() * 1000) - 600_000
    for c in CODECS[:3]:
        await ak_produce(broker.bootstrap, topic, batches[c], c, base_ts + len(expected))
        expected += batches[c]
    for r in expected:
        assert r.partition == java_partition(r.key, 3), f"{r.rid}: partition {r.partition} is not murmur2(key)"

    c1 = ak_consumer(broker.bootstrap, group, topic)
    await asyncio.wait_for(c1.start(), 30)
    consumed = await ak_consume(c1, len(expected) // 2, timeout=60)
    committed = {tp.partition: await c1.committed(tp) for tp in c1.assignment()}
    await asyncio.wait_for(c1.stop(), 30)
    print(f"phase 1: produced {len(expected)}, consumed {len(consumed)}, committed {committed}")

    broker.kill9()
    broker.restart()
    after = ck_committed(broker.bootstrap, group, topic)
    for p, off in committed.items():
        assert after[p] == (off if off is not None else -1001), f"committed {after} != before kill {committed}"

    for c in CODECS[3:]:
        await ak_produce(broker.bootstrap, topic, batches[c], c, base_ts + len(expected))
        expected += batches[c]

    c2 = ak_consumer(broker.bootstrap, group, topic)
    await asyncio.wait_for(c2.start(), 30)
    rest = await ak_consume(c2, len(expected) - len(consumed), timeout=90, settle=1.5)
    await asyncio.wait_for(c2.stop(), 30)
    assert_exactly_once(expected, consumed + rest, check_timestamps=True)

    final = ck_committed(broker.bootstrap, group, topic)
    ends = {}
    for r in expected:
        ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
    assert final == ends, f"final committed {final} != log end offsets {ends}"


def test_aiokafka_roundtrip_all_codecs_with_kill9(broker):
    asyncio.run(asyncio.wait_for(_roundtrip(broker), 170))
