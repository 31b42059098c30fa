#!/usr/bin/env bash
# The one test command for vigil:  ./scripts/test-all.sh
#
# Installs the test dependencies (idempotent; see scripts/install-test-deps.sh),
# then runs, from the repo root:
#   1. cargo fmt --all -- --check
#   2. cargo clippy --workspace --all-targets --release -- -D warnings
#   3. cargo build --release --workspace
#   4. scripts/build-detectors.sh  (plugins + test detectors → target/wasm/*.wasm,
#                                   with the toolchain from scripts/install-wasm.sh)
#   5. cargo nextest run --workspace --release
#   6. scripts/fuzz.sh             (cargo-fuzz on the frame and record-batch
#                                   decoders, VIGIL_FUZZ_SECS=60 per target)
#   7. pytest tests/clients -v     (real Kafka clients against target/release/vigil)
# and prints a summary. Exits non-zero if any step failed.
#
# Options:
#   --fail-fast     stop at the first failing step (default: run every step
#                   that still makes sense, so one failure doesn't hide others)
#   --skip-lint     skip cargo fmt and clippy
#   --clients-only  only install, build and run the pytest client suite
#   -- ARGS...      extra arguments passed to pytest (e.g. -- -k confluent -x)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

FAIL_FAST=0
SKIP_LINT=0
CLIENTS_ONLY=0
PYTEST_EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --fail-fast) FAIL_FAST=1 ;;
        --skip-lint) SKIP_LINT=1 ;;
        --clients-only) CLIENTS_ONLY=1; SKIP_LINT=1 ;;
        --) shift; PYTEST_EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

LOG_DIR="$REPO_ROOT/target/test-logs"
mkdir -p "$LOG_DIR"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

STEP_NAMES=()
STEP_RESULTS=()
STEP_SECS=()
FAILED=0

banner() { printf '\n======== %s ========\n' "$*"; }

# run_step NAME CMD... : runs CMD, records PASS/FAIL and duration.
run_step() {
    local name="$1"; shift
    banner "$name"
    local start=$SECONDS rc=0
    "$@" || rc=$?
    STEP_NAMES+=("$name")
    STEP_SECS+=("$((SECONDS - start))")
    if [ "$rc" -eq 0 ]; then
        STEP_RESULTS+=("PASS")
    else
        STEP_RESULTS+=("FAIL (exit $rc)")
        FAILED=1
        echo "!!! step '$name' failed with exit code $rc" >&2
        if [ "$FAIL_FAST" -eq 1 ]; then
            summary
            exit 1
        fi
    fi
    return 0
}

skip_step() {
    STEP_NAMES+=("$1")
    STEP_SECS+=("0")
    STEP_RESULTS+=("SKIPPED ($2)")
}

step_ok() { # step_ok NAME -> 0 if that step ran and passed
    local i
    for i in "${!STEP_NAMES[@]}"; do
        if [ "${STEP_NAMES[$i]}" = "$1" ]; then
            [ "${STEP_RESULTS[$i]}" = "PASS" ]
            return
        fi
    done
    return 1
}

summary() {
    banner "summary"
    local i passed=0 failed=0
    for i in "${!STEP_NAMES[@]}"; do
        printf '  %-28s %-22s %5ss\n' "${STEP_NAMES[$i]}" "${STEP_RESULTS[$i]}" "${STEP_SECS[$i]}"
        case "${STEP_RESULTS[$i]}" in
            PASS) passed=$((passed + 1)) ;;
            FAIL*) failed=$((failed + 1)) ;;
        esac
    done
    if [ -f "$LOG_DIR/nextest.log" ] && step_ran "cargo nextest"; then
        printf '  nextest: %s\n' "$(grep -E '^ *Summary ' "$LOG_DIR/nextest.log" | tail -n1 | sed 's/^ *//' || true)"
    fi
    if [ -f "$LOG_DIR/pytest.log" ] && step_ran "pytest tests/clients"; then
        printf '  pytest:  %s\n' "$(grep -E '^=+ .*(passed|failed|error|no tests ran).* =+$' "$LOG_DIR/pytest.log" | tail -n1 || true)"
    fi
    print_failures
    printf '  total time: %ss\n' "$SECONDS"
    echo "steps: $passed passed, $failed failed"
    # Test totals over nextest + pytest (only the runs that happened).
    local tp=0 tf=0 line n
    if [ -f "$LOG_DIR/nextest.log" ] && step_ran "cargo nextest"; then
        line="$(grep -E '^ *Summary ' "$LOG_DIR/nextest.log" | tail -n1 || true)"
        n="$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+' || true)"; tp=$((tp + ${n:-0}))
        n="$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+' || true)"; tf=$((tf + ${n:-0}))
    fi
    if [ -f "$LOG_DIR/pytest.log" ] && step_ran "pytest tests/clients"; then
        line="$(grep -E '^=+ .*(passed|failed|error|no tests ran).* =+$' "$LOG_DIR/pytest.log" | tail -n1 || true)"
        n="$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+' || true)"; tp=$((tp + ${n:-0}))
        n="$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+' || true)"; tf=$((tf + ${n:-0}))
        n="$(grep -oE '[0-9]+ errors?' <<<"$line" | grep -oE '[0-9]+' || true)"; tf=$((tf + ${n:-0}))
    fi
    echo "tests: $tp passed, $tf failed"
}

# The names of failed tests and the first lines of why, at the end where
# a CI excerpt that shows only the tail still has them.
print_failures() {
    local failed
    if [ -f "$LOG_DIR/nextest.log" ] && step_ran "cargo nextest"; then
        failed="$(grep -E '^ *(FAIL|TIMEOUT|SIGSEGV|SIGABRT|SIGKILL|LEAK-FAIL) \[' "$LOG_DIR/nextest.log" | sed 's/^ *//' | sort -u || true)"
        if [ -n "$failed" ]; then
            echo "  nextest failures:"
            sed 's/^/    /' <<<"$failed" | head -n 20
            grep -E -A4 "panicked at" "$LOG_DIR/nextest.log" | head -n 40 | sed 's/^/    | /' || true
        fi
    fi
    if [ -f "$LOG_DIR/pytest.log" ] && step_ran "pytest tests/clients"; then
        failed="$(grep -E '^(FAILED|ERROR) ' "$LOG_DIR/pytest.log" | sort -u || true)"
        if [ -n "$failed" ]; then
            echo "  pytest failures:"
            sed 's/^/    /' <<<"$failed" | head -n 20
        fi
    fi
}

step_ran() {
    local i
    for i in "${!STEP_NAMES[@]}"; do
        if [ "${STEP_NAMES[$i]}" = "$1" ]; then
            case "${STEP_RESULTS[$i]}" in SKIPPED*) return 1 ;; *) return 0 ;; esac
        fi
    done
    return 1
}

# ------------------------------------------------------------------ steps --
check_rust_tools() {
    local ok=0
    cargo --version || ok=1
    if [ "$SKIP_LINT" -eq 0 ]; then
        cargo fmt --version || { echo "rustfmt missing: rustup component add rustfmt" >&2; ok=1; }
        cargo clippy --version || { echo "clippy missing: rustup component add clippy" >&2; ok=1; }
    fi
    if [ "$CLIENTS_ONLY" -eq 0 ]; then
        cargo nextest --version | head -n1 || { echo "cargo-nextest missing: cargo install --locked cargo-nextest" >&2; ok=1; }
    fi
    return "$ok"
}


run_nextest() {
    # --no-tests=warn: a workspace without Rust tests yet is not a failure.
    # --no-fail-fast: one failure must not hide others (or their names).
    cargo nextest run --workspace --release --no-tests=warn --no-fail-fast 2>&1 | tee "$LOG_DIR/nextest.log"
}

run_pytest() {
    rm -rf "$LOG_DIR/clients"  # per-test broker logs of the previous run
    VIGIL_BIN="$REPO_ROOT/target/release/vigil" \
    VIGIL_KCAT_LIB_DIR="$REPO_ROOT/target/test-kcat-lib" \
    VIGIL_TEST_LOG_DIR="$LOG_DIR/clients" \
        "$REPO_ROOT/target/test-venv/bin/python" -m pytest tests/clients -v -ra --durations=10 \
        ${PYTEST_EXTRA[@]+"${PYTEST_EXTRA[@]}"} 2>&1 | tee "$LOG_DIR/pytest.log"
}

run_step "install test deps" bash "$REPO_ROOT/scripts/install-test-deps.sh"
run_step "install wasm toolchain" bash "$REPO_ROOT/scripts/install-wasm.sh"
run_step "rust toolchain" check_rust_tools
if [ "$SKIP_LINT" -eq 0 ]; then
    run_step "cargo fmt --check" cargo fmt --all -- --check
    run_step "cargo clippy" cargo clippy --workspace --all-targets --release -- -D warnings
else
    skip_step "cargo fmt --check" "--skip-lint"
    skip_step "cargo clippy" "--skip-lint"
fi
run_step "cargo build --release" cargo build --release --workspace
if step_ok "cargo build --release" && step_ok "install wasm toolchain"; then
    run_step "build detectors (wasm)" bash "$REPO_ROOT/scripts/build-detectors.sh"
else
    skip_step "build detectors (wasm)" "build or toolchain failed"
fi
export VIGIL_WASM_DIR="$REPO_ROOT/target/wasm/wasm32-unknown-unknown/release"
if [ "$CLIENTS_ONLY" -eq 1 ]; then
    skip_step "cargo nextest" "--clients-only"
elif step_ok "cargo build --release"; then
    run_step "cargo nextest" run_nextest
else
    skip_step "cargo nextest" "build failed"
fi
if [ "$CLIENTS_ONLY" -eq 1 ]; then
    skip_step "fuzz (bounded)" "--clients-only"
elif step_ok "install test deps"; then
    run_step "fuzz (bounded)" bash "$REPO_ROOT/scripts/fuzz.sh"
else
    skip_step "fuzz (bounded)" "install failed"
fi
if step_ok "cargo build --release" && step_ok "install test deps"; then
    run_step "pytest tests/clients" run_pytest
else
    skip_step "pytest tests/clients" "build or install failed"
fi

summary
exit "$FAILED"
