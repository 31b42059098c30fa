"""The detector workflow outside the repository (issue 15, must-have 2), as a
new user runs it: `vigil detector init` in a temporary directory, `build`
with the real wasm toolchain, `test` on a JSON-lines file through the wasm
host (no broker), `deploy` from the crate's vigil.toml to a real broker fed
by confluent-kafka, and `logs` (plain, JSON and --follow) showing the lines
the module wrote with the SDK's logging.

The build shares target/wasm with scripts/build-detectors.sh (through the
crate's `[build] target_dir`), so the SDK's dependencies are not compiled
again; the crate's Cargo.lock is the clone's, so nothing is downloaded."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
from pathlib import Path

from conftest import REPO_ROOT, vigil_bin
from detectors import admin_of, produce, wait_alerts, wait_caught_up
from helpers import Deadline, ck_create_topic, unique_name


def vigil(cwd: Path, *args: str, timeout: float = 60, admin: str | None = None) -> subprocess.CompletedProcess:
    argv = [str(vigil_bin()), *args]
    env = {k: v for k, v in os.environ.items() if k != "VIGIL_ADMIN"}
    if admin:
        env["VIGIL_ADMIN"] = admin
    p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, env=env)
    assert p.returncode == 0, f"`{' '.join(args)}` exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


def test_init_build_test_deploy_logs(broker, tmp_path):
    name = "cpu-spike"
    crate = tmp_path / name
    out = vigil(tmp_path, "detector", "init", name)
    assert str(crate) in out.stdout or name in out.stdout, out.stdout
    for f in ["Cargo.toml", "Cargo.lock", "src/lib.rs", "tests/detector.rs", "vigil.toml", "sample.jsonl"]:
        assert (crate / f).is_file(), f"init did not write {f}"
    cargo = (crate / "Cargo.toml").read_text()
    assert 'vigil-sdk = { path = "' in cargo and "# vigil-sdk = \"" in cargo, cargo
    # Outside the repository: nothing under REPO_ROOT refers to it.
    assert not str(crate).startswith(str(REPO_ROOT))
    # A second init into the same place is refused, the crate left alone.
    again = subprocess.run([str(vigil_bin()), "detector", "init", name], cwd=tmp_path,
                           capture_output=True, text=True, timeout=30)
    assert again.returncode != 0 and "not empty" in again.stderr, again.stderr

    # The scaffold's native test, as `cargo test` runs it (release profile in
    # the repo's target dir: the SDK's dependencies are already built there).
    native = subprocess.run(["cargo", "test", "--release", "--offline"], cwd=crate, capture_output=True, text=True,
                            timeout=600, env={**os.environ, "CARGO_TARGET_DIR": str(REPO_ROOT / "target")})
    assert native.returncode == 0 and "2 passed" in native.stdout, native.stdout[-2000:] + native.stderr[-3000:]

    with open(crate / "vigil.toml", "a") as f:
        f.write(f'\n[build]\ntarget_dir = "{REPO_ROOT / "target" / "wasm"}"\n')
    built = vigil(crate, "detector", "build", timeout=600)
    wasm = REPO_ROOT / "target" / "wasm" / "wasm32-unknown-unknown" / "release" / "cpu_spike.wasm"
    assert str(wasm) in built.stdout and wasm.is_file(), built.stdout + built.stderr

    # `test`: the sample has one value above max=100 (250.0, line 3, keyed).
    t = vigil(crate, "detector", "test", "--input", "sample.jsonl")
    alerts = [json.loads(line) for line in t.stdout.splitlines() if line.strip()]
    assert len(alerts) == 1, t.stdout + t.stderr
    a = alerts[0]
    assert a["source"]["offset"] == 2 and a["key"] == "sensor-1" and a["score"] == 250.0, a
    assert a["source"]["timestamp"] == 1763337600000 and a["severity"] == "high", a
    assert a["fields"] == {"value": 250.0, "max": 100.0}, a
    assert "started: alert when value > 100" in t.stderr, t.stderr
    assert "4 records, 1 alerts" in t.stderr, t.stderr
    # --config and --schema override vigil.toml: with max 10 three values are above.
    t = vigil(crate, "detector", "test", "--input", "sample.jsonl", "--config", '{"field": "v2", "max": 10}',
              "--schema", '{"v2": "float64"}')
    assert t.stdout.strip() == "", t.stdout  # no record has v2
    data = tmp_path / "more.jsonl"
    data.write_text("\n".join(json.dumps({"v2": v}) for v in [1, 20, 3, 40]) + "\n")
    t = vigil(crate, "detector", "test", "--input", str(data), "--config", '{"field": "v2", "max": 10}',
              "--schema", '{"v2": "float64"}')
    assert [json.loads(x)["source"]["offset"] for x in t.stdout.splitlines()] == [1, 3], t.stdout

    # `deploy` from vigil.toml, topics overridden by flags.
    tin, tout = unique_name("wf-in"), unique_name("wf-out")
    ck_create_topic(broker.bootstrap, tin, 1)
    d = vigil(crate, "detector", "deploy", "--input", tin, "--output", tout, admin=broker.admin_url)
    assert name in d.stdout and "RUNNING" in d.stdout, d.stdout + d.stderr
    assert "uploaded" in d.stderr and "cpu-spike@0.1.0" in d.stderr, d.stderr
    values = [5.0, 150.0, 7.0, 300.0]
    p = produce(broker.bootstrap, tin, [(f"k{i}", json.dumps({"value": v})) for i, v in enumerate(values)])
    admin = admin_of(broker)
    wait_caught_up(admin, name, {(tin, 0): p[-1].offset + 1}, timeout=60)
    got = wait_alerts(broker.bootstrap, tout, lambda r: len(r) >= 2, 30, "workflow alerts")
    assert sorted(json.loads(r.value)["score"] for r in got) == [150.0, 300.0]

    # `logs`: the module's own lines, kept by the broker.
    logs = vigil(crate, "detector", "logs", name, admin=broker.admin_url).stdout
    assert "started: alert when value > 100" in logs, logs
    assert "above 100" in logs and "INFO" in logs, logs
    lines = [json.loads(x) for x in vigil(crate, "detector", "logs", name, "--output", "json",
                                          admin=broker.admin_url).stdout.splitlines()]
    assert lines and all(line["level"] == "info" for line in lines), lines
    assert any(line["instance"] == f"{tin}-0" for line in lines), lines
    assert [line["seq"] for line in lines] == sorted(line["seq"] for line in lines)
    seen = sum("records so far" in line["message"] for line in lines)

    # --follow prints lines logged after it started.
    follow = subprocess.Popen([str(vigil_bin()), "detector", "--admin", broker.admin_url, "logs", name,
                               "--follow", "--output", "json"], stdout=subprocess.PIPE, text=True)
    printed: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [printed.put(x) for x in follow.stdout], daemon=True).start()
    try:
        more = produce(broker.bootstrap, tin, [("k9", json.dumps({"value": 1000.0}))])
        wait_caught_up(admin, name, {(tin, 0): more[-1].offset + 1}, timeout=60)
        dl = Deadline(30, "a new log line through --follow")
        batches = 0
        while batches <= seen:
            dl.check(f"({batches} batch lines so far)")
            try:
                line = printed.get(timeout=max(0.1, dl.left()))
            except queue.Empty:
                continue
            if "records so far" in json.loads(line)["message"]:
                batches += 1
        assert batches == seen + 1
    finally:
        follow.kill()
        follow.wait(timeout=10)

    # Unknown deployments are an error, not an empty list.
    r = subprocess.run([str(vigil_bin()), "detector", "--admin", broker.admin_url, "logs", "nope"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "nope" in r.stderr, r.stderr
