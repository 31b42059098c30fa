"""Auto topic creation on/off, clean shutdown on SIGTERM, admin HTTP endpoints."""

from __future__ import annotations

import random
import time

from confluent_kafka import KafkaError, Producer

from helpers import (
    Deadline,
    assert_exactly_once,
    ck_admin,
    ck_consume,
    ck_consumer,
    ck_create_topic,
    make_records,
    new_seed,
    unique_name,
)


def test_auto_create_on(broker_factory):
    broker = broker_factory(["--auto-create-topics", "true"])
    topic = unique_name("auto-on")
    assert topic not in ck_admin(broker.bootstrap).list_topics(timeout=10).topics

    got = {}
    p = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 20000})
    p.produce(topic, value=b"hello", key=b"k", headers=[("vigil-id", b"auto:0")],
              on_delivery=lambda err, msg: got.update(err=err, partition=msg.partition(), offset=msg.offset()))
    assert p.flush(30) == 0
    assert got["err"] is None, f"produce to a new topic with auto-create on failed: {got['err']}"
    assert got["offset"] == 0

    md = ck_admin(broker.bootstrap).list_topics(timeout=10)
    assert topic in md.topics, f"{topic} not in metadata after auto-create: {sorted(md.topics)}"
    t = md.topics[topic]
    assert t.error is None, t.error
    assert len(t.partitions) >= 1
    assert got["partition"] in t.partitions

    c = ck_consumer(broker.bootstrap, unique_name("g"))
    c.subscribe([topic])
    recs = ck_consume(c, want=1, timeout=30, commit=False)
    c.close()
    assert (recs[0].key, recs[0].value) == (b"k", b"hello")


def test_auto_create_off(broker_factory):
    broker = broker_factory(["--auto-create-topics", "false"])
    topic = unique_name("auto-off")

    # Metadata for the missing topic reports UNKNOWN_TOPIC_OR_PARTITION (3).
    md = Producer({"bootstrap.servers": broker.bootstrap}).list_topics(topic=topic, timeout=10)
    assert topic in md.topics
    err = md.topics[topic].error
    assert err is not None and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, (
        f"metadata for a missing topic with auto-create off: {err!r}"
    )

    # A producer gives up on it.
    errs = []
    p = Producer({
        "bootstrap.servers": broker.bootstrap,
        "message.timeout.ms": 5000,
        "topic.metadata.propagation.max.ms": 1000,
    })
    p.produce(topic, value=b"nope", on_delivery=lambda err, msg: errs.append(err))
    p.flush(20)
    assert len(errs) == 1 and errs[0] is not None, f"produce to a missing topic did not fail: {errs}"
    assert errs[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC), errs[0]

    # ... and the topic was not created behind its back.
    md = ck_admin(broker.bootstrap).list_topics(timeout=10)
    assert topic not in md.topics, f"{topic} was created although auto-create is off"

    # Explicit creation still works.
    ck_create_topic(broker.bootstrap, topic, 2)


def test_sigterm_clean_shutdown_keeps_acked_data(broker):
    rng = random.Random(new_seed())
    topic = unique_name("shutdown")
    ck_create_topic(broker.bootstrap, topic, 3)
    recs = make_records(rng, 1000, "sd")
    errors = []

    def on_delivery(r, err, msg):
        if err:
            errors.append(err)
            return
        r.partition, r.offset = msg.partition(), msg.offset()

    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "compression.type": "snappy",
                  "linger.ms": 5})
    for r in recs:
        p.produce(topic, key=r.key, value=r.value, headers=r.headers,
                  on_delivery=lambda err, msg, r=r: on_delivery(r, err, msg))
    assert p.flush(60) == 0
    assert not errors, errors[:3]

    group = unique_name("g")
    c = ck_consumer(broker.bootstrap, group)
    c.subscribe([topic])
    first = ck_consume(c, want=400, timeout=60)
    c.close()

    t0 = time.monotonic()
    broker.stop()  # SIGTERM -> asserts exit code 0 within the deadline
    print(f"SIGTERM shutdown took {time.monotonic() - t0:.2f}s")
    broker.start()

    c = ck_consumer(broker.bootstrap, group)
    c.subscribe([topic])
    rest = ck_consume(c, want=len(recs) - len(first), timeout=60)
    c.close()
    assert_exactly_once(recs, first + rest)

    # and once more from the start with a fresh group
    c = ck_consumer(broker.bootstrap, unique_name("g"))
    c.subscribe([topic])
    everything = ck_consume(c, want=len(recs), timeout=60, commit=False)
    c.close()
    assert_exactly_once(recs, everything)
    broker.stop()


def test_sigterm_when_idle_exits_zero_quickly(broker):
    t0 = time.monotonic()
    broker.stop(timeout=10)
    assert time.monotonic() - t0 < 10


def test_admin_http_healthz_and_metrics(broker):
    status, body = broker.http_get("/healthz")
    assert status == 200, (status, body)
    topic = unique_name("metrics")
    ck_create_topic(broker.bootstrap, topic, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(topic, value=b"x")
    assert p.flush(15) == 0
    status, body = broker.http_get("/metrics")
    assert status == 200, (status, body[:500])
    text = body.decode()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert lines, f"/metrics has no samples:\n{text[:2000]}"
    assert any(ln.startswith("# TYPE ") for ln in text.splitlines()), "no '# TYPE' lines: not Prometheus text"
    for ln in lines:
        name_and_labels, _, value = ln.rpartition(" ")
        assert name_and_labels, f"bad sample line {ln!r}"
        float(value)  # every sample value parses as a number
    status, _ = broker.http_get("/no-such-endpoint")
    assert status == 404


def test_restart_on_same_ports_after_kill9_is_quick(broker):
    """kill -9 then restart binds the same ports (SO_REUSEADDR) and is ready fast."""
    topic = unique_name("restart")
    ck_create_topic(broker.bootstrap, topic, 1)
    broker.kill9()
    t0 = time.monotonic()
    broker.restart()
    took = time.monotonic() - t0
    print(f"restart after kill -9 ready in {took:.2f}s")
    assert took < 15
    dl = Deadline(10, "topic still present after restart")
    while topic not in ck_admin(broker.bootstrap).list_topics(timeout=5).topics:
        dl.check()
        time.sleep(0.1)
