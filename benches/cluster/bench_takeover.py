#!/usr/bin/env python3
"""Cluster takeover and planned-move times (issue 12, "Benchmark").

    target/test-venv/bin/python benches/cluster/bench_takeover.py

Starts a real etcd (Debian etcd-server) and three vigil brokers on one
local object store (`--wal object`), fills a 12-partition topic, then keeps
an idempotent acks=all producer sending one record per partition every
10 ms while it

1. asks one partition to move (`POST /v1/cluster/move`): a planned move;
2. kills the broker leading a third of the partitions with SIGKILL: a takeover.

For every partition that changed leader it takes the gap between the last
ack before the event and the first ack after it, and prints p50/p99/max, at
two fill sizes 10x apart (takeover should not grow with the data: nothing
is copied). Beside them: the produce ack p99 in steady state and during the
move, and the bytes the brokers read from the object store during each
event (`vigil_object_store_bytes_read_total` would be the ideal counter;
this reads the GET count, a proxy). Never asserts on timings.

Environment: VIGIL_BIN (target/release/vigil), VIGIL_BENCH_TTL_MS (3000),
VIGIL_BENCH_FILL (20000: records in the small fill; the large one is 10x).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[2]
VIGIL = os.environ.get("VIGIL_BIN", str(ROOT / "target/release/vigil"))
TTL_MS = int(os.environ.get("VIGIL_BENCH_TTL_MS", "3000"))
FILL = int(os.environ.get("VIGIL_BENCH_FILL", "20000"))
PARTITIONS = 12
TOPIC = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, what: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} not listening on {port} after {timeout}s")


class Node:
    """One vigil process. `etcd` None: a single broker without a
    coordinator, with `wal` (None: vigil's default WAL). `cpu`: pinned to
    that core with `taskset`; `tag`: its directory is `work/<tag><id>`."""

    def __init__(self, work: Path, node_id: int, etcd: str | None, objects: Path,
                 wal: str | None = "object", cpu: int | None = None, tag: str = "node"):
        self.id = node_id
        self.port, self.admin = free_port(), free_port()
        self.dir = work / f"{tag}{node_id}"
        self.dir.mkdir()
        self.argv = [VIGIL, "serve", "--listen", f"127.0.0.1:{self.port}",
                     "--advertised-listener", f"127.0.0.1:{self.port}",
                     "--admin-listen", f"127.0.0.1:{self.admin}",
                     "--data-dir", str(self.dir / "data"), "--object-store", f"file://{objects}"]
        if etcd is not None:
            self.argv += ["--coordinator", f"etcd://{etcd}/bench", "--node-id", str(node_id),
                          "--session-ttl-ms", str(TTL_MS)]
        if wal is not None:
            self.argv += ["--wal", wal]
        if cpu is not None:
            # taskset execs the broker: the pid stays the broker's.
            self.argv = ["taskset", "-c", str(cpu)] + self.argv
        self.log = open(self.dir / "vigil.log", "wb")
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=self.log)
        wait_port(self.port, f"vigil node {node_id}")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}{path}", timeout=10) as r:
            return r.read()

    def store_gets(self) -> float:
        total = 0.0
        for line in self.get("/metrics").decode().splitlines():
            if line.startswith("vigil_object_store_requests_total") and 'op="get"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total


def stop_nodes(nodes: list[Node]) -> None:
    """SIGTERM to every running node, then waits for each (SIGKILL after 60 s)."""
    for n in nodes:
        if n.proc.poll() is None:
            n.proc.send_signal(signal.SIGTERM)
    for n in nodes:
        try:
            n.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            n.proc.kill()
            n.proc.wait()


def leaders(node: Node) -> dict[int, int]:
    st = json.loads(node.get("/v1/cluster"))
    return {p["partition"]: p["leader"] for p in st["partitions"] if p["topic"] == TOPIC}


def wait_balanced(node: Node, nodes: set[int], timeout: float = 60) -> dict[int, int]:
    """Until every partition of the topic is led by one of `nodes` and each
    of them leads some; the leaders. A node's admin API may open just after
    its Kafka port: not answering yet counts as not spread yet."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            ls = leaders(node)
        except OSError:
            ls = {}
        if len(ls) == PARTITIONS and set(ls.values()) == nodes:
            return ls
        time.sleep(0.2)
    raise SystemExit(f"leaders not spread over {nodes}: {leaders(node)}")


class Pinger:
    """One record per partition every 10 ms; ack times per partition."""

    def __init__(self, bootstrap: str):
        self.p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                           "acks": "all", "linger.ms": 1, "message.timeout.ms": 120000,
                           "topic.metadata.refresh.interval.ms": 500})
        self.acks: dict[int, list[tuple[float, float]]] = {p: [] for p in range(PARTITIONS)}
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self) -> None:
        while not self.stop.is_set():
            for part in range(PARTITIONS):
                sent = time.monotonic()
                self.p.produce(TOPIC, b"x" * 100, partition=part,
                               on_delivery=lambda err, msg, sent=sent: err is None and self.acks[
                                   msg.partition()].append((sent, time.monotonic())))
            self.p.poll(0.01)
        self.p.flush(60)

    def close(self) -> None:
        self.stop.set()
        self.t.join(timeout=120)


def gaps(acks: dict[int, list[tuple[float, float]]], at: float, parts) -> list[float]:
    out = []
    for p in parts:
        before = [a for _, a in acks[p] if a <= at]
        after = [a for _, a in acks[p] if a > at]
        if before and after:
            out.append((min(after) - max(before)) * 1000)
    return out


def p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))] if xs else float("nan")


def run(fill: int, work: Path, etcd: str) -> dict:
    objects = work / "objects"
    objects.mkdir()
    nodes = {i: Node(work, i, etcd, objects) for i in (1, 2, 3)}
    boot = ",".join(n.bootstrap for n in nodes.values())
    admin = AdminClient({"bootstrap.servers": boot})
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(30)
    wait_balanced(nodes[1], {1, 2, 3})
    filler = Producer({"bootstrap.servers": boot, "acks": "all", "linger.ms": 20,
                       "enable.idempotence": True})
    for i in range(fill):
        while True:
            try:
                filler.produce(TOPIC, b"y" * 1000, partition=i % PARTITIONS)
                break
            except BufferError:
                filler.poll(0.05)
        if i % 1000 == 0:
            filler.poll(0)
    filler.flush(120)
    ping = Pinger(boot)
    time.sleep(3)
    steady_end = time.monotonic()
    steady = [a - s for p in range(PARTITIONS) for s, a in ping.acks[p]]

    # Planned move of partition 0.
    ls = leaders(nodes[1])
    to = next(n for n in (1, 2, 3) if n != ls[0])
    gets0 = sum(n.store_gets() for n in nodes.values())
    req = urllib.request.Request(f"http://127.0.0.1:{nodes[1].admin}/v1/cluster/move",
                                 data=json.dumps({"topic": TOPIC, "partition": 0, "to": to}).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    moved_at = time.monotonic()
    urllib.request.urlopen(req, timeout=10).read()
    while leaders(nodes[1]).get(0) != to:
        time.sleep(0.05)
    time.sleep(2)
    move_gets = sum(n.store_gets() for n in nodes.values()) - gets0
    during_move = [a - s for s, a in ping.acks[0] if moved_at - 1 <= s <= time.monotonic()]
    move_gap = gaps(ping.acks, moved_at, [0])

    # Takeover: kill the leader of the most partitions.
    ls = leaders(nodes[1])
    victim = max((1, 2, 3), key=lambda n: list(ls.values()).count(n))
    lost = [p for p, n in ls.items() if n == victim]
    alive = [n for i, n in nodes.items() if i != victim]
    gets0 = sum(n.store_gets() for n in alive)
    killed_at = time.monotonic()
    nodes[victim].proc.send_signal(signal.SIGKILL)
    nodes[victim].proc.wait()
    end = time.monotonic() + TTL_MS / 1000 + 60
    while time.monotonic() < end:
        if all(any(a > killed_at for _, a in ping.acks[p]) for p in lost):
            break
        time.sleep(0.1)
    time.sleep(1)
    takeover_gets = sum(n.store_gets() for n in alive) - gets0
    take = gaps(ping.acks, killed_at, lost)
    ping.close()
    stop_nodes(list(nodes.values()))
    return {
        "fill": fill, "steady_p99": p99(steady) * 1000, "move_gap": move_gap,
        "move_p99": p99(during_move) * 1000, "move_gets": move_gets,
        "takeover": take, "takeover_gets": takeover_gets, "lost": len(lost),
        "_steady_end": steady_end,
    }


def start_etcd(work: Path) -> tuple[subprocess.Popen, str]:
    """A single-member etcd on free loopback ports: (process, host:port)."""
    cport, pport = free_port(), free_port()
    etcd = subprocess.Popen(
        ["etcd", "--name", "b", "--data-dir", str(work / "etcd"),
         "--listen-client-urls", f"http://127.0.0.1:{cport}",
         "--advertise-client-urls", f"http://127.0.0.1:{cport}",
         "--listen-peer-urls", f"http://127.0.0.1:{pport}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
         "--initial-cluster", f"b=http://127.0.0.1:{pport}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(cport, "etcd")
    except BaseException:
        etcd.kill()
        raise
    return etcd, f"127.0.0.1:{cport}"


def main() -> None:
    if shutil.which("etcd") is None:
        raise SystemExit("etcd not found: scripts/install-test-deps.sh installs Debian etcd-server")
    rows = []
    for fill in (FILL, FILL * 10):
        with tempfile.TemporaryDirectory(prefix="vigil-bench-takeover-") as d:
            work = Path(d)
            etcd, endpoint = start_etcd(work)
            try:
                rows.append(run(fill, work, endpoint))
            finally:
                etcd.kill()
                etcd.wait()
    print(f"\nCluster takeover and move (3 brokers, etcd, --wal object, session TTL {TTL_MS} ms, "
          f"{PARTITIONS} partitions, 1 KB fill records)\n")
    print(f"{'fill records':>12} | {'takeover gap p50/p99/max ms (n)':>34} | {'÷ TTL (p99)':>11} | "
          f"{'move gap ms':>11} | {'ack p99 steady / during move ms':>32} | {'store GETs move / takeover':>27}")
    for r in rows:
        t = r["takeover"]
        tk = (f"{statistics.median(t):.0f} / {p99(t):.0f} / {max(t):.0f} ({len(t)})" if t else "-")
        mg = f"{r['move_gap'][0]:.0f}" if r["move_gap"] else "-"
        print(f"{r['fill']:>12} | {tk:>34} | {p99(t) / TTL_MS if t else float('nan'):>11.2f} | {mg:>11} | "
              f"{r['steady_p99']:>14.1f} / {r['move_p99']:<15.1f} | "
              f"{r['move_gets']:>12.0f} / {r['takeover_gets']:<12.0f}")
    print("\nTargets (issue 12): takeover <= 2x the session timeout and flat in data size; "
          "planned-move p99 <= 2x steady state; ~0 bytes copied (GETs: manifests and WAL objects only).")


if __name__ == "__main__":
    sys.exit(main())
