#!/usr/bin/env bash
# Builds every plugin and test detector to wasm32 in one cargo run, with the
# same command users run (`vigil detector build`), into target/wasm (cached
# between runs). Needs target/release/vigil (cargo build --release) and the
# toolchain from scripts/install-wasm.sh.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
VIGIL="${VIGIL_BIN:-$REPO_ROOT/target/release/vigil}"
"$VIGIL" detector build --target-dir "$REPO_ROOT/target/wasm" \
    plugins/zscore plugins/ewma-bands plugins/rate-spike plugins/threshold-rules plugins/seasonal plugins/ensemble plugins/rcf \
    tests/detectors/hostile
