"""Every shipped plugin, built to wasm, deployed on a real broker and fed by
a real producer: each must flag the anomaly injected into its input (and
nothing in the clean part), as a consumer of the alert topic sees it. Plus
`vigil demo`, the README's first command, end to end."""

from __future__ import annotations

import json
import math
import random
import subprocess
import time

from conftest import vigil_bin
from detectors import admin_of, ends_of, limits, produce, read_topic, spec, wait_caught_up, wasm_path
from helpers import ck_create_topic, unique_name


def deploy_and_collect(broker, module: str, config: dict, records: list[dict], schema: dict,
                       partitions: int = 1) -> tuple[list, list]:
    """Deploys `module` from earliest on a fresh topic, produces `records`,
    waits until the deployment has processed them all and returns
    (produced records, alerts)."""
    admin = admin_of(broker)
    module_hash = admin.upload_module(module)
    topic, out = unique_name(f"{module}-in"), unique_name(f"{module}-alerts")
    ck_create_topic(broker.bootstrap, topic, partitions)
    name = unique_name("plugin")
    admin.deploy(spec(name, module_hash, topic, out, config, value_schema=schema, start="earliest",
                      limits=limits(memory_mb=64, cpu_ms=2000, max_alerts=1000)))
    produced = produce(broker.bootstrap, topic, records)
    st = wait_caught_up(admin, name, ends_of(produced), timeout=90)
    written = sum(p["alerts"] for p in st["partitions"])
    alerts = read_topic(broker.bootstrap, out, timeout=30, min_records=written) if written else []
    return produced, alerts


def now_ms() -> int:
    return int(time.time() * 1000)


def test_ewma_bands_flags_the_jump_but_follows_the_drift(broker):
    rng = random.Random(1)
    t0 = now_ms() - 3_600_000
    values = [100 + i * 0.05 + rng.uniform(-1, 1) for i in range(600)]
    values[450] += 40
    recs = [{"key": "sensor-1", "value": json.dumps({"temp": v}), "timestamp": t0 + i * 1000, "partition": 0}
            for i, v in enumerate(values)]
    produced, alerts = deploy_and_collect(
        broker, "vigil_plugin_ewma_bands", {"field": "temp", "half_life": 30, "k": 6, "warmup": 50},
        recs, {"temp": "float64"})
    offsets = sorted(a.source[2] for a in alerts)
    assert produced[450].offset in offsets, f"no alert at the jump (offset {produced[450].offset}): {offsets}"
    assert all(abs(o - produced[450].offset) <= 2 for o in offsets), f"alerts away from the jump: {offsets}"


def test_rate_spike_flags_the_bursting_card_only(broker):
    rng = random.Random(2)
    t = now_ms() - 3_600_000
    recs = []
    for i in range(3000):
        t += rng.randint(2000, 4000)  # one payment every ~3 s over 60 cards
        card = f"card-{rng.randrange(60)}"
        recs.append({"key": card, "value": json.dumps({"amount": 10}), "timestamp": t, "partition": 0})
        if i == 2000:
            for j in range(20):  # one card pays 20 times in 10 s
                recs.append({"key": "card-7", "value": json.dumps({"amount": 500}),
                             "timestamp": t + j * 500, "partition": 0})
    _, alerts = deploy_and_collect(broker, "vigil_plugin_rate_spike",
                                   {"window_ms": 60_000, "factor": 4, "min_events": 8}, recs, {"amount": "float64"})
    keys = {a.key for a in alerts}
    assert keys == {b"card-7"}, f"alerted keys {keys}, expected only the bursting card-7"


def test_threshold_rules_match_field_comparisons(broker):
    t0 = now_ms() - 60_000
    rows = [{"amount": 20, "country": "DE"}, {"amount": 9000, "country": "DE"}, {"amount": 30, "country": "XX"},
            {"amount": 40, "country": "FR"}, {"amount": 7000, "country": "YY"}]
    recs = [{"key": f"c{i}", "value": json.dumps(r), "timestamp": t0 + i, "partition": 0} for i, r in enumerate(rows)]
    config = {"rules": [{"name": "big-amount", "field": "amount", "op": ">", "value": 5000, "severity": "high"},
                        {"name": "bad-country", "field": "country", "op": "in", "values": ["XX", "YY"]}],
              "match": "any"}
    produced, alerts = deploy_and_collect(broker, "vigil_plugin_threshold_rules", config, recs,
                                          {"amount": "float64", "country": "string"})
    flagged = sorted(a.source[2] for a in alerts)
    assert flagged == sorted({produced[1].offset, produced[2].offset, produced[4].offset}), flagged


def test_seasonal_flags_the_spike_in_a_daily_series(broker):
    step, day = 300_000, 288  # a 5-minute metric
    n = 5 * day
    t0 = now_ms() - n * step  # recent, so retention keeps it
    rng = random.Random(3)
    values = [10 + 5 * math.sin(2 * math.pi * (i % day) / day) + rng.uniform(-0.15, 0.15) for i in range(n)]
    spike = 4 * day + 100
    values[spike] += 12
    recs = [{"value": json.dumps({"value": v}), "timestamp": t0 + i * step, "partition": 0}
            for i, v in enumerate(values)]
    produced, alerts = deploy_and_collect(broker, "vigil_plugin_seasonal", {}, recs, {"value": "float64"})
    offsets = sorted(a.source[2] for a in alerts)
    assert produced[spike].offset in offsets, f"no alert at the spike (offset {produced[spike].offset}): {offsets}"
    assert len(offsets) <= 2, f"too many alerts on a clean daily series with one spike: {offsets}"


def test_demo_catches_the_injected_bursts(tmp_path):
    out = subprocess.run([vigil_bin(), "demo", "--wasm", str(wasm_path("vigil_plugin_rate_spike")),
                          "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, f"vigil demo failed:\n{out.stdout}\n{out.stderr}"
    line = next((l for l in out.stdout.splitlines() if "Fraud bursts caught" in l), None)
    assert line, f"no summary line in:\n{out.stdout}"
    assert "caught: 6/6" in line and "missed: []" in line, line
    assert out.stdout.count("ALERT ") >= 6, out.stdout
