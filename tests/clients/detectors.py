"""Shared helpers for the detector-deployment tests (test_detectors*.py):
the admin API over stdlib urllib, the `vigil detector` CLI, locating the
built .wasm modules, producing JSON input with confluent-kafka and reading
alert / dead-letter topics back in full.

Modules come from $VIGIL_WASM_DIR (default
target/wasm/wasm32-unknown-unknown/release), built by scripts/build-detectors.sh.
A missing module fails the test (never skips) with that instruction.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import REPO_ROOT, vigil_bin
from helpers import Deadline

WASM_MODULES = [
    "vigil_plugin_zscore",
    "vigil_plugin_ewma_bands",
    "vigil_plugin_rate_spike",
    "vigil_plugin_threshold_rules",
    "vigil_plugin_seasonal",
    "vigil_test_hostile",
]

# Alert and dead-letter header names (runtime/engine/src/output.rs).
H_DEPLOYMENT = "vigil.deployment"
H_MODULE = "vigil.module"
H_SOURCE_TOPIC = "vigil.source.topic"
H_SOURCE_PARTITION = "vigil.source.partition"
H_SOURCE_OFFSET = "vigil.source.offset"
H_INPUT_END = "vigil.input.end"
H_SEVERITY = "vigil.severity"
H_ERROR = "vigil.error"
H_CAUSE = "vigil.error.cause"

HOSTILE_MODES = ["ok", "trap", "loop", "memory", "recursion", "flood", "error"]


# ------------------------------------------------------------------ modules --

def wasm_dir() -> Path:
    d = os.environ.get("VIGIL_WASM_DIR")
    return Path(d) if d else REPO_ROOT / "target" / "wasm" / "wasm32-unknown-unknown" / "release"


def wasm_path(module: str) -> Path:
    """Path of a built module (e.g. "vigil_test_hostile"); fails the test
    with the build instruction when it is missing."""
    p = wasm_dir() / f"{module}.wasm"
    if not p.is_file():
        pytest.fail(
            f"detector module {p} is missing: run scripts/build-detectors.sh "
            f"(needs target/release/vigil; or set VIGIL_WASM_DIR to where the .wasm files are)",
            pytrace=False,
        )
    return p


def wasm_bytes(module: str) -> bytes:
    return wasm_path(module).read_bytes()


def sha256_hex(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ---------------------------------------------------------------- admin API --

class ApiError(AssertionError):
    pass


class Admin:
    """The broker's /v1 admin API (JSON over HTTP, stdlib only)."""

    def __init__(self, base_url: str, log_tail=None):
        self.base = base_url.rstrip("/")
        self._log_tail = log_tail or (lambda: "")

    def request(self, method: str, path: str, *, body: bytes | None = None, json_body=None,
                timeout: float = 60) -> tuple[int, object]:
        """Returns (HTTP status, parsed JSON or the raw text if not JSON)."""
        headers = {}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["content-type"] = "application/json"
        elif body is not None:
            headers["content-type"] = "application/wasm"
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except (OSError, urllib.error.URLError) as e:
            raise ApiError(f"{method} {path}: cannot reach the admin API: {e!r}\n{self._log_tail()}") from None
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    def expect(self, want: int, method: str, path: str, **kw):
        status, body = self.request(method, path, **kw)
        if status != want:
            raise ApiError(f"{method} {path}: HTTP {status} (expected {want}): {body!r}\n{self._log_tail()}")
        return body

    def expect_error(self, want: int, method: str, path: str, **kw) -> str:
        """Asserts HTTP `want` with a {"error": "..."} body; returns the message."""
        status, body = self.request(method, path, **kw)
        assert status == want, f"{method} {path}: HTTP {status} (expected {want}): {body!r}"
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], (
            f"{method} {path}: HTTP {status} without an {{\"error\": ...}} body: {body!r}")
        return body["error"]

    # modules
    def upload(self, wasm: bytes) -> dict:
        return self.expect(201, "POST", "/v1/modules", body=wasm)

    def upload_module(self, module: str) -> str:
        """Uploads a built module by name; returns its hash."""
        meta = self.upload(wasm_bytes(module))
        return meta["hash"]

    def modules(self) -> list[dict]:
        return self.expect(200, "GET", "/v1/modules")

    # deployments
    def deploy(self, spec: dict) -> dict:
        return self.expect(201, "POST", "/v1/deployments", json_body=spec)

    def status(self, name: str) -> dict:
        return self.expect(200, "GET", f"/v1/deployments/{name}")

    def list(self) -> list[dict]:
        return self.expect(200, "GET", "/v1/deployments")

    def pause(self, name: str) -> dict:
        return self.expect(200, "POST", f"/v1/deployments/{name}/pause")

    def resume(self, name: str) -> dict:
        return self.expect(200, "POST", f"/v1/deployments/{name}/resume")

    def undeploy(self, name: str) -> dict:
        return self.expect(200, "DELETE", f"/v1/deployments/{name}")


def admin_of(broker) -> Admin:
    return Admin(broker.admin_url, broker.log_tail)


def limits(memory_mb: int = 32, cpu_ms: int = 500, max_alerts: int = 10_000) -> dict:
    """A `limits` object (runtime/host/src/limits.rs: memory in bytes)."""
    return {
        "memory_mb": memory_mb,
        "cpu_ms_per_batch": cpu_ms,
        "max_alerts_per_batch": max_alerts,
    }


def spec(name: str, module_hash: str, inputs: list[str] | str, output: str, config: dict | None = None,
         **extra) -> dict:
    s = {
        "name": name,
        "module": module_hash,
        "inputs": [inputs] if isinstance(inputs, str) else list(inputs),
        "output": output,
        "config": config if config is not None else {},
    }
    s.update(extra)
    return s


def describe(st: dict) -> str:
    parts = [f"{p.get('topic')}[{p.get('partition')}] off={p.get('offset')} hw={p.get('high_watermark')} "
             f"lag={p.get('lag')} rec={p.get('records')} alerts={p.get('alerts')} failed={p.get('failed_batches')} "
             f"bad={p.get('bad_records')} committed={p.get('committed_offset')} err={p.get('last_error')!r}"
             for p in st.get("partitions", [])]
    return f"{st.get('name')} state={st.get('state')} error={st.get('error')!r}\n    " + "\n    ".join(parts)


def wait_status(admin: Admin, name: str, pred, timeout: float, what: str) -> dict:
    """Polls GET /v1/deployments/NAME until pred(status) is true; returns it."""
    dl = Deadline(timeout, f"deployment {name}: {what}")
    while True:
        st = admin.status(name)
        if pred(st):
            return st
        if dl.expired():
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last status:\n{describe(st)}")
        time.sleep(0.1)


def wait_state(admin: Admin, name: str, state: str, timeout: float = 30) -> dict:
    return wait_status(admin, name, lambda s: s.get("state") == state, timeout, f"state {state}")


def wait_caught_up(admin: Admin, name: str, ends: dict[tuple[str, int], int], timeout: float = 60,
                   allow_failed: bool = False) -> dict:
    """Until every listed input partition's `offset` reached its end (acked
    log end offset). Fails early if the deployment fails."""
    def done(st):
        if not allow_failed and st.get("state") == "failed":
            raise AssertionError(f"deployment {name} failed while catching up:\n{describe(st)}")
        offs = {(p["topic"], p["partition"]): p["offset"] for p in st.get("partitions", [])}
        return all(offs.get(k, -1) >= v for k, v in ends.items())
    return wait_status(admin, name, done, timeout, f"caught up to {ends}")


def partition_of(st: dict, topic: str, partition: int) -> dict:
    for p in st["partitions"]:
        if p["topic"] == topic and p["partition"] == partition:
            return p
    raise AssertionError(f"status has no partition {topic}[{partition}]:\n{describe(st)}")


# --------------------------------------------------------------------- CLI --

@dataclass
class CliResult:
    rc: int
    stdout: str
    stderr: str

    def json(self):
        try:
            return json.loads(self.stdout)
        except ValueError:
            raise AssertionError(f"CLI output is not JSON: {self.stdout!r} (stderr {self.stderr!r})") from None


def cli(broker, *args: str, timeout: float = 60, check: bool = True) -> CliResult:
    """Runs `vigil detector --admin URL ARGS...`."""
    argv = [str(vigil_bin()), "detector", "--admin", broker.admin_url, *args]
    env = {k: v for k, v in os.environ.items() if k != "VIGIL_ADMIN"}
    try:
        p = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"`{' '.join(argv)}` timed out after {timeout}s") from None
    r = CliResult(p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"))
    if check and r.rc != 0:
        raise AssertionError(f"`{' '.join(argv)}` exited {r.rc}\nstdout: {r.stdout}\nstderr: {r.stderr}")
    return r


# --------------------------------------------------------------- producing --

def producer(bootstrap: str, **extra):
    from confluent_kafka import Producer

    conf = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 60000,
        "socket.timeout.ms": 10000,
    }
    conf.update(extra)
    return Producer(conf)


@dataclass
class Produced:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None
    headers: list = field(default_factory=list)


def produce(bootstrap_or_producer, topic: str, records, *, timeout: float = 120) -> list[Produced]:
    """Produces records, each (key, value) or a dict with key/value/partition/
    timestamp/headers; asserts all are acked; returns them with partition/offset
    in input order."""
    p = producer(bootstrap_or_producer) if isinstance(bootstrap_or_producer, str) else bootstrap_or_producer
    out: list[Produced | None] = []
    errors = []

    def cb(i, err, msg):
        if err is not None:
            errors.append((i, err))
            return
        r = out[i]
        r.partition, r.offset = msg.partition(), msg.offset()
        if r.timestamp is None:
            r.timestamp = msg.timestamp()[1]

    for i, rec in enumerate(records):
        if isinstance(rec, dict):
            key, value = rec.get("key"), rec.get("value")
            part, ts, hdrs = rec.get("partition"), rec.get("timestamp"), rec.get("headers") or []
        else:
            key, value = rec
            part, ts, hdrs = None, None, []
        if isinstance(key, str):
            key = key.encode()
        if isinstance(value, str):
            value = value.encode()
        out.append(Produced(topic, -1, -1, key, value, ts, list(hdrs)))
        kw = {}
        if part is not None:
            kw["partition"] = part
        if ts is not None:
            kw["timestamp"] = ts
        if hdrs:
            kw["headers"] = hdrs
        while True:
            try:
                p.produce(topic, value=value, key=key, on_delivery=lambda err, msg, i=i: cb(i, err, msg), **kw)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(timeout)
    assert left == 0, f"{left} records to {topic} not acked within {timeout}s"
    assert not errors, f"{len(errors)} delivery errors producing to {topic}, first: {errors[0]}"
    assert all(r.offset >= 0 for r in out), "a record has no delivery report"
    return out


def ends_of(recs: list[Produced]) -> dict[tuple[str, int], int]:
    """{(topic, partition): last acked offset + 1}."""
    ends: dict[tuple[str, int], int] = {}
    for r in recs:
        k = (r.topic, r.partition)
        ends[k] = max(ends.get(k, 0), r.offset + 1)
    return ends


def watermarks(bootstrap: str, topic: str, timeout: float = 10) -> dict[int, tuple[int, int]]:
    """{partition: (low, high)} from ListOffsets."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "vigil-watermarks", "enable.auto.commit": False,
                  "allow.auto.create.topics": False})
    try:
        md = c.list_topics(topic, timeout=timeout)
        t = md.topics.get(topic)
        assert t is not None and t.error is None, f"topic {topic} not in metadata: {t and t.error}"
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout) for p in sorted(t.partitions)}
    finally:
        c.close()


def topic_partitions(bootstrap: str, topic: str) -> int | None:
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return len(t.partitions)


# --------------------------------------------------------------- consuming --

@dataclass
class Out:
    """A record read back from an alert or dead-letter topic."""
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list
    timestamp: int

    def h(self, name: str) -> str | None:
        """Last value of header `name`, decoded."""
        v = None
        for k, val in self.headers:
            if k == name:
                v = None if val is None else val.decode("utf-8", "replace")
        return v

    def hs(self, name: str) -> list:
        return [v for k, v in self.headers if k == name]

    @property
    def doc(self) -> dict:
        return json.loads(self.value)

    @property
    def source(self) -> tuple[str, int, int]:
        """(topic, partition, offset) from the provenance headers."""
        return (self.h(H_SOURCE_TOPIC), int(self.h(H_SOURCE_PARTITION)), int(self.h(H_SOURCE_OFFSET)))


def read_topic(bootstrap: str, topic: str, *, timeout: float = 60, min_records: int = 0) -> list[Out]:
    """Everything in `topic` up to its current high watermarks (taken after at
    least `min_records` records exist, polled until `timeout`), in partition
    then offset order. Reads by assignment, no group."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    dl = Deadline(timeout, f"reading {topic}")
    while True:
        wm = watermarks(bootstrap, topic)
        total = sum(hi - lo for lo, hi in wm.values())
        if total >= min_records:
            break
        dl.check(f"(want >= {min_records} records, topic has {total}: {wm})")
        time.sleep(0.1)
    want = {p: hi for p, (lo, hi) in wm.items() if hi > lo}
    if not want:
        return []
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "vigil-detector-tests",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "allow.auto.create.topics": False,
        "socket.timeout.ms": 10000,
    })
    out: list[Out] = []
    pos = {p: lo for p, (lo, hi) in wm.items()}
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in want])
        while any(pos[p] < hi for p, hi in want.items()):
            dl.check(f"(positions {pos}, want {want}, got {len(out)})")
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    raise AssertionError(f"consumer error on {topic}: {m.error()}")
                p = m.partition()
                if m.offset() >= want.get(p, 0):
                    continue
                out.append(Out(p, m.offset(), m.key(), m.value(), list(m.headers() or []), m.timestamp()[1]))
                pos[p] = m.offset() + 1
    finally:
        c.close()
    out.sort(key=lambda o: (o.partition, o.offset))
    return out


def wait_alerts(bootstrap: str, topic: str, pred, timeout: float, what: str) -> list[Out]:
    """Re-reads `topic` until pred(records) holds; returns the records."""
    dl = Deadline(timeout, what)
    while True:
        recs = read_topic(bootstrap, topic, timeout=max(5.0, dl.left()))
        if pred(recs):
            return recs
        if dl.expired():
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; {topic} has {len(recs)} records: "
                                 f"{[(r.partition, r.offset, r.h(H_SOURCE_OFFSET)) for r in recs[-20:]]}")
        time.sleep(0.2)


def dupes(items) -> dict:
    return {k: n for k, n in Counter(items).items() if n > 1}


# -------------------------------------------------------- background load --

class BackgroundProducer:
    """Produces to `topic` from a thread (acks=all, idempotent), recording
    every delivery's time and every error, until stop()."""

    def __init__(self, bootstrap: str, topic: str, rate_per_s: float = 200):
        self.bootstrap = bootstrap
        self.topic = topic
        self.interval = 1.0 / rate_per_s
        self.delivered: list[float] = []  # monotonic times of acks
        self.errors: list = []
        self.sent = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"bg-producer-{topic}", daemon=True)
        self.left_in_flight = None

    def _cb(self, err, msg):
        with self._lock:
            if err is not None:
                self.errors.append((time.monotonic(), str(err)))
            else:
                self.delivered.append(time.monotonic())

    def _run(self):
        p = producer(self.bootstrap, **{"linger.ms": 1})
        i = 0
        while not self._stop.is_set():
            try:
                p.produce(self.topic, key=f"bg-{i % 17}".encode(), value=f"background {i}".encode(), on_delivery=self._cb)
                i += 1
                self.sent = i
            except BufferError:
                pass
            p.poll(self.interval)
        self.left_in_flight = p.flush(60)

    def start(self) -> "BackgroundProducer":
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(90)
        assert not self._thread.is_alive(), "background producer did not stop"

    def count(self) -> int:
        with self._lock:
            return len(self.delivered)

    def deliveries_after(self, t: float) -> int:
        with self._lock:
            return sum(1 for d in self.delivered if d > t)

    def wait_deliveries_after(self, t: float, n: int = 5, timeout: float = 30, what: str = ""):
        dl = Deadline(timeout, f"background producer acks after {what}")
        while self.deliveries_after(t) < n:
            with self._lock:
                errs = list(self.errors[:3])
            assert not errs, f"background producer delivery errors: {errs}"
            dl.check(f"(acks after: {self.deliveries_after(t)}, total {self.count()}, sent {self.sent})")
            time.sleep(0.05)

    def max_gap(self) -> float:
        with self._lock:
            d = list(self.delivered)
        return max((b - a for a, b in zip(d, d[1:])), default=0.0)
