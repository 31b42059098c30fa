"""Chaos: storage faults under load (issue 11 items 5 and 6).

- Disk full: the broker's --data-dir is a small tmpfs the test mounts (it
  runs as root, like CI; a failed mount fails the test). A dummy file fills
  it while an AckLedger produces: produce gets the retriable
  KAFKA_STORAGE_ERROR promptly, reads keep working, the broker recovers by
  itself once the file is deleted, and SIGTERM on a full disk exits in
  bounded time.
- Object store outage: the broker's SeaweedFS (owned by the test, so it can
  be stopped) is stopped and restarted under load: past
  --max-unuploaded-bytes produce is refused (retriable) instead of memory
  growing, and everything acked survives.

Each test prints a CHAOS line for the closing table of issue 11.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from chaos import AckLedger, peak_rss_kb
from helpers import Deadline, ck_consumer, ck_create_topic

KAFKA_STORAGE_ERROR = 56
TMPFS_BYTES = 24 << 20
# Larger than what a recycled WAL segment has room for at the test's rate.
BIG = b"\0" * (512 << 10)


def mount_tmpfs(path: Path, size: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        pytest.fail(f"cannot mount a {size}-byte tmpfs on {path} for the disk-full test "
                    f"(needs root, as in CI): {r.stderr.strip()}", pytrace=False)


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill(path: Path) -> int:
    """Writes zeros to `path` until the filesystem is full; returns bytes."""
    return _fill_more(path, "wb")


def _fill_more(path: Path, mode: str) -> int:
    n = 0
    chunk = b"\0" * (64 << 10)
    with open(path, mode, buffering=0) as f:
        while True:
            try:
                written = f.write(chunk)
            except OSError:
                break
            if not written:
                break
            n += written
    return n


class KeepFull:
    """Fills the filesystem and keeps it full: the broker's uploads free a
    sealed WAL segment's space every cycle, and a single fill could leave
    the WAL writing into freed space for as long as the two balance."""

    def __init__(self, path: Path):
        self.path = path
        self.stop_event = threading.Event()
        fill(path)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_event.wait(0.02):
            _fill_more(self.path, "ab")

    def release(self) -> None:
        """Stops filling and frees the space."""
        self.stop_event.set()
        self.thread.join(timeout=10)
        self.path.unlink()


def probe_code(bootstrap: str, topic: str, timeout: float = 10, value: bytes = b"probe") -> int:
    """Produces one record with no client retries; the error code of its
    delivery (0 on success)."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False,
                  "message.send.max.retries": 0, "retries": 0,
                  "message.timeout.ms": int(timeout * 1000), "linger.ms": 0})
    out: list[int] = []
    p.produce(topic, value=value, on_delivery=lambda err, msg: out.append(0 if err is None else err.code()))
    left = p.flush(timeout + 5)
    assert left == 0 and out, "the probe produce got no delivery report"
    return out[0]


def wait_log(broker, text: str, seen: int, timeout: float) -> int:
    """Waits until `text` occurs in the broker log more than `seen` times;
    returns the new count."""
    dl = Deadline(timeout, f"{text!r} in the broker log")
    while True:
        n = broker.log_text().count(text)
        if n > seen:
            return n
        dl.check()
        time.sleep(0.1)


def read_some(bootstrap: str, topic: str, partitions: int, want: int, timeout: float) -> int:
    """Fetches from offset 0 of every partition (assign, no group, no
    commits: Fetch alone) until `want` records arrived."""
    from confluent_kafka import TopicPartition

    c = ck_consumer(bootstrap, f"disk-read-{uuid.uuid4().hex[:6]}", **{"enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got = 0
        dl = Deadline(timeout, f"reading {want} records of {topic}")
        while got < want:
            dl.check(f"(read {got})")
            got += sum(1 for m in c.consume(num_messages=500, timeout=0.5) if m.error() is None)
        return got
    finally:
        c.close()


def test_disk_full_refuses_produce_keeps_reads_and_recovers(broker_factory):
    b = broker_factory(start=False, extra_args=["--upload-interval-ms", "300"])
    # Objects live off the small disk, as with a real object store: uploads
    # keep working while the data dir is full, and free it.
    b.object_store = f"file://{b.workdir / 'objects'}"
    mount_tmpfs(b.data_dir, TMPFS_BYTES)
    dummy = b.data_dir / "dummy-fill"
    peak = 0
    full: KeepFull | None = None
    try:
        b.start()
        topic = f"disk-{uuid.uuid4().hex[:6]}"
        ck_create_topic(b.bootstrap, topic, partitions=3)
        ledger = AckLedger(b.bootstrap, topic, rate=300).start()
        ledger.wait_acked(300, timeout=60)

        # Episode 1: the disk fills while the producer runs. The WAL reuses
        # its uploaded segments' space (recycled segments), so a steady
        # trickle can go on fitting a full disk: a record larger than a
        # segment's worth of it needs new space.
        full = KeepFull(dummy)
        probe_code(b.bootstrap, topic, timeout=5, value=BIG)
        wait_log(b, "WAL write failed", 0, timeout=30)
        dl = Deadline(30, "a produce refused with KAFKA_STORAGE_ERROR on the full disk")
        while True:
            t0 = time.monotonic()
            code = probe_code(b.bootstrap, topic)
            took = time.monotonic() - t0
            if code == KAFKA_STORAGE_ERROR:
                # Promptly: not after the request timeout.
                assert took < 5, f"KAFKA_STORAGE_ERROR took {took:.1f}s"
                break
            # An upload cycle can free a sealed segment's worth of space for
            # a moment; the next probe meets a full disk again.
            dl.check(f"(last code {code})")
        # Reads keep working on the full disk.
        read_some(b.bootstrap, topic, 3, want=300, timeout=30)
        peak = max(peak, peak_rss_kb(b.pid))

        # Space returns: the broker recovers by itself.
        full.release()
        ledger.wait_acked(300, timeout=60)
        assert probe_code(b.bootstrap, topic) == 0

        # Episode 2: SIGTERM while the disk is full exits in bounded time.
        seen = b.log_text().count("WAL write failed")
        full = KeepFull(dummy)
        probe_code(b.bootstrap, topic, timeout=5, value=BIG)
        wait_log(b, "WAL write failed", seen, timeout=30)
        peak = max(peak, peak_rss_kb(b.pid))
        b.stop(timeout=20)
        full.release()
        b.start()
        ledger.wait_acked(300, timeout=90)
        ledger.stop()
        peak = max(peak, peak_rss_kb(b.pid))
        res = ledger.verify()
        print(f"CHAOS disk-full injected=2 acked={res.acked} lost={len(res.lost)} "
              f"dup={len(res.duplicated)} peak_rss_mb={peak / 1024:.1f}")
    finally:
        if full is not None:
            full.stop_event.set()
            full.thread.join(timeout=10)
        b.terminate_quietly()
        umount(b.data_dir)


class OwnedSeaweed:
    """A SeaweedFS of this test's own (the session's `seaweed` is shared and
    must not be stopped), restartable on the same ports with its data."""

    def __init__(self, tmp: Path):
        from s3 import SeaweedFS, weed_bin

        weed = weed_bin()
        if weed is None or not weed.is_file():
            pytest.fail("SeaweedFS `weed` not found: run scripts/install-test-deps.sh", pytrace=False)
        self.sw = SeaweedFS(weed, tmp / "seaweed", tmp / "seaweed.log")

    def start(self) -> None:
        self.sw.start()

    def stop(self) -> None:
        self.sw.stop()

    def restart(self) -> None:
        """Starts weed again on its ports and data (SeaweedFS.start would pick
        new ports and wipe the data)."""
        import subprocess as sp

        from s3 import _die_with_parent

        with open(self.sw.log_path, "ab") as log:
            log.write(b"\n===== restart on the same ports and data\n")
            log.flush()
            self.sw.proc = sp.Popen(self.sw.argv(), stdin=sp.DEVNULL, stdout=log, stderr=log,
                                    cwd=self.sw.data_dir, start_new_session=True,
                                    preexec_fn=_die_with_parent)
        self.sw._client = None
        err = self.sw._wait_ready(60)
        assert err is None, f"SeaweedFS did not come back: {err}\n{self.sw.log_tail()}"


class Bulk:
    """A plain (non-idempotent) producer pushing `size`-byte values as fast
    as the broker takes them; counts refusals by error code."""

    def __init__(self, bootstrap: str, topic: str, size: int = 8 << 10):
        from confluent_kafka import Producer

        self.topic = topic
        self.value = os.urandom(size)
        self.codes: dict[int, int] = {}
        self.acked = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                            "message.timeout.ms": 5000, "retries": 0,
                            "queue.buffering.max.kbytes": 8192})
        self._t = threading.Thread(target=self._run, daemon=True, name="bulk")

    def _cb(self, err, msg) -> None:
        with self._lock:
            if err is None:
                self.acked += 1
            else:
                self.codes[err.code()] = self.codes.get(err.code(), 0) + 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._p.produce(self.topic, value=self.value, on_delivery=self._cb)
            except BufferError:
                self._p.poll(0.05)
                continue
            self._p.poll(0)
            self._stop.wait(0.002)

    def start(self) -> "Bulk":
        self._t.start()
        return self

    def refused(self, code: int) -> int:
        with self._lock:
            return self.codes.get(code, 0)

    def stop(self) -> None:
        self._stop.set()
        self._t.join(timeout=30)
        self._p.flush(30)


def test_object_store_outage_applies_backpressure_and_loses_nothing(vigil_installed, tmp_path):
    sw = OwnedSeaweed(tmp_path)
    try:
        sw.start()
        prefix = f"outage-{uuid.uuid4().hex[:8]}"
        from conftest import Broker

        b = Broker(tmp_path / "broker", [
            "--upload-interval-ms", "200",
            "--max-unuploaded-bytes", str(4 << 20),
            "--object-store-timeout-ms", "3000",
            "--object-store-connect-timeout-ms", "500",
            "--object-store-max-retries", "1",
            "--object-store-retry-timeout-ms", "3000",
            "--object-store-backoff-initial-ms", "50",
            "--object-store-backoff-max-ms", "500",
        ], name="vigil-outage", object_store=sw.sw.url(prefix), env=sw.sw.env())
        try:
            b.start()
            topic = f"outage-{uuid.uuid4().hex[:6]}"
            bulk_topic = f"bulk-{uuid.uuid4().hex[:6]}"
            ck_create_topic(b.bootstrap, topic, partitions=3)
            ck_create_topic(b.bootstrap, bulk_topic, partitions=3)
            ledger = AckLedger(b.bootstrap, topic, rate=300).start()
            ledger.wait_acked(300, timeout=60)
            bulk = Bulk(b.bootstrap, bulk_topic).start()

            sw.stop()
            t_down = time.monotonic()
            dl = Deadline(60, "backpressure (KAFKA_STORAGE_ERROR) while the store is down")
            while bulk.refused(KAFKA_STORAGE_ERROR) == 0:
                dl.check(f"(bulk acked {bulk.acked}, codes {bulk.codes})")
                time.sleep(0.1)
            # Stay down a while under load: memory must not grow with it.
            rss_at_backpressure = peak_rss_kb(b.pid)
            while time.monotonic() - t_down < 15:
                time.sleep(0.2)
                assert b.alive(), f"broker died during the outage\n{b.log_tail()}"
            peak_down = peak_rss_kb(b.pid)
            sw.restart()
            ledger.wait_acked(300, timeout=90)
            bulk.stop()
            ledger.stop()
            peak = peak_rss_kb(b.pid)
            res = ledger.verify()
            print(f"CHAOS s3-outage injected=1 acked={res.acked} lost={len(res.lost)} "
                  f"dup={len(res.duplicated)} peak_rss_mb={peak / 1024:.1f} "
                  f"refused_backpressure={bulk.refused(KAFKA_STORAGE_ERROR)} "
                  f"rss_at_backpressure_mb={rss_at_backpressure / 1024:.1f} "
                  f"peak_rss_down_mb={peak_down / 1024:.1f}")
            # Un-uploaded data is capped at 4 MiB; the rest of the broker's
            # memory does not grow with the outage's length.
            assert peak_down - rss_at_backpressure < 64 << 10, (
                f"RSS grew {(peak_down - rss_at_backpressure) / 1024:.0f} MiB after backpressure engaged")
        finally:
            b.terminate_quietly()
    finally:
        sw.stop()
