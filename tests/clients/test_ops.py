"""Operations tooling against a real broker (issue 15, must-have 4): the
Grafana dashboard (ops/grafana/vigil.json) names only series and labels the
broker's /metrics exports, scraped after real Kafka traffic and a running
detector; `/openapi.json` is served and describes the routes; `--log-format
json` makes every log line of `vigil serve` a JSON object; shell completions
are generated for bash, zsh and fish."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import defaultdict

from conftest import REPO_ROOT, vigil_bin
from detectors import admin_of, produce, spec, wait_caught_up, wasm_bytes
from confluent_kafka import Consumer, TopicPartition
from helpers import Deadline, ck_create_topic, unique_name

DASHBOARD = REPO_ROOT / "ops" / "grafana" / "vigil.json"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')
METRIC = re.compile(r"\bvigil_[a-z0-9_]+")
# `by (a, b)` / `without (...)` groupings and `{a="x", b=~"y"}` matchers.
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
MATCHER = re.compile(r"\{([^}]*)\}")


def exported(text: str) -> dict[str, set[str]]:
    """Sample name -> every label name seen on its samples."""
    out: dict[str, set[str]] = defaultdict(set)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if m:
            out[m.group(1)] |= set(LABEL.findall(m.group(3) or ""))
    return out


def queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, expr) of every panel target and query variable."""
    out = []
    for p in dashboard["panels"]:
        for t in p.get("targets", []):
            out.append((f"panel {p['title']!r} {t['refId']}", t["expr"]))
    for v in dashboard["templating"]["list"]:
        if v["type"] == "query":
            out.append((f"variable {v['name']}", v["query"]["query"]))
    return out


def labels_used(expr: str) -> set[str]:
    names = set()
    for g in GROUPING.findall(expr):
        names |= {x.strip() for x in g.split(",") if x.strip()}
    for m in MATCHER.findall(expr):
        names |= {x.strip().split("=")[0].rstrip("!~") for x in m.split(",") if x.strip()}
    names |= set(re.findall(r"label_values\([^,]+,\s*([a-zA-Z_]+)\)", expr))
    return names - {"le"}


def test_grafana_dashboard_queries_name_exported_series(broker):
    # Traffic of every kind the dashboard plots: produce, fetch, an error
    # answer, object store uploads, and a detector deployment.
    tin, tout = unique_name("ops-in"), unique_name("ops-out")
    ck_create_topic(broker.bootstrap, tin, 1)
    admin = admin_of(broker)
    module = admin.upload(wasm_bytes("vigil_test_hostile"))["hash"]
    admin.deploy(spec("ops-dash", module, tin, tout, {"mode": "ok"}, start="earliest"))
    p = produce(broker.bootstrap, tin, [(f"k{i}", "{}") for i in range(20)])
    wait_caught_up(admin, "ops-dash", {(tin, 0): p[-1].offset + 1}, timeout=60)
    # An error answer (counted for Produce and Fetch): a fetch past the end.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique_name("ops-g"),
                  "auto.offset.reset": "error", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(tin, 0, 10**6)])
        dl = Deadline(30, "an offset-out-of-range answer")
        while True:
            dl.check()
            m = c.poll(0.5)
            if m is not None and m.error():
                break
    finally:
        c.close()

    dl = Deadline(30, "the broker to upload to the object store and count the error")
    while True:
        status, body = broker.http_get("/metrics")
        assert status == 200
        series = exported(body.decode())
        if "vigil_request_errors_total" in series and "vigil_object_store_requests_total" in series \
                and "vigil_detector_records_total" in series:
            break
        dl.check(f"(series so far: {sorted(series)})")
        time.sleep(0.5)

    dashboard = json.loads(DASHBOARD.read_text())
    checked = 0
    for where, expr in queries(dashboard):
        names = set(METRIC.findall(expr))
        assert names, f"{where}: no vigil_ metric in {expr!r}"
        for n in names:
            assert n in series, f"{where}: {n} is not exported; the broker has {sorted(series)}"
        have = set().union(*(series[n] for n in names))
        for label in labels_used(expr):
            assert label in have, f"{where}: label {label!r} is not on {sorted(names)} (labels: {sorted(have)})"
        checked += 1
    assert checked >= 20, checked
    # The generator and the checked-in file agree.
    gen = subprocess.run(["python3", "-c",
                          "import json,sys; sys.path.insert(0, 'ops/grafana'); import gen_dashboard as g; "
                          "print(json.dumps(g.DASHBOARD, indent=2))"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(gen.stdout) == dashboard, "ops/grafana/vigil.json is stale: run ops/grafana/gen_dashboard.py"


def test_openapi_is_served_and_lists_the_admin_routes(broker):
    status, body = broker.http_get("/openapi.json")
    assert status == 200, body[:300]
    doc = json.loads(body)
    assert doc["openapi"].startswith("3.1")
    for path in ["/v1/deployments", "/v1/deployments/{name}/logs", "/v1/replays", "/v1/modules", "/v1/diff"]:
        assert path in doc["paths"], sorted(doc["paths"])
    ref = doc["paths"]["/v1/deployments"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    name = ref.rsplit("/", 1)[1]
    props = doc["components"]["schemas"][name]["properties"]
    assert {"name", "module", "inputs", "output", "limits", "start"} <= set(props), props


def test_json_log_format(broker_factory):
    b = broker_factory(extra_args=["--log-format", "json"])
    admin_of(b).list()  # some activity
    b.terminate_quietly()
    # The harness writes its own `=====` notes into the same file.
    lines = [x for x in b.log_text().splitlines() if x.strip() and not x.startswith("=====")]
    assert lines, "no log lines"
    objs = []
    for line in lines:
        try:
            objs.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
    assert any("vigil is serving Kafka" in o.get("fields", {}).get("message", "") for o in objs), objs[:5]
    assert all({"timestamp", "level", "target"} <= set(o) for o in objs), objs[:3]


def test_shell_completions():
    for shell, needle in [("bash", "complete -F"), ("zsh", "#compdef vigil"), ("fish", "complete -c vigil")]:
        p = subprocess.run([str(vigil_bin()), "completions", shell], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        assert needle in p.stdout, (shell, p.stdout[:200])
        # Subcommands and their flags are in the script.
        assert "detector" in p.stdout and "log-format" in p.stdout, shell
    bash = subprocess.run(["bash", "-c", f"source <({vigil_bin()} completions bash) && complete -p vigil"],
                          capture_output=True, text=True, timeout=30)
    assert bash.returncode == 0 and "vigil" in bash.stdout, bash.stderr
