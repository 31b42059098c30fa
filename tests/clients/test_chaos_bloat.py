"""Chaos: clients that try to make the broker's state (the manifest) grow.

* Forged producer ids: 10k never-issued ids must be refused (UNKNOWN_PRODUCER_ID)
  and leave no state; 10k issued-but-abused ids (one InitProducerId each) must
  not make the broker forget a real producer, so its retry is still answered
  as a duplicate.
* Offsets flood: 1,000 groups commit once; the manifest does not grow (the
  offsets live in state objects it references), the offsets expire once
  `offsets.retention.minutes` passes with the groups empty, and the deletion
  survives a restart.
* Topic limits: `--max-partitions` and Kafka's topic-name rules hold for
  CreateTopics and auto-creation alike.

Each test runs an AckLedger (a real idempotent acks=all producer) alongside and
prints a CHAOS line with the manifest size before and after.
"""

from __future__ import annotations

import json
import socket
import struct
import time
import uuid
from pathlib import Path

import crc32c
import pytest
from confluent_kafka.admin import NewTopic

from chaos import AckLedger, peak_rss_kb
from helpers import Deadline, ck_admin, ck_create_topic, frame, kstring, recv_frame, request_header

PRODUCE = 0
METADATA = 3
OFFSET_COMMIT = 8
OFFSET_FETCH = 9
INIT_PRODUCER_ID = 22

NONE = 0
KAFKA_STORAGE_ERROR = 56
UNKNOWN_PRODUCER_ID = 59
POLICY_VIOLATION = 44
INVALID_TOPIC_EXCEPTION = 17

PIPELINE = 200  # requests in flight on the raw connection


# ----------------------------------------------------------- wire helpers ---

def svarint(n: int) -> bytes:
    """Zigzag varint (record fields)."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def record_batch(pid: int, epoch: int, seq: int, value: bytes) -> bytes:
    """One magic-v2 batch of one record, idempotent when pid >= 0."""
    ts = int(time.time() * 1000)
    body = b"\x00" + svarint(0) + svarint(0) + svarint(-1) + svarint(len(value)) + value + svarint(0)
    rec = svarint(len(body)) + body
    after_crc = struct.pack(">hiqqqhii", 0, 0, ts, ts, pid, epoch, seq, 1) + rec
    crc = crc32c.crc32c(after_crc)
    rest = struct.pack(">ibI", -1, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(rest)) + rest


def produce_req(corr: int, topic: str, batch: bytes) -> bytes:
    body = (kstring(None) + struct.pack(">hi", -1, 30_000) + struct.pack(">i", 1) + kstring(topic)
            + struct.pack(">ii", 1, 0) + struct.pack(">i", len(batch)) + batch)
    return frame(request_header(PRODUCE, 3, corr) + body)


def parse_produce(resp: bytes) -> tuple[int, int, int]:
    """(correlation id, error code, base offset) of a one-partition Produce v3 response."""
    corr, _ntopics, nlen = struct.unpack_from(">iih", resp, 0)
    pos = 10 + nlen
    _nparts, _idx, err, base = struct.unpack_from(">iihq", resp, pos)
    return corr, err, base


def init_producer_id_req(corr: int) -> bytes:
    return frame(request_header(INIT_PRODUCER_ID, 0, corr) + kstring(None) + struct.pack(">i", 60_000))


def parse_init_producer_id(resp: bytes) -> tuple[int, int]:
    _corr, _throttle, err, pid, _epoch = struct.unpack_from(">iihqh", resp, 0)
    return err, pid


def offset_commit_req(corr: int, group: str, topic: str, offset: int) -> bytes:
    body = (kstring(group) + struct.pack(">i", -1) + kstring("") + struct.pack(">q", -1)
            + struct.pack(">i", 1) + kstring(topic) + struct.pack(">i", 1)
            + struct.pack(">iq", 0, offset) + kstring(None))
    return frame(request_header(OFFSET_COMMIT, 2, corr) + body)


def parse_offset_commit(resp: bytes) -> int:
    _corr, _ntopics, nlen = struct.unpack_from(">iih", resp, 0)
    pos = 10 + nlen
    _nparts, _idx, err = struct.unpack_from(">iih", resp, pos)
    return err


def offset_fetch(bootstrap: str, group: str, topic: str) -> int:
    return offsets_fetch(bootstrap, [group], topic)[0]


def offsets_fetch(bootstrap: str, groups: list[str], topic: str) -> list[int]:
    """Partition 0's committed offset in each group (-1: none), pipelined
    on one connection."""
    reqs = []
    for i, group in enumerate(groups):
        body = kstring(group) + struct.pack(">i", 1) + kstring(topic) + struct.pack(">ii", 1, 0)
        reqs.append(frame(request_header(OFFSET_FETCH, 1, i) + body))
    out = []
    for resp in exchange(bootstrap, reqs):
        _corr, _ntopics, nlen = struct.unpack_from(">iih", resp, 0)
        pos = 10 + nlen
        _nparts, _idx, offset = struct.unpack_from(">iiq", resp, pos)
        out.append(offset)
    return out


def exchange(bootstrap: str, requests: list[bytes], timeout: float = 60) -> list[bytes]:
    """Sends `requests` pipelined (PIPELINE in flight) on one connection; the
    responses in order."""
    host, port = bootstrap.split(":")
    out: list[bytes] = []
    dl = Deadline(timeout, f"{len(requests)} pipelined requests")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        for i in range(0, len(requests), PIPELINE):
            chunk = requests[i:i + PIPELINE]
            s.sendall(b"".join(chunk))
            for _ in chunk:
                out.append(recv_frame(s))
            dl.check(f"({len(out)} answered)")
    return out


# -------------------------------------------------------- manifest helpers ---

def latest_manifest(broker) -> Path:
    files = sorted((broker.data_dir / "objects" / "manifest").glob("*.json"))
    assert files, "no manifest written"
    return files[-1]


def manifest_bytes_after(broker, since: float, timeout: float = 30) -> int:
    """Size of the first manifest committed after wall-clock time `since`
    (the broker uploads every interval while the ledger produces), without
    its segment lists: those grow with the ledger's uploads until compaction
    merges them, whatever the flood does."""
    dl = Deadline(timeout, "a manifest committed after the flood")
    while True:
        m = latest_manifest(broker)
        try:
            st = m.stat()
            body = json.loads(m.read_bytes())
        except (FileNotFoundError, json.JSONDecodeError):  # replaced meanwhile
            continue
        if st.st_mtime > since:
            segments = sum(len(json.dumps(p.get("segments", []), separators=(",", ":")))
                           for t in body.get("topics", {}).values() for p in t.get("partitions", []))
            return st.st_size - segments
        dl.check(f"(latest {m.name})")
        time.sleep(0.1)


def chaos_line(fault: str, injected: int, ledger_result, pid: int, **extra) -> None:
    more = " ".join(f"{k}={v}" for k, v in extra.items())
    print(f"CHAOS {fault} injected={injected} acked={ledger_result.acked} "
          f"lost={len(ledger_result.lost)} dup={len(ledger_result.duplicated)} "
          f"peak_rss_mb={peak_rss_kb(pid) / 1024:.1f} {more}".rstrip())


# ------------------------------------------------------------------ tests ---

def test_forged_producer_ids_are_refused_and_cannot_evict_a_real_producer(broker_factory):
    b = broker_factory(["--upload-interval-ms", "200"])
    topic = f"bloat-pid-{uuid.uuid4().hex[:6]}"
    ck_create_topic(b.bootstrap, topic, partitions=1)
    ledger = AckLedger(b.bootstrap, topic, rate=200).start()
    ledger.wait_acked(50)
    before = manifest_bytes_after(b, time.time())

    # A real idempotent producer writes one batch and keeps it for a retry.
    err, real_pid = parse_init_producer_id(exchange(b.bootstrap, [init_producer_id_req(1)])[0])
    assert err == NONE
    real_batch = record_batch(real_pid, 0, 0, b"real-0")
    _, err, real_offset = parse_produce(exchange(b.bootstrap, [produce_req(1, topic, real_batch)])[0])
    assert err == NONE

    # 10k producer ids nobody handed out.
    forged = [produce_req(i, topic, record_batch(2**40 + i, 0, 0, b"forged")) for i in range(10_000)]
    codes = [parse_produce(r)[1] for r in exchange(b.bootstrap, forged)]
    refused_forged = codes.count(UNKNOWN_PRODUCER_ID)

    # 10k ids handed out one InitProducerId each, then used once: the state
    # cap is reached, but the real producer is too recent to be forgotten.
    inits = [parse_init_producer_id(r) for r in
             exchange(b.bootstrap, [init_producer_id_req(i) for i in range(10_000)])]
    assert all(e == NONE for e, _ in inits)
    abused = [produce_req(i, topic, record_batch(pid, 0, 0, b"abused")) for i, (_, pid) in enumerate(inits)]
    abused_codes = [parse_produce(r)[1] for r in exchange(b.bootstrap, abused, timeout=90)]
    assert set(abused_codes) <= {NONE, KAFKA_STORAGE_ERROR}, set(abused_codes)

    # The real producer's retry: the original offset, not a second copy.
    _, err, retry_offset = parse_produce(exchange(b.bootstrap, [produce_req(2, topic, real_batch)])[0])
    flood_end = time.time()
    after = manifest_bytes_after(b, flood_end)

    ledger.wait_acked(50)
    ledger.stop()
    res = ledger.verify()
    chaos_line("forged_producer_ids", 20_000, res, b.pid,
               manifest_bytes_before=before, manifest_bytes_after=after,
               refused_never_issued=refused_forged,
               refused_over_cap=abused_codes.count(KAFKA_STORAGE_ERROR))
    problems = []
    if after > before + 4096:
        problems.append(f"the manifest grew with producers: {before} -> {after} bytes")
    if refused_forged != 10_000:
        problems.append(f"never-issued producer ids accepted: {10_000 - refused_forged}")
    if err != NONE or retry_offset != real_offset:
        problems.append(f"the real producer's retry was written again at {retry_offset} "
                        f"(original {real_offset}, error {err})")
    assert not problems, "; ".join(problems)


def test_offsets_flood_expires_and_the_manifest_shrinks_back(broker_factory):
    b = broker_factory(["--upload-interval-ms", "200", "--offsets-retention-minutes", "1",
                        "--offsets-retention-check-interval-ms", "1000"])
    topic = f"bloat-offsets-{uuid.uuid4().hex[:6]}"
    ck_create_topic(b.bootstrap, topic, partitions=1)
    ledger = AckLedger(b.bootstrap, topic, rate=100).start()
    ledger.wait_acked(20)
    before = manifest_bytes_after(b, time.time())

    groups = [f"flood-{uuid.uuid4().hex[:6]}-{i:04d}" for i in range(1_000)]
    codes = [parse_offset_commit(r) for r in
             exchange(b.bootstrap, [offset_commit_req(i, g, topic, i) for i, g in enumerate(groups)])]
    assert codes == [NONE] * len(groups), set(codes)
    committed_at = time.time()
    flooded = manifest_bytes_after(b, committed_at)
    assert offset_fetch(b.bootstrap, groups[7], topic) == 7

    # One minute of retention with the groups empty, checked every second.
    # Every group's, not one: the sweep goes group by group in no fixed
    # order, and a kill before it reaches a group rightly keeps that
    # group's offset.
    dl = Deadline(120, "committed offsets of 1,000 empty groups to expire")
    while any(o != -1 for o in offsets_fetch(b.bootstrap, groups, topic)):
        dl.check()
        time.sleep(1)
    expired = manifest_bytes_after(b, time.time())

    # The deletion is durable: a restart does not bring the offsets back.
    b.kill9()
    b.start()
    back = [g for g, o in zip(groups, offsets_fetch(b.bootstrap, groups, topic)) if o != -1]
    assert not back, f"{len(back)} expired offsets came back after kill -9, e.g. {back[:3]}"

    ledger.wait_acked(20)
    ledger.stop()
    res = ledger.verify()
    chaos_line("offsets_flood", len(groups), res, b.pid, manifest_bytes_before=before,
               manifest_bytes_flooded=flooded, manifest_bytes_after_expiry=expired)
    # Committed offsets live in state objects the manifest references: the
    # manifest each commit PUTs does not grow with the number of groups.
    assert flooded <= before + 4096 and expired <= before + 4096, (
        f"manifest grew with committed offsets: {before} -> {flooded} -> {expired}")


def test_partition_limit_and_topic_names(broker_factory):
    b = broker_factory(["--max-partitions", "10"])
    topic = f"bloat-limit-{uuid.uuid4().hex[:6]}"
    ck_create_topic(b.bootstrap, topic, partitions=1)
    ledger = AckLedger(b.bootstrap, topic, rate=100).start()
    ledger.wait_acked(20)
    admin = ck_admin(b.bootstrap)

    def create(name: str, partitions: int):
        fut = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                                  operation_timeout=10)[name]
        try:
            fut.result(timeout=20)
            return NONE
        except Exception as e:  # confluent_kafka.KafkaException carrying a KafkaError
            return e.args[0].code()

    assert create("bloat-fits", 8) == NONE
    assert create("bloat-over", 2) == POLICY_VIOLATION
    assert create("x" * 250, 1) == INVALID_TOPIC_EXCEPTION
    assert create("bad/name", 1) == INVALID_TOPIC_EXCEPTION
    # Auto-creation (Metadata v4, allowed) is held to the same limit.
    body = struct.pack(">i", 2) + kstring("bloat-auto-1") + kstring("bloat-auto-2") + b"\x01"
    resp = exchange(b.bootstrap, [frame(request_header(METADATA, 4, 1) + body)])[0]
    auto_codes = []
    pos = 4 + 4  # correlation id, throttle
    (nbrokers,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    for _ in range(nbrokers):
        pos += 4
        (hl,) = struct.unpack_from(">h", resp, pos)
        pos += 2 + hl + 4
        (rl,) = struct.unpack_from(">h", resp, pos)
        pos += 2 + max(rl, 0)
    (cl,) = struct.unpack_from(">h", resp, pos)
    pos += 2 + max(cl, 0) + 4
    (ntopics,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    for _ in range(ntopics):
        (err, nl) = struct.unpack_from(">hh", resp, pos)
        auto_codes.append(err)
        pos += 4 + nl + 1
        (nparts,) = struct.unpack_from(">i", resp, pos)
        pos += 4
        for _ in range(nparts):
            pos += 2 + 4 + 4  # error code, index, leader (v4: no epoch, no offline replicas)
            (nr,) = struct.unpack_from(">i", resp, pos)
            pos += 4 + 4 * nr
            (ni,) = struct.unpack_from(">i", resp, pos)
            pos += 4 + 4 * ni
    # 1 + 8 partitions exist: the first auto-created topic fits, the second not.
    assert auto_codes == [NONE, POLICY_VIOLATION], auto_codes

    ledger.wait_acked(20)
    ledger.stop()
    res = ledger.verify()
    chaos_line("partition_limit", 4, res, b.pid)
