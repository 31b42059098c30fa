"""Detector deployments through the admin API and the `vigil detector` CLI,
with real Kafka clients on the input, alert and dead-letter topics: module
upload, deploy errors, a real plugin end to end, isolation of misbehaving
modules (trap, endless loop, memory, recursion, alert flood) from the broker
and from each other, failure policies, pause/resume/undeploy, start
positions, and deployments surviving restarts and kill -9.

Modules come from $VIGIL_WASM_DIR (see detectors.py); a missing one fails
the test with the instruction to run scripts/build-detectors.sh."""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections import Counter

import pytest

from detectors import (
    H_CAUSE,
    H_DEPLOYMENT,
    H_ERROR,
    H_INPUT_END,
    H_MODULE,
    H_SEVERITY,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
    HOSTILE_MODES,
    BackgroundProducer,
    admin_of,
    cli,
    describe,
    dupes,
    ends_of,
    limits,
    partition_of,
    produce,
    producer,
    read_topic,
    sha256_hex,
    spec,
    topic_partitions,
    wait_alerts,
    wait_caught_up,
    wait_state,
    wait_status,
    wasm_bytes,
    wasm_path,
    watermarks,
)
from conftest import vigil_bin
from helpers import Deadline, ck_create_topic, unique_name

HOSTILE = "vigil_test_hostile"
ZSCORE = "vigil_plugin_zscore"
THRESHOLD = "vigil_plugin_threshold_rules"


def hostile_spec(name, module, inputs, output, mode="ok", **extra):
    extra.setdefault("limits", limits(memory_mb=32, cpu_ms=500, max_alerts=1000))
    return spec(name, module, inputs, output, {"mode": mode}, **extra)


# ------------------------------------------------------------------ 1 upload --

def test_module_upload_validates_and_lists(broker):
    admin = admin_of(broker)
    raw = wasm_bytes(HOSTILE)

    meta = admin.upload(raw)
    assert meta["hash"] == sha256_hex(raw), f"upload answered hash {meta['hash']}, sha256 is {sha256_hex(raw)}"
    assert meta.get("size") == len(raw), meta
    assert meta.get("abi_version") == 1, meta
    # Uploading the same bytes again is harmless and names the same module.
    again = admin.upload(raw)
    assert again["hash"] == meta["hash"]

    # Garbage: not wasm at all.
    err = admin.expect_error(400, "POST", "/v1/modules", body=b"this is not a wasm module\n" * 10)
    assert "not a valid detector module" in err, err
    # A truncated module: the wasm header is fine, the rest is cut.
    err = admin.expect_error(400, "POST", "/v1/modules", body=raw[: len(raw) // 2])
    assert "not a valid detector module" in err, err
    # Valid wasm that is not a detector: says which export is missing.
    empty_module = b"\x00asm\x01\x00\x00\x00"
    err = admin.expect_error(400, "POST", "/v1/modules", body=empty_module)
    assert "does not export" in err and "vigil" in err, err
    # Empty body.
    err = admin.expect_error(400, "POST", "/v1/modules", body=b"")
    assert err

    # zscore too, then list both with their metadata.
    zraw = wasm_bytes(ZSCORE)
    zmeta = admin.upload(zraw)
    assert zmeta["hash"] == sha256_hex(zraw)
    listed = {m["hash"]: m for m in admin.modules()}
    assert set(listed) == {meta["hash"], zmeta["hash"]}, f"modules listed: {list(listed)}"
    h = listed[meta["hash"]]
    assert h["name"] == "vigil-test-hostile", h
    assert h["version"] == "0.1.0", h
    assert h["abi_version"] == 1, h
    assert h["size"] == len(raw), h
    z = listed[zmeta["hash"]]
    assert z["name"] and "zscore" in z["name"], z
    assert z["abi_version"] == 1, z

    # The CLI lists them as well.
    out = cli(broker, "list", "--modules").stdout
    assert meta["hash"] in out and zmeta["hash"] in out, out
    assert "vigil-test-hostile@0.1.0" in out, out


# ----------------------------------------------------------- 2 deploy errors --

def test_deploy_errors_say_what_is_wrong(broker):
    admin = admin_of(broker)
    module = admin.upload_module(HOSTILE)
    topic = unique_name("deperr-in")
    ck_create_topic(broker.bootstrap, topic, 1)

    def deploy_err(want, s):
        return admin.expect_error(want, "POST", "/v1/deployments", json_body=s)

    # Bad config: the module's constructor refuses it, naming the valid modes.
    err = deploy_err(400, hostile_spec("bad-config", module, topic, "bad-config-out", mode="nope"))
    assert "nope" in err, err
    for m in HOSTILE_MODES:
        assert m in err, f"error does not list the valid mode {m!r}: {err}"
    # Missing required config field.
    err = deploy_err(400, spec("no-mode", module, topic, "no-mode-out", {}))
    assert "mode" in err, err

    # Unknown module: a full hash and a prefix.
    err = deploy_err(404, hostile_spec("no-module", "0" * 64, topic, "x-out"))
    assert "0" * 16 in err, err
    err = deploy_err(404, hostile_spec("no-module2", "deadbeefdeadbeef", topic, "x-out"))
    assert "deadbeefdeadbeef" in err, err

    # Unknown input topic.
    missing = unique_name("no-such-topic")
    err = deploy_err(404, hostile_spec("no-topic", module, missing, "x-out"))
    assert missing in err, err
    assert topic_partitions(broker.bootstrap, missing) is None, "deploy created the missing input topic"

    # Invalid specs.
    s = hostile_spec("unknown-field", module, topic, "x-out")
    s["colour"] = "blue"
    err = deploy_err(400, s)
    assert "colour" in err, err
    err = deploy_err(400, hostile_spec("has space", module, topic, "x-out"))
    assert "name" in err, err
    err = deploy_err(400, hostile_spec("loop-back", module, topic, topic))
    assert "also an input" in err, err
    err = deploy_err(400, hostile_spec("bad-schema", module, topic, "x-out", value_schema={"amount": "decimal"}))
    assert "amount" in err and "decimal" in err, err
    err = deploy_err(400, hostile_spec("bad-policy", module, topic, "x-out", on_failure="retry-forever"))
    assert "retry-forever" in err or "on_failure" in err, err
    s = hostile_spec("bad-limits", module, topic, "x-out")
    s["limits"] = {"cpu_seconds": 1}
    err = deploy_err(400, s)
    assert "cpu_seconds" in err, err
    status, body = admin.request("POST", "/v1/deployments", body=b"{not json")
    assert status == 400 and "invalid deployment spec" in body.get("error", ""), (status, body)

    # None of the refused deployments exists.
    assert admin.list() == [], f"refused deployments are listed: {[d['name'] for d in admin.list()]}"

    # Duplicate name.
    ok = hostile_spec("dup", module, topic, unique_name("dup-out"))
    st = admin.deploy(ok)
    assert st["name"] == "dup" and st["state"] == "running", st
    err = deploy_err(409, ok)
    assert "dup" in err and "exists" in err, err
    assert [d["name"] for d in admin.list()] == ["dup"]

    # Unknown deployment for the other endpoints.
    for method, path in [("GET", "/v1/deployments/ghost"), ("POST", "/v1/deployments/ghost/pause"),
                         ("POST", "/v1/deployments/ghost/resume"), ("DELETE", "/v1/deployments/ghost")]:
        err = admin.expect_error(404, method, path)
        assert "ghost" in err, (method, path, err)


# ------------------------------------------------------- 3 zscore end to end --

def zscore_dataset(n_keys=9, per_key=60):
    """Records in produce order: per key a small deterministic wobble around
    its own level, with big outliers at known per-key positions. Key j is
    pinned to partition j % 3. Returns (records, outlier ids) where an id is
    (key index, per-key index)."""
    outliers = {(0, 30): 500.0, (3, 30): 500.0, (4, 41): 800.0, (5, 45): -500.0, (7, 25): 650.0, (7, 55): 700.0}
    recs = []
    base_ts = int(time.time() * 1000) - 600_000
    for i in range(per_key):
        for k in range(n_keys):
            level = 100.0 + 10 * k
            v = level + (((i * 7 + k) % 11) - 5) * 0.5
            v += outliers.get((k, i), 0.0)
            recs.append({
                "key": f"card-{k}",
                "value": json.dumps({"amount": v, "note": "x"}),
                "partition": k % 3,
                "timestamp": base_ts + i * 100 + k,
                "id": (k, i),
            })
    return recs, set(outliers)


def test_zscore_end_to_end(broker):
    admin = admin_of(broker)
    module = admin.upload_module(ZSCORE)
    topic, out = unique_name("zs-in"), unique_name("zs-alerts")
    ck_create_topic(broker.bootstrap, topic, 3)
    name = "zscore-e2e"
    st = admin.deploy(spec(name, module, topic, out,
                           {"field": "amount", "key": "record_key", "window": 50, "threshold": 6.0,
                            "min_samples": 10},
                           value_schema={"amount": "float64"}, start="earliest",
                           limits=limits(memory_mb=64, cpu_ms=1000, max_alerts=1000)))
    assert st["state"] == "running", st
    assert st["module"] == module, st
    assert len(st["partitions"]) == 3, describe(st)
    assert topic_partitions(broker.bootstrap, out) == 3, "alert topic was not created with the input's 3 partitions"

    recs, outlier_ids = zscore_dataset()
    # Two halves, so the outliers span several input batches.
    half = len(recs) // 2
    produced = produce(broker.bootstrap, topic, recs[:half]) + produce(broker.bootstrap, topic, recs[half:])
    by_id = {r["id"]: p for r, p in zip(recs, produced)}
    for r, p in zip(recs, produced):
        assert p.partition == r["partition"]
    ends = ends_of(produced)

    st = wait_caught_up(admin, name, ends, timeout=60)
    expected = {(by_id[i].partition, by_id[i].offset): i for i in outlier_ids}
    alerts = wait_alerts(broker.bootstrap, out, lambda a: len(a) >= len(expected), 30,
                         f"{len(expected)} alerts on {out}")
    got = [a.source for a in alerts]
    assert not dupes(got), f"duplicate alerts: {dupes(got)}"
    got_keys = {(p, o) for (_t, p, o) in got}
    assert got_keys == set(expected), (
        f"alerts for {sorted(got_keys)}, expected exactly the outliers {sorted(expected)}; "
        f"missing {sorted(set(expected) - got_keys)}, unexpected {sorted(got_keys - set(expected))}")

    for a in alerts:
        t, p, o = a.source
        kidx, i = expected[(p, o)]
        src = by_id[(kidx, i)]
        doc = a.doc
        assert t == topic
        assert a.partition == p % 3, f"alert for input partition {p} written to alert partition {a.partition}"
        assert a.key == src.key, f"alert key {a.key!r} != record key {src.key!r}"
        assert a.timestamp == src.timestamp, f"alert timestamp {a.timestamp} != source record's {src.timestamp}"
        assert a.h(H_DEPLOYMENT) == name
        assert a.h(H_MODULE) == module
        assert a.h(H_SOURCE_TOPIC) == topic
        assert int(a.h(H_SOURCE_PARTITION)) == p
        assert int(a.h(H_SOURCE_OFFSET)) == o
        assert int(a.h(H_INPUT_END)) >= o, f"vigil.input.end {a.h(H_INPUT_END)} before the source offset {o}"
        assert int(a.h(H_INPUT_END)) < ends[(topic, p)]
        ratio = abs(doc["score"]) / 6.0
        want_sev = "critical" if ratio >= 2.5 else "high" if ratio >= 1.5 else "medium"
        assert a.h(H_SEVERITY) == doc["severity"] == want_sev, (a.h(H_SEVERITY), doc)
        assert doc["deployment"] == name and doc["module"] == module, doc
        assert doc["key"] == src.key.decode(), doc
        assert doc["source"] == {"topic": topic, "partition": p, "offset": o, "timestamp": src.timestamp}, doc
        value = json.loads(src.value)["amount"]
        assert doc["fields"]["value"] == pytest.approx(value), doc
        assert abs(doc["score"]) >= 6.0 and (doc["score"] > 0) == (value > 100 + 10 * kidx), doc
        assert doc["fields"]["z"] == pytest.approx(doc["score"]), doc
        assert "amount" in doc["message"], doc

    st = wait_status(admin, name, lambda s: all(p["committed_offset"] == ends[(topic, p["partition"])]
                                                for p in s["partitions"]), 20, "checkpoint committed at the end")
    per_part_alerts = {p: sum(1 for (pp, _o) in expected if pp == p) for p in range(3)}
    for p in range(3):
        ps = partition_of(st, topic, p)
        end = ends[(topic, p)]
        assert ps["offset"] == end and ps["high_watermark"] == end and ps["lag"] == 0, describe(st)
        assert ps["records"] == end, f"partition {p}: records {ps['records']} != {end}\n{describe(st)}"
        assert ps["alerts"] == per_part_alerts[p], describe(st)
        assert ps["failed_batches"] == 0 and ps["bad_records"] == 0, describe(st)
        assert ps["event_age_ms"] is not None and ps["event_age_ms"] >= 0, describe(st)
        assert ps["last_error"] is None, describe(st)
    assert st["state"] == "running" and "error" not in st, st
    assert [d["name"] for d in admin.list()] == [name]


# --------------------------------------------------------- 4 hostile isolation --

FAILURE_CHECKS = {
    # mode: (cause prefix, what the error must mention)
    "trap": ("trap", ["hostile: deliberate panic"]),
    "loop": ("cpu", ["cpu"]),
    "memory": ("memory", ["memory limit"]),
    "recursion": ("stack", ["stack"]),
    "flood": ("alerts", ["1000 alerts"]),
    "error": ("error", ["hostile: detector error"]),
}


@pytest.mark.timeout(300)
def test_hostile_modules_fail_alone(broker):
    admin = admin_of(broker)
    module = admin.upload_module(HOSTILE)
    bg_topic = unique_name("bg")
    ck_create_topic(broker.bootstrap, bg_topic, 3)
    bg = BackgroundProducer(broker.bootstrap, bg_topic, rate_per_s=200).start()
    try:
        bg.wait_deliveries_after(time.monotonic(), n=20, what="start")
        topics = {}
        for mode in ["ok", *FAILURE_CHECKS]:
            tin, tout = unique_name(f"h-{mode}-in"), unique_name(f"h-{mode}-out")
            ck_create_topic(broker.bootstrap, tin, 1)
            admin.deploy(hostile_spec(f"hostile-{mode}", module, tin, tout, mode=mode, on_failure="fail",
                                      start="earliest",
                                      limits=limits(memory_mb=32, cpu_ms=200, max_alerts=1000)))
            topics[mode] = (tin, tout)

        # One record each; the ok one alerts on it.
        for mode, (tin, _) in topics.items():
            produce(broker.bootstrap, tin, [(f"{mode}-k", json.dumps({"mode": mode}))])

        failed_at = {}
        pending = set(FAILURE_CHECKS)
        dl = Deadline(60, f"hostile deployments {sorted(pending)} failing")
        while pending:
            for mode in sorted(pending):
                st = admin.status(f"hostile-{mode}")
                if st["state"] == "failed":
                    failed_at[mode] = time.monotonic()
                    pending.discard(mode)
                    cause, words = FAILURE_CHECKS[mode]
                    err = st.get("error") or ""
                    assert err.startswith(f"{cause}:"), f"{mode}: error {err!r} does not start with cause {cause!r}"
                    for w in words:
                        assert w.lower() in err.lower(), f"{mode}: error {err!r} does not mention {w!r}"
                    ps = st["partitions"][0]
                    assert ps["offset"] == 0, f"{mode}: failed deployment advanced past the failing batch\n{describe(st)}"
                    assert ps["last_error"] and cause in ps["last_error"], describe(st)
                else:
                    assert st["state"] == "running", describe(st)
            dl.check(f"(still running: {sorted(pending)})")
            assert broker.alive(), f"broker died\n{broker.log_tail()}"
            time.sleep(0.1)

        # The background producer kept going after each failure.
        for mode, t in sorted(failed_at.items(), key=lambda kv: kv[1]):
            bg.wait_deliveries_after(t, n=10, what=f"{mode} failed")

        # The flood's alerts never reached its alert topic: the batch failed as a whole.
        flood_out = read_topic(broker.bootstrap, topics["flood"][1])
        assert flood_out == [], f"{len(flood_out)} flood alerts were written although the batch failed"

        # The ok deployment is unaffected and keeps alerting on new input.
        ok_in, ok_out = topics["ok"]
        first = wait_alerts(broker.bootstrap, ok_out, lambda a: len(a) >= 1, 30, "ok alert on the first record")
        assert [a.source[2] for a in first] == [0]
        p = produce(broker.bootstrap, ok_in, [("ok-k2", "{}")])
        alerts = wait_alerts(broker.bootstrap, ok_out, lambda a: any(x.source[2] == p[0].offset for x in a), 30,
                             "ok alert on a record produced after the failures")
        assert [a.doc["message"] for a in alerts] == ["ok", "ok"], [a.doc for a in alerts]
        st = admin.status("hostile-ok")
        assert st["state"] == "running", describe(st)

        # A failed deployment stays failed (and keeps its error) when resumed: the batch fails again.
        st = admin.resume("hostile-trap")
        st = wait_state(admin, "hostile-trap", "failed", 30)
        assert "hostile: deliberate panic" in st["error"], st

        # The broker itself is healthy.
        assert broker.alive()
        status, body = broker.http_get("/healthz")
        assert status == 200, (status, body)
        t = time.monotonic()
        bg.wait_deliveries_after(t, n=20, what="the end")
    finally:
        bg.stop()
    assert not bg.errors, f"background producer saw {len(bg.errors)} delivery errors: {bg.errors[:5]}"
    assert bg.left_in_flight == 0, f"{bg.left_in_flight} background records never acked"
    print(f"background producer: {bg.count()} acked, longest gap between acks {bg.max_gap():.3f}s")
    assert bg.max_gap() < 5.0, f"produce stalled for {bg.max_gap():.1f}s while detectors misbehaved"


# ----------------------------------------------- 5 skip and dead-letter policy --

def test_skip_policy_keeps_going(broker):
    admin = admin_of(broker)
    module = admin.upload_module(HOSTILE)
    tin, tout = unique_name("skip-in"), unique_name("skip-out")
    ck_create_topic(broker.bootstrap, tin, 1)
    name = "trap-skip"
    admin.deploy(hostile_spec(name, module, tin, tout, mode="trap", on_failure="skip", start="earliest"))
    produced = []
    for i in range(3):  # three separate produce calls: several input batches
        produced += produce(broker.bootstrap, tin, [(f"k{i}-{j}", f"v{i}-{j}") for j in range(5)])
    ends = ends_of(produced)
    st = wait_caught_up(admin, name, ends, timeout=60)
    assert st["state"] == "running", describe(st)
    ps = st["partitions"][0]
    assert ps["failed_batches"] >= 1, describe(st)
    assert ps["records"] == 15, describe(st)
    assert "hostile: deliberate panic" in (ps["last_error"] or ""), describe(st)
    assert ps["last_error"].startswith("trap:"), describe(st)
    assert read_topic(broker.bootstrap, tout) == []
    # New input after skipped batches is still read.
    more = produce(broker.bootstrap, tin, [("late", "late")])
    st = wait_caught_up(admin, name, ends_of(more), timeout=30)
    assert st["state"] == "running"
    assert st["partitions"][0]["failed_batches"] > ps["failed_batches"] or st["partitions"][0]["records"] == 16


def test_dead_letter_policy_copies_failed_batches(broker):
    admin = admin_of(broker)
    module = admin.upload_module(HOSTILE)
    tin, tout, dlq = unique_name("dl-in"), unique_name("dl-out"), unique_name("dl-dlq")
    ck_create_topic(broker.bootstrap, tin, 1)
    name = "trap-dlq"
    admin.deploy(hostile_spec(name, module, tin, tout, mode="trap", on_failure="dead-letter",
                              dead_letter_topic=dlq, start="earliest"))
    assert topic_partitions(broker.bootstrap, dlq) == 1, "dead-letter topic not created at deploy"
    recs = []
    for i in range(12):
        recs.append({
            "key": None if i == 3 else f"key-{i}".encode(),
            "value": None if i == 5 else (b"\xff\x00binary" if i == 7 else f"value-{i}".encode()),
            "headers": [("h1", f"v{i}".encode()), ("dup", b"a"), ("dup", b"b")],
        })
    produced = produce(broker.bootstrap, tin, recs[:6]) + produce(broker.bootstrap, tin, recs[6:])
    st = wait_caught_up(admin, name, ends_of(produced), timeout=60)
    assert st["state"] == "running", describe(st)
    assert st["partitions"][0]["failed_batches"] >= 1, describe(st)

    letters = wait_alerts(broker.bootstrap, dlq, lambda a: len(a) >= len(produced), 30,
                          f"{len(produced)} dead letters")
    assert len(letters) == len(produced), f"{len(letters)} dead letters for {len(produced)} records"
    srcs = [d.source for d in letters]
    assert not dupes(srcs), dupes(srcs)
    assert sorted(o for (_t, _p, o) in srcs) == [p.offset for p in produced]
    by_off = {p.offset: p for p in produced}
    for d in letters:
        t, p, o = d.source
        src = by_off[o]
        assert (t, p) == (tin, 0)
        assert d.key == src.key, (o, d.key, src.key)
        assert d.value == src.value, (o, d.value, src.value)
        assert d.timestamp == src.timestamp
        assert d.headers[:3] == src.headers, f"original headers not kept first: {d.headers}"
        assert d.h(H_CAUSE) == "trap", d.headers
        assert "hostile: deliberate panic" in d.h(H_ERROR), d.headers
        assert d.h(H_DEPLOYMENT) == name and d.h(H_MODULE) == module
    assert read_topic(broker.bootstrap, tout) == []


def test_schema_mismatch_dead_letters_bad_records_only(broker):
    admin = admin_of(broker)
    module = admin.upload_module(THRESHOLD)
    tin, tout = unique_name("sch-in"), unique_name("sch-out")
    ck_create_topic(broker.bootstrap, tin, 1)
    name = "schema-dlq"
    admin.deploy(spec(name, module, tin, tout,
                      {"rules": [{"name": "big", "field": "amount", "op": ">", "value": 50, "severity": "high"}]},
                      value_schema={"amount": "float64"}, on_failure="dead-letter", start="earliest"))
    dlq = f"{name}.dlq"
    bad_values = {3: b"not json at all", 7: b"\xff\xfe\x00", 11: b'{"amount": ', 12: b"]["}
    recs = []
    for i in range(20):
        value = bad_values.get(i, json.dumps({"amount": 10 * i}).encode())
        recs.append({"key": f"k{i}".encode(), "value": value, "headers": [("i", str(i).encode())]})
    produced = produce(broker.bootstrap, tin, recs)
    st = wait_caught_up(admin, name, ends_of(produced), timeout=60)
    assert st["state"] == "running", describe(st)
    ps = st["partitions"][0]
    assert ps["bad_records"] == len(bad_values), describe(st)
    assert ps["records"] == 20, describe(st)
    assert (ps["last_error"] or "").startswith("schema"), describe(st)

    letters = wait_alerts(broker.bootstrap, dlq, lambda a: len(a) >= len(bad_values), 30, "schema dead letters")
    assert len(letters) == len(bad_values), [(d.source, d.value) for d in letters]
    assert sorted(d.source[2] for d in letters) == sorted(produced[i].offset for i in bad_values)
    for d in letters:
        i = int(d.h("i"))
        assert d.value == bad_values[i] and d.key == f"k{i}".encode(), (i, d.value, d.key)
        assert d.h(H_CAUSE) == "schema", d.headers
        assert d.h(H_ERROR), d.headers
        assert d.h(H_SOURCE_TOPIC) == tin and d.h(H_DEPLOYMENT) == name

    # Good records were processed: an alert for every good amount > 50.
    want = sorted(produced[i].offset for i in range(20) if i not in bad_values and 10 * i > 50)
    alerts = wait_alerts(broker.bootstrap, tout, lambda a: len(a) >= len(want), 30, "threshold alerts")
    assert sorted(a.source[2] for a in alerts) == want
    assert ps["alerts"] == len(want), describe(st)


# ------------------------------------------------- 6 pause/resume/undeploy CLI --

def test_cli_pause_resume_undeploy(broker):
    admin = admin_of(broker)
    tin, tout = unique_name("cli-in"), unique_name("cli-out")
    ck_create_topic(broker.bootstrap, tin, 1)
    name = "cli-ok"
    r = cli(broker, "deploy", "--name", name, "--module", str(wasm_path(HOSTILE)), "--input", tin,
            "--output", tout, "--config", '{"mode": "ok"}', "--start", "earliest")
    assert name in r.stdout and "RUNNING" in r.stdout, r.stdout
    st = cli(broker, "status", name, "--json").json()
    assert st["name"] == name and st["state"] == "running", st
    assert st["module"] == sha256_hex(wasm_bytes(HOSTILE)), st
    assert name in cli(broker, "list").stdout

    p1 = produce(broker.bootstrap, tin, [(f"a{i}", "{}") for i in range(5)])
    wait_caught_up(admin, name, ends_of(p1), timeout=30)
    before = wait_alerts(broker.bootstrap, tout, lambda a: len(a) >= 1, 30, "first alert")

    r = cli(broker, "pause", name)
    assert "PAUSED" in r.stdout, r.stdout
    st = cli(broker, "status", name, "--json").json()
    assert st["state"] == "paused", st
    paused_at = st["partitions"][0]["offset"]
    assert paused_at == ends_of(p1)[(tin, 0)], describe(st)

    p2 = produce(broker.bootstrap, tin, [(f"b{i}", "{}") for i in range(5)])
    hw = watermarks(broker.bootstrap, tin)[0][1]
    assert hw == p2[-1].offset + 1
    # Watch for a while: a paused deployment does not move, nor alert.
    dl = Deadline(2.0, "")
    while not dl.expired():
        st = admin.status(name)
        assert st["state"] == "paused" and st["partitions"][0]["offset"] == paused_at, describe(st)
        time.sleep(0.1)
    assert len(read_topic(broker.bootstrap, tout)) == len(before), "a paused deployment wrote alerts"

    r = cli(broker, "resume", name)
    assert "RUNNING" in r.stdout, r.stdout
    st = wait_caught_up(admin, name, ends_of(p2), timeout=30)
    assert st["state"] == "running"
    after = wait_alerts(broker.bootstrap, tout, lambda a: any(x.source[2] >= p2[0].offset for x in a), 30,
                        "alerts for records produced while paused")
    srcs = [a.source for a in after]
    assert not dupes(srcs), dupes(srcs)
    assert min(a.source[2] for a in after if a.source[2] >= paused_at) == paused_at, (
        "resume did not continue from the paused offset")

    r = cli(broker, "undeploy", name)
    assert name in r.stdout
    err = admin.expect_error(404, "GET", f"/v1/deployments/{name}")
    assert name in err, err
    r = cli(broker, "status", name, "--json", check=False)
    assert r.rc != 0, f"status of an undeployed deployment exited 0: {r.stdout}"
    assert f'no deployment named "{name}"' in r.stderr and "404" in r.stderr, r.stderr
    r = cli(broker, "undeploy", name, check=False)
    assert r.rc != 0 and "no deployment named" in r.stderr, (r.rc, r.stderr)
    assert name not in cli(broker, "list").stdout
    assert topic_partitions(broker.bootstrap, tout) == 1, "undeploy removed the alert topic"

    # Nothing alerts after undeploy.
    n_alerts = len(read_topic(broker.bootstrap, tout))
    produce(broker.bootstrap, tin, [("c", "{}")])
    dl = Deadline(1.5, "")
    while not dl.expired():
        time.sleep(0.1)
    assert len(read_topic(broker.bootstrap, tout)) == n_alerts, "an undeployed deployment still alerts"

    # The name is free again; a new deployment starts over from its own start position.
    st = admin.deploy(hostile_spec(name, sha256_hex(wasm_bytes(HOSTILE)), tin, tout, start="latest"))
    assert st["state"] == "running" and st["partitions"][0]["offset"] == 11, describe(st)

    # A CLI that cannot reach the broker says so.
    p = subprocess.run([str(vigil_bin()), "detector", "--admin", "http://127.0.0.1:1", "list"],
                       capture_output=True, timeout=30)
    assert p.returncode != 0 and b"cannot reach" in p.stderr, p.stderr


def test_cli_deploy_with_limit_flags(broker):
    """`vigil detector deploy --memory-mb/--cpu-ms/--max-alerts` produce a spec
    the API accepts, and the limits are enforced as given."""
    admin = admin_of(broker)
    tin = unique_name("clilim-in")
    ck_create_topic(broker.bootstrap, tin, 1)
    r = cli(broker, "deploy", "--name", "cli-limits", "--module", str(wasm_path(HOSTILE)), "--input", tin,
            "--output", unique_name("clilim-out"), "--config", '{"mode": "flood"}', "--start", "earliest",
            "--memory-mb", "48", "--cpu-ms", "700", "--max-alerts", "5", check=False)
    assert r.rc == 0, f"CLI deploy with limit flags failed: {r.stderr.strip()}"
    produce(broker.bootstrap, tin, [("k", "{}")])
    st = wait_state(admin, "cli-limits", "failed", 30)
    assert st["error"].startswith("alerts:") and "5 alerts" in st["error"], st["error"]


# ---------------------------------------------------------- 7 start positions --

def test_start_positions(broker):
    admin = admin_of(broker)
    module = admin.upload_module(HOSTILE)
    tin = unique_name("start-in")
    ck_create_topic(broker.bootstrap, tin, 1)
    base_ts = int(time.time() * 1000) - 3_600_000
    p1 = produce(broker.bootstrap, tin, [{"key": f"k{i}", "value": "{}", "timestamp": base_ts + 10 * i}
                                         for i in range(100)])
    assert [p.offset for p in p1] == list(range(100))

    starts = {
        "earliest": ("earliest", 0),
        "latest": ("latest", 100),
        "offset": ({"offset": 42}, 42),
        "timestamp": ({"timestamp": base_ts + 555}, 56),  # first record with ts >= base+555 is #56
        "offset-past-end": ({"offset": 10**9}, 100),      # clamped into the log
        "offset-negative": ({"offset": -5}, 0),
    }
    outs = {}
    for label, (start, _want) in starts.items():
        out = unique_name(f"start-{label}")
        st = admin.deploy(hostile_spec(f"start-{label}", module, tin, out, start=start))
        outs[label] = out
        if label in ("latest", "offset-past-end"):
            assert st["partitions"][0]["offset"] == 100, f"{label}: {describe(st)}"

    for label, (_start, want) in starts.items():
        if want < 100:
            st = wait_caught_up(admin, f"start-{label}", {(tin, 0): 100}, timeout=30)
            assert st["partitions"][0]["records"] == 100 - want, f"{label}: {describe(st)}"
            alerts = wait_alerts(broker.bootstrap, outs[label], lambda a: len(a) >= 1, 30, f"{label} alerts")
            first = min(a.source[2] for a in alerts)
            assert first == want, f"start {label}: first processed offset {first}, expected {want}"
    for label in ("latest", "offset-past-end"):
        st = admin.status(f"start-{label}")
        assert st["partitions"][0]["offset"] == 100 and st["partitions"][0]["records"] == 0, describe(st)
        assert read_topic(broker.bootstrap, outs[label]) == [], f"{label} alerted on old records"

    produce(broker.bootstrap, tin, [{"key": "new", "value": "{}", "timestamp": base_ts + 5000}])
    for label in ("latest", "offset-past-end"):
        st = wait_caught_up(admin, f"start-{label}", {(tin, 0): 101}, timeout=30)
        assert st["partitions"][0]["records"] == 1, describe(st)
        alerts = wait_alerts(broker.bootstrap, outs[label], lambda a: len(a) >= 1, 30, f"{label} alerts")
        assert [a.source[2] for a in alerts] == [100], f"{label}: {[a.source for a in alerts]}"


# ----------------------------------------------------------------- 8 restart --

@pytest.mark.timeout(240)
@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_deployment_survives_restart(broker, how):
    admin = admin_of(broker)
    module = admin.upload_module(ZSCORE)
    hostile = admin.upload_module(HOSTILE)
    tin, tout = unique_name("rs-in"), unique_name("rs-out")
    ck_create_topic(broker.bootstrap, tin, 3)
    name = "restart-zs"
    cfg = {"field": "amount", "window": 20, "threshold": 6.0, "min_samples": 5}
    admin.deploy(spec(name, module, tin, tout, cfg, value_schema={"amount": "float64"}, start="earliest"))
    admin.deploy(hostile_spec("restart-paused", hostile, tin, unique_name("rs-paused-out"), start="earliest"))
    admin.pause("restart-paused")

    def batch(tag, outlier_at):
        recs = []
        for i in range(30):
            for k in range(3):
                v = 50.0 + (i % 5) + (1000.0 if i == outlier_at else 0.0)
                recs.append({"key": f"{tag}-{k}", "value": json.dumps({"amount": v}), "partition": k})
        return recs

    p1 = produce(broker.bootstrap, tin, batch("a", 20))
    wait_caught_up(admin, name, ends_of(p1), timeout=30)
    a1 = wait_alerts(broker.bootstrap, tout, lambda a: len(a) >= 3, 30, "alerts before the restart")
    assert len(a1) == 3
    if how == "sigterm":
        # A clean stop commits the checkpoint at the end of the input.
        broker.stop()
    else:
        wait_status(admin, name, lambda s: all(p["committed_offset"] == p["offset"] for p in s["partitions"]), 20,
                    "a checkpoint")
        broker.kill9()
    broker.start()

    st = admin.status(name)
    assert st["state"] == "running", describe(st)
    assert len(st["partitions"]) == 3
    ends1 = ends_of(p1)
    for ps in st["partitions"]:
        assert ps["committed_offset"] == ends1[(tin, ps["partition"])], describe(st)
    assert admin.status("restart-paused")["state"] == "paused", "a paused deployment was resumed by the restart"

    # Per-key state survived: the same keys' outliers are found right away
    # (a fresh detector would need min_samples values first).
    p2 = produce(broker.bootstrap, tin, [{"key": f"a-{k}", "value": json.dumps({"amount": 5000.0}),
                                          "partition": k} for k in range(3)])
    p3 = produce(broker.bootstrap, tin, batch("b", 10))
    wait_caught_up(admin, name, ends_of(p1 + p2 + p3), timeout=60)
    alerts = wait_alerts(broker.bootstrap, tout, lambda a: len(a) >= 9, 30, "alerts after the restart")
    srcs = [a.source for a in alerts]
    assert not dupes(srcs), f"duplicate alerts after {how}: {dupes(srcs)}"
    want = {(tin, r.partition, r.offset) for r in p2}
    want |= {(tin, r.partition, r.offset) for r, rec in zip(p3, batch("b", 10)) if json.loads(rec["value"])["amount"] > 500}
    want |= {a.source for a in a1}
    assert set(srcs) == want, f"alerts {sorted(set(srcs))} != expected {sorted(want)}"
    assert admin.status(name)["state"] == "running"


# ------------------------------------------- pause/resume while re-processing --

def zscore_stream(n: int, seed: int = 7):
    """n JSON records for one partition: 8 cards with gaussian amounts and
    about 1 in 300 an outlier."""
    rng = random.Random(seed)
    base_ts = int(time.time() * 1000) - 3_600_000
    out = []
    for i in range(n):
        j = rng.randrange(8)
        v = rng.gauss(100 + 10 * j, 2.0)
        if i > 300 and rng.random() < 1 / 300:
            v += rng.choice([-1, 1]) * rng.uniform(40, 80)
        out.append({"key": f"card-{j}", "value": json.dumps({"amount": round(v, 6)}), "timestamp": base_ts + i})
    return out


def comparable(alert) -> tuple:
    """An alert without what names the deployment or depends on batching."""
    doc = alert.doc
    doc.pop("deployment")
    hs = tuple(sorted((k, v) for k, v in alert.headers if k not in (H_DEPLOYMENT, H_INPUT_END)))
    return (alert.key, json.dumps(doc, sort_keys=True), alert.timestamp, hs)


@pytest.mark.timeout(300)
def test_pause_resume_cycles_keep_alerts_exactly_once(broker):
    """A deployment paused and resumed over and over while it works through
    a backlog (and killed with -9 with alerts past its checkpoint, then
    paused and resumed right away, while it re-processes input it had
    already alerted on) writes exactly the alerts of an undisturbed
    deployment on the same input, and never gets stuck."""
    admin = admin_of(broker)
    module = admin.upload_module(ZSCORE)
    tin, ref_out, out = unique_name("pr-in"), unique_name("pr-ref"), unique_name("pr-out")
    ck_create_topic(broker.bootstrap, tin, 1)
    cfg = {"field": "amount", "window": 50, "threshold": 5.0, "min_samples": 10}
    common = dict(value_schema={"amount": "float64"}, start="earliest", max_batch_bytes=1024)
    produced = produce(producer_small_batches(broker.bootstrap), tin, zscore_stream(100_000))
    end = produced[-1].offset + 1
    admin.deploy(spec("pr-ref", module, tin, ref_out, cfg, **common))
    admin.deploy(spec("pr-cycled", module, tin, out, cfg, **common))

    def cycle(times):
        for _ in range(times):
            before = partition_of(admin.status("pr-cycled"), tin, 0)["offset"]
            if before >= end:
                return
            admin.pause("pr-cycled")
            admin.resume("pr-cycled")
            wait_status(admin, "pr-cycled", lambda s: s["partitions"][0]["offset"] > before or
                        s["partitions"][0]["offset"] >= end, 30, "progress after resume")

    cycle(3)
    # Kill once alerts were written past the last checkpoint.
    st = wait_status(admin, "pr-cycled", lambda s: s["partitions"][0]["committed_offset"] > 0 and
                     s["partitions"][0]["offset"] > s["partitions"][0]["committed_offset"] + 5000 and
                     s["partitions"][0]["alerts"] > 0 or s["partitions"][0]["offset"] >= end,
                     60, "alerts past a checkpoint")
    broker.kill9()
    print(f"killed at {describe(st)}")
    broker.start()
    cycle(5)

    st = wait_caught_up(admin, "pr-cycled", {(tin, 0): end}, timeout=120)
    assert st["partitions"][0]["last_error"] is None, describe(st)
    wait_caught_up(admin, "pr-ref", {(tin, 0): end}, timeout=120)
    ref = read_topic(broker.bootstrap, ref_out)
    got = read_topic(broker.bootstrap, out)
    assert ref, "the reference deployment wrote no alerts"
    d = dupes(a.source for a in got)
    assert not d, f"{len(d)} alerts written more than once: {sorted(d.items())[:10]}"
    want, have = Counter(comparable(a) for a in ref), Counter(comparable(a) for a in got)
    missing = sorted(json.loads(c[1])["source"]["offset"] for c in (want - have).elements())
    extra = sorted(json.loads(c[1])["source"]["offset"] for c in (have - want).elements())
    assert not missing and not extra, (
        f"alerts differ from the undisturbed deployment's: missing {missing[:10]}, extra {extra[:10]}")


def producer_small_batches(bootstrap):
    return producer(bootstrap, **{"batch.num.messages": 50})
