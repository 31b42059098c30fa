"""Shared pieces of the chaos suite (test_chaos_*.py).

`AckLedger` runs a real idempotent acks=all producer (librdkafka through
confluent-kafka) in a background thread, remembers every record the broker
acknowledged, and `verify()` later consumes the topic from the start and
asserts that every acked record is there exactly once. Records whose delivery
failed are allowed to be absent (they were never acknowledged) but must not
appear twice. Every chaos test ends with a ledger check, so "no acked write
lost or duplicated" is checked the same way everywhere.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

from helpers import Deadline, ck_consumer, ck_producer


@dataclass
class LedgerResult:
    """What a ledger saw: counts for the closing table of the chaos suite."""

    attempted: int = 0
    acked: int = 0
    failed: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"attempted={self.attempted} acked={self.acked} failed={self.failed} "
                f"lost={len(self.lost)} duplicated={len(self.duplicated)}")


class AckLedger:
    """Produces `rate` records/s of unique ids to `topic` until `stop()`.

    Every record's value is its id; `acked` holds the ids the broker
    confirmed (with their partition and offset). The producer retries on its
    own (librdkafka's idempotent producer), so a broker that is paused,
    restarted or short of disk shows up as delivery latency or as failed
    deliveries, never as a lie: an acked id must be readable afterwards.
    """

    def __init__(self, bootstrap: str | list[str], topic: str, rate: float = 500.0,
                 message_timeout_ms: int = 120_000, **producer_conf):
        self.bootstrap = bootstrap if isinstance(bootstrap, str) else ",".join(bootstrap)
        self.topic = topic
        self.rate = rate
        self.acked: dict[str, tuple[int, int]] = {}
        self.failed: dict[str, str] = {}
        self.attempted = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._run = uuid.uuid4().hex[:8]
        conf = {"message.timeout.ms": message_timeout_ms}
        conf.update(producer_conf)
        self._producer = ck_producer(self.bootstrap, **conf)
        self._thread = threading.Thread(target=self._loop, name=f"ledger-{topic}", daemon=True)

    def start(self) -> "AckLedger":
        self._thread.start()
        return self

    def _on_delivery(self, err, msg) -> None:
        rid = msg.value().decode()
        with self._lock:
            if err is None:
                self.acked[rid] = (msg.partition(), msg.offset())
            else:
                self.failed[rid] = str(err)

    def _loop(self) -> None:
        interval = 1.0 / self.rate if self.rate > 0 else 0.0
        next_at = time.monotonic()
        i = 0
        while not self._stop.is_set():
            rid = f"{self._run}-{i:09d}"
            try:
                self._producer.produce(self.topic, value=rid.encode(), key=str(i % 64).encode(),
                                       on_delivery=self._on_delivery)
                i += 1
                with self._lock:
                    self.attempted = i
            except BufferError:
                self._producer.poll(0.05)
                continue
            self._producer.poll(0)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def wait_acked(self, n: int, timeout: float = 60) -> None:
        """Blocks until at least `n` more records than now are acked."""
        target = self.acked_count() + n
        dl = Deadline(timeout, f"{n} more acks on {self.topic}")
        while self.acked_count() < target:
            dl.check(f"(acked {self.acked_count()} of {target}, failed {len(self.failed)})")
            time.sleep(0.05)

    def stop(self, flush_timeout: float = 120) -> None:
        """Stops producing and waits for every outstanding delivery report."""
        self._stop.set()
        self._thread.join(timeout=30)
        remaining = self._producer.flush(flush_timeout)
        assert remaining == 0, f"{remaining} records without a delivery report after {flush_timeout}s"

    def verify(self, bootstrap: str | list[str] | None = None, timeout: float = 90) -> LedgerResult:
        """Consumes the whole topic and checks every acked id is there exactly
        once. Returns the counts; raises AssertionError on a loss or a duplicate."""
        bs = self.bootstrap if bootstrap is None else (
            bootstrap if isinstance(bootstrap, str) else ",".join(bootstrap))
        with self._lock:
            acked = dict(self.acked)
            failed = dict(self.failed)
            attempted = self.attempted
        consumer = ck_consumer(bs, f"ledger-{uuid.uuid4().hex[:8]}", **{"enable.auto.commit": False})
        consumer.subscribe([self.topic])
        seen: dict[str, int] = {}
        dl = Deadline(timeout, f"consuming {len(acked)} acked records of {self.topic}")
        try:
            while not all(rid in seen for rid in acked):
                msgs = consumer.consume(num_messages=1000, timeout=0.5)
                for m in msgs:
                    if m.error() is not None:
                        continue
                    v = m.value().decode()
                    if v.startswith(self._run):
                        seen[v] = seen.get(v, 0) + 1
                if dl.expired():
                    break
            # Drain a little more so duplicates past the last acked id show.
            for m in consumer.consume(num_messages=10_000, timeout=1.0):
                if m.error() is None:
                    v = m.value().decode()
                    if v.startswith(self._run):
                        seen[v] = seen.get(v, 0) + 1
        finally:
            consumer.close()
        res = LedgerResult(
            attempted=attempted,
            acked=len(acked),
            failed=len(failed),
            lost=sorted(rid for rid in acked if rid not in seen),
            duplicated=sorted(rid for rid, c in seen.items() if c > 1),
        )
        print(f"ledger {self.topic}: {res.summary()}")
        assert not res.lost, f"{len(res.lost)} acked records lost, e.g. {res.lost[:10]}"
        assert not res.duplicated, f"{len(res.duplicated)} records duplicated, e.g. {res.duplicated[:10]}"
        return res


def peak_rss_kb(pid: int) -> int:
    """The process's peak resident set size (VmHWM) in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def rss_kb(pid: int) -> int:
    """The process's current resident set size (VmRSS) in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the peer closes `sock` (EOF or reset) within `seconds`,
    draining whatever it sends meanwhile."""
    dl = Deadline(seconds, "peer close")
    sock.settimeout(0.2)
    while not dl.expired():
        try:
            if sock.recv(65536) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False
