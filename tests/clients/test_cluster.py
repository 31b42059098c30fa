"""A vigil cluster: three brokers on one object store and a real etcd.

Partitions spread over the live brokers, unmodified clients follow their
leaders, a broker killed with SIGKILL loses its partitions to the others
after the session TTL without losing an acknowledged record (the new
leaders recover the dead one's WAL objects from the store), a joining
broker takes its share, and a broker stopped with SIGTERM hands its
partitions over before it exits. Committed group offsets outlive the
broker that coordinated the group, and a broker paused past its session
acknowledges nothing for the partitions it lost.
"""

import json
import subprocess
import time
import uuid

import pytest

from cluster_helpers import PARTITIONS, TTL_MS, etcd, leaders, node, wait_leaders  # noqa: F401 (etcd: fixture)
from conftest import vigil_bin
from helpers import Deadline, ck_admin, ck_consumer, ck_create_topic, ck_producer


def produce(bootstrap: str, topic: str, start: int, n: int) -> None:
    p = ck_producer(bootstrap, **{"message.timeout.ms": 45000})
    errors = []
    for i in range(start, start + n):
        p.produce(topic, key=str(i).encode(), value=f"v{i}".encode(),
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
        p.poll(0)
    assert p.flush(60) == 0, "records still in flight after 60 s"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[0]}"


def group_on(node_id: int, nodes: list[int]) -> str:
    """A group id the cluster coordinates on `node_id` (FNV-1a over the
    sorted live nodes, as the brokers compute it)."""
    for i in range(10_000):
        g = f"g-{i}-{uuid.uuid4().hex[:6]}"
        h = 0xcbf29ce484222325
        for byte in g.encode():
            h = ((h ^ byte) * 0x100000001b3) % (1 << 64)
        if sorted(nodes)[h % len(nodes)] == node_id:
            return g
    raise AssertionError("no group id found")


def consume_all(bootstrap: str, topic: str, want: int, group: str | None = None) -> list[str]:
    c = ck_consumer(bootstrap, group or f"g-{uuid.uuid4().hex[:8]}")
    c.subscribe([topic])
    out: list[str] = []
    dl = Deadline(60, f"consuming {want} records of {topic}")
    try:
        while len(out) < want:
            dl.check(f"(got {len(out)})")
            msgs = c.consume(num_messages=500, timeout=1.0)
            for m in msgs:
                assert m.error() is None, m.error()
                out.append(m.value().decode())
            if msgs:
                c.commit(asynchronous=False)
        # Nothing beyond what was produced (no duplicates).
        for m in c.consume(num_messages=500, timeout=1.0):
            assert m.error() is None, m.error()
            out.append(m.value().decode())
    finally:
        c.close()
    return sorted(out)


def cli(*args: str) -> str:
    out = subprocess.run([str(vigil_bin()), *args], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("store_kind,coord", [("file", "etcd"), ("s3", "etcd"), ("file", "store")])
def test_partitions_spread_move_on_kill_join_and_drain(request, tmp_path, store_kind, coord):
    root = f"vigil-{uuid.uuid4().hex[:8]}"
    if coord == "etcd":
        coordinator = f"etcd://{request.getfixturevalue('etcd').endpoint}/{root}"
    else:
        coordinator = "store"
    if store_kind == "s3":
        sw = request.getfixturevalue("seaweed")
        objects = (sw.url(root), sw.env())
    else:
        (tmp_path / "objects").mkdir()
        objects = (f"file://{tmp_path / 'objects'}", {})
    b = {i: node(tmp_path, coordinator, objects, i).start() for i in (1, 2, 3)}
    topic = "orders"
    ck_create_topic(b[1].bootstrap, topic, partitions=PARTITIONS)
    # Metadata from any broker shows every live broker and balanced leaders.
    wait_leaders(b[3].bootstrap, topic, {1, 2, 3}, PARTITIONS // 3)
    md = ck_admin(b[2].bootstrap).list_topics(timeout=5)
    assert sorted(md.brokers) == [1, 2, 3], md.brokers
    assert len({ck_admin(x.bootstrap).list_topics(timeout=5).cluster_id for x in b.values()}) == 1

    all_boot = ",".join(x.bootstrap for x in b.values())
    produce(all_boot, topic, 0, 600)
    want = sorted(f"v{i}" for i in range(600))
    # A group coordinated by broker 2, which is killed next: its committed
    # offsets must outlive it.
    group = group_on(2, [1, 2, 3])
    assert consume_all(all_boot, topic, 600, group) == want

    # SIGKILL: the dead broker's partitions move after the session TTL,
    # with every record it acknowledged.
    b[2].kill9()
    t0 = time.monotonic()
    wait_leaders(b[1].bootstrap, topic, {1, 3}, PARTITIONS // 2, timeout=TTL_MS / 1000 + 30)
    moved_after = time.monotonic() - t0
    live = f"{b[1].bootstrap},{b[3].bootstrap}"
    produce(live, topic, 600, 300)
    want = sorted(f"v{i}" for i in range(900))
    assert consume_all(live, topic, 900) == want
    assert moved_after < TTL_MS / 1000 + 20, moved_after
    # The group resumes where it committed, on its new coordinator.
    assert consume_all(live, topic, 300, group) == sorted(f"v{i}" for i in range(600, 900))

    # SIGSTOP past the session TTL: broker 3's partitions move; when it
    # wakes it must not acknowledge anything for them (exactly once below).
    b[3].pause()
    wait_leaders(b[1].bootstrap, topic, {1}, PARTITIONS, timeout=TTL_MS / 1000 + 30)
    produce(b[1].bootstrap, topic, 900, 150)
    b[3].resume()
    wait_leaders(b[1].bootstrap, topic, {1, 3}, PARTITIONS // 2, timeout=30)
    produce(f"{b[1].bootstrap},{b[3].bootstrap}", topic, 1050, 150)
    want = sorted(f"v{i}" for i in range(1200))
    assert consume_all(b[3].bootstrap, topic, 1200) == want

    # A new broker joins and takes its share.
    b[4] = node(tmp_path, coordinator, objects, 4).start()
    wait_leaders(b[1].bootstrap, topic, {1, 3, 4}, PARTITIONS // 3)

    # `vigil cluster status` shows the nodes and leaders; `move` moves one.
    st = json.loads(cli("cluster", "status", "--admin", b[4].admin_url, "-o", "json"))
    assert sorted(n["node_id"] for n in st["nodes"]) == [1, 3, 4], st
    p0 = next(p for p in st["partitions"] if p["topic"] == topic and p["partition"] == 0)
    to = next(n for n in (1, 3, 4) if n != p0["leader"])
    cli("cluster", "move", topic, "0", "--to", str(to), "--admin", b[1].admin_url)
    dl = Deadline(15, f"partition 0 moving to node {to}")
    while leaders(b[4].bootstrap, topic).get(0) != to:
        dl.check(f"(leaders {leaders(b[4].bootstrap, topic)})")
        time.sleep(0.2)

    # SIGTERM: broker 1 hands its partitions over before exiting, well
    # before its session would expire.
    t0 = time.monotonic()
    b[1].stop()
    wait_leaders(b[3].bootstrap, topic, {3, 4}, PARTITIONS // 2, timeout=10)
    assert time.monotonic() - t0 < TTL_MS / 1000 + 10
    live = f"{b[3].bootstrap},{b[4].bootstrap}"
    assert consume_all(live, topic, 1200) == want
    for x in b.values():
        if x.alive():
            x.stop()
