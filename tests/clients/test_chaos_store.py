"""Chaos: the object store fails, stalls, hangs and lies under a live
idempotent acks=all producer, with the real binary (issue 11, chaos suite).

`vigil serve --fault-file F` puts the fault-injecting store under the log
(vigil_server::drills); the test rewrites F to switch faults on and off.
Each fault is held for a few seconds of load, then cleared, and the producer
must make progress again. At the end every acknowledged record is read back
exactly once, also after a kill -9 and a restart without faults.
"""

from __future__ import annotations

import json
import time

import pytest

from chaos import AckLedger, peak_rss_kb
from helpers import ck_create_topic, unique_name

HOLD_S = 2.5

PHASES = [
    ("writes-fail", {"fail_writes": True}),
    ("writes-stall", {"write_delay_ms": 400}),
    ("writes-lie", {"lie_next_writes": 25}),
    ("writes-hang", {"hang_writes": True}),
    ("reads-fail", {"fail_reads": True}),
    ("everything-fails", {"fail_writes": True, "fail_reads": True}),
]


@pytest.mark.parametrize("wal", ["local", "object"])
def test_store_faults_under_load_lose_nothing(broker_factory, tmp_path, wal):
    faults = tmp_path / "faults.json"
    b = broker_factory(extra_args=["--wal", wal, "--upload-interval-ms", "100",
                                   "--fault-file", str(faults)])
    topic = unique_name("store")
    ck_create_topic(b.bootstrap, topic, partitions=3)
    ledger = AckLedger(b.bootstrap, topic, rate=400).start()
    ledger.wait_acked(200)
    for generation, (name, spec) in enumerate(PHASES, start=1):
        faults.write_text(json.dumps({**spec, "generation": generation}))
        time.sleep(HOLD_S)  # how long the fault lasts, not a synchronization
        faults.write_text("{}")
        # The broker recovers by itself: acknowledgements flow again.
        ledger.wait_acked(200, timeout=60)
        assert b.alive(), f"broker died during {name}\n{b.log_tail()}"
    ledger.stop()
    res = ledger.verify(b.bootstrap)
    rss_mb = peak_rss_kb(b.pid) / 1024
    b.kill9()
    b.start()
    ledger.verify(b.bootstrap)
    print(f"CHAOS store-faults[{wal}] injected={len(PHASES)} acked={res.acked} lost=0 dup=0 "
          f"refused={res.failed} peak_rss_mb={rss_mb:.0f}")
