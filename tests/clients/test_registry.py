"""Module references: deploying by NAME@VERSION and by NAME, and
`vigil detector versions NAME` through the CLI."""

from __future__ import annotations

from detectors import admin_of, cli, sha256_hex, spec, wait_state, wasm_bytes
from helpers import ck_create_topic, unique_name


def test_deploy_by_name_and_version_and_list_versions(broker):
    admin = admin_of(broker)
    zscore = admin.upload_module("vigil_plugin_zscore")
    hostile = admin.upload_module("vigil_test_hostile")
    assert zscore == sha256_hex(wasm_bytes("vigil_plugin_zscore"))
    topic = unique_name("reg-in")
    ck_create_topic(broker.bootstrap, topic, 1)

    st = admin.deploy(spec("by-label", "vigil-plugin-zscore@0.1.0", topic, unique_name("reg-out"),
                           {"field": "amount"}, value_schema={"amount": "float64"}))
    assert st["module"] == zscore, st
    st = admin.deploy(spec("by-name", "vigil-test-hostile", topic, unique_name("reg-out"), {"mode": "ok"}))
    assert st["module"] == hostile, st
    wait_state(admin, "by-name", "running")

    msg = admin.expect_error(404, "POST", "/v1/deployments",
                             json_body=spec("nope", "vigil-plugin-zscore@9.9.9", topic, "o", {"field": "a"}))
    assert "vigil-plugin-zscore@9.9.9" in msg, msg

    out = cli(broker, "versions", "vigil-plugin-zscore").stdout
    assert zscore in out and "vigil-plugin-zscore@0.1.0" in out and "abi v1" in out, out
    assert hostile not in out, out
    r = cli(broker, "versions", "no-such-module", check=False)
    assert r.rc != 0 and "no uploaded module is named" in r.stderr, r.stderr
