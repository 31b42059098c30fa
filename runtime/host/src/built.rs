//! Where the workspace's SDK-built modules are (the plugins and test
//! detectors `scripts/build-detectors.sh` compiles), for tests and tools
//! that run real modules rather than hand-written wat.

use std::path::PathBuf;

/// `$VIGIL_WASM_DIR` if set, else `target/wasm/wasm32-unknown-unknown/release`
/// in this workspace (where `scripts/build-detectors.sh` writes).
pub fn built_modules_dir() -> PathBuf {
    std::env::var_os("VIGIL_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/wasm/wasm32-unknown-unknown/release")
        })
}

/// The bytes of built module `name` (`name.wasm` in [`built_modules_dir`]).
/// The error says which file is missing and how to build it; tests should
/// fail on it rather than skip, so the real path is never silently unrun.
pub fn read_built_module(name: &str) -> Result<Vec<u8>, String> {
    let path = built_modules_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).map_err(|e| {
        format!(
            "{}: {e}; build the detectors first: scripts/build-detectors.sh",
            path.display()
        )
    })
}
