"""`--output table|json` on the CLI's listing commands (issue 15, must-have
4), run against a real broker with a deployment, an uploaded module and a
replay: `-o json` prints what the admin API serves, `-o table` (the default)
prints aligned text naming the same things. That every listing command has
the flag at all is checked on the clap tree in runtime/vigil/src/output.rs;
`vigil user list` both ways is in test_security.py, `detector logs -o json`
in test_detector_workflow.py."""

from __future__ import annotations

import json
import subprocess

from conftest import vigil_bin
from detectors import admin_of, produce, spec
from helpers import ck_create_topic, unique_name

THRESHOLD = "vigil_plugin_threshold_rules"
RULES = {"rules": [{"name": "big", "field": "amount", "op": ">", "value": 1, "severity": "high"}]}


def run(*args: str) -> str:
    p = subprocess.run([str(vigil_bin()), *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, (args, p.stderr)
    return p.stdout


def both(*args: str) -> tuple[object, str]:
    """(parsed `-o json`, `-o table` text); the default is the table."""
    js = json.loads(run(*args, "-o", "json"))
    table = run(*args, "--output", "table")
    assert table == run(*args), f"{args}: the default is not the table"
    try:
        json.loads(table)
    except ValueError:
        pass
    else:
        raise AssertionError(f"{args}: the table is JSON: {table[:200]!r}")
    return js, table


def test_listing_commands_print_table_and_json(broker):
    admin = admin_of(broker)
    url = broker.admin_url
    module = admin.upload_module(THRESHOLD)
    topic, out, name = unique_name("cliout-in"), unique_name("cliout-out"), unique_name("cliout")
    ck_create_topic(broker.bootstrap, topic, 1)
    admin.deploy(spec(name, module, topic, out, RULES, value_schema={"amount": "float64"}))
    rid = admin.expect(201, "POST", "/v1/replays", json_body={
        "module": module, "topic": topic, "config": RULES, "value_schema": {"amount": "float64"}})["id"]

    js, table = both("detector", "--admin", url, "list")
    assert [d["name"] for d in js] == [d["name"] for d in admin.list()], js
    assert name in table and topic in table, table

    js, table = both("detector", "--admin", url, "list", "--modules")
    assert module in [m["hash"] for m in js], js
    assert module[:12] in table, table

    label = next(m for m in admin.modules() if m["hash"] == module)["name"]
    js, table = both("detector", "--admin", url, "versions", label)
    assert module in json.dumps(js) and module[:12] in table, (js, table)

    js, table = both("detector", "--admin", url, "status", name)
    assert js["name"] == name and js["inputs"] == [topic], js
    assert name in table and topic in table, table

    js, table = both("replay", "--admin", url, "list")
    assert rid in [r["id"] for r in js] and rid in table, (js, table)
    js, table = both("replay", "--admin", url, "status", rid)
    assert js["id"] == rid and rid in table, (js, table)

    js, table = both("cluster", "--admin", url, "status")
    assert js["coordinator"] == "none" and js["node_id"] == admin.expect(200, "GET", "/v1/cluster")["node_id"]
    assert any(p["topic"] == topic for p in js["partitions"]) and topic in table, (js, table)


def test_one_offset_syntax_for_deploy_start_and_replay_range(broker):
    """`--start`, `--from` and `--to` read `earliest|latest|N|@RFC3339|@ms`
    (parsing is unit-tested in runtime/vigil/src/offset.rs; this checks the
    positions the broker resolves them to)."""
    admin = admin_of(broker)
    url = broker.admin_url
    module = admin.upload_module(THRESHOLD)
    topic = unique_name("cliofs-in")
    ck_create_topic(broker.bootstrap, topic, 1)
    base = 1_763_337_600_000  # 2025-11-17T00:00:00Z
    produce(broker.bootstrap, topic, [{"key": f"k{i}", "value": json.dumps({"amount": i}),
                                       "timestamp": base + 1000 * i} for i in range(10)])
    schema = json.dumps({"amount": "float64"})

    def deploy_at(start: str) -> int:
        name = unique_name("cliofs")
        run("detector", "--admin", url, "deploy", "--name", name, "--module", module, "--input", topic,
            "--output", unique_name("cliofs-out"), "--config", json.dumps(RULES), "--schema", schema,
            "--start", start)
        return admin.status(name)["partitions"][0]["start"]

    assert deploy_at("earliest") == 0
    assert deploy_at("latest") == 10
    assert deploy_at("4") == 4
    assert deploy_at("@2025-11-17T00:00:02.500Z") == 3  # first record at or after it
    assert deploy_at(f"@{base + 6000}") == 6

    def replay_range(rid: str, frm: str, to: str) -> int:
        run("replay", "--admin", url, "--module", module, "--topic", topic, "--id", rid, "--from", frm,
            "--to", to, "--config", json.dumps(RULES), "--schema", schema)
        return json.loads(run("replay", "--admin", url, "status", rid, "-o", "json"))["records_total"]

    assert replay_range(unique_name("r"), "@2025-11-17T00:00:03Z", f"@{base + 7000}") == 4  # 3..6
    assert replay_range(unique_name("r"), "2", "latest") == 8
