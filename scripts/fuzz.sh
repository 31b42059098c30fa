#!/usr/bin/env bash
# Fuzzes vigil's decoders with cargo-fuzz for a bounded time; fails on a crash.
#
#   scripts/fuzz.sh                      every target, VIGIL_FUZZ_SECS each
#   VIGIL_FUZZ_SECS=300 scripts/fuzz.sh  longer runs
#   VIGIL_FUZZ_TARGETS="record_batch" scripts/fuzz.sh
#
# Targets live in fuzz/fuzz_targets (decode_request: request frames;
# record_batch: batch framing, bounded decompression, record decoding). Each
# run starts from the committed seed corpus fuzz/corpus/<target> (read only:
# new inputs go to a scratch corpus under target/fuzz-work, so the repo stays
# small). A crash, panic, leak of the RSS limit or slow unit fails the run;
# the input is saved under target/fuzz-work/artifacts/<target>/ and printed
# as a `cargo fuzz run` reproduction line.
#
# Needs the nightly toolchain and cargo-fuzz, both installed by
# scripts/install-test-deps.sh (cargo-fuzz into target/cargo-tools/bin).
# Builds go to target/fuzz (cached with target/). No sanitizer: the code under
# test is safe Rust plus uninstrumented C codecs, so ASan would only slow the
# runs; libFuzzer still catches panics, aborts, OOM and timeouts.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

SECS="${VIGIL_FUZZ_SECS:-60}"
read -r -a TARGETS <<<"${VIGIL_FUZZ_TARGETS:-decode_request record_batch}"
export PATH="$REPO_ROOT/target/cargo-tools/bin:$PATH"
WORK="$REPO_ROOT/target/fuzz-work"
FUZZ_ARGS=(+nightly fuzz)
BUILD_ARGS=(--fuzz-dir fuzz --sanitizer none --target-dir "$REPO_ROOT/target/fuzz")

log() { printf '[fuzz] %s\n' "$*" >&2; }

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    log "ERROR: cargo-fuzz or the nightly toolchain is missing: run scripts/install-test-deps.sh"
    exit 1
fi

for t in "${TARGETS[@]}"; do
    log "building $t"
    cargo "${FUZZ_ARGS[@]}" build "${BUILD_ARGS[@]}" "$t"
done

failed=0
for t in "${TARGETS[@]}"; do
    scratch="$WORK/corpus/$t"
    artifacts="$WORK/artifacts/$t"
    mkdir -p "$scratch" "$artifacts"
    log "running $t for ${SECS}s (seeds: fuzz/corpus/$t)"
    # The first corpus dir receives new inputs; the committed seeds are read.
    if ! cargo "${FUZZ_ARGS[@]}" run "${BUILD_ARGS[@]}" "$t" "$scratch" "fuzz/corpus/$t" -- \
        -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/" -print_final_stats=1; then
        failed=1
        log "FAILED: $t; reproduce with:"
        for a in "$artifacts"/*; do
            [ -e "$a" ] && log "  cargo +nightly fuzz run --fuzz-dir fuzz --sanitizer none $t $a"
        done
    fi
done
exit "$failed"
