"""Chaos: kill -9 at random points of upload, compaction and garbage
collection, under a live idempotent acks=all producer (issue 11, chaos
suite).

The broker uploads every 50 ms and runs retention, compaction and GC every
100 ms with a short GC grace, so a kill at a random moment regularly lands
inside one of them. After each kill the broker restarts on the same data dir
and store; the producer reconnects by itself. At the end every acknowledged
record must be read back exactly once, and the counters must show that
uploads, compactions and GC deletions really happened during the run.
"""

from __future__ import annotations

import random
import time

import pytest

from chaos import AckLedger
from helpers import Deadline, ck_create_topic, new_seed, unique_name

KILLS = 8


def _counter(broker, name: str) -> float:
    m = broker.metrics()
    return sum(v for k, v in m.items() if k.startswith(name))


@pytest.mark.parametrize("wal", ["local", "object"])
def test_kill9_during_upload_compaction_and_gc_loses_nothing(broker_factory, wal):
    seed = new_seed()
    rng = random.Random(seed)
    b = broker_factory(extra_args=[
        "--wal", wal,
        "--upload-interval-ms", "50",
        "--retention-check-interval-ms", "100",
        "--gc-grace-ms", "2000",
    ])
    topic = unique_name("kill")
    ck_create_topic(b.bootstrap, topic, partitions=3)
    ledger = AckLedger(b.bootstrap, topic, rate=600).start()
    totals = {"vigil_storage_uploads": 0.0, "vigil_storage_compactions": 0.0,
              "vigil_storage_gc_deleted_objects": 0.0}
    for _ in range(KILLS):
        ledger.wait_acked(rng.randint(100, 600), timeout=60)
        for name in totals:
            totals[name] += _counter(b, name)
        time.sleep(rng.uniform(0.0, 0.3))  # a random point, not a synchronization
        b.kill9()
        b.start()
    ledger.wait_acked(300, timeout=60)
    # Let the last incarnation compact and collect once more.
    dl = Deadline(30, "a compaction after the last restart")
    while _counter(b, "vigil_storage_compactions") == 0:
        dl.check()
        time.sleep(0.1)
    for name in totals:
        totals[name] += _counter(b, name)
    ledger.stop()
    res = ledger.verify(b.bootstrap)
    b.kill9()
    b.start()
    ledger.verify(b.bootstrap)
    print(f"CHAOS kill9-upload-compaction-gc[{wal}] injected={KILLS + 1} acked={res.acked} "
          f"lost=0 dup=0 uploads={totals['vigil_storage_uploads']:.0f} "
          f"compactions={totals['vigil_storage_compactions']:.0f} "
          f"gc_deleted={totals['vigil_storage_gc_deleted_objects']:.0f} seed={seed}")
    assert totals["vigil_storage_uploads"] > 0
    assert totals["vigil_storage_compactions"] > 0
    assert totals["vigil_storage_gc_deleted_objects"] > 0, "GC never deleted anything: the drill did not exercise it"
