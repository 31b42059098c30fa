//! `vigil detector build`: compiles a detector crate to a `.wasm` module.
//!
//! Uses rustup's wasm32 target when it is installed; otherwise Debian's
//! rustc with the standard library's source (`-Zbuild-std`, see
//! ENVIRONMENT notes in the README); otherwise says what to install.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every detector is built for.
pub const TARGET: &str = "wasm32-unknown-unknown";

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_WASM_LD: &str = "/usr/lib/llvm-19/bin/wasm-ld";
const DEBIAN_STD_SRC: &str = "/usr/lib/rustlib/src/rust/library";

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No toolchain that can target wasm32 was found (install one, then retry).
    #[error("no Rust toolchain that can build {TARGET} was found. Install one of:\n  rustup target add {TARGET}\n  apt-get install -y rustc-web cargo-web rust-web-src lld-19   (Debian 12)")]
    NoToolchain,
    /// The crate's manifest is missing or unreadable.
    #[error("{path}: {reason}")]
    Manifest {
        /// Manifest path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Cargo could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// Program.
        program: String,
        /// OS error.
        source: std::io::Error,
    },
    /// Cargo ran and failed (its output was shown above).
    #[error("cargo failed building {krate} for {TARGET} (exit status {status}); see the compiler output above")]
    Cargo {
        /// Crate name.
        krate: String,
        /// Exit status.
        status: String,
    },
    /// Cargo succeeded but the module is not where expected (is the crate a cdylib?).
    #[error("cargo finished but {0} was not produced; does the crate have `[lib] crate-type = [\"cdylib\"]`?")]
    NoOutput(PathBuf),
}

/// Which toolchain builds the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toolchain {
    /// rustup with the wasm32 target installed.
    Rustup,
    /// Debian's rustc-web with rust-web-src and lld-19.
    Debian,
}

/// Finds a toolchain that can build wasm32 modules.
pub fn detect() -> Result<Toolchain, BuildError> {
    let rustup = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    if let Ok(out) = rustup {
        if out.status.success()
            && String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == TARGET)
        {
            return Ok(Toolchain::Rustup);
        }
    }
    let debian = [DEBIAN_RUSTC, DEBIAN_CARGO, DEBIAN_WASM_LD, DEBIAN_STD_SRC]
        .iter()
        .all(|p| Path::new(p).exists());
    if debian {
        return Ok(Toolchain::Debian);
    }
    Err(BuildError::NoToolchain)
}

/// Package name of the crate at `dir`.
pub(crate) fn package_name(dir: &Path) -> Result<String, BuildError> {
    let path = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| BuildError::Manifest {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| BuildError::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    doc.get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .ok_or(BuildError::Manifest {
            path,
            reason: "no [package] name".into(),
        })
}

/// Where cargo puts the module of crate `name` under `target_dir`.
pub fn output_path(target_dir: &Path, name: &str) -> PathBuf {
    target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{}.wasm", name.replace('-', "_")))
}

/// Builds the detector crates in `dirs` (one cargo run) into `target_dir`
/// and returns the `.wasm` paths in the same order.
pub fn build(dirs: &[PathBuf], target_dir: &Path) -> Result<Vec<PathBuf>, BuildError> {
    let toolchain = detect()?;
    let names = dirs
        .iter()
        .map(|d| package_name(d))
        .collect::<Result<Vec<_>, _>>()?;
    let mut cmd = match toolchain {
        Toolchain::Rustup => Command::new("cargo"),
        Toolchain::Debian => {
            let mut c = Command::new(DEBIAN_CARGO);
            c.env("RUSTC", DEBIAN_RUSTC)
                // build-std is unstable; Debian's compiler is a release build.
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", DEBIAN_WASM_LD);
            c
        }
    };
    // Speed over size (ENVIRONMENT: opt-level "z" halves guest speed), no
    // unwinding in the sandbox, one codegen unit for cross-crate inlining.
    cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "3")
        .env_remove("RUSTFLAGS")
        .arg("build")
        .arg("--release")
        .args(["--target", TARGET])
        .arg("--target-dir")
        .arg(target_dir);
    if toolchain == Toolchain::Debian {
        cmd.arg("-Zbuild-std=std,panic_abort");
    }
    // Building through the first crate's manifest keeps workspace members in
    // their workspace (shared lockfile) and lone crates standalone.
    if let Some(first) = dirs.first() {
        cmd.arg("--manifest-path").arg(first.join("Cargo.toml"));
    }
    for n in &names {
        cmd.args(["-p", n]);
    }
    let program = format!("{:?}", cmd.get_program());
    let status = cmd
        .status()
        .map_err(|source| BuildError::Spawn { program, source })?;
    if !status.success() {
        return Err(BuildError::Cargo {
            krate: names.join(", "),
            status: status.to_string(),
        });
    }
    names
        .iter()
        .map(|n| {
            let p = output_path(target_dir, n);
            if p.exists() {
                Ok(p)
            } else {
                Err(BuildError::NoOutput(p))
            }
        })
        .collect()
}
