"""`vigil eval`: a detector module scored on a labelled NAB-format corpus
through a replay job on an embedded broker.

The corpus is made here (two series with an obvious spike inside a labelled
window; profiles.json written by the test, since CI clones have no copy of
NAB), and the score `vigil eval` reports is checked against one computed by
the NAB rules re-implemented below from the rows it says it flagged."""

from __future__ import annotations

import json
import math
import random
import subprocess
from datetime import datetime, timedelta, timezone

from conftest import vigil_bin
from detectors import wasm_path

ROWS = 400
STEP = timedelta(minutes=5)
T0 = datetime(2015, 3, 1, tzinfo=timezone.utc)
# The seasonal plugin learns for 300 records (its default warmup), so the
# anomaly sits after that, inside the window.
WINDOW = (320, 350)
SPIKES = {"synthetic/spike_a.csv": 330, "synthetic/spike_b.csv": 336}

PROFILES = {
    "standard": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0},
    "reward_low_FP_rate": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.22, "tnWeight": 1.0},
    "reward_low_FN_rate": {"tpWeight": 1.0, "fnWeight": 2.0, "fpWeight": 0.11, "tnWeight": 1.0},
}


def ts(row: int) -> str:
    return (T0 + row * STEP).strftime("%Y-%m-%d %H:%M:%S")


def make_corpus(root):
    """Writes the corpus; returns {name: (first, last) window rows}."""
    rng = random.Random(5)
    windows = {}
    for name, spike in SPIKES.items():
        path = root / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["timestamp,value"]
        for i in range(ROWS):
            v = 50 + 5 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 0.5)
            if i == spike:
                v = 400.0  # far outside anything seen: scores 1
            lines.append(f"{ts(i)},{v:.3f}")
        path.write_text("\n".join(lines) + "\n")
        windows[name] = WINDOW
    (root / "combined_windows.json").write_text(json.dumps(
        {n: [[ts(a) + ".000000", ts(b) + ".000000"]] for n, (a, b) in windows.items()}, indent=1))
    (root / "profiles.json").write_text(json.dumps({k: {"CostMatrix": v} for k, v in PROFILES.items()}))
    return windows


def sigmoid(x: float) -> float:
    return -1.0 if x >= 3 else 2 / (1 + math.exp(5 * x)) - 1


def nab_raw(rows: int, window: tuple[int, int], flagged: list[int], w: dict) -> float:
    """NAB's raw score of one series with one window lying after the
    probationary period (15 % of the rows)."""
    probation = min(int(0.15 * rows), 750)
    left, right = window
    width = right - left + 1
    assert left >= probation
    raw, best = -w["fnWeight"], None
    for i in sorted(set(flagged)):
        if i < probation:
            continue
        if left <= i <= right:
            gain = w["tpWeight"] * sigmoid(-(right - i + 1) / width) / sigmoid(-1)
            best = gain if best is None else max(best, gain)
        elif i < left:
            raw -= w["fpWeight"]  # no window before it: the full cost
        else:
            raw += w["fpWeight"] * sigmoid((i - right) / (width - 1))
    if best is not None:
        raw += best + w["fnWeight"]
    return raw


def run_eval(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([str(vigil_bin()), "eval", *args], capture_output=True, text=True, timeout=timeout)


def test_eval_scores_the_spikes_as_nab_does(tmp_path):
    corpus = tmp_path / "spikes"
    windows = make_corpus(corpus)
    out = run_eval("--module", str(wasm_path("vigil_plugin_seasonal")), "--dataset", str(corpus),
                   "--config", '{"threshold": 0.65}', "--json")
    assert out.returncode == 0, f"vigil eval failed:\n{out.stdout}\n{out.stderr}"
    report = json.loads(out.stdout)
    assert report["records"] == 2 * ROWS
    assert report["out_of_range_alerts"] == 0, report
    files = {f["name"]: f for f in report["files"]}
    assert set(files) == set(SPIKES)
    for name, spike in SPIKES.items():
        f = files[name]
        assert f["records"] == ROWS and f["windows"] == 1, f
        assert f["windows_hit"] == 1, f"the spike at row {spike} of {name} was not flagged: {f}"
        assert spike in f["flagged_rows"], f
    assert sum(f["windows_hit"] for f in files.values()) == 2

    for profile, w in PROFILES.items():
        raws = {n: nab_raw(ROWS, windows[n], files[n]["flagged_rows"], w) for n in SPIKES}
        if profile == report["profile"]:
            for n, raw in raws.items():
                assert math.isclose(files[n]["raw"], raw, abs_tol=1e-9), (n, files[n], raw)
        n_windows = len(SPIKES)
        null, perfect = -w["fnWeight"] * n_windows, w["tpWeight"] * n_windows
        expected = 100 * (sum(raws.values()) - null) / (perfect - null)
        got = report["scores"][profile]["normalized"]
        assert math.isclose(got, expected, abs_tol=1e-6), f"{profile}: vigil {got}, expected {expected}"
        assert got > 0, f"{profile}: {got}"


def test_eval_prints_a_table_per_file_and_the_profile_totals(tmp_path):
    corpus = tmp_path / "spikes"
    make_corpus(corpus)
    out = run_eval("--module", str(wasm_path("vigil_plugin_seasonal")), "--dataset", str(corpus))
    assert out.returncode == 0, f"vigil eval failed:\n{out.stdout}\n{out.stderr}"
    lines = out.stdout.splitlines()
    assert lines[0].startswith("file") and "windows" in lines[0], out.stdout
    for name in SPIKES:
        row = next((l for l in lines if l.startswith(name)), None)
        assert row and " 1/1 " in row, f"{name}: {row!r}\n{out.stdout}"
    for profile in PROFILES:
        assert any(l.strip().startswith(profile) for l in lines), f"no {profile} total:\n{out.stdout}"
    assert "records/s" in out.stdout, out.stdout


def test_eval_says_when_the_directory_is_not_a_nab_corpus(tmp_path):
    (tmp_path / "data").mkdir()
    out = run_eval("--module", "seasonal", "--dataset", str(tmp_path), timeout=30)
    assert out.returncode != 0
    assert "is not a NAB corpus" in out.stderr and "combined_windows.json" in out.stderr, out.stderr


def test_eval_refuses_an_unknown_module_before_loading_the_data(tmp_path):
    corpus = tmp_path / "spikes"
    make_corpus(corpus)
    out = run_eval("--module", "no-such-detector@9.9.9", "--dataset", str(corpus), timeout=60)
    assert out.returncode != 0
    assert 'no module "no-such-detector@9.9.9"' in out.stderr, out.stderr
    assert "produced" not in out.stderr, out.stderr
