#!/usr/bin/env python3
"""Produce/consume throughput and p99 over SASL_SSL (TLS + SCRAM-SHA-512)
versus PLAINTEXT, side by side in one run against one vigil broker
(issue 13, "Benchmark"; target: SASL_SSL >= 0.8x plaintext throughput).

    target/test-venv/bin/python benches/security/bench_security.py

Needs target/release/vigil (or $VIGIL_BIN), the openssl CLI and
confluent-kafka (the tests' venv has it). Prints a table; never asserts on
timings. The Rust benches' librdkafka is built without OpenSSL, hence a
Python driver here: confluent-kafka wraps librdkafka with TLS and SASL,
and the client work is the same C code in both columns.

Environment: VIGIL_BENCH_RECORDS (100000), VIGIL_BENCH_RECORD_BYTES (512),
VIGIL_BENCH_AUTHORIZER (off; `on` adds ACL checks, granted by a wildcard
ACL, to the SASL_SSL column)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[2]
RECORDS = int(os.environ.get("VIGIL_BENCH_RECORDS", "100000"))
RECORD_BYTES = int(os.environ.get("VIGIL_BENCH_RECORD_BYTES", "512"))
AUTHORIZER = os.environ.get("VIGIL_BENCH_AUTHORIZER", "off")
PASSWORD = "bench-admin-password"
PARTITIONS = 4
DEADLINE_S = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(d: Path) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=bench-ca",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr", cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "1", "-extfile", "server.ext", "-out", "server.pem", cwd=d)


def start_broker(work: Path) -> tuple[subprocess.Popen, dict[str, dict]]:
    vigil = os.environ.get("VIGIL_BIN", str(ROOT / "target/release/vigil"))
    plain, secure, admin = free_port(), free_port(), free_port()
    env = dict(os.environ, VIGIL_BOOTSTRAP_PASSWORD=PASSWORD)
    argv = [vigil, "serve", "--listen", f"127.0.0.1:{plain}", "--admin-listen", f"127.0.0.1:{admin}",
            "--data-dir", str(work / "data"), "--advertised-listener", f"127.0.0.1:{plain}",
            "--listener", f"SASL_SSL://127.0.0.1:{secure}",
            "--tls-cert", str(work / "server.pem"), "--tls-key", str(work / "server.key"),
            "--sasl-mechanisms", "SCRAM-SHA-512", "--superuser", "admin",
            "--authorizer", AUTHORIZER]
    log = open(work / "vigil.log", "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/healthz", timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"vigil did not start; see {work / 'vigil.log'}")
            time.sleep(0.1)
    confs = {
        "PLAINTEXT": {"bootstrap.servers": f"127.0.0.1:{plain}"},
        "SASL_SSL": {"bootstrap.servers": f"127.0.0.1:{secure}", "security.protocol": "SASL_SSL",
                     "ssl.ca.location": str(work / "ca.pem"), "sasl.mechanisms": "SCRAM-SHA-512",
                     "sasl.username": "bench", "sasl.password": PASSWORD},
    }
    return proc, confs


def create_user_and_acls(confs: dict[str, dict]) -> None:
    admin_conf = dict(confs["SASL_SSL"], **{"sasl.username": "admin"})
    admin = AdminClient(admin_conf)
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, ResourcePatternType,
                                       ResourceType, UserScramCredentialUpsertion, ScramCredentialInfo,
                                       ScramMechanism)
    up = UserScramCredentialUpsertion("bench", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                                      PASSWORD.encode())
    for f in admin.alter_user_scram_credentials([up]).values():
        f.result(30)
    if AUTHORIZER == "on":
        acls = [AclBinding(rt, "*", ResourcePatternType.LITERAL, p, "*", AclOperation.ALL,
                           AclPermissionType.ALLOW)
                for rt in (ResourceType.TOPIC, ResourceType.GROUP)
                for p in ("User:bench", "User:ANONYMOUS")]
        acls.append(AclBinding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL,
                               "User:ANONYMOUS", "*", AclOperation.ALL, AclPermissionType.ALLOW))
        for f in admin.create_acls(acls).values():
            f.result(30)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


def produce(conf: dict, topic: str) -> dict:
    lat: list[float] = []
    p = Producer(dict(conf, **{"acks": "all", "linger.ms": 5, "queue.buffering.max.messages": 1_000_000}))
    value = b"x" * RECORD_BYTES
    errors = [0]

    def dr(err) -> None:
        if err is not None:
            errors[0] += 1

    start = time.monotonic()
    for i in range(RECORDS):
        sent = time.monotonic()
        while True:
            try:
                p.produce(topic, value=value, partition=i % PARTITIONS,
                          on_delivery=lambda err, _m, s=sent: (lat.append(time.monotonic() - s), dr(err)))
                break
            except BufferError:
                p.poll(0.01)
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(DEADLINE_S)
    secs = time.monotonic() - start
    assert left == 0 and errors[0] == 0, f"{left} undelivered, {errors[0]} failed"
    return {"rps": RECORDS / secs, "mbps": RECORDS * RECORD_BYTES / secs / 1e6,
            "p50": pct(lat, 0.50) * 1000, "p99": pct(lat, 0.99) * 1000}


def consume(conf: dict, topic: str) -> dict:
    c = Consumer(dict(conf, **{"group.id": f"bench-{topic}", "enable.auto.commit": False,
                               "fetch.max.bytes": 52428800}))
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got, gaps = 0, []
    start = last = time.monotonic()
    deadline = start + DEADLINE_S
    while got < RECORDS and time.monotonic() < deadline:
        msgs = c.consume(10000, 1.0)
        now = time.monotonic()
        good = [m for m in msgs if m.error() is None]
        if good:
            # Time a record waited between batches: the consumer-side
            # latency a reader sees while catching up.
            gaps.extend([now - last] * len(good))
            last = now
        got += len(good)
    secs = time.monotonic() - start
    c.close()
    assert got >= RECORDS, f"read {got} of {RECORDS}"
    return {"rps": got / secs, "mbps": got * RECORD_BYTES / secs / 1e6, "p99": pct(gaps, 0.99) * 1000}


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="vigil-sec-bench-"))
    proc = None
    try:
        make_certs(work)
        proc, confs = start_broker(work)
        create_user_and_acls(confs)
        admin = AdminClient(dict(confs["SASL_SSL"], **{"sasl.username": "admin"}))
        results = {}
        for proto in ("PLAINTEXT", "SASL_SSL"):
            topic = f"bench-{proto.lower()}"
            for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
                f.result(30)
            # Warm-up: connections, metadata, the first WAL commits.
            Producer(confs[proto]).flush(5)
            results[proto] = (produce(confs[proto], topic), consume(confs[proto], topic))
        pl, ss = results["PLAINTEXT"], results["SASL_SSL"]
        print(f"\nvigil security benchmark: {RECORDS} records x {RECORD_BYTES} B, {PARTITIONS} partitions, "
              f"acks=all, authorizer {AUTHORIZER}\n")
        print(f"| {'':26} | {'PLAINTEXT':>10} | {'SASL_SSL':>10} | {'ratio':>6} |")
        print(f"|{'-' * 28}|{'-' * 12}|{'-' * 12}|{'-' * 8}|")
        rows = [("produce records/s", pl[0]["rps"], ss[0]["rps"]),
                ("produce MB/s", pl[0]["mbps"], ss[0]["mbps"]),
                ("produce ack p50 (ms)", pl[0]["p50"], ss[0]["p50"]),
                ("produce ack p99 (ms)", pl[0]["p99"], ss[0]["p99"]),
                ("consume records/s", pl[1]["rps"], ss[1]["rps"]),
                ("consume MB/s", pl[1]["mbps"], ss[1]["mbps"]),
                ("consume batch-gap p99 (ms)", pl[1]["p99"], ss[1]["p99"])]
        for name, a, b in rows:
            print(f"| {name:26} | {a:10.1f} | {b:10.1f} | {b / a if a else float('nan'):6.2f} |")
        print("\nthroughput ratios (target >= 0.8): produce "
              f"{ss[0]['rps'] / pl[0]['rps']:.2f}, consume {ss[1]['rps'] / pl[1]['rps']:.2f}")
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
