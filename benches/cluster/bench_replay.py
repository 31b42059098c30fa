#!/usr/bin/env python3
"""Replay throughput as brokers are added (issue 16, must-have 6).

    target/test-venv/bin/python benches/cluster/bench_replay.py

A replay job's partitions run on their leaders (docs/design/0018), so a
replay should go about N times as fast on N brokers given a core each.
This bench shows whether it does, on one etcd and one local object store:

1. **Fill**: two brokers (`--wal object`) take VIGIL_BENCH_RECORDS (4 M)
   JSON card payments (the replay bench's records: amount 85..115, 1 % of
   them outliers of 1000..1100, 1000 cards as keys) into a 12-partition
   topic; the bench waits until nothing is left to upload, then stops them.
2. **Runs**, each on brokers started fresh (empty data dirs, so block caches
   are cold and every byte comes from the object store), pinned with
   `taskset` to the cores in the setup: the zscore module (built by
   `scripts/build-detectors.sh`) replays the whole topic, earliest to
   latest, with the broker's default budget. Wall time is POST → the
   completed status seen (polled every 50 ms). Setups:
   - 1 broker on core 0;
   - 2 brokers, on cores 0 and 1: scaling with brokers;
   - 2 brokers, both on core 0: the same cores as the first row, so what a
     second broker costs (coordination, two half-empty caches) and not
     what a second core buys.
   Each setup runs VIGIL_BENCH_ROUNDS (2) times, alternating setups.

Besides rows/s it prints the brokers' CPU seconds per million rows (from
/proc), which the machine's noise moves less than wall time. Clients, etcd
and the poller share the machine with the brokers; this box has 2 cores, so
three brokers with a core each cannot be measured here. Never asserts.

Environment: VIGIL_BIN (target/release/vigil), VIGIL_WASM_DIR
(target/wasm/wasm32-unknown-unknown/release), VIGIL_BENCH_RECORDS,
VIGIL_BENCH_ROUNDS, VIGIL_BENCH_TTL_MS (3000).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_takeover import PARTITIONS, ROOT, Node, start_etcd, stop_nodes, wait_balanced  # noqa: E402

TOPIC = "bench"
RECORDS = int(os.environ.get("VIGIL_BENCH_RECORDS", "4000000"))
ROUNDS = int(os.environ.get("VIGIL_BENCH_ROUNDS", "2"))
WASM = Path(os.environ.get("VIGIL_WASM_DIR", str(ROOT / "target/wasm/wasm32-unknown-unknown/release")))
MODULE = WASM / "vigil_plugin_zscore.wasm"
CONFIG = {"field": "amount", "window": 100, "threshold": 3.0, "min_samples": 20}
KEYS = 1000
OUTLIER_PCT = 1.0
TICKS = os.sysconf("SC_CLK_TCK")
# A replay of the default fill takes seconds to a minute; this is a hang.
RUN_LIMIT_S = 900


def cpu_seconds(node: Node) -> float:
    """User + system CPU of the broker process (taskset execs it: same pid)."""
    fields = Path(f"/proc/{node.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def metric(node: Node, name: str) -> float:
    total = 0.0
    for line in node.get("/metrics").decode().splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total = max(total, float(line.rsplit(" ", 1)[1]))
    return total


def api(node: Node, method: str, path: str, body: bytes | None = None, ctype: str = "application/json"):
    req = urllib.request.Request(f"http://127.0.0.1:{node.admin}{path}", data=body, method=method,
                                 headers={"content-type": ctype} if body is not None else {})
    with urllib.request.urlopen(req, timeout=180) as r:
        return json.loads(r.read())


def fill(work: Path, etcd: str, objects: Path) -> tuple[float, str]:
    """Fills the topic; (records/s produced, the zscore module's hash)."""
    nodes = [Node(work, i, etcd, objects, tag="fill") for i in (1, 2)]
    try:
        boot = ",".join(n.bootstrap for n in nodes)
        admin = AdminClient({"bootstrap.servers": boot})
        admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(30)
        wait_balanced(nodes[0], {1, 2})
        p = Producer({"bootstrap.servers": boot, "acks": "all", "linger.ms": 5,
                      "batch.num.messages": 10000, "batch.size": 1000000,
                      "queue.buffering.max.messages": 500000, "message.timeout.ms": 300000})
        errors: list = []
        rng = random.Random(7)
        t0 = time.monotonic()
        for i in range(RECORDS):
            key = f"card-{rng.randrange(KEYS):05}"
            out = rng.random() * 100 < OUTLIER_PCT
            amount = 1000 + 100 * rng.random() if out else 85 + 30 * rng.random()
            value = f'{{"card":"{key}","amount":{amount:.2f},"merchant":"m-{rng.randrange(500)}"}}'
            while True:
                try:
                    p.produce(TOPIC, value.encode(), key.encode(),
                              on_delivery=lambda err, _m: err is not None and errors.append(err))
                    break
                except BufferError:
                    p.poll(0.01)
            if i % 10000 == 0:
                p.poll(0)
        left = p.flush(300)
        took = time.monotonic() - t0
        if errors or left:
            raise SystemExit(f"fill: {len(errors)} errors ({errors[:3]}), {left} unflushed")
        end = time.monotonic() + 120
        while any(metric(n, "vigil_storage_upload_lag_seconds") > 0 for n in nodes):
            if time.monotonic() > end:
                raise SystemExit("fill: data still waiting for upload after 120 s")
            time.sleep(0.1)
        # The module is stored in the object store: every later broker has it.
        meta = api(nodes[0], "POST", "/v1/modules", MODULE.read_bytes(), "application/wasm")
        return RECORDS / took, meta["hash"]
    finally:
        stop_nodes(nodes)


def run(work: Path, etcd: str, objects: Path, module: str, label: str, cpus: list[int], n: int) -> dict:
    """One replay of the whole topic on fresh brokers pinned to `cpus`."""
    tag = f"run{n}-"
    nodes = [Node(work, i + 1, etcd, objects, cpu=c, tag=tag) for i, c in enumerate(cpus)]
    try:
        led = wait_balanced(nodes[0], {x.id for x in nodes})
        split = "/".join(str(sum(1 for v in led.values() if v == x.id)) for x in nodes)
        before = [cpu_seconds(x) for x in nodes]
        body = json.dumps({"id": f"bench-{n}", "module": module, "topic": TOPIC, "config": CONFIG,
                           "value_schema": {"amount": "float64"}, "from": "earliest"}).encode()
        t0 = time.monotonic()
        st = api(nodes[0], "POST", "/v1/replays", body)
        while st["state"] in ("running", "paused"):
            if time.monotonic() - t0 > RUN_LIMIT_S:
                raise SystemExit(f"{label}: replay still {st['state']} after {RUN_LIMIT_S} s: {st}")
            time.sleep(0.05)
            st = api(nodes[0], "GET", f"/v1/replays/bench-{n}")
        wall = time.monotonic() - t0
        if st["state"] != "completed" or st["records_done"] != RECORDS:
            raise SystemExit(f"{label}: replay ended {st['state']} with {st['records_done']} of "
                             f"{RECORDS} records: {st}")
        cpu = sum(cpu_seconds(x) - b for x, b in zip(nodes, before))
        return {"label": label, "brokers": len(cpus), "cores": len(set(cpus)), "wall": wall,
                "rps": RECORDS / wall, "cpu_per_m": cpu / (RECORDS / 1e6), "alerts": st["alerts"], "split": split}
    finally:
        stop_nodes(nodes)


SETUPS = [
    ("1 broker, core 0", [0]),
    ("2 brokers, cores 0 and 1", [0, 1]),
    ("2 brokers, both on core 0", [0, 0]),
]


def main() -> None:
    for tool in ("etcd", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: scripts/install-test-deps.sh installs it")
    if not MODULE.exists():
        raise SystemExit(f"{MODULE} not found: run scripts/build-detectors.sh")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("this bench pins brokers to cores 0 and 1: it needs 2 cores")
    with tempfile.TemporaryDirectory(prefix="vigil-bench-replay-cluster-") as d:
        work = Path(d)
        objects = work / "objects"
        objects.mkdir()
        etcd, endpoint = start_etcd(work)
        try:
            filled, module = fill(work, endpoint, objects)
            print(f"fill: {RECORDS} records at {filled:.0f} records/s (2 brokers)", flush=True)
            rows: dict[str, list[dict]] = {label: [] for label, _ in SETUPS}
            n = 0
            for r in range(ROUNDS):
                for label, cpus in SETUPS:
                    n += 1
                    row = run(work, endpoint, objects, module, label, cpus, n)
                    rows[label].append(row)
                    print(f"round {r + 1}: {label}: {row['wall']:.1f} s, {row['rps']:.0f} rows/s, "
                          f"{row['cpu_per_m']:.2f} CPU s per M rows, partitions {row['split']}", flush=True)
        finally:
            etcd.kill()
            etcd.wait()
    base = statistics.median(x["rps"] for x in rows[SETUPS[0][0]])
    print(f"\nReplay of {RECORDS} records (zscore, {PARTITIONS} partitions, cold caches, file:// store, "
          f"etcd), median of {ROUNDS} rounds; {os.cpu_count()} cores, shared with etcd and the poller\n")
    print(f"{'setup':<28} | {'brokers':>7} | {'cores':>5} | {'rows/s (each round)':>24} | "
          f"{'median':>9} | {'x 1 broker':>10} | {'CPU s / M rows':>14}")
    for label, _ in SETUPS:
        rs = rows[label]
        med = statistics.median(x["rps"] for x in rs)
        each = ", ".join(f"{x['rps']:.0f}" for x in rs)
        cpu = statistics.median(x["cpu_per_m"] for x in rs)
        print(f"{label:<28} | {rs[0]['brokers']:>7} | {rs[0]['cores']:>5} | {each:>24} | {med:>9.0f} | "
              f"{med / base:>9.2f}x | {cpu:>14.2f}")


if __name__ == "__main__":
    sys.exit(main())
