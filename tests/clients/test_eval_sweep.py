"""`vigil eval --sweep` with the ensemble detector in wasm, through the real
host, on the labelled corpus shipped in the repository (examples/data/nab,
so this is also the README's fresh-clone command).

With `--sweep` the detector runs with `"scores": true` and writes one score
record per scored record; eval scores both its own alerts (fixed) and the
best threshold over the score stream (swept). The detector's stream is 0
during its cooldown, so cutting it at the configured threshold gives exactly
its alerts: the sweep can only match or beat the fixed score, and the fixed
score must be what the same module gives without --sweep."""

from __future__ import annotations

import json
import subprocess

from conftest import REPO_ROOT, vigil_bin
from detectors import wasm_path

CORPUS = REPO_ROOT / "examples" / "data" / "nab"
PROFILES = ["reward_low_FN_rate", "reward_low_FP_rate", "standard"]


def run_eval(*args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run([str(vigil_bin()), "eval", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT)


def eval_json(*extra: str) -> dict:
    out = run_eval("--module", str(wasm_path("vigil_plugin_ensemble")), "--dataset", str(CORPUS),
                   "--json", *extra)
    assert out.returncode == 0, f"vigil eval failed:\n{out.stdout}\n{out.stderr}"
    return json.loads(out.stdout)


def test_sweep_scores_the_score_stream_next_to_the_deployed_alerts():
    plain = eval_json()
    swept = eval_json("--sweep")
    assert "swept" not in plain and plain["score_records"] == 0, plain["score_records"]
    assert swept["score_records"] > swept["alerts"] > 0, (swept["score_records"], swept["alerts"])
    # The score records that say "alert" are exactly the plain run's alerts.
    assert swept["alerts"] == plain["alerts"]
    assert {f["name"]: f["flagged_rows"] for f in swept["files"]} == \
        {f["name"]: f["flagged_rows"] for f in plain["files"]}
    for p in PROFILES:
        fixed, best = swept["scores"][p]["normalized"], swept["swept"][p]
        assert fixed == plain["scores"][p]["normalized"], p
        assert best["threshold"] is not None and 0 < best["threshold"] <= 1, (p, best)
        assert best["normalized"] >= fixed - 1e-9, (p, best, fixed)
    cats = {c["category"]: c for c in swept["categories"]}
    assert set(cats) == {"artificialNoAnomaly", "artificialWithAnomaly", "realAWSCloudwatch",
                         "realKnownCause"}, cats
    assert cats["artificialNoAnomaly"]["windows"] == 0
    assert all(c["swept"] is not None for c in cats.values()), cats


def test_sweep_table_says_which_column_is_which():
    out = run_eval("--module", str(wasm_path("vigil_plugin_ensemble")), "--dataset", str(CORPUS),
                   "--sweep")
    assert out.returncode == 0, f"vigil eval failed:\n{out.stdout}\n{out.stderr}"
    assert "fixed = the detector's own alerts at its configured threshold" in out.stdout, out.stdout
    assert "swept = best threshold over the score stream" in out.stdout, out.stdout
    assert "realKnownCause" in out.stdout and "by category" in out.stdout, out.stdout


def test_sweep_refuses_a_detector_without_a_score_stream():
    out = run_eval("--module", str(wasm_path("vigil_plugin_seasonal")), "--dataset", str(CORPUS),
                   "--sweep")
    assert out.returncode != 0
    # seasonal's config denies unknown fields, so the replay fails naming it.
    assert "scores" in out.stderr, out.stderr
