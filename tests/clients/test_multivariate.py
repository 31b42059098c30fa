"""The multivariate `rcf` plugin (wasm, real host, real broker, real
producer and consumer) and the labels-topic convention: a deployment keyed
by host over three metric columns raises one incident per injected anomaly,
attributed to the column that moved, with a closing notice; an operator
labels alerts on `<alerts>.labels`; `vigil eval --alerts` scores the live
deployment against those labels."""

from __future__ import annotations

import json
import random
import subprocess
import time

from conftest import REPO_ROOT, vigil_bin
from detectors import admin_of, ends_of, limits, produce, read_topic, spec, wait_caught_up
from helpers import ck_create_topic, ck_producer, unique_name

HOSTS = ["web-1", "web-2"]
ROWS = 900
# (host, first row, rows, column, change)
ANOMALIES = [("web-2", 650, 8, "lat", +15.0), ("web-1", 780, 8, "cpu", -16.0)]


def rows() -> list[dict]:
    rng = random.Random(14)
    t0 = int(time.time() * 1000) - 3_600_000
    recs = []
    for i in range(ROWS):
        for h in HOSTS:
            cpu = 50 + rng.gauss(0, 2)
            v = {"cpu": cpu, "mem": 0.5 * cpu + 10 + rng.gauss(0, 0.5), "lat": 20 + rng.gauss(0, 1),
                 "host": h}
            for host, start, n, col, change in ANOMALIES:
                if h == host and start <= i < start + n:
                    v[col] += change
            recs.append({"key": h, "value": json.dumps(v), "timestamp": t0 + len(recs) * 1000,
                         "partition": 0})
    return recs


def run_eval(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(vigil_bin()), "eval", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT)


def test_rcf_incidents_attribution_and_live_eval_against_labels(broker):
    admin = admin_of(broker)
    module_hash = admin.upload_module("vigil_plugin_rcf")
    topic, out = unique_name("metrics"), unique_name("metrics-alerts")
    ck_create_topic(broker.bootstrap, topic, 1)
    name = unique_name("rcf")
    admin.deploy(spec(name, module_hash, topic, out, {"fields": ["cpu", "mem", "lat"], "key": "host"},
                      value_schema={"cpu": "float64", "mem": "float64", "lat": "float64",
                                    "host": "string"},
                      start="earliest", limits=limits(memory_mb=64, cpu_ms=5000, max_alerts=1000)))
    produced = produce(broker.bootstrap, topic, rows())
    st = wait_caught_up(admin, name, ends_of(produced), timeout=120)
    written = sum(p["alerts"] for p in st["partitions"])
    alerts = read_topic(broker.bootstrap, out, timeout=30, min_records=written)

    opened = [a for a in alerts if a.doc["fields"].get("incident") == "opened"]
    closed = [a for a in alerts if a.doc["fields"].get("incident") == "closed"]
    # One incident per anomaly, at its first row, blamed on the column that moved.
    assert len(opened) == 2, [a.doc for a in alerts]
    by_host = {a.key.decode(): a for a in opened}
    for host, start, _, col, change in ANOMALIES:
        a = by_host[host]
        f = a.doc["fields"]
        assert a.source[2] == produced[start * len(HOSTS) + HOSTS.index(host)].offset, (host, a.source)
        assert f["field"] == col, f
        assert f["direction"] == ("above" if change > 0 else "below"), f
        assert f["expected_low"] < f["expected"] < f["expected_high"], f
        assert f["attribution"][0]["field"] == col and f["attribution"][0]["share"] > 0.5, f
        assert col in a.doc["message"] and "expected" in a.doc["message"], a.doc["message"]
    assert len(closed) == 2 and all(c.doc["fields"]["incident_end"] >= c.doc["fields"]["incident_start"]
                                    for c in closed), [c.doc for c in closed]

    # The operator's verdicts: web-2's latency incident was real, web-1's
    # cpu dip was planned (false alarm), and a record nobody alerted on was
    # an anomaly too (missed).
    labels = f"{out}.labels"
    ck_create_topic(broker.bootstrap, labels, 1)
    missed = produced[100]
    verdicts = [
        (by_host["web-2"].source, True),
        (by_host["web-1"].source, False),
        ((topic, missed.partition, missed.offset), True),
    ]
    p = ck_producer(broker.bootstrap)
    p.produce(labels, value=b"not a label")
    for (t, part, off), anomaly in verdicts:
        p.produce(labels, value=json.dumps({"topic": t, "partition": part, "offset": off,
                                            "anomaly": anomaly}).encode())
    assert p.flush(30) == 0

    r = run_eval("--alerts", out, "--bootstrap", broker.bootstrap, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    total = rep["rows"][-1]
    assert rep["labels_topic"] == labels and rep["malformed_labels"] == 1, rep
    assert rep["skipped"] == len(closed), rep
    assert (total["alerts"], total["true_alerts"], total["false_alerts"], total["unlabelled"]) == \
        (2, 1, 1, 0), total
    assert (total["anomalies"], total["detected"]) == (2, 1), total
    assert total["precision"] == 0.5 and total["recall"] == 0.5 and total["f1"] == 0.5, total

    # A window lets a label on a neighbouring record match the incident's alert.
    near = by_host["web-2"].source
    p.produce(labels, value=json.dumps({"topic": near[0], "partition": near[1], "offset": near[2] + 3,
                                        "anomaly": True}).encode())
    assert p.flush(30) == 0
    exact = json.loads(run_eval("--alerts", out, "--bootstrap", broker.bootstrap, "--json").stdout)
    assert exact["rows"][-1]["detected"] == 1, exact
    wide = run_eval("--alerts", out, "--bootstrap", broker.bootstrap, "--window", "5")
    assert wide.returncode == 0, wide.stderr
    assert "within ±5 offsets" in wide.stdout and "precision" in wide.stdout, wide.stdout
    total_line = [line for line in wide.stdout.splitlines() if line.startswith("total")][0]
    assert total_line.split()[6] == "2", wide.stdout  # detected: both true labels near web-2's alert


def test_live_eval_names_a_missing_labels_topic(broker):
    out = unique_name("no-labels-alerts")
    ck_create_topic(broker.bootstrap, out, 1)
    r = run_eval("--alerts", out, "--bootstrap", broker.bootstrap)
    assert r.returncode != 0
    assert f"{out}.labels" in r.stderr and "does not exist" in r.stderr, r.stderr
