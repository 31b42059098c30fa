"""Chaos: a paused owner wakes up after another broker took the log over
(issue 11 item 1), with real processes, SIGSTOP/SIGCONT and a real
idempotent acks=all producer.

A serves the log; A is frozen with SIGSTOP; B starts on the same object
store, waits out A's lease and confirmation, and commits many manifest
versions (ten topics: more than the five old versions kept, so the versions
A would write next have been written and deleted). A is woken with SIGCONT
and keeps getting produce requests and a CreateTopics: it must acknowledge
none of them. Every record acknowledged by A before the pause and by B is
read back exactly once from B and from B's successor after a kill -9.

WAL modes: in `object` mode the producer keeps running into the pause
(acknowledged means in the store). In `local` mode records acknowledged but
not yet uploaded live only on A's disk, which B cannot read; the test lets
A upload before pausing it (docs/design/0009-hardening.md, item 1).
"""

from __future__ import annotations

import time

import pytest

from chaos import AckLedger
from helpers import Deadline, ck_admin, ck_create_topic, unique_name

def _args(wal: str, store_url: str) -> list[str]:
    # The fixture already passes --lease-interval-ms 100.
    return ["--wal", wal, "--upload-interval-ms", "200", "--object-store", store_url]


def _wait_uploaded(broker, timeout: float = 30) -> None:
    dl = Deadline(timeout, f"{broker.name}: upload lag back to zero")
    while broker.metric("vigil_storage_upload_lag_seconds") > 0:
        dl.check()
        time.sleep(0.05)


def _create_fails(bootstrap: str, topic: str) -> str:
    """CreateTopics on a broker that must refuse it; returns the error."""
    from confluent_kafka.admin import NewTopic

    admin = ck_admin(bootstrap)
    fut = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                              operation_timeout=10, request_timeout=10)[topic]
    try:
        fut.result(timeout=15)
    except Exception as e:  # noqa: BLE001 - any refusal will do; success is the bug
        return str(e)
    raise AssertionError(f"the fenced broker created topic {topic}")


@pytest.mark.parametrize("wal", ["local", "object"])
def test_a_paused_owner_never_acks_after_a_takeover(broker_factory, tmp_path, wal):
    store_url = f"file://{tmp_path / 'shared-objects'}"
    (tmp_path / "shared-objects").mkdir()
    a = broker_factory(extra_args=_args(wal, store_url), name="a")
    topic = unique_name("pause")
    ck_create_topic(a.bootstrap, topic, partitions=3)

    before = AckLedger(a.bootstrap, topic, rate=300, message_timeout_ms=8000).start()
    before.wait_acked(200)
    if wal == "local":
        before.stop()
        _wait_uploaded(a)
    a.pause()
    try:
        b = broker_factory(extra_args=_args(wal, store_url), name="b")
        for i in range(10):
            ck_create_topic(b.bootstrap, f"{topic}-b{i}", partitions=1)
        during = AckLedger(b.bootstrap, topic, rate=300).start()
        during.wait_acked(200)
    finally:
        a.resume()
    if wal == "object":
        before.stop()

    # A is awake: nothing it is sent may be acknowledged.
    stale = AckLedger(a.bootstrap, topic, rate=200, message_timeout_ms=5000).start()
    dl = Deadline(30, "A answers the woken-up producer")
    while stale.attempted < 200 or (len(stale.failed) == 0 and stale.acked_count() == 0):
        dl.check(f"(attempted {stale.attempted}, failed {len(stale.failed)})")
        time.sleep(0.05)
    err = _create_fails(a.bootstrap, f"{topic}-stale")
    stale.stop()
    assert stale.acked_count() == 0, (
        f"the woken-up owner acknowledged {stale.acked_count()} records after the takeover\n{a.log_tail()}")
    assert "fenced" in a.log_text() or "claimed the log" in a.log_text(), a.log_tail()

    during.wait_acked(100)
    during.stop()
    r1 = before.verify(b.bootstrap)
    r2 = during.verify(b.bootstrap)

    # B's successor (after a crash) sees the same, and no trace of A's stale writes.
    b.kill9()
    b.start()
    before.verify(b.bootstrap)
    during.verify(b.bootstrap)
    md = ck_admin(b.bootstrap).list_topics(timeout=10)
    assert f"{topic}-stale" not in md.topics, f"A's refused topic exists: {err}"
    assert all(f"{topic}-b{i}" in md.topics for i in range(10))
    print(f"CHAOS pause-takeover[{wal}] injected=1 acked={r1.acked + r2.acked} lost=0 dup=0 "
          f"stale_acked={stale.acked_count()} stale_refused={len(stale.failed)}")
