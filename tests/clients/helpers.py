"""Shared helpers: record generation, byte-exact comparison, confluent-kafka
utilities and a minimal raw Kafka wire client for the malformed-input tests."""

from __future__ import annotations

import os
import random
import socket
import string
import struct
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from kafka.partitioner.default import murmur2  # Java-compatible murmur2

# ------------------------------------------------------------------ records --


@dataclass
class Rec:
    """One Kafka record as produced or consumed. `rid` (also sent as the
    "vigil-id" header) identifies it across produce/consume."""

    rid: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    partition: int | None = None
    offset: int | None = None
    timestamp: int | None = None

    def content(self):
        return (self.key, self.value, tuple(self.headers))


def new_seed() -> int:
    seed = int(os.environ.get("VIGIL_TEST_SEED", "0")) or random.SystemRandom().randrange(1, 2**31)
    print(f"random seed: {seed} (rerun with VIGIL_TEST_SEED={seed})")
    return seed


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


_TEXT_ALPHABET = string.ascii_letters + string.digits + " !#$%&()*+,-./;<=>?@[]^_{|}~" + "éßüñ日本語キー✓"


def _text(rng: random.Random, lo: int, hi: int, alphabet: str = _TEXT_ALPHABET) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def _binary(rng: random.Random, lo: int, hi: int) -> bytes:
    """Random bytes, guaranteed not to be valid UTF-8 when non-empty (contains 0xff)."""
    n = rng.randint(lo, hi)
    if n == 0:
        return b""
    b = bytearray(rng.getrandbits(8) for _ in range(n))
    b[rng.randrange(n)] = 0xFF
    return bytes(b)


def _compressible(rng: random.Random, n: int) -> bytes:
    word = bytes(rng.getrandbits(8) for _ in range(rng.randint(4, 16)))
    return (word * (n // len(word) + 1))[:n]


def make_records(
    rng: random.Random,
    n: int,
    tag: str,
    *,
    text: bool = False,
    null_keys: bool = False,
    null_values: bool = False,
    null_header_values: bool = False,
    dup_headers: bool = True,
    max_value: int = 1200,
) -> list[Rec]:
    """n records with random keys/values/headers. Binary payloads include
    non-UTF-8 bytes; `text=True` makes keys/values/headers printable text
    without newlines (and keys without ':') for kcat."""
    recs = []
    for i in range(n):
        rid = f"{tag}:{i}"
        if text:
            key = _text(rng, 1, 24, _TEXT_ALPHABET.replace(":", "")).encode()
            value = (_text(rng, 0, max_value // 3) + "|" + "abc" * rng.randint(0, 40)).encode()
            headers = [("vigil-id", rid.encode())]
        else:
            roll = rng.random()
            if null_keys and roll < 0.05:
                key = None
            else:
                key = _binary(rng, 1, 32)
            roll = rng.random()
            if null_values and roll < 0.03:
                value = None
            elif roll < 0.06:
                value = b""
            else:
                size = rng.randint(1, max_value)
                cut = rng.randint(0, size)
                value = _binary(rng, cut, cut) + _compressible(rng, size - cut)
            headers = [("vigil-id", rid.encode()), ("bin", _binary(rng, 1, 40))]
            if dup_headers:
                headers += [("dup", b"first"), ("dup", _binary(rng, 0, 8))]
            headers += [("empty", b""), (_text(rng, 1, 10, "abcdéキ✓"), _text(rng, 0, 20).encode())]
            if null_header_values and rng.random() < 0.2:
                headers.append(("null-value", None))
        recs.append(Rec(rid=rid, key=key, value=value, headers=headers))
    return recs


def java_partition(key: bytes, num_partitions: int) -> int:
    """The Java client's (and kafkajs' / librdkafka's `murmur2`) partition for a key."""
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions


def _short(v, limit: int = 80):
    r = repr(v)
    return r if len(r) <= limit else r[:limit] + "..."


def assert_exactly_once(
    expected: list[Rec],
    consumed: list[Rec],
    *,
    check_offsets: bool = True,
    check_timestamps: bool = False,
) -> None:
    """Every expected record consumed exactly once, byte for byte (key, value,
    headers, partition), in produce order within each partition."""
    seen: dict[str, int] = defaultdict(int)
    for r in consumed:
        seen[r.rid] += 1
    dups = {rid: c for rid, c in seen.items() if c > 1}
    assert not dups, f"{len(dups)} records consumed more than once, e.g. {list(dups.items())[:5]}"
    exp_ids = {r.rid for r in expected}
    unknown = [r.rid for r in consumed if r.rid not in exp_ids]
    assert not unknown, f"{len(unknown)} consumed records were never produced: {unknown[:5]}"
    missing = [r.rid for r in expected if r.rid not in seen]
    assert not missing, (
        f"{len(missing)} of {len(expected)} produced (acked) records never consumed, e.g. {missing[:10]}"
    )
    assert len(consumed) == len(expected)

    by_id = {r.rid: r for r in expected}
    for c in consumed:
        e = by_id[c.rid]
        assert c.partition == e.partition, f"{c.rid}: partition {c.partition} != produced {e.partition}"
        if check_offsets and e.offset is not None:
            assert c.offset == e.offset, f"{c.rid}: offset {c.offset} != acked offset {e.offset}"
        assert c.key == e.key, f"{c.rid}: key {_short(c.key)} != {_short(e.key)}"
        assert c.value == e.value, (
            f"{c.rid}: value differs (len {None if c.value is None else len(c.value)} vs "
            f"{None if e.value is None else len(e.value)}): {_short(c.value)} != {_short(e.value)}"
        )
        assert list(c.headers) == list(e.headers), f"{c.rid}: headers {c.headers} != {e.headers}"
        if check_timestamps and e.timestamp is not None:
            assert c.timestamp == e.timestamp, f"{c.rid}: timestamp {c.timestamp} != {e.timestamp}"

    # Order within each partition: consumed order == produce order.
    exp_order: dict[int, list[str]] = defaultdict(list)
    for e in expected:
        exp_order[e.partition].append(e.rid)
    got_order: dict[int, list[str]] = defaultdict(list)
    for c in consumed:
        got_order[c.partition].append(c.rid)
    for p, ids in exp_order.items():
        assert got_order[p] == ids, f"partition {p}: consumed order differs from produce order"
        if check_offsets:
            offs = [c.offset for c in consumed if c.partition == p]
            assert offs == sorted(offs), f"partition {p}: offsets not increasing: {offs[:20]}"


def rid_of(headers) -> str:
    for k, v in headers or []:
        if k == "vigil-id":
            return v.decode()
    raise AssertionError(f"record without vigil-id header: {headers!r}")


def split_half(items: list) -> tuple[list, list]:
    h = (len(items) + 1) // 2
    return items[:h], items[h:]


class Deadline:
    def __init__(self, seconds: float, what: str):
        self.end = time.monotonic() + seconds
        self.seconds = seconds
        self.what = what

    def left(self) -> float:
        return self.end - time.monotonic()

    def expired(self) -> bool:
        return self.left() <= 0

    def check(self, detail: str = "") -> None:
        if self.expired():
            raise AssertionError(f"timed out after {self.seconds}s: {self.what} {detail}")


# ------------------------------------------------------- confluent-kafka ---

def ck_admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def ck_create_topic(bootstrap: str, topic: str, partitions: int = 3, timeout: float = 30,
                    config: dict | None = None) -> None:
    from confluent_kafka.admin import NewTopic

    admin = ck_admin(bootstrap)
    new = NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})
    futs = admin.create_topics([new],
                               operation_timeout=timeout, request_timeout=timeout)
    futs[topic].result(timeout=timeout)
    wait_topic_ready(bootstrap, topic, partitions)


def wait_topic_ready(bootstrap: str, topic: str, partitions: int, timeout: float = 20) -> None:
    """Until metadata shows the topic with `partitions` partitions, each with a leader."""
    admin = ck_admin(bootstrap)
    dl = Deadline(timeout, f"topic {topic} visible in metadata with {partitions} partitions")
    last = None
    while True:
        md = admin.list_topics(timeout=5)
        t = md.topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == partitions and all(
            p.leader >= 0 for p in t.partitions.values()
        ):
            return
        last = None if t is None else (t.error, {p: v.leader for p, v in t.partitions.items()})
        dl.check(f"(last: {last})")
        time.sleep(0.1)


def ck_producer(bootstrap: str, codec: str = "none", **extra):
    """An idempotent acks=all confluent-kafka producer."""
    from confluent_kafka import Producer

    conf = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": codec,
        "linger.ms": 5,
        "batch.num.messages": 200,
        "message.timeout.ms": 60000,
        "socket.timeout.ms": 10000,
    }
    conf.update(extra)
    return Producer(conf)


def ck_produce(producer, topic: str, recs: list[Rec], base_ts: int, timeout: float = 60) -> None:
    """Produces `recs` (timestamps base_ts + i), fills in partition/offset/
    timestamp from the delivery reports and asserts every record was acked."""
    errors = []

    def on_delivery(r, err, msg):
        if err is not None:
            errors.append((r.rid, err))
            return
        r.partition = msg.partition()
        r.offset = msg.offset()

    for i, r in enumerate(recs):
        r.timestamp = base_ts + i
        while True:
            try:
                producer.produce(topic, value=r.value, key=r.key, headers=r.headers, timestamp=r.timestamp,
                                 on_delivery=lambda err, msg, r=r: on_delivery(r, err, msg))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(timeout)
    assert remaining == 0, f"{remaining} messages still in flight after {timeout}s flush"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[0]}"
    missing = [r.rid for r in recs if r.offset is None]
    assert not missing, f"no delivery report for {missing[:5]}"


def log_end_offsets(recs: list[Rec]) -> dict[int, int]:
    """{partition: last acked offset + 1} of produced records."""
    ends: dict[int, int] = {}
    for r in recs:
        ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
    return ends


def ck_consumer(bootstrap: str, group: str, **extra):
    from confluent_kafka import Consumer

    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 500,
        "socket.timeout.ms": 10000,
    }
    conf.update(extra)
    return Consumer(conf)


def ck_rec(msg) -> Rec:
    headers = [(k, v) for k, v in (msg.headers() or [])]
    return Rec(
        rid=rid_of(headers),
        key=msg.key(),
        value=msg.value(),
        headers=headers,
        partition=msg.partition(),
        offset=msg.offset(),
        timestamp=msg.timestamp()[1],
    )


def ck_consume(consumer, *, want: int, timeout: float, commit: bool = True, batch: int = 100) -> list[Rec]:
    """Consumes until at least `want` records; after each processed batch,
    commits synchronously. Returns the records in consumption order."""
    out: list[Rec] = []
    dl = Deadline(timeout, f"consuming {want} records")
    while len(out) < want:
        dl.check(f"(got {len(out)} of {want}; assignment {consumer.assignment()})")
        msgs = consumer.consume(num_messages=batch, timeout=min(1.0, max(0.1, dl.left())))
        got = 0
        for m in msgs:
            if m.error():
                raise AssertionError(f"consumer error: {m.error()}")
            out.append(ck_rec(m))
            got += 1
        if got and commit:
            consumer.commit(asynchronous=False)
    return out


def ck_assert_nothing_more(consumer, seconds: float = 1.5) -> None:
    dl = Deadline(seconds, "")
    extra = []
    while not dl.expired():
        for m in consumer.consume(num_messages=100, timeout=0.2):
            if m.error():
                raise AssertionError(f"consumer error: {m.error()}")
            extra.append(ck_rec(m).rid)
    assert not extra, f"{len(extra)} unexpected extra records after all were consumed: {extra[:10]}"


def ck_committed(bootstrap: str, group: str, topic: str, partitions: int = 3) -> dict[int, int]:
    from confluent_kafka import TopicPartition

    c = ck_consumer(bootstrap, group)
    try:
        res = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=15)
    finally:
        c.close()
    for tp in res:
        assert tp.error is None, f"committed() error for {tp}: {tp.error}"
    return {tp.partition: tp.offset for tp in res}


# ------------------------------------------------------- raw wire client ---

def kstring(s: str | None) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def compact_string(s: str) -> bytes:
    b = s.encode()
    return uvarint(len(b) + 1) + b


def request_header(api_key: int, api_version: int, correlation_id: int, client_id: str = "vigil-raw",
                   flexible: bool = False) -> bytes:
    h = struct.pack(">hhi", api_key, api_version, correlation_id) + kstring(client_id)
    if flexible:
        h += b"\x00"  # empty tagged fields
    return h


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket) -> bytes:
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    assert 0 <= size < 64 * 1024 * 1024, f"bad response frame size {size}"
    return recv_exact(sock, size)


def closed_or_response(sock: socket.socket, timeout: float = 5.0) -> str:
    """'closed' if the peer closes (or resets) the connection within `timeout`,
    'response' if it sends bytes; raises if it does neither."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(65536)
    except (ConnectionResetError, BrokenPipeError):
        return "closed"
    except socket.timeout:
        raise AssertionError(f"broker neither answered nor closed the connection within {timeout}s")
    return "closed" if data == b"" else "response"


def wait_closed(sock: socket.socket, timeout: float = 5.0) -> None:
    """Asserts the broker closes the connection within `timeout` (draining any
    bytes it sends first)."""
    sock.settimeout(0.5)
    dl = Deadline(timeout, "broker closing the connection")
    while not dl.expired():
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return
        except socket.timeout:
            continue
        if data == b"":
            return
    raise AssertionError(f"broker kept the connection open for {timeout}s")


def parse_api_versions_v0(body: bytes) -> tuple[int, int, dict[int, tuple[int, int]], bytes]:
    """Response header v0 + ApiVersionsResponse v0 body.
    Returns (correlation_id, error_code, {api_key: (min, max)}, trailing bytes)."""
    corr, err, n = struct.unpack_from(">ihi", body, 0)
    pos = 10
    apis = {}
    assert 0 <= n < 1000, f"bad api_keys array length {n}"
    for _ in range(n):
        k, lo, hi = struct.unpack_from(">hhh", body, pos)
        pos += 6
        apis[k] = (lo, hi)
    return corr, err, apis, body[pos:]
