//! Errors of the host: creating the engine, loading a module, running a guest.
//!
//! Each message says what went wrong and whether retrying can help, so the
//! broker can show it to the user as is (prefixed with the deployment).

use std::path::PathBuf;
use std::time::Duration;

/// The SDK release that first built detector ABI v1 modules; named in the
/// message that tells a user to rebuild an old module.
pub const MIN_SDK_FOR_ABI: &str = "0.1.0";

/// Why the host (the process-wide engine) could not be created.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// wasmtime refused the engine configuration (a bug or an impossible
    /// [`HostConfig`](crate::HostConfig)); retrying does not help.
    #[error("cannot create the wasm engine: {0}")]
    Engine(String),
    /// The compiled-module cache directory cannot be created.
    #[error("cannot create the compiled-module cache directory {path}: {source}")]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The epoch ticker thread could not be started.
    #[error("cannot start the epoch ticker thread: {0}")]
    Ticker(std::io::Error),
}

/// Why a module was refused at load (upload) time. None of these go away by
/// retrying with the same bytes: the module has to be rebuilt or the broker
/// upgraded, as the message says.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// Not a WebAssembly module, or it does not validate/compile.
    #[error("not a valid detector module: {0}")]
    Invalid(String),
    /// A required export is missing.
    #[error(
        "module does not export `{name}` ({expected_sig}); detector modules must be built with vigil-sdk"
    )]
    MissingExport {
        /// The export's name.
        name: String,
        /// What it must look like, e.g. `func(i32) -> i32`.
        expected_sig: String,
    },
    /// A required export exists with another type.
    #[error("module export `{name}` is {found}, expected {expected}")]
    WrongSignature {
        /// The export's name.
        name: String,
        /// What it must look like.
        expected: String,
        /// What it is.
        found: String,
    },
    /// An import from module `vigil` with a name the host knows but another type.
    #[error("module imports vigil::{name} as {found}, but the host provides {expected}")]
    ImportSignature {
        /// The import's name.
        name: String,
        /// What the host provides.
        expected: String,
        /// What the module asked for.
        found: String,
    },
    /// The module speaks another detector ABI version.
    #[error("{}", abi_mismatch_message(*module, *host))]
    AbiMismatch {
        /// The module's `vigil_abi_version()`.
        module: i32,
        /// The host's [`vigil_abi::ABI_VERSION`].
        host: i32,
    },
    /// The module imports something other than the `vigil` host functions.
    #[error(
        "module imports {module}::{name}: vigil modules may import only `vigil` host functions (no WASI filesystem/network/clock/random)"
    )]
    ForbiddenImport {
        /// Import module name.
        module: String,
        /// Import field name.
        name: String,
    },
    /// Running the module's version exports (or its start function) failed.
    #[error("module failed while being checked at load: {0}")]
    Probe(String),
    /// An internal wasmtime error (e.g. no free instance slot for the probe);
    /// retrying later may help.
    #[error("host error while loading the module (retrying may help): {0}")]
    Host(String),
}

fn abi_mismatch_message(module: i32, host: i32) -> String {
    if module > host {
        format!(
            "module built for detector ABI v{module}, this broker serves v{host}: upgrade the broker"
        )
    } else {
        format!(
            "module built for detector ABI v{module}, this broker serves v{host}: rebuild the module with vigil-sdk >= {MIN_SDK_FOR_ABI}"
        )
    }
}

/// Why a call into a guest failed.
///
/// Only [`GuestError::Detector`] leaves the instance usable; after any other
/// error the [`Instance`](crate::Instance) refuses further calls and the
/// broker must instantiate again (see [`GuestError::poisons_instance`]).
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The detector reported an error (status 1 with a `set_error` message).
    /// Deterministic for the same input: retrying the same batch fails again.
    #[error("detector error: {0}")]
    Detector(String),
    /// The guest trapped (a panic, `unreachable`, an out-of-bounds access, a
    /// bad pointer passed to a host function).
    #[error("detector trapped: {message} (the instance is discarded; the same input will likely trap again)")]
    Trap {
        /// The panic message the guest reported with `set_error`, else the
        /// wasm trap and a backtrace summary.
        message: String,
    },
    /// The call ran longer than the deployment's CPU budget.
    #[error("detector exceeded its CPU budget of {} ms for one call; retrying the same input will likely time out again: raise cpu_ms_per_batch or make the detector cheaper", budget.as_millis())]
    CpuBudget {
        /// The budget.
        budget: Duration,
    },
    /// The guest needed more linear memory than the deployment allows.
    #[error("detector exceeded its memory limit of {limit} bytes; retrying will fail again: raise the deployment's memory limit or reduce the detector's state")]
    MemoryLimit {
        /// The limit in bytes.
        limit: u64,
    },
    /// The guest overflowed its wasm stack (usually unbounded recursion).
    #[error("detector overflowed its wasm stack (unbounded recursion?); retrying will fail again")]
    StackOverflow,
    /// The guest emitted more alerts for one batch than allowed.
    #[error("detector emitted more than {limit} alerts for one batch; raise max_alerts_per_batch or make the detector less noisy")]
    AlertLimit {
        /// The limit.
        limit: u32,
    },
    /// Bytes crossing the ABI could not be encoded or decoded.
    #[error("detector ABI violation: {0}")]
    Abi(#[from] vigil_abi::AbiError),
    /// The guest broke an ABI rule that [`vigil_abi::AbiError`] has no
    /// variant for (an alert for an offset outside the batch, a field that is
    /// not JSON, an unknown status code).
    #[error("detector ABI violation: {0}")]
    AbiViolation(String),
    /// A host-side failure (no free instance slot, a poisoned instance);
    /// the message says whether retrying can help.
    #[error("host error: {0}")]
    Host(String),
}

impl GuestError {
    /// A short stable label for metrics and deployment status.
    pub fn cause(&self) -> &'static str {
        match self {
            GuestError::Detector(_) => "error",
            GuestError::Trap { .. } => "trap",
            GuestError::CpuBudget { .. } => "cpu",
            GuestError::MemoryLimit { .. } => "memory",
            GuestError::StackOverflow => "stack",
            GuestError::AlertLimit { .. } => "alerts",
            GuestError::Abi(_) | GuestError::AbiViolation(_) => "abi",
            GuestError::Host(_) => "host",
        }
    }

    /// Whether the instance must be discarded: true for everything except a
    /// detector-reported error, after which the guest's state is intact.
    pub fn poisons_instance(&self) -> bool {
        !matches!(self, GuestError::Detector(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_mismatch_says_what_to_upgrade() {
        let newer = ModuleError::AbiMismatch { module: 2, host: 1 }.to_string();
        assert!(
            newer.contains("v2") && newer.contains("v1") && newer.contains("upgrade the broker")
        );
        let older = ModuleError::AbiMismatch { module: 0, host: 1 }.to_string();
        assert!(
            older.contains("rebuild the module with vigil-sdk >="),
            "{older}"
        );
    }

    #[test]
    fn causes_and_poisoning() {
        assert!(!GuestError::Detector("x".into()).poisons_instance());
        assert!(GuestError::StackOverflow.poisons_instance());
        assert_eq!(GuestError::AlertLimit { limit: 1 }.cause(), "alerts");
        assert_eq!(GuestError::AbiViolation("x".into()).cause(), "abi");
    }
}
