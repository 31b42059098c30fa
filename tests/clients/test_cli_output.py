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
from detectors import admin_of, spec
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
