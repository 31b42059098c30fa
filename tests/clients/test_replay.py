"""Server-side replay jobs, hot swap and shadow runs with alert diffs
(docs: /v1/replays, /v1/deployments/NAME/module, /v1/deployments/NAME/shadow,
/v1/diff; CLI `vigil replay`, `vigil detector swap | shadow | diff`).

Expected alerts are computed in the test from the produced data: the
threshold-rules plugin is stateless, so "amount > T" says exactly which
input offsets it must alert on."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import threading
import time

from conftest import vigil_bin
from detectors import (H_DEPLOYMENT, H_INPUT_END, H_MODULE, H_SEVERITY, H_SOURCE_OFFSET, H_SOURCE_PARTITION,
                       H_SOURCE_TOPIC, admin_of, cli, dupes, ends_of, partition_of, produce, read_topic, spec,
                       topic_partitions,
                       wait_caught_up, wait_status, wasm_bytes, watermarks)
from helpers import Deadline, ck_create_topic, unique_name

H_SOURCE_TIMESTAMP = "vigil.source.timestamp"
THRESHOLD = "vigil_plugin_threshold_rules"
SCHEMA = {"amount": "float64"}


def above(limit: float) -> dict:
    """threshold-rules config: alert on amount > limit (severity high)."""
    return {"rules": [{"name": "big", "field": "amount", "op": ">", "value": limit, "severity": "high"}]}


EVERY_RECORD = above(-1e18)


def twin(wasm: bytes, tag: str) -> bytes:
    """The same module with a custom section appended: identical behaviour,
    another sha256 (a "new version" for hot swap and shadow tests)."""
    def leb(n: int) -> bytes:
        out = bytearray()
        while True:
            b, n = n & 0x7F, n >> 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)
    name = b"vigil-test-twin"
    payload = leb(len(name)) + name + tag.encode()
    return wasm + b"\x00" + leb(len(payload)) + payload


def amounts_records(rng: random.Random, n: int, partitions: int, t0: int, big_every: int = 17) -> list[dict]:
    """n JSON records {"amount": ...} spread round-robin over partitions, with
    timestamps t0 + i; about one in `big_every` has an amount > 5000."""
    recs = []
    for i in range(n):
        amount = rng.uniform(5001, 9000) if rng.randrange(big_every) == 0 else rng.uniform(0, 5000)
        recs.append({"key": f"k{i % 13}", "value": json.dumps({"amount": round(amount, 3)}),
                     "timestamp": t0 + i, "partition": i % partitions})
    return recs


def recent() -> int:
    """A base timestamp an hour ago: old enough to be history, young enough
    that retention (7 days by default) keeps the records and their alerts,
    which carry the source timestamps."""
    return int(time.time() * 1000) - 3_600_000


def amount_of(p) -> float:
    return json.loads(p.value)["amount"]


def expected(produced, limit: float, lo: int = 0, hi: int = 1 << 62, parts=None) -> set[tuple[int, int]]:
    """{(partition, offset)} of records with amount > limit in [lo, hi)."""
    return {(p.partition, p.offset) for p in produced
            if amount_of(p) > limit and lo <= p.offset < hi and (parts is None or p.partition in parts)}


def replay(admin, body: dict) -> dict:
    return admin.expect(201, "POST", "/v1/replays", json_body=body)


def replay_status(admin, rid: str) -> dict:
    return admin.expect(200, "GET", f"/v1/replays/{rid}")


def wait_replay(admin, rid: str, timeout: float = 120, pred=None, what: str = "completed",
                submitted: bool = True) -> dict:
    """Polls the replay until pred(status); `submitted=False` also waits for
    it to exist (a CLI that is still starting)."""
    pred = pred or (lambda s: s["state"] == "completed")
    dl = Deadline(timeout, f"replay {rid}: {what}")
    while True:
        if not submitted:
            code, st = admin.request("GET", f"/v1/replays/{rid}")
            if code == 404:
                dl.check("(not submitted yet)")
                time.sleep(0.05)
                continue
            assert code == 200, (code, st)
        else:
            st = replay_status(admin, rid)
        if pred(st):
            return st
        assert st["state"] != "failed", f"replay {rid} failed: {st}"
        dl.check(f"last status: {st}")
        time.sleep(0.1)


def alert_sources(alerts) -> list[tuple[int, int]]:
    return [(int(a.h(H_SOURCE_PARTITION)), int(a.h(H_SOURCE_OFFSET))) for a in alerts]


def run_cli(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VIGIL_ADMIN"}
    return subprocess.run([str(vigil_bin()), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=env)


# ----------------------------------------------------------------- replay --

def test_replay_of_a_range_writes_exactly_the_expected_alerts(broker):
    admin = admin_of(broker)
    module = admin.upload_module(THRESHOLD)
    topic = unique_name("replay-in")
    ck_create_topic(broker.bootstrap, topic, 2)
    produced = produce(broker.bootstrap, topic, amounts_records(random.Random(11), 2000, 2, recent()))
    lo, hi = 150, 800
    want = expected(produced, 5000, lo, hi)
    assert len(want) > 20, "the data should have alerts in the range"

    rid = unique_name("r")
    st = replay(admin, {"module": module, "topic": topic, "from": {"offset": lo}, "to": {"offset": hi},
                        "id": rid, "config": above(5000), "value_schema": SCHEMA})
    assert st["id"] == rid and st["topic"] == topic and st["module"] == module, st
    out = st["output"]
    assert out == f"{topic}.replay.{rid}", st
    st = wait_replay(admin, rid)
    assert st["records_total"] == 2 * (hi - lo), st
    assert st["records_done"] == st["records_total"], st
    assert st["alerts"] == len(want), st
    assert sorted((p["partition"], p["from"], p["to"], p["offset"], p["done"]) for p in st["partitions"]) == [
        (0, lo, hi, hi, True), (1, lo, hi, hi, True)], st
    assert st["module_label"] == "vigil-plugin-threshold-rules@0.1.0", st

    assert topic_partitions(broker.bootstrap, out) == 2
    alerts = read_topic(broker.bootstrap, out, min_records=len(want))
    got = alert_sources(alerts)
    assert not dupes(got), f"duplicate alerts: {dupes(got)}"
    assert set(got) == want, f"missing {sorted(want - set(got))[:10]}, extra {sorted(set(got) - want)[:10]}"
    by_offset = {(p.partition, p.offset): p for p in produced}
    for a in alerts:
        src = by_offset[(int(a.h(H_SOURCE_PARTITION)), int(a.h(H_SOURCE_OFFSET)))]
        assert a.partition == src.partition, "an alert lands in its source partition"
        assert a.h(H_DEPLOYMENT) == f"replay-{rid}" and a.h(H_MODULE) == module
        assert a.h(H_SOURCE_TOPIC) == topic and a.h(H_SEVERITY) == "high"
        assert int(a.h(H_INPUT_END)) >= src.offset
        assert a.doc["source"]["offset"] == src.offset
        assert a.doc["source"]["timestamp"] == src.timestamp == a.timestamp
    # Checked last so that a missing header does not hide the checks above.
    no_ts = [a.source for a in alerts if a.h(H_SOURCE_TIMESTAMP) != str(by_offset[a.source[1:]].timestamp)]
    assert not no_ts, f"{len(no_ts)} alerts without the right {H_SOURCE_TIMESTAMP} header, e.g. {no_ts[:3]}"

    # Listed; the output topic outlives a cancel (which forgets the job).
    assert rid in [r["id"] for r in admin.expect(200, "GET", "/v1/replays")]
    admin.expect(200, "DELETE", f"/v1/replays/{rid}")
    admin.expect_error(404, "GET", f"/v1/replays/{rid}")
    assert len(read_topic(broker.bootstrap, out)) == len(alerts)


def test_replay_of_historic_data_keeps_its_alerts(broker):
    """Alerts carry their source record's timestamp; over years-old input in
    a topic without retention, the output topic the replay creates takes the
    input's retention, so the broker's retention pass does not delete them."""
    from confluent_kafka.admin import ConfigResource
    from helpers import ck_admin

    admin = admin_of(broker)
    module = admin.upload_module(THRESHOLD)
    topic = unique_name("historic-in")
    ck_create_topic(broker.bootstrap, topic, 2, config={"retention.ms": "-1"})
    t2012 = 1_325_376_000_000
    produced = produce(broker.bootstrap, topic, amounts_records(random.Random(3), 600, 2, t2012))
    want = expected(produced, 5000)
    rid = unique_name("old")
    st = replay(admin, {"module": module, "topic": topic, "id": rid, "config": above(5000), "value_schema": SCHEMA})
    wait_replay(admin, rid)
    res = ConfigResource(ConfigResource.Type.TOPIC, st["output"])
    ac = ck_admin(broker.bootstrap)  # kept alive until the result is in
    configs = ac.describe_configs([res])[res].result(timeout=30)
    assert configs["retention.ms"].value == "-1", {k: v.value for k, v in configs.items()}
    alerts = read_topic(broker.bootstrap, st["output"], min_records=len(want))
    assert set(alert_sources(alerts)) == want
    assert all(a.timestamp < t2012 + 10_000 for a in alerts)


def test_replay_of_some_partitions_from_a_timestamp(broker):
    admin = admin_of(broker)
    module = admin.upload_module(THRESHOLD)
    topic = unique_name("replay-parts")
    ck_create_topic(broker.bootstrap, topic, 3)
    t0 = recent()
    produced = produce(broker.bootstrap, topic, amounts_records(random.Random(12), 1500, 3, t0))
    cut = t0 + 600  # records i >= 600 (timestamp t0 + i)
    first = {p: min(r.offset for r in produced if r.partition == p and r.timestamp >= cut) for p in (0, 2)}
    want = {(r.partition, r.offset) for r in produced
            if r.partition in (0, 2) and r.timestamp >= cut and amount_of(r) > 5000}

    rid = unique_name("rp")
    replay(admin, {"module": module, "topic": topic, "partitions": [0, 2], "from": {"timestamp": cut},
                   "id": rid, "output": unique_name("parts-out"), "config": above(5000), "value_schema": SCHEMA})
    st = wait_replay(admin, rid)
    assert sorted(p["partition"] for p in st["partitions"]) == [0, 2], st
    for p in st["partitions"]:
        assert p["from"] == first[p["partition"]] and p["to"] == 500, (p, first)
    alerts = read_topic(broker.bootstrap, st["output"], min_records=len(want))
    got = alert_sources(alerts)
    assert not dupes(got) and set(got) == want, (sorted(set(got) ^ want)[:10])

    msg = admin.expect_error(404, "POST", "/v1/replays",
                             json_body={"module": module, "topic": unique_name("no-such-topic"),
                                        "config": above(5000), "value_schema": SCHEMA})
    assert "topic" in msg, msg


def test_replay_that_skips_failing_batches_says_so(broker):
    """Under the default `skip` policy a module failing every batch still
    completes; status counts the failed batches and the CLI warns with the
    module's error instead of reporting a quiet "0 alerts"."""
    admin = admin_of(broker)
    admin.upload_module(THRESHOLD)
    topic = unique_name("replay-skip")
    ck_create_topic(broker.bootstrap, topic, 2)
    produce(broker.bootstrap, topic, amounts_records(random.Random(21), 400, 2, recent()))
    missing = {"rules": [{"field": "nope", "op": ">", "value": 1}]}  # not in the value schema
    r = run_cli(["replay", "--admin", broker.admin_url, "--module", "vigil-plugin-threshold-rules", "--topic", topic,
                 "--id", "skips", "--config", json.dumps(missing), "--schema", json.dumps(SCHEMA)])
    assert r.returncode == 0, r.stderr
    st = replay_status(admin, "skips")
    assert st["state"] == "completed" and st["alerts"] == 0 and st["failed_batches"] >= 2, st
    assert "batch(es) failed and were skipped" in r.stderr and "nope" in r.stderr, r.stderr


def test_replay_cli_progress_summary_failure_and_ctrl_c(broker):
    admin = admin_of(broker)
    admin.upload_module(THRESHOLD)
    topic = unique_name("replay-cli")
    ck_create_topic(broker.bootstrap, topic, 2)
    t0 = recent()
    produced = produce(broker.bootstrap, topic, amounts_records(random.Random(13), 4000, 2, t0))
    want = expected(produced, 5000)
    base = ["replay", "--admin", broker.admin_url]
    # About 3 s of work at this rate, so the watcher prints progress lines
    # (one a second without a terminal).
    size = sum(len(p.value) + len(p.key) + 20 for p in produced)
    r = run_cli([*base, "--module", "vigil-plugin-threshold-rules", "--topic", topic, "--id", "cli1",
                 "--from", "earliest", "--to", "latest", "--config", json.dumps(above(5000)),
                 "--schema", json.dumps(SCHEMA), "--max-bytes-per-sec", str(size // 3)])
    assert r.returncode == 0, (r.stdout, r.stderr)
    progress = [tuple(map(int, m)) for m in re.findall(r"replay cli1: (\d+)/(\d+) records", r.stderr)]
    assert len(progress) >= 2, r.stderr
    assert progress[-1] == (4000, 4000), progress
    assert [d for d, _ in progress] == sorted(d for d, _ in progress), "progress only goes forward"
    assert f"replay cli1 completed: 4000 records, {len(want)} alerts" in r.stdout, r.stdout
    assert f"alerts in topic {topic}.replay.cli1" in r.stdout, r.stdout
    rows = [l.split() for l in r.stdout.splitlines() if re.match(r"^\s+[01]\s+0\s+2000\s", l)]
    assert len(rows) == 2, r.stdout
    assert sum(int(row[5]) for row in rows) == len(want), rows

    r = run_cli([*base, "list"])
    assert r.returncode == 0 and "cli1" in r.stdout and "COMPLETED" in r.stdout, r.stdout
    r = run_cli([*base, "status", "cli1", "--json"])
    assert json.loads(r.stdout)["alerts"] == len(want), r.stdout

    # A trapping module under on_failure=fail: the CLI exits non-zero with the error.
    admin.upload_module("vigil_test_hostile")
    r = run_cli([*base, "--module", "vigil-test-hostile", "--topic", topic, "--id", "cli-trap",
                 "--config", '{"mode": "trap"}', "--on-failure", "fail"])
    assert r.returncode != 0 and "replay cli-trap failed" in r.stderr, (r.stdout, r.stderr)

    # Ctrl-C stops watching only; the job goes on to the end.
    p = subprocess.Popen([str(vigil_bin()), *base, "--module", "vigil-plugin-threshold-rules", "--topic", topic,
                          "--id", "cli2", "--config", json.dumps(above(5000)), "--schema", json.dumps(SCHEMA),
                          "--max-bytes-per-sec", str(size // 4)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    wait_replay(admin, "cli2", timeout=30, pred=lambda s: s["records_done"] > 0, what="started", submitted=False)
    time.sleep(0.5)  # the watcher polls by now (its Ctrl-C handler is set before the first poll)
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=10)
    assert p.returncode == 0, (out, err)
    assert "keeps running" in err, err
    st = wait_replay(admin, "cli2", timeout=60)
    assert st["alerts"] == len(want), st
    r = run_cli([*base, "cancel", "cli2"])
    assert r.returncode == 0, r.stderr
    r = run_cli([*base, "status", "cli2"])
    assert r.returncode != 0 and "HTTP 404" in r.stderr, r.stderr


def test_replay_resumes_after_kill9_with_each_alert_once(broker):
    admin = admin_of(broker)
    module = admin.upload_module(THRESHOLD)
    topic = unique_name("replay-crash")
    ck_create_topic(broker.bootstrap, topic, 2)
    produced = produce(broker.bootstrap, topic,
                       amounts_records(random.Random(14), 20_000, 2, recent(), big_every=9))
    want = expected(produced, 5000)
    size = sum(len(p.value) + len(p.key) + 20 for p in produced)
    rid = unique_name("rc")
    # `size` counts uncompressed bytes; the log holds compressed batches, so
    # the real pace is several times faster than size / rate: ~10 s or more.
    replay(admin, {"module": module, "topic": topic, "id": rid, "config": above(5000), "value_schema": SCHEMA,
                   "budget": {"parallelism": 2, "max_bytes_per_sec": size // 40}})
    total = 20_000
    committed = lambda s: sum(p["committed_offset"] - p["from"] for p in s["partitions"])
    # Crash once a checkpoint (every second) holds an eighth of the job.
    st = wait_replay(admin, rid, timeout=60, pred=lambda s: committed(s) >= total // 8,
                     what="an eighth committed")
    assert st["records_done"] < total * 3 // 4, f"too fast to crash mid-way: {st}"
    broker.kill9()
    broker.start()
    st = replay_status(admin, rid)
    assert st["state"] in ("running", "paused", "completed"), st
    assert st["records_done"] >= total // 8, f"committed progress lost over the restart: {st}"
    st = wait_replay(admin, rid, timeout=120)
    assert st["records_done"] == total and st["records_total"] == total, st
    alerts = read_topic(broker.bootstrap, st["output"], min_records=len(want))
    got = alert_sources(alerts)
    assert not dupes(got), f"{len(dupes(got))} alerts written twice, e.g. {list(dupes(got))[:5]}"
    assert set(got) == want, f"missing {sorted(want - set(got))[:10]}, extra {sorted(set(got) - want)[:10]}"
    assert st["alerts"] == len(want), st


# --------------------------------------------------------------- hot swap --

class JsonProducer:
    """Produces {"amount": i} to every partition of `topic` from a thread until stop()."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, rate_per_s: float = 400):
        from detectors import producer
        self.p = producer(bootstrap, **{"linger.ms": 1})
        self.topic, self.partitions, self.interval = topic, partitions, 1.0 / rate_per_s
        self.errors, self.sent = [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        def cb(err, _msg):
            if err is not None:
                self.errors.append(str(err))
        while not self._stop.is_set():
            try:
                self.p.produce(self.topic, key=b"k", value=json.dumps({"amount": self.sent}).encode(),
                               partition=self.sent % self.partitions, on_delivery=cb)
                self.sent += 1
            except BufferError:
                pass
            self.p.poll(self.interval)

    def start(self) -> "JsonProducer":
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(30)
        assert self.p.flush(60) == 0 and not self.errors, self.errors[:3]


def test_hot_swap_under_load_scores_every_offset_once(broker):
    admin = admin_of(broker)
    old = admin.upload_module(THRESHOLD)
    new = admin.upload(twin(wasm_bytes(THRESHOLD), "swap"))["hash"]
    assert new != old
    topic, out, name = unique_name("swap-in"), unique_name("swap-out"), unique_name("swap")
    ck_create_topic(broker.bootstrap, topic, 2)
    admin.deploy(spec(name, old, topic, out, EVERY_RECORD, value_schema=SCHEMA, start="earliest"))
    load = JsonProducer(broker.bootstrap, topic, 2).start()
    try:
        wait_status(admin, name, lambda s: all(p["alerts"] >= 200 for p in s["partitions"]), 60, "alerts flowing")
        r = cli(broker, "swap", name, "--module", new[:16], "--config", json.dumps(EVERY_RECORD))
        assert new[:12] in r.stdout, r.stdout
        sent_at_swap = load.sent
        dl = Deadline(30, "input after the swap")
        while load.sent < sent_at_swap + 600:
            dl.check()
            time.sleep(0.05)
    finally:
        load.stop()
    ends = {(topic, p): hi for p, (_, hi) in watermarks(broker.bootstrap, topic).items()}
    st = wait_caught_up(admin, name, ends, timeout=60)
    alerts = read_topic(broker.bootstrap, out, min_records=sum(ends.values()))
    for p in (0, 1):
        mine = sorted(((int(a.h(H_SOURCE_OFFSET)), a.h(H_MODULE)) for a in alerts
                       if int(a.h(H_SOURCE_PARTITION)) == p))
        offsets = [o for o, _ in mine]
        assert offsets == list(range(ends[(topic, p)])), (
            f"partition {p}: every offset scored once; dupes {dupes(offsets)}, "
            f"gaps {sorted(set(range(ends[(topic, p)])) - set(offsets))[:10]}")
        modules = [m for _, m in mine]
        switch = modules.index(new) if new in modules else -1
        assert 0 < switch < len(modules), f"partition {p}: no switch from old to new module"
        assert modules == [old] * switch + [new] * (len(modules) - switch), (
            f"partition {p}: the module header switches once, at {switch}")
        versions = next(x for x in st["partitions"] if x["partition"] == p)["versions"]
        assert [(v["module"], v["from"], v["to"]) for v in versions] == [(old, 0, switch), (new, switch, None)], (
            versions, switch)
        # The same detector type with the same STATE_FORMAT takes the state over.
        assert versions[1]["state"] == "carried over", versions


def test_hot_swap_to_a_detector_that_declines_the_state_rebuilds_it(broker):
    """zscore → ewma-bands: the new module declines zscore's state, so it is
    re-warmed on the `rebuild` records before the swap point with their alerts
    suppressed. Its alerts from the swap point on must then be exactly those a
    replay of ewma-bands from (swap point - rebuild) writes for offsets at or
    after the swap point."""
    admin = admin_of(broker)
    zscore = admin.upload_module("vigil_plugin_zscore")
    ewma = admin.upload_module("vigil_plugin_ewma_bands")
    zcfg = {"field": "amount", "window": 50, "threshold": 2.0, "min_samples": 10}
    ecfg = {"field": "amount", "half_life": 10, "k": 1.5, "warmup": 10}
    rebuild = 200
    topic, out, name = unique_name("rebuild-in"), unique_name("rebuild-out"), unique_name("rebuild")
    ck_create_topic(broker.bootstrap, topic, 2)
    first = produce(broker.bootstrap, topic, amounts_records(random.Random(5), 1200, 2, recent(), big_every=9))
    admin.deploy(spec(name, zscore, topic, out, zcfg, value_schema=SCHEMA, start="earliest"))
    wait_caught_up(admin, name, ends_of(first))
    r = cli(broker, "swap", name, "--module", ewma, "--config", json.dumps(ecfg), "--rebuild", str(rebuild))
    assert ewma[:12] in r.stdout, r.stdout
    second = produce(broker.bootstrap, topic, amounts_records(random.Random(6), 1200, 2, recent(), big_every=9))
    ends = ends_of(first + second)
    st = wait_caught_up(admin, name, ends)
    alerts = read_topic(broker.bootstrap, out, min_records=1)
    got = alert_sources(alerts)
    assert not dupes(got), f"duplicate alerts across the swap: {list(dupes(got))[:10]}"
    for p in (0, 1):
        versions = partition_of(st, topic, p)["versions"]
        switch = versions[1]["from"]
        assert [(v["module"], v["to"]) for v in versions] == [(zscore, switch), (ewma, None)], versions
        assert switch == ends_of(first)[(topic, p)], (switch, versions)
        assert versions[1]["state"].startswith(f"rebuilt from up to {rebuild} records"), versions
        by_module = {m: sorted(o for (pp, o), a in zip(got, alerts) if pp == p and a.h(H_MODULE) == m)
                     for m in (zscore, ewma)}
        assert all(o < switch for o in by_module[zscore]) and all(o >= switch for o in by_module[ewma]), by_module
        rid = unique_name("check")
        rs = replay(admin, {"module": ewma, "topic": topic, "partitions": [p], "from": {"offset": switch - rebuild},
                            "to": {"offset": ends[(topic, p)]}, "id": rid, "config": ecfg, "value_schema": SCHEMA})
        wait_replay(admin, rid)
        ref = read_topic(broker.bootstrap, rs["output"], min_records=1)
        want = sorted(o for (pp, o) in alert_sources(ref) if pp == p and o >= switch)
        assert want, "the reference replay should alert after the swap point"
        assert by_module[ewma] == want, (
            f"partition {p}: swapped-in module's alerts differ from a replay warmed the same way: "
            f"missing {sorted(set(want) - set(by_module[ewma]))[:10]}, extra {sorted(set(by_module[ewma]) - set(want))[:10]}")


# ----------------------------------------------------------- shadow + diff --

def max_pairs(a: list[int], b: list[int], w: int) -> int:
    """Largest one-to-one pairing of offsets at most w apart (augmenting paths)."""
    owner: dict[int, int] = {}

    def augment(i: int, seen: set[int]) -> bool:
        for j, y in enumerate(b):
            if abs(a[i] - y) <= w and j not in seen:
                seen.add(j)
                if j not in owner or augment(owner[j], seen):
                    owner[j] = i
                    return True
        return False
    return sum(augment(i, set()) for i in range(len(a)))


def expected_diff(a: dict[int, list[int]], b: dict[int, list[int]], w: int) -> dict[int, tuple[int, int, int]]:
    """{partition: (only_a, only_b, both)} for partitions where either side alerted."""
    out = {}
    for p in sorted(set(a) | set(b)):
        xa, xb = sorted(a.get(p, [])), sorted(b.get(p, []))
        both = max_pairs(xa, xb, w)
        if xa or xb:
            out[p] = (len(xa) - both, len(xb) - both, both)
    return out


def diff_counts(report: dict, topic: str) -> dict[int, tuple[int, int, int]]:
    got = {}
    for p in report["partitions"]:
        assert p["topic"] == topic, p
        got[p["partition"]] = (p["only_a"], p["only_b"], p["both"])
    return got


def test_diff_of_two_deployments_matches_an_independent_count(broker):
    admin = admin_of(broker)
    module = admin.upload_module(THRESHOLD)
    topic = unique_name("diff-in")
    ck_create_topic(broker.bootstrap, topic, 2)
    produced = produce(broker.bootstrap, topic, amounts_records(random.Random(15), 1200, 2, recent()))
    ends = {(topic, p): hi for p, (_, hi) in watermarks(broker.bootstrap, topic).items()}
    out = unique_name("diff-out")
    # Both deployments write to one topic: the deployment filter tells them apart.
    a, b = unique_name("da"), unique_name("db")
    admin.deploy(spec(a, module, topic, out, above(5000), value_schema=SCHEMA, start="earliest"))
    admin.deploy(spec(b, module, topic, out, above(4000), value_schema=SCHEMA, start="earliest"))
    wait_caught_up(admin, a, ends)
    wait_caught_up(admin, b, ends)

    def side(limit):
        m: dict[int, list[int]] = {}
        for p in produced:
            if amount_of(p) > limit:
                m.setdefault(p.partition, []).append(p.offset)
        return m
    sa, sb = side(5000), side(4000)
    for w in (3, 0):
        report = admin.expect(200, "POST", "/v1/diff", json_body={"a": a, "b": b, "window": w})
        assert diff_counts(report, topic) == expected_diff(sa, sb, w), (w, report)
    exact = expected_diff(sa, sb, 0)
    assert report["window"] == 0 and report["total"] == {
        "only_a": 0, "only_b": sum(v[1] for v in exact.values()), "both": sum(v[2] for v in exact.values())}
    # Samples are the lowest unmatched offsets (window 0: B's 4000 < amount <= 5000).
    for p in report["partitions"]:
        only_b = sorted(set(sb.get(p["partition"], [])) - set(sa.get(p["partition"], [])))
        assert p["sample_only_b"] == only_b[:20] and p["sample_only_a"] == [], p

    # A range restricts source offsets to [from, to).
    lo, hi = 100, 400
    clip = lambda m: {p: [o for o in v if lo <= o < hi] for p, v in m.items()}
    report = admin.expect(200, "POST", "/v1/diff", json_body={"a": b, "b": a, "from": lo, "to": hi})
    assert diff_counts(report, topic) == expected_diff(clip(sb), clip(sa), 0), report
    # The alert topic as a side: everything in it (both deployments).
    report = admin.expect(200, "POST", "/v1/diff", json_body={"a": out, "b": a})
    both = {p: sorted(sa.get(p, []) + sb.get(p, [])) for p in (0, 1)}
    assert diff_counts(report, topic) == expected_diff(both, sa, 0), report

    # The CLI prints one row per source partition and the totals.
    r = cli(broker, "diff", a, b, "--window", "3")
    rows = {l.split()[0]: l.split()[1:4] for l in r.stdout.splitlines() if l.startswith(f"  {topic}-")
            or l.startswith("  total")}
    want3 = expected_diff(sa, sb, 3)
    for p, (oa, ob, bo) in want3.items():
        assert rows[f"{topic}-{p}"] == [str(oa), str(ob), str(bo)], r.stdout
    assert rows["total"] == [str(sum(v[i] for v in want3.values())) for i in range(3)], r.stdout
    assert cli(broker, "diff", a, b, "--json").json()["total"]["only_b"] > 0

    assert "neither a deployment nor a topic" in admin.expect_error(
        404, "POST", "/v1/diff", json_body={"a": a, "b": unique_name("nothing")})
    assert "window" in admin.expect_error(400, "POST", "/v1/diff", json_body={"a": a, "b": b, "window": -1})
    admin.expect_error(400, "POST", "/v1/diff", json_body={"a": a})
    r = cli(broker, "diff", a, "nothing-here", check=False)
    assert r.rc != 0 and "HTTP 404" in r.stderr, r.stderr


def test_shadow_starts_at_the_primary_and_diffs_against_it(broker):
    admin = admin_of(broker)
    module = admin.upload_module(THRESHOLD)
    topic = unique_name("shadow-in")
    ck_create_topic(broker.bootstrap, topic, 2)
    t0 = recent()
    first = produce(broker.bootstrap, topic, amounts_records(random.Random(16), 800, 2, t0))
    name, out = unique_name("primary"), unique_name("primary-out")
    admin.deploy(spec(name, module, topic, out, above(5000), value_schema=SCHEMA, start="earliest"))
    hw1 = {(topic, p): hi for p, (_, hi) in watermarks(broker.bootstrap, topic).items()}
    wait_caught_up(admin, name, hw1)
    # Committed too, so "the primary's current offsets" is hw1 however it is read.
    wait_status(admin, name, lambda s: all(p["committed_offset"] == hw1[(topic, p["partition"])]
                                           for p in s["partitions"]), 30, "committed at hw1")

    r = cli(broker, "shadow", name, "--module", "vigil-plugin-threshold-rules",
            "--config", json.dumps(above(4000)))
    shadow = f"{name}.shadow"
    st = admin.status(shadow)
    assert st["output"] != out, st
    assert {p["partition"]: p["offset"] for p in st["partitions"]} == {p: hw1[(topic, p)] for p in (0, 1)}, st
    assert shadow in r.stdout, r.stdout

    second = produce(broker.bootstrap, topic, amounts_records(random.Random(17), 800, 2, t0 + 800))
    hw2 = {(topic, p): hi for p, (_, hi) in watermarks(broker.bootstrap, topic).items()}
    wait_caught_up(admin, name, hw2)
    wait_caught_up(admin, shadow, hw2)
    all_recs = first + second
    sa: dict[int, list[int]] = {}
    sb: dict[int, list[int]] = {}
    for p in all_recs:
        if amount_of(p) > 5000:
            sa.setdefault(p.partition, []).append(p.offset)
        if amount_of(p) > 4000 and p.offset >= hw1[(topic, p.partition)]:
            sb.setdefault(p.partition, []).append(p.offset)
    shadow_alerts = read_topic(broker.bootstrap, st["output"], min_records=sum(map(len, sb.values())))
    got = alert_sources(shadow_alerts)
    assert not dupes(got) and sorted(got) == sorted((p, o) for p, v in sb.items() for o in v)
    assert {a.h(H_DEPLOYMENT) for a in shadow_alerts} == {shadow}

    # Two deployments are compared only where both have processed: from the
    # shadow's start (the primary's offset then) to the end of the input, so
    # the primary's earlier alerts do not count as "only A".
    report = cli(broker, "diff", name, shadow, "--json").json()
    clip_to = lambda m, lo: {p: [o for o in v if o >= lo[p]] for p, v in m.items()}
    starts = {p: hw1[(topic, p)] for p in (0, 1)}
    assert diff_counts(report, topic) == expected_diff(clip_to(sa, starts), clip_to(sb, starts), 0), report
    assert {p["partition"]: tuple(p["covered"]) for p in report["partitions"]} == {
        p: (starts[p], hw2[(topic, p)]) for p in (0, 1)}, report
    # Only the extra 4000..5000 alerts differ; "from" narrows further.
    lo = max(hw1.values())
    clip = lambda m: {p: [o for o in v if o >= lo] for p, v in m.items()}
    report = admin.expect(200, "POST", "/v1/diff", json_body={"a": name, "b": shadow, "from": lo})
    assert diff_counts(report, topic) == expected_diff(clip(sa), clip(sb), 0), report
    assert report["total"]["only_a"] == 0, report
