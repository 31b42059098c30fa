"""Exactly-once alerts under kill -9.

The same deterministic input (3 partitions of JSON amounts per card, with
injected outliers) goes to two brokers running the zscore plugin from the
earliest offset. Broker A is never disturbed: its alert topic, once caught
up, is the reference. Broker B gets the input in chunks of random size and
is killed with SIGKILL while it works on each of the first three (once some
alerts of the chunk were written and a random point of it was passed), then
restarted. Once B has caught up, its alert topic must hold exactly A's
alerts: the same multiset, no duplicates, nothing missing.

Alerts are compared on everything that does not depend on how the input was
cut into batches: key, value document (deployment, module, severity, score,
message, source topic/partition/offset/timestamp, fields), record timestamp
and every header except vigil.input.end.

Runs with B on --wal local and on --wal object (A: --wal local).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter

import pytest

from detectors import (
    H_INPUT_END,
    admin_of,
    describe,
    dupes,
    ends_of,
    limits,
    produce,
    producer,
    read_topic,
    spec,
    wait_caught_up,
    watermarks,
)
from helpers import Deadline, ck_create_topic, new_seed

ZSCORE = "vigil_plugin_zscore"
PARTITIONS = 3
PER_PARTITION = int(os.environ.get("VIGIL_EOS_RECORDS_PER_PARTITION", "20000"))
KEYS_PER_PARTITION = 10
KILLS = 3
NAME = "eos-zscore"
INPUT = "in"
OUTPUT = "alerts"
CONFIG = {"field": "amount", "key": "record_key", "window": 100, "threshold": 4.0, "min_samples": 20}
# Small reads: many input batches, so a kill lands between them.
MAX_BATCH_BYTES = 4096
# Record timestamps: recent (records older than the default 7-day retention
# would be deleted when a broker restarts), and the same for both brokers.
BASE_TS = int(time.time() * 1000) - 3_600_000


def dataset(seed: int):
    """{partition: [record dicts in offset order]} and the injected outliers
    as {(partition, index)}. Key j of partition p: f"card-{p}-{j}"."""
    rng = random.Random(seed)
    data, injected = {}, set()
    for p in range(PARTITIONS):
        recs = []
        for i in range(PER_PARTITION):
            j = rng.randrange(KEYS_PER_PARTITION)
            level = 100.0 + 7 * j + 40 * p
            v = rng.gauss(level, 3.0)
            if i > 500 and rng.random() < 0.002:
                v += rng.choice([-1, 1]) * rng.uniform(50, 90)
                injected.add((p, i))
            recs.append({
                "key": f"card-{p}-{j}",
                "value": json.dumps({"amount": round(v, 6), "seq": i}),
                "partition": p,
                "timestamp": BASE_TS + i * 10 + p,
            })
        data[p] = recs
    return data, injected


def interleave(data, lo: int, hi: int):
    """Records lo..hi of every partition, interleaved (per partition in
    order, so every broker assigns the same offsets)."""
    out = []
    for i in range(lo, hi):
        for p in range(PARTITIONS):
            out.append(data[p][i])
    return out


def canonical(alert) -> tuple:
    headers = tuple(sorted((k, v) for k, v in alert.headers if k != H_INPUT_END))
    return (alert.key, json.dumps(alert.doc, sort_keys=True), alert.timestamp, headers)


def deploy(broker):
    admin = admin_of(broker)
    module = admin.upload_module(ZSCORE)
    st = admin.deploy(spec(NAME, module, INPUT, OUTPUT, CONFIG, value_schema={"amount": "float64"},
                           start="earliest", max_batch_bytes=MAX_BATCH_BYTES,
                           limits=limits(memory_mb=64, cpu_ms=2000, max_alerts=10_000)))
    assert st["state"] == "running", st
    return admin


def expected_ends():
    return {(INPUT, p): PER_PARTITION for p in range(PARTITIONS)}


_REFERENCE: dict = {}


def reference_alerts(broker_factory, seed: int, data, injected):
    """Broker A's alerts (computed once per seed and size in this session)."""
    key = (seed, PER_PARTITION)
    if key in _REFERENCE:
        return _REFERENCE[key]
    a = broker_factory(name="vigil-A")
    ck_create_topic(a.bootstrap, INPUT, PARTITIONS)
    t0 = time.monotonic()
    produced = produce(producer(a.bootstrap, **{"batch.num.messages": 1000}), INPUT,
                       interleave(data, 0, PER_PARTITION))
    assert ends_of(produced) == expected_ends()
    admin = deploy(a)
    wait_caught_up(admin, NAME, expected_ends(), timeout=240)
    alerts = read_topic(a.bootstrap, OUTPUT, timeout=120)
    print(f"broker A: {len(alerts)} alerts, caught up in {time.monotonic() - t0:.1f}s")
    srcs = [x.source for x in alerts]
    assert not dupes(srcs), f"broker A (never killed) wrote duplicate alerts: {list(dupes(srcs).items())[:5]}"
    # Sanity: the detector found the injected outliers (not necessarily all:
    # an outlier right after another of the same key may hide).
    found = {(p, o) for (_t, p, o) in srcs}
    hit = sum(1 for x in injected if x in found)
    assert hit >= 0.9 * len(injected), f"only {hit} of {len(injected)} injected outliers alerted on"
    assert len(alerts) < 3 * len(injected) + 50, f"{len(alerts)} alerts: the detector is far noisier than expected"
    a.stop()
    _REFERENCE[key] = alerts
    return alerts


def describe_diff(want: Counter, got: Counter, limit: int = 8) -> str:
    missing = list((want - got).elements())
    extra = list((got - want).elements())

    def short(c):
        doc = json.loads(c[1])
        return (doc["source"]["partition"], doc["source"]["offset"], doc["score"])
    return (f"{len(missing)} missing (in A, not in B), e.g. {[short(c) for c in missing[:limit]]}; "
            f"{len(extra)} extra (in B, not in A), e.g. {[short(c) for c in extra[:limit]]}")


@pytest.mark.timeout(900)
@pytest.mark.parametrize("wal", ["local", "object"])
def test_alerts_exactly_once_across_kill9(broker_factory, wal):
    seed = int(os.environ.get("VIGIL_EOS_DATA_SEED", "20240611"))
    print(f"dataset seed {seed} (VIGIL_EOS_DATA_SEED), {PARTITIONS}x{PER_PARTITION} records, wal {wal}")
    data, injected = dataset(seed)
    ref = reference_alerts(broker_factory, seed, data, injected)
    want = Counter(canonical(x) for x in ref)
    assert want, "reference broker wrote no alerts"

    kill_rng = random.Random(new_seed())
    b = broker_factory(["--wal", wal], name=f"vigil-B-{wal}")
    ck_create_topic(b.bootstrap, INPUT, PARTITIONS)
    admin = deploy(b)

    # Chunks of random size; B is killed while working on each of the first
    # KILLS. Each chunk is produced while the deployment is paused, so that
    # after resume there is a backlog to be killed in the middle of.
    cuts = sorted(kill_rng.sample(range(PER_PARTITION // 10, PER_PARTITION - PER_PARTITION // 10), KILLS))
    bounds = [0, *cuts, PER_PARTITION]
    produced = []
    kills = []
    for n, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        admin.pause(NAME)
        produced += produce(producer(b.bootstrap, **{"batch.num.messages": 50}), INPUT, interleave(data, lo, hi))
        admin.resume(NAME)
        if n >= KILLS:
            continue
        # Kill once some alerts of this chunk were written and the furthest
        # partition passed a random point of the chunk (or all is done).
        target = lo + kill_rng.uniform(0.05, 0.7) * (hi - lo)
        dl = Deadline(120, f"B processing chunk {n}")
        while True:
            st = admin.status(NAME)
            parts = st["partitions"]
            assert st["state"] == "running", describe(st)
            alerted = sum(p["alerts"] for p in parts) > 0
            if (alerted and max(p["offset"] for p in parts) >= target) or min(p["offset"] for p in parts) >= hi:
                break
            dl.check(describe(st))
            time.sleep(0.003)
        b.kill9()
        in_flight = any(p["offset"] < hi for p in parts)
        uncommitted = any(p["committed_offset"] < p["offset"] for p in parts)
        kills.append((n, in_flight, uncommitted))
        print(f"kill -9 #{n + 1} (chunk {lo}..{hi}): processing in flight: {in_flight}, "
              f"progress past the checkpoint: {uncommitted}\n  {describe(st)}")
        b.start()

    assert ends_of(produced) == expected_ends()
    # The input itself is complete (and so the same as A's).
    wm = watermarks(b.bootstrap, INPUT)
    assert {p: (lo, hi) for p, (lo, hi) in wm.items()} == {p: (0, PER_PARTITION) for p in range(PARTITIONS)}, wm

    st = wait_caught_up(admin, NAME, expected_ends(), timeout=300)
    assert st["state"] == "running", describe(st)
    got_alerts = read_topic(b.bootstrap, OUTPUT, timeout=120)
    srcs = [x.source for x in got_alerts]
    d = dupes(srcs)
    if d:
        copies = {src: [(x.partition, x.offset, int(x.h(H_INPUT_END))) for x in got_alerts if x.source == src]
                  for src in list(d)[:8]}
        raise AssertionError(
            f"B wrote {len(d)} alerts more than once after kill -9 (kills (chunk, in flight, past checkpoint): "
            f"{kills}); copies as (alert partition, alert offset, vigil.input.end): {copies}")
    got = Counter(canonical(x) for x in got_alerts)
    assert got == want, f"B's alerts differ from A's after {len(kills)} kills {kills}: {describe_diff(want, got)}"
    print(f"B: {len(got_alerts)} alerts == A's after kills (chunk, in flight, past checkpoint) {kills}")
