#!/usr/bin/env bash
# Makes sure the build's system tools are installed (idempotent):
#   0. protoc and the well-known .proto files (Debian protobuf-compiler +
#      libprotobuf-dev): etcd-client, the coordinator's etcd backend
#      (runtime/coord), generates its gRPC code at build time;
# and a toolchain that builds wasm32-unknown-unknown detector modules:
#   1. rustup's wasm32 target, if already installed (or installable in 60 s:
#      on machines without access to rustup's server, `rustup target add`
#      hangs, hence the timeout);
#   2. otherwise Debian's rustc-web + cargo-web + rust-web-src + lld-19,
#      which `vigil detector build` drives with -Zbuild-std.
set -euo pipefail
log() { printf '[install-wasm] %s\n' "$*" >&2; }

if ! command -v protoc >/dev/null 2>&1 || [ ! -f /usr/include/google/protobuf/descriptor.proto ]; then
    log "installing protoc (protobuf-compiler, libprotobuf-dev) for etcd-client's build"
    P_SUDO=""
    [ "$(id -u)" -ne 0 ] && P_SUDO="sudo"
    $P_SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $P_SUDO apt-get install -y -qq --no-install-recommends \
        protobuf-compiler libprotobuf-dev >/dev/null
fi

if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    log "rustup target wasm32-unknown-unknown is installed"
    exit 0
fi
if [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] && [ -x /usr/lib/llvm-19/bin/wasm-ld ] \
    && [ -d /usr/lib/rustlib/src/rust/library ]; then
    log "Debian wasm toolchain (rustc-web, rust-web-src, lld-19) is installed"
    exit 0
fi
if timeout 60 rustup target add wasm32-unknown-unknown >/dev/null 2>&1; then
    log "installed rustup target wasm32-unknown-unknown"
    exit 0
fi
log "rustup cannot fetch the wasm32 target here; installing Debian's toolchain"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq rustc-web cargo-web rust-web-src lld-19 >/dev/null
log "installed rustc-web, cargo-web, rust-web-src, lld-19"
