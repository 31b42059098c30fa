"""Detectors follow partitions in a cluster, with exactly-once alerts.

A zscore deployment over a 6-partition topic is created through one
broker's admin API of a 3-broker cluster (etcd, SeaweedFS). Each
input partition's runner runs on that partition's leader, next to the alert
partition it writes to (placement keeps the two together). While the input
arrives in chunks, one broker is killed with SIGKILL, another is paused past
its session and woken, and a fourth joins: runners stop where partitions
leave and resume from their checkpoints where they arrive. The alert topic
must then hold exactly the alerts of one undisturbed single broker fed the
same input: no duplicate, nothing missing. Every broker's admin API lists
the deployment with every partition's progress.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter

import pytest

from detectors import admin_of, describe, dupes, limits, produce, producer, read_topic, spec, wait_caught_up
from helpers import Deadline, ck_create_topic
from cluster_helpers import TTL_MS, etcd, leaders, node  # noqa: F401  (etcd is a fixture)
from test_detectors_eos import CONFIG, ZSCORE, canonical

PARTITIONS = 6
PER_PARTITION = 2500
NAME = "cluster-zscore"
INPUT = "readings"
OUTPUT = "readings-alerts"
BASE_TS = int(time.time() * 1000) - 3_600_000


def dataset(seed: int) -> dict[int, list[dict]]:
    rng = random.Random(seed)
    data = {}
    for p in range(PARTITIONS):
        recs = []
        for i in range(PER_PARTITION):
            j = rng.randrange(8)
            v = rng.gauss(100.0 + 7 * j + 40 * p, 3.0)
            if i > 300 and rng.random() < 0.004:
                v += rng.choice([-1, 1]) * rng.uniform(50, 90)
            recs.append({"key": f"card-{p}-{j}", "value": json.dumps({"amount": round(v, 6), "seq": i}),
                         "partition": p, "timestamp": BASE_TS + i * 10 + p})
        data[p] = recs
    return data


def chunk(data, lo: int, hi: int) -> list[dict]:
    return [data[p][i] for i in range(lo, hi) for p in range(PARTITIONS)]


def deploy(broker) -> str:
    admin = admin_of(broker)
    module = admin.upload_module(ZSCORE)
    st = admin.deploy(spec(NAME, module, INPUT, OUTPUT, CONFIG, value_schema={"amount": "float64"},
                           start="earliest", max_batch_bytes=4096,
                           limits=limits(memory_mb=64, cpu_ms=2000, max_alerts=10_000)))
    assert st["state"] == "running", st
    return module


ENDS = {(INPUT, p): PER_PARTITION for p in range(PARTITIONS)}


def alert_leaders_follow_inputs(bootstrap: str) -> bool:
    ins, outs = leaders(bootstrap, INPUT), leaders(bootstrap, OUTPUT)
    return len(ins) == PARTITIONS and all(outs.get(p) == n for p, n in ins.items())


@pytest.mark.timeout(420)
def test_detectors_follow_partitions_with_exactly_once_alerts(tmp_path, etcd, seaweed, broker_factory):
    data = dataset(20261205)

    # The reference: one undisturbed broker.
    a = broker_factory(name="vigil-ref")
    ck_create_topic(a.bootstrap, INPUT, PARTITIONS)
    produce(producer(a.bootstrap, **{"batch.num.messages": 500}), INPUT, chunk(data, 0, PER_PARTITION))
    deploy(a)
    wait_caught_up(admin_of(a), NAME, ENDS, timeout=180)
    ref = read_topic(a.bootstrap, OUTPUT, timeout=60)
    a.stop()
    want = Counter(canonical(x) for x in ref)
    assert want and not dupes([x.source for x in ref])

    root = f"vigil-{uuid.uuid4().hex[:8]}"
    coordinator = f"etcd://{etcd.endpoint}/{root}"
    objects = (seaweed.url(root), seaweed.env())
    b = {i: node(tmp_path, coordinator, objects, i).start() for i in (1, 2, 3)}
    ck_create_topic(b[1].bootstrap, INPUT, PARTITIONS)
    module = deploy(b[1])
    # Any broker's admin API shows the deployment created on broker 1.
    for i in (2, 3):
        dl = Deadline(15, f"broker {i} listing {NAME}")
        while not any(d["name"] == NAME for d in admin_of(b[i]).list()):
            dl.check()
            time.sleep(0.2)
    dl = Deadline(30, "alert partitions placed with their input partitions")
    while not alert_leaders_follow_inputs(b[1].bootstrap):
        dl.check()
        time.sleep(0.2)

    bounds = [0, 600, 1200, 1800, PER_PARTITION]
    live = f"{b[1].bootstrap},{b[3].bootstrap}"
    for n, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        target = live if n > 0 else b[1].bootstrap
        produce(producer(target, **{"batch.num.messages": 100, "message.timeout.ms": 60000}),
                INPUT, chunk(data, lo, hi))
        if n == 0:
            # Broker 2 dies while its runners are working.
            b[2].kill9()
        elif n == 1:
            # Broker 3 sleeps past its session; its partitions (and their
            # runners) move; when it wakes it must not write alerts for them.
            b[3].pause()
            dl = Deadline(TTL_MS / 1000 + 30, "broker 3's partitions moving away while it sleeps")
            while 3 in leaders(b[1].bootstrap, INPUT).values():
                dl.check()
                time.sleep(0.2)
            b[3].resume()
        elif n == 2:
            b[4] = node(tmp_path, coordinator, objects, 4).start()
            live = f"{b[1].bootstrap},{b[3].bootstrap},{b[4].bootstrap}"

    for i in (1, 3, 4):
        st = wait_caught_up(admin_of(b[i]), NAME, ENDS, timeout=180)
        assert st["state"] == "running", describe(st)
    dl = Deadline(30, "alert partitions placed with their input partitions after the faults")
    while not alert_leaders_follow_inputs(b[1].bootstrap):
        dl.check()
        time.sleep(0.2)
    got_alerts = read_topic(live, OUTPUT, timeout=120)
    d = dupes([x.source for x in got_alerts])
    assert not d, f"{len(d)} alerts written more than once: {list(d.items())[:5]}"
    got = Counter(canonical(x) for x in got_alerts)
    missing, extra = want - got, got - want
    assert got == want, f"{sum(missing.values())} missing, {sum(extra.values())} extra (e.g. {list(missing)[:2]} / {list(extra)[:2]})"

    # A replay created through broker 4 runs each partition on its leader
    # (spread over the three live brokers) and completes when all did.
    admin4 = admin_of(b[4])
    st = admin4.expect(201, "POST", "/v1/replays", json_body={
        "module": module, "topic": INPUT, "config": CONFIG, "value_schema": {"amount": "float64"},
        "from": "earliest", "max_batch_bytes": 4096})
    rid = st["id"]
    dl = Deadline(120, f"replay {rid} completing")
    while (st := admin4.expect(200, "GET", f"/v1/replays/{rid}"))["state"] != "completed":
        assert st["state"] != "failed", st
        dl.check(f"(last: {st})")
        time.sleep(0.2)
    # Each partition counts once, also on a broker whose own runners of
    # the replay stopped when they completed. Another broker's view of the
    # cluster's checkpoints is one listing (a second) behind at most, so
    # each broker gets a few of them to show every partition; a partition
    # listed twice, or one that never shows, fails.
    for i in (1, 3, 4):
        dl = Deadline(15, f"broker {i} listing each partition of replay {rid} once")
        while True:
            st_i = admin_of(b[i]).expect(200, "GET", f"/v1/replays/{rid}")
            listed = sorted(p["partition"] for p in st_i["partitions"])
            assert len(listed) == len(set(listed)), f"broker {i} lists a partition twice: {listed}"
            if listed == list(range(PARTITIONS)):
                break
            dl.check(f"(lists {listed})")
            time.sleep(0.2)
        assert st_i["records_total"] == PARTITIONS * PER_PARTITION, st_i
    replayed = read_topic(live, st["output"], timeout=60)
    assert sorted(x.source for x in replayed) == sorted(x.source for x in ref)
    for i in (1, 3, 4):
        b[i].stop()
