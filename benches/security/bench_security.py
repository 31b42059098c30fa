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
ACL, to the SASL_SSL column), VIGIL_BENCH_ROUNDS (3: each round measures
both columns, in alternating order, on fresh topics; the table shows the
median and the spread), VIGIL_BENCH_BROKER_CPUS / VIGIL_BENCH_CLIENT_CPUS
(e.g. `0` and `1`: the broker runs under `taskset -c`, this driver and its
librdkafka threads pin themselves, so that client and broker do not compete
for one core; unset: no pinning)."""

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
ROUNDS = int(os.environ.get("VIGIL_BENCH_ROUNDS", "3"))
BROKER_CPUS = os.environ.get("VIGIL_BENCH_BROKER_CPUS")
CLIENT_CPUS = os.environ.get("VIGIL_BENCH_CLIENT_CPUS")


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
    if BROKER_CPUS:
        argv = ["taskset", "-c", BROKER_CPUS, *argv]
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


def spread(xs: list[float], fmt: str = ".1f") -> str:
    """Median, and min-max when there are several rounds."""
    xs = sorted(xs)
    mid = xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2
    if len(xs) == 1:
        return format(mid, fmt)
    return f"{format(mid, fmt)} ({format(xs[0], fmt)}-{format(xs[-1], fmt)})"


def main() -> None:
    if CLIENT_CPUS:
        # Threads librdkafka starts later inherit the affinity.
        os.sched_setaffinity(0, {int(c) for c in CLIENT_CPUS.split(",")})
    work = Path(tempfile.mkdtemp(prefix="vigil-sec-bench-"))
    proc = None
    try:
        make_certs(work)
        proc, confs = start_broker(work)
        create_user_and_acls(confs)
        admin = AdminClient(dict(confs["SASL_SSL"], **{"sasl.username": "admin"}))
        results: dict[str, list] = {"PLAINTEXT": [], "SASL_SSL": []}
        for r in range(ROUNDS):
            order = ("PLAINTEXT", "SASL_SSL") if r % 2 == 0 else ("SASL_SSL", "PLAINTEXT")
            for proto in order:
                topic = f"bench-{proto.lower()}-{r}"
                for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
                    f.result(30)
                # Warm-up: connections, metadata, the first WAL commits.
                Producer(confs[proto]).flush(5)
                results[proto].append((produce(confs[proto], topic), consume(confs[proto], topic)))
            pl, ss = results["PLAINTEXT"][-1], results["SASL_SSL"][-1]
            print(f"round {r + 1}/{ROUNDS}: produce {ss[0]['rps'] / pl[0]['rps']:.2f}x, "
                  f"consume {ss[1]['rps'] / pl[1]['rps']:.2f}x", flush=True)
        pl, ss = results["PLAINTEXT"], results["SASL_SSL"]
        pinning = (f"broker on CPUs {BROKER_CPUS}, client on CPUs {CLIENT_CPUS}"
                   if BROKER_CPUS or CLIENT_CPUS else "no CPU pinning")
        print(f"\nvigil security benchmark: {RECORDS} records x {RECORD_BYTES} B, {PARTITIONS} partitions, "
              f"acks=all, authorizer {AUTHORIZER}, {ROUNDS} rounds (median (min-max)), {pinning}\n")
        print(f"| {'':26} | {'PLAINTEXT':>22} | {'SASL_SSL':>22} | {'ratio':>18} |")
        print(f"|{'-' * 28}|{'-' * 24}|{'-' * 24}|{'-' * 20}|")
        rows = [("produce records/s", 0, "rps"), ("produce MB/s", 0, "mbps"),
                ("produce ack p50 (ms)", 0, "p50"), ("produce ack p99 (ms)", 0, "p99"),
                ("consume records/s", 1, "rps"), ("consume MB/s", 1, "mbps"),
                ("consume batch-gap p99 (ms)", 1, "p99")]
        for name, side, key in rows:
            a = [x[side][key] for x in pl]
            b = [x[side][key] for x in ss]
            ratios = [y / x if x else float("nan") for x, y in zip(a, b)]
            print(f"| {name:26} | {spread(a):>22} | {spread(b):>22} | "
                  f"{spread(ratios, '.2f'):>18} |")
        pr = [s[0]["rps"] / p[0]["rps"] for p, s in zip(pl, ss)]
        cr = [s[1]["rps"] / p[1]["rps"] for p, s in zip(pl, ss)]
        print("\nthroughput ratios per round (target >= 0.8): produce "
              f"{', '.join(f'{x:.2f}' for x in pr)}; consume {', '.join(f'{x:.2f}' for x in cr)}")
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
