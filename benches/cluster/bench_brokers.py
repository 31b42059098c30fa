#!/usr/bin/env python3
"""Produce throughput and ack latency: 1 vs 3 brokers (issue 12, "Benchmark").

    target/test-venv/bin/python benches/cluster/bench_brokers.py

One table, four setups on this machine, each on a fresh local object store:

- 1 broker, no coordinator, vigil's default WAL (today's single broker);
- 1 broker, no coordinator, `--wal object` (what a cluster node runs);
- 1 broker in a cluster (etcd, `--wal object`);
- 3 brokers in a cluster (etcd, `--wal object`), partitions spread.

For each: a 12-partition topic; an idempotent acks=all confluent-kafka
producer sends VIGIL_BENCH_RECORDS (40000) records of 1 KB as fast as it
can (throughput: records/s and MB/s, first send to last ack); then a
paced phase, VIGIL_BENCH_RATE (2000) records/s for VIGIL_BENCH_PACED_S
(5) seconds, gives the ack latency p50/p99 (send to delivery report) at a
load every setup sustains. Clients and brokers share this machine's cores,
so the 3-broker figure measures coordination overhead more than scaling.
Never asserts.

Environment: VIGIL_BIN (target/release/vigil), VIGIL_BENCH_TTL_MS (3000).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_takeover import PARTITIONS, Node, p99, start_etcd, stop_nodes, wait_balanced  # noqa: E402

TOPIC = "bench"
RECORDS = int(os.environ.get("VIGIL_BENCH_RECORDS", "40000"))
RATE = int(os.environ.get("VIGIL_BENCH_RATE", "2000"))
PACED_S = float(os.environ.get("VIGIL_BENCH_PACED_S", "5"))
VALUE = b"v" * 1000


def producer(boot: str) -> Producer:
    return Producer({"bootstrap.servers": boot, "enable.idempotence": True, "acks": "all",
                     "linger.ms": 5, "message.timeout.ms": 120000})


def throughput(boot: str) -> tuple[float, float]:
    p = producer(boot)
    errors: list = []
    acked = [0]

    def done(err, _msg):
        if err is not None:
            errors.append(err)
        else:
            acked[0] += 1

    t0 = time.monotonic()
    for i in range(RECORDS):
        while True:
            try:
                p.produce(TOPIC, VALUE, partition=i % PARTITIONS, on_delivery=done)
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    left = p.flush(120)
    took = time.monotonic() - t0
    if errors or left or acked[0] != RECORDS:
        raise SystemExit(f"throughput phase: {len(errors)} errors ({errors[:3]}), {left} unflushed")
    return RECORDS / took, RECORDS * len(VALUE) / took / 1e6


def latency(boot: str) -> tuple[float, float]:
    p = producer(boot)
    lat: list[float] = []
    errors: list = []
    n = int(RATE * PACED_S)
    t0 = time.monotonic()
    for i in range(n):
        due = t0 + i / RATE
        now = time.monotonic()
        if due > now:
            p.poll(due - now)
        sent = time.monotonic()
        p.produce(TOPIC, VALUE, partition=i % PARTITIONS,
                  on_delivery=lambda err, _m, s=sent: errors.append(err) if err else lat.append(
                      time.monotonic() - s))
        p.poll(0)
    p.flush(120)
    if errors:
        raise SystemExit(f"paced phase: {len(errors)} errors ({errors[:3]})")
    lat.sort()
    return lat[len(lat) // 2] * 1000, p99(lat) * 1000


def run(label: str, brokers: int, coordinated: bool, wal: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="vigil-bench-brokers-") as d:
        work = Path(d)
        objects = work / "objects"
        objects.mkdir()
        etcd, endpoint = start_etcd(work) if coordinated else (None, None)
        nodes: list[Node] = []
        try:
            nodes = [Node(work, i, endpoint, objects, wal=wal) for i in range(1, brokers + 1)]
            boot = ",".join(n.bootstrap for n in nodes)
            # Kept in a variable: a collected client fails its futures.
            admin = AdminClient({"bootstrap.servers": boot})
            admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(30)
            if coordinated:
                wait_balanced(nodes[0], {n.id for n in nodes})
            else:
                time.sleep(1)  # no cluster view to wait on; the topic is created synchronously
            rps, mbps = throughput(boot)
            p50, p99_ms = latency(boot)
            return {"label": label, "rps": rps, "mbps": mbps, "p50": p50, "p99": p99_ms}
        finally:
            stop_nodes(nodes)
            if etcd is not None:
                etcd.kill()
                etcd.wait()


def main() -> None:
    if shutil.which("etcd") is None:
        raise SystemExit("etcd not found: scripts/install-test-deps.sh installs Debian etcd-server")
    rows = [
        run("1 broker, no coordinator, default WAL", 1, False, None),
        run("1 broker, no coordinator, --wal object", 1, False, "object"),
        run("1 broker + etcd, --wal object", 1, True, "object"),
        run("3 brokers + etcd, --wal object", 3, True, "object"),
    ]
    print(f"\nProduce throughput and ack latency ({PARTITIONS} partitions, 1 KB records, idempotent "
          f"acks=all; {RECORDS} records flat out, then {RATE}/s for {PACED_S:.0f} s; {os.cpu_count()} cores "
          f"shared by clients and brokers)\n")
    print(f"{'setup':<40} | {'records/s':>9} | {'MB/s':>6} | {'ack p50 ms':>10} | {'ack p99 ms':>10}")
    for r in rows:
        print(f"{r['label']:<40} | {r['rps']:>9.0f} | {r['mbps']:>6.1f} | {r['p50']:>10.1f} | {r['p99']:>10.1f}")


if __name__ == "__main__":
    sys.exit(main())
