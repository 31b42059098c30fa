"""Compression bombs (issue 11, item 8) against the release binary.

A producer controls the compressed bytes of its batches, so 1 MB of gzip can
claim 1 GiB of records. The broker decompresses batches in three places
(ListOffsets by timestamp, detector input, the alert-topic scan) and, since
item 8, on produce to validate them. Each test injects bombs over raw
sockets while an AckLedger producer runs, then checks the broker's peak RSS
against PEAK_RSS_BOUND_MB, that it answered with proper Kafka error codes,
and that no acked record was lost or duplicated.

Bound (docs/design/0009-hardening.md, "Item 8"): every decompression is
capped at 8 x max.message.bytes (8 MiB) per batch, and a detector read at
max(8 MiB, 32 x its compressed size); the broker stays under 300 MB peak RSS.
"""

from __future__ import annotations

import socket
import struct
import time
import zlib

import crc32c

from chaos import AckLedger, peak_rss_kb
from detectors import admin_of, limits, partition_of, produce, spec, wait_status
from helpers import ck_create_topic, frame, kstring, recv_frame, request_header, unique_name

PEAK_RSS_BOUND_MB = 300
PRODUCE, LIST_OFFSETS = 0, 2
NONE, CORRUPT_MESSAGE, MESSAGE_TOO_LARGE = 0, 2, 10
GZIP = 1
MIB = 1 << 20


# ------------------------------------------------------------- batches --

def varint(n: int) -> bytes:
    """Kafka's zigzag varint."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def record(value_len: int | None, offset_delta: int = 0) -> bytes:
    """One record with a null key and a value of `value_len` zero bytes."""
    body = b"\x00" + varint(0) + varint(offset_delta) + varint(-1)
    body += varint(-1) if value_len is None else varint(value_len) + bytes(value_len)
    body += varint(0)
    return varint(len(body)) + body


def gzip_stream(chunks) -> bytes:
    """gzip of the concatenated chunks, without holding them all."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [c.compress(ch) for ch in chunks]
    out.append(c.flush())
    return b"".join(out)


def batch(attributes: int, records_count: int, records: bytes, ts: int) -> bytes:
    """A magic-v2 batch around an encoded (compressed) records section."""
    tail = struct.pack(">hiqqqhii", attributes, max(records_count - 1, 0), ts, ts, -1, -1, -1,
                       records_count) + records
    crc = crc32c.crc32c(tail)
    head = struct.pack(">qiibI", 0, 4 + 1 + 4 + len(tail), 0, 2, crc)
    return head + tail


_BIG_BOMB: bytes | None = None


def big_bomb(ts: int) -> bytes:
    """The issue's repro: about 1 MB of gzip that inflates to 1 GiB of zeros."""
    global _BIG_BOMB
    if _BIG_BOMB is None:
        zeros = bytes(MIB)
        _BIG_BOMB = gzip_stream([zeros] * 1024)
    return batch(GZIP, 1, _BIG_BOMB, ts)


def small_bomb(ts: int, value_len: int = 4 * MIB) -> bytes:
    """A valid gzip batch: one record whose value is `value_len` zeros (a few
    KiB on the wire)."""
    rec = record(value_len)
    return batch(GZIP, 1, gzip_stream([rec]), ts)


# ---------------------------------------------------------- raw client --

class Raw:
    """One raw Kafka connection (Produce v3, ListOffsets v1)."""

    def __init__(self, broker):
        host, port = broker.bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        self.corr = 0

    def close(self):
        self.sock.close()

    def _call(self, api: int, version: int, body: bytes) -> bytes:
        self.corr += 1
        self.sock.sendall(frame(request_header(api, version, self.corr) + body))
        resp = recv_frame(self.sock)
        (corr,) = struct.unpack_from(">i", resp, 0)
        assert corr == self.corr, f"correlation id {corr}, expected {self.corr}"
        return resp[4:]

    def produce(self, topic: str, records: bytes, partition: int = 0) -> int:
        """Produce v3, acks=all; returns the partition's error code."""
        body = kstring(None) + struct.pack(">hi", -1, 30_000) + struct.pack(">i", 1) + kstring(topic)
        body += struct.pack(">ii", 1, partition) + struct.pack(">i", len(records)) + records
        r = self._call(PRODUCE, 3, body)
        pos = 4  # topics count
        (n,) = struct.unpack_from(">h", r, pos)
        pos += 2 + n + 4  # topic name, partitions count
        _part, err = struct.unpack_from(">ih", r, pos)
        return err

    def list_offsets(self, topic: str, ts: int, partition: int = 0) -> tuple[int, int, int]:
        """ListOffsets v1 by timestamp: (error code, timestamp, offset)."""
        body = struct.pack(">ii", -1, 1) + kstring(topic) + struct.pack(">iiq", 1, partition, ts)
        r = self._call(LIST_OFFSETS, 1, body)
        pos = 4
        (n,) = struct.unpack_from(">h", r, pos)
        pos += 2 + n + 4
        _part, err, rts, off = struct.unpack_from(">ihqq", r, pos)
        return err, rts, off


def chaos_line(fault: str, injected: int, res, peak_mb: float) -> None:
    print(f"CHAOS {fault} injected={injected} acked={res.acked} lost={len(res.lost)} "
          f"dup={len(res.duplicated)} peak_rss_mb={peak_mb:.0f}")


# --------------------------------------------------------------- tests --

def test_gzip_bomb_and_list_offsets_by_timestamp(broker_factory):
    """The issue's repro: a 1 MB gzip batch of 1 GiB of zeros produced raw,
    then a 40-byte ListOffsets by timestamp. Before item 8 the broker stored
    the bomb and the lookup inflated it (2.1 GB RSS); now the produce is
    refused with MESSAGE_TOO_LARGE after at most 8 MiB of inflation, a batch
    whose records do not match its count with CORRUPT_MESSAGE, and the lookup
    answers normally."""
    broker = broker_factory()
    topic, ledger_topic = unique_name("bomb"), unique_name("bomb-ledger")
    ck_create_topic(broker.bootstrap, topic, 1)
    ck_create_topic(broker.bootstrap, ledger_topic, 1)
    ts = int(time.time() * 1000)
    bomb = big_bomb(ts)  # seconds of gzip: before the ledger starts
    ledger = AckLedger(broker.bootstrap, ledger_topic, rate=200).start()
    ledger.wait_acked(50)
    assert len(bomb) < 1_200_000, f"bomb is {len(bomb)} bytes"
    # A batch declaring a million records but holding one: decoders would
    # reserve memory for all of them.
    liar = batch(GZIP, 1_000_000, gzip_stream([record(10)]), ts)
    raw = Raw(broker)
    try:
        produce_err = raw.produce(topic, bomb)
        liar_err = raw.produce(topic, liar)
        good = produce(broker.bootstrap, topic, [{"value": b"fine", "timestamp": ts + 5, "partition": 0}])
        lookup = raw.list_offsets(topic, ts)
    finally:
        raw.close()
    ledger.wait_acked(50)
    ledger.stop()
    peak_mb = peak_rss_kb(broker.pid) / 1024
    res = ledger.verify()
    chaos_line("gzip-bomb+list-offsets", 2, res, peak_mb)
    assert broker.alive(), f"broker died:\n{broker.log_tail()}"
    assert peak_mb < PEAK_RSS_BOUND_MB, f"peak RSS {peak_mb:.0f} MB over the {PEAK_RSS_BOUND_MB} MB bound"
    assert produce_err == MESSAGE_TOO_LARGE, f"bomb produce answered {produce_err}"
    assert liar_err == CORRUPT_MESSAGE, f"lying record count answered {liar_err}"
    assert lookup == (NONE, ts + 5, good[0].offset), f"ListOffsets by timestamp answered {lookup}"


def test_many_small_bombs_under_a_detector(broker_factory, tmp_path):
    """A detector on a topic holding 100 gzip batches of 4 MiB of zeros each
    (every one within the per-batch cap, so they are stored): one 1 MiB read
    of them would inflate to 400 MB. The detector input refuses the read at
    its budget, the deployment skips it (failure policy `skip`, counted in
    failed_batches) and goes on to the records after it."""
    broker = broker_factory()
    admin = admin_of(broker)
    topic, out, ledger_topic = unique_name("bombs-in"), unique_name("bombs-out"), unique_name("bombs-ledger")
    ck_create_topic(broker.bootstrap, topic, 1)
    ck_create_topic(broker.bootstrap, ledger_topic, 1)
    ledger = AckLedger(broker.bootstrap, ledger_topic, rate=200).start()
    ledger.wait_acked(50)
    ts = int(time.time() * 1000)
    raw = Raw(broker)
    errs = []
    try:
        one = small_bomb(ts)
        for _ in range(100):
            errs.append(raw.produce(topic, one))
    finally:
        raw.close()
    assert errs == [NONE] * 100, f"produce answered {sorted(set(errs))}"
    after = produce(broker.bootstrap, topic, [
        {"value": b'{"amount": 9000}', "timestamp": ts + i, "partition": 0} for i in range(20)])
    module = admin.upload_module("vigil_plugin_threshold_rules")
    name = unique_name("bombs")
    config = {"rules": [{"name": "big", "field": "amount", "op": ">", "value": 5000}], "match": "any"}
    admin.deploy(spec(name, module, topic, out, config, value_schema={"amount": "float64"},
                      start="earliest", on_failure="skip",
                      limits=limits(memory_mb=64, cpu_ms=2000, max_alerts=1000)))
    end = after[-1].offset + 1
    def done(s):
        offs = [q["offset"] for q in s.get("partitions", []) if q["topic"] == topic]
        return s.get("state") == "failed" or (offs and offs[0] >= end)
    st = wait_status(admin, name, done, 120, f"offset {end}")
    ledger.wait_acked(50)
    ledger.stop()
    peak_mb = peak_rss_kb(broker.pid) / 1024
    res = ledger.verify()
    p = partition_of(st, topic, 0)
    chaos_line("small-bombs+detector", 100, res, peak_mb)
    assert broker.alive(), f"broker died:\n{broker.log_tail()}"
    assert peak_mb < PEAK_RSS_BOUND_MB, f"peak RSS {peak_mb:.0f} MB over the {PEAK_RSS_BOUND_MB} MB bound"
    assert st.get("state") != "failed", f"deployment failed: {st}"
    assert p["failed_batches"] >= 1, f"no batch was refused: {p}"
    assert p["offset"] >= end, p
