"""The test environment itself: every client is installed at the pinned
version. These fail (not skip) when something is missing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_python_clients_pinned():
    import aiokafka
    import confluent_kafka
    import kafka

    assert confluent_kafka.__version__.startswith("2.16."), confluent_kafka.__version__
    assert confluent_kafka.libversion()[0].startswith("2.16."), confluent_kafka.libversion()
    assert kafka.__version__.startswith("3.0."), kafka.__version__
    assert aiokafka.__version__.startswith("0.14."), aiokafka.__version__


def test_kafkajs_installed(node_driver):
    pkg = json.loads((HERE / "js" / "node_modules" / "kafkajs" / "package.json").read_text())
    assert pkg["version"] == "2.2.4"
    out = subprocess.run([node_driver.node, "--version"], capture_output=True, timeout=10)
    assert out.returncode == 0 and out.stdout.startswith(b"v"), out


def test_vigil_binary_runs(vigil_installed):
    out = subprocess.run([str(vigil_installed), "--help"], capture_output=True, timeout=10)
    text = (out.stdout + out.stderr).decode()
    assert out.returncode == 0, text
    assert "serve" in text, text
