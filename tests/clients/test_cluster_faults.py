"""Cluster fault drills with clients producing and consuming throughout
(issue 12, must-have 6 (a), (c), (d)).

Three brokers, a real etcd and SeaweedFS on loopback, a 12-partition
topic. confluent-kafka (idempotent, acks=all, in this process) and kafkajs
(idempotent, acks=-1, tests/clients/js/kafkajs_stream.js) produce one
record per partition every few ms, and a confluent-kafka consumer group
reads along, while

(a) one broker is killed -9, another SIGSTOPped past the session TTL and
    resumed, and a fourth joins, all in one window;
(c) a broker is drained with SIGTERM;
(d) etcd is killed and restarted on the same data dir and port, briefly
    and for longer than the session TTL.

Afterwards the whole log is read back and compared with the acks: every
acknowledged record sits exactly at the (partition, offset) it was acked
at (an ack from a fenced broker for a write the new leader does not have
would show as a missing or different record), no record is in the log
twice, each producer's records are in order in every partition, and the
group read every acknowledged record.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from cluster_helpers import PARTITIONS, TTL_MS, etcd, leaders, node, wait_leaders  # noqa: F401 (etcd: fixture)
from conftest import HERE, Broker
from helpers import Deadline, ck_consumer, ck_create_topic

TOPIC = "faults"
# One record per partition per producer every INTERVAL_S: ~1000 records/s
# together, enough to have writes in flight at every fault.
INTERVAL_S = 0.02
# Bound on "every partition acks again" after a fault settles.
RECOVERY_S = TTL_MS / 1000 + 25


class CkProducer:
    """confluent-kafka, idempotent, acks=all: one record per partition per
    round, value `ck-<seq>` to partition seq % PARTITIONS."""

    def __init__(self, bootstrap: str):
        self.errors: list[KafkaError] = []  # error_cb: client-level errors
        self.failed: list[tuple[int, KafkaError]] = []  # delivery reports with an error
        self.acks: dict[int, tuple[int, int, float]] = {}  # seq -> (partition, offset, wall time)
        self.p = Producer({
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 120000,
            "socket.timeout.ms": 5000,
            "topic.metadata.refresh.interval.ms": 1000,
            "error_cb": self.errors.append,
        })
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def on_delivery(self, seq: int, err, msg) -> None:
        if err is not None:
            self.failed.append((seq, err))
        else:
            self.acks[seq] = (msg.partition(), msg.offset(), time.time())

    def run(self) -> None:
        seq = 0
        while not self.stop.is_set():
            for part in range(PARTITIONS):
                v = f"ck-{seq}".encode()
                while True:
                    try:
                        self.p.produce(TOPIC, key=v, value=v, partition=part,
                                       on_delivery=lambda err, msg, s=seq: self.on_delivery(s, err, msg))
                        break
                    except BufferError:  # queue full while a leader is away
                        self.p.poll(0.05)
                seq += 1
            self.p.poll(INTERVAL_S)

    def close(self) -> None:
        self.stop.set()
        self.t.join(timeout=10)
        left = self.p.flush(120)
        assert left == 0, f"confluent-kafka: {left} records neither acked nor failed after 120 s"


class JsProducer:
    """tests/clients/js/kafkajs_stream.js in a node process."""

    def __init__(self, bootstrap: str, work: Path, node_bin: str):
        self.out = work / "kafkajs-stream.jsonl"
        self.stop_file = work / "kafkajs-stream.stop"
        cfg = work / "kafkajs-stream.json"
        cfg.write_text(json.dumps({
            "brokers": bootstrap.split(","), "topic": TOPIC, "partitions": PARTITIONS,
            "prefix": "js", "intervalMs": int(INTERVAL_S * 1000), "stopFile": str(self.stop_file),
            "maxSeconds": 170,
        }))
        self.stderr = open(work / "kafkajs-stream.stderr.log", "wb")
        self.proc = subprocess.Popen([node_bin, str(HERE / "js" / "kafkajs_stream.js"), str(cfg), str(self.out)],
                                     stdin=subprocess.DEVNULL, stdout=self.stderr, stderr=self.stderr)

    def events(self) -> list[dict]:
        try:
            text = self.out.read_text()
        except FileNotFoundError:
            return []
        # The last line may be half written.
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]

    @property
    def acks(self) -> dict[int, tuple[int, int, float]]:
        return {e["ack"][0]: (e["ack"][1], e["ack"][2], e["t"]) for e in self.events() if "ack" in e}

    def close(self) -> None:
        self.stop_file.write_text("stop")
        try:
            rc = self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"kafkajs producer still running 90 s after the stop file\n{self.tail()}")
        finally:
            self.stderr.close()
        assert rc == 0, f"kafkajs producer exited with {rc}\n{self.tail()}"
        assert any(e.get("done") for e in self.events()), f"kafkajs producer did not finish\n{self.tail()}"

    def tail(self) -> str:
        return Path(self.stderr.name).read_text(errors="replace")[-6000:]


class GroupReader:
    """A confluent-kafka consumer group member reading along, committing
    synchronously after each batch. Records what it read by (partition, offset)."""

    def __init__(self, bootstrap: str):
        self.seen: dict[tuple[int, int], str] = {}
        self.errors: list[KafkaError] = []
        self.c = ck_consumer(bootstrap, f"faults-{uuid.uuid4().hex[:8]}",
                             **{"topic.metadata.refresh.interval.ms": 1000,
                                "error_cb": self.errors.append})
        self.c.subscribe([TOPIC])
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                msgs = self.c.consume(num_messages=500, timeout=0.5)
                for m in msgs:
                    if m.error():
                        self.errors.append(m.error())
                        continue
                    self.seen[(m.partition(), m.offset())] = m.value().decode()
                if msgs:
                    try:
                        self.c.commit(asynchronous=False)
                    except KafkaException as e:  # a coordinator moving: the next commit covers it
                        self.errors.append(e.args[0])
        finally:
            self.c.close()

    def wait_for(self, want: dict[tuple[int, int], str], timeout: float = 60) -> None:
        dl = Deadline(timeout, "the group reading every acknowledged record")
        while True:
            missing = [k for k in want if k not in self.seen]
            if not missing:
                break
            dl.check(f"({len(missing)} of {len(want)} missing, e.g. {sorted(missing)[:5]}; "
                     f"errors {self.errors[-5:]})")
            time.sleep(0.2)
        self.stop.set()
        self.t.join(timeout=30)


class Workload:
    """Both producers and the group reader, started together."""

    def __init__(self, bootstrap: str, work: Path, node_bin: str):
        self.ck = CkProducer(bootstrap)
        self.js = JsProducer(bootstrap, work, node_bin)
        self.group = GroupReader(bootstrap)
        self.bootstrap = bootstrap

    def acked_since(self, t: float) -> dict[str, set[int]]:
        """Partitions each producer has had an ack for at or after wall time t."""
        out = {"ck": set(), "js": set()}
        for name, acks in (("ck", dict(self.ck.acks)), ("js", self.js.acks)):
            out[name] = {p for p, _, at in acks.values() if at >= t}
        return out

    def wait_progress(self, what: str, timeout: float = RECOVERY_S) -> float:
        """Until both producers have an ack on every partition sent after now;
        returns the seconds it took."""
        t0 = time.time()
        dl = Deadline(timeout, f"both producers acking on every partition again ({what})")
        while True:
            if self.js.proc.poll() is not None:
                raise AssertionError(f"kafkajs producer exited early\n{self.js.tail()}")
            got = self.acked_since(t0)
            if all(len(ps) == PARTITIONS for ps in got.values()):
                return time.time() - t0
            dl.check(f"(missing ck {sorted(set(range(PARTITIONS)) - got['ck'])}, "
                     f"js {sorted(set(range(PARTITIONS)) - got['js'])})")
            time.sleep(0.1)

    def finish(self) -> dict[str, dict[int, tuple[int, int, float]]]:
        """Stops both producers (every sent record acked or failed) and
        returns the acks per producer prefix."""
        self.js.close()
        self.ck.close()
        return {"ck": dict(self.ck.acks), "js": self.js.acks}


def read_log(bootstrap: str) -> dict[int, list[tuple[int, str]]]:
    """Every record of the topic, per partition, in offset order."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "enable.partition.eof": True})
    try:
        ends = {}
        for p in range(PARTITIONS):
            _, hi = c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)
            ends[p] = hi
        c.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS) if ends[p] > 0])
        log: dict[int, list[tuple[int, str]]] = {p: [] for p in range(PARTITIONS)}
        dl = Deadline(60, "reading the whole log back")
        while any((log[p][-1][0] + 1 if log[p] else 0) < ends[p] for p in range(PARTITIONS)):
            dl.check(f"(ends {ends}, read {({p: len(v) for p, v in log.items()})})")
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"reading back: {m.error()}")
                log[m.partition()].append((m.offset(), m.value().decode()))
        return log
    finally:
        c.close()


def misplaced(prefix: str, by_seq: dict[int, tuple[int, int | None, float]],
              at: dict[tuple[int, int], str], where: dict[str, tuple[int, int]]) -> list[tuple]:
    """Acknowledged records not where their acknowledgement puts them:
    (seq, partition, offset, what is there / where it is).

    librdkafka acknowledges without an offset (None) when a later batch
    succeeded after an earlier one failed with its persistence unknown (a
    broker killed before answering, or "written, ownership unconfirmed":
    NOT_ENOUGH_REPLICAS_AFTER_APPEND); the later success proves it was
    written. Such a record must be in its partition (once and in order:
    `verify` checks those for every record)."""
    out = []
    for s, (p, off, _) in by_seq.items():
        v = f"{prefix}-{s}"
        if off is None:
            found = where.get(v)
            if found is None or found[0] != p:
                out.append((s, p, off, found))
        elif at.get((p, off)) != v:
            out.append((s, p, off, at.get((p, off))))
    return out


def verify(acks: dict[str, dict[int, tuple[int, int, float]]], log: dict[int, list[tuple[int, str]]],
           group: GroupReader) -> None:
    at = {(p, off): v for p, recs in log.items() for off, v in recs}
    dups = {v for v, n in Counter(v for recs in log.values() for _, v in recs).items() if n > 1}
    assert not dups, f"{len(dups)} records are in the log more than once, e.g. {sorted(dups)[:10]}"
    where = {v: (p, off) for p, recs in log.items() for off, v in recs}
    for prefix, by_seq in acks.items():
        assert by_seq, f"{prefix}: no record was acknowledged at all"
        wrong = misplaced(prefix, by_seq, at, where)
        assert not wrong, (f"{prefix}: {len(wrong)} of {len(by_seq)} acknowledged records are not in the log "
                           f"where they were acked (seq, partition, offset, found): {sorted(wrong)[:10]}; "
                           f"in the log at (partition, offset): "
                           f"{[(s, where.get(f'{prefix}-{s}')) for s, *_ in sorted(wrong)[:10]]}")
        implicit = sum(1 for _, off, _ in by_seq.values() if off is None)
        if implicit:
            print(f"{prefix}: {implicit} records acknowledged without an offset, all found in their partition")
        for p, recs in log.items():
            seqs = [int(v.split("-", 1)[1]) for _, v in recs if v.startswith(prefix + "-")]
            assert all(s % PARTITIONS == p for s in seqs), f"{prefix}: partition {p} holds another partition's records"
            assert seqs == sorted(seqs), f"{prefix}: partition {p} out of order: {seqs[:50]}"
    # A record acknowledged without an offset is checked where it is.
    want = {(p, off) if off is not None else where[f"{prefix}-{s}"]: f"{prefix}-{s}"
            for prefix, by_seq in acks.items() for s, (p, off, _) in by_seq.items()}
    group.wait_for(want)
    differ = [(k, group.seen[k], v) for k, v in want.items() if group.seen[k] != v]
    assert not differ, f"the group read other values than the log holds: {differ[:10]}"


@pytest.fixture
def cluster(request, tmp_path, seaweed, etcd):
    """start(ids) -> {id: Broker} on one SeaweedFS prefix and the test's etcd."""
    root = f"vigil-{uuid.uuid4().hex[:8]}"
    coordinator = f"etcd://{etcd.endpoint}/{root}"
    objects = (seaweed.url(root), seaweed.env())
    started: list[Broker] = []
    request.node._vigil_brokers = started
    request.node._vigil_seaweed = seaweed

    def start(node_id: int) -> Broker:
        b = node(tmp_path, coordinator, objects, node_id)
        started.append(b)
        return b.start()

    yield start
    for b in started:
        if b.proc is not None and b.proc.poll() is None:
            try:
                b.resume()
            except ProcessLookupError:
                pass
        b.terminate_quietly()


@pytest.fixture
def node_bin() -> str:
    import shutil

    exe = shutil.which("node")
    if exe is None or not (HERE / "js" / "node_modules" / "kafkajs" / "package.json").is_file():
        pytest.fail("node or kafkajs missing: run scripts/install-test-deps.sh", pytrace=False)
    return exe


def three_brokers(cluster) -> tuple[dict[int, Broker], str]:
    b = {i: cluster(i) for i in (1, 2, 3)}
    boot = ",".join(x.bootstrap for x in b.values())
    ck_create_topic(b[1].bootstrap, TOPIC, partitions=PARTITIONS)
    wait_leaders(b[1].bootstrap, TOPIC, {1, 2, 3}, PARTITIONS // 3)
    return b, boot


def test_kill_pause_and_join_in_one_window(cluster, tmp_path, node_bin):
    b, boot = three_brokers(cluster)
    w = Workload(boot, tmp_path, node_bin)
    w.wait_progress("start")

    b[2].kill9()
    wait_leaders(b[1].bootstrap, TOPIC, {1, 3}, PARTITIONS // 2, timeout=RECOVERY_S)
    w.wait_progress("after kill -9 of broker 2")

    # Paused past its session: broker 1 takes everything; a fourth broker
    # joins while 3 is still stopped, then 3 wakes up with writes it may
    # have had in flight for partitions it no longer leads.
    b[3].pause()
    wait_leaders(b[1].bootstrap, TOPIC, {1}, PARTITIONS, timeout=RECOVERY_S)
    b[4] = cluster(4)
    wait_leaders(b[1].bootstrap, TOPIC, {1, 4}, PARTITIONS // 2, timeout=RECOVERY_S)
    b[3].resume()
    wait_leaders(b[1].bootstrap, TOPIC, {1, 3, 4}, PARTITIONS // 3, timeout=RECOVERY_S)
    w.wait_progress("after broker 3 resumed and 4 joined")

    acks = w.finish()
    verify(acks, read_log(f"{b[1].bootstrap},{b[4].bootstrap}"), w.group)


# librdkafka's client-level (error_cb) errors a drain may cause: a broker
# closing its connections and refusing new ones while it exits. Anything
# else, or any failed delivery, fails the drain test.
CK_TRANSIENT = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT}


def client_errors(w: Workload) -> list[str]:
    """Errors no clean drain should cause: failed deliveries, non-transient
    confluent-kafka errors, and kafkajs sends or ERROR logs that are not
    retriable."""
    bad = [f"ck delivery of seq {s}: {e}" for s, e in w.ck.failed]
    bad += [f"ck error_cb: {e}" for e in w.ck.errors
            if e.code() not in CK_TRANSIENT and not e.retriable()]
    for e in w.js.events():
        if "log" in e:
            # A Kafka error kafkajs does not retry; connection-level lines
            # (retriable None: a broker closing) are allowed.
            if e["retriable"] is False:
                bad.append(f"kafkajs log: {e}")
        elif "error" in e and not e["retriable"]:
            bad.append(f"kafkajs send failed: {e}")
    return bad


def test_drain_hands_every_partition_over_with_only_retriable_errors(cluster, tmp_path, node_bin):
    b, boot = three_brokers(cluster)
    w = Workload(boot, tmp_path, node_bin)
    w.wait_progress("start")
    t0 = time.monotonic()
    b[1].stop()  # SIGTERM: exit code 0 asserted
    wait_leaders(b[2].bootstrap, TOPIC, {2, 3}, PARTITIONS // 2, timeout=TTL_MS / 1000 + 10)
    # Handed over, not expired: well before the session TTL would move them.
    handed_over = time.monotonic() - t0
    w.wait_progress("after the drain of broker 1")
    acks = w.finish()
    verify(acks, read_log(f"{b[2].bootstrap},{b[3].bootstrap}"), w.group)
    bad = client_errors(w)
    assert not bad, f"{len(bad)} non-retriable client errors during the drain: {bad[:10]}"
    assert handed_over < TTL_MS / 1000 + 10, handed_over


@pytest.mark.parametrize("down_s", [1.0, 3 * TTL_MS / 1000], ids=["short", "past-ttl"])
def test_etcd_restart(cluster, tmp_path, node_bin, etcd, down_s):
    b, boot = three_brokers(cluster)
    w = Workload(boot, tmp_path, node_bin)
    w.wait_progress("start")
    etcd.kill()
    down_at = time.time()
    # The outage itself: etcd stays down this long while both producers
    # keep sending (a fault duration, not a wait for a condition).
    time.sleep(down_s)
    etcd.start()
    up_at = time.time()
    took = w.wait_progress(f"after etcd was down {down_s:.0f} s", timeout=TTL_MS / 1000 + 30)
    for x in b.values():
        assert x.alive(), f"{x.name} exited while etcd was down\n{x.log_tail()}"
    wait_leaders(b[1].bootstrap, TOPIC, {1, 2, 3}, PARTITIONS // 3, timeout=30)
    acks = w.finish()
    verify(acks, read_log(boot), w.group)
    # Within the first TTL of the outage the brokers keep acknowledging
    # (their sessions are still valid); after it they must not: another
    # node could lead their partitions by then if only they had lost etcd
    # (docs/design/0018-cluster.md, "When the coordinator is unreachable").
    # The 1 s margin covers an ack checked just in time but delivered late.
    ttl_s = TTL_MS / 1000
    windows = {"first TTL": (down_at, down_at + ttl_s),
               "after the TTL": (down_at + ttl_s + 1.0, up_at)}
    seen = {name: sum(1 for by_seq in acks.values() for _, _, at in by_seq.values() if lo <= at < hi)
            for name, (lo, hi) in windows.items() if hi > lo}
    print(f"etcd down {up_at - down_at:.1f} s: records acked in the outage's {seen}; "
          f"every partition acked again {took:.1f} s after the restart")
    assert seen.get("after the TTL", 0) == 0, f"acknowledged without a valid session: {seen}"
