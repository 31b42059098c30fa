//! Logging from detector code.
//!
//! Inside a wasm module each line goes to the host's `log` import and ends
//! up in the broker's `tracing` output, tagged with the deployment. Natively
//! (unit tests) lines are printed to stderr only when the environment
//! variable `VIGIL_SDK_LOG` is set, so test output stays quiet by default.

use vigil_abi::log_level;

/// Logs `msg` at error level.
pub fn error(msg: &str) {
    write(log_level::ERROR, msg);
}

/// Logs `msg` at warning level.
pub fn warn(msg: &str) {
    write(log_level::WARN, msg);
}

/// Logs `msg` at info level.
pub fn info(msg: &str) {
    write(log_level::INFO, msg);
}

/// Logs `msg` at debug level.
pub fn debug(msg: &str) {
    write(log_level::DEBUG, msg);
}

/// Logs `msg` at trace level.
pub fn trace(msg: &str) {
    write(log_level::TRACE, msg);
}

#[cfg(target_arch = "wasm32")]
fn write(level: i32, msg: &str) {
    crate::guest::host_log(level, msg);
}

#[cfg(not(target_arch = "wasm32"))]
fn write(level: i32, msg: &str) {
    use std::sync::OnceLock;
    static ENABLED: OnceLock<bool> = OnceLock::new();
    if *ENABLED.get_or_init(|| std::env::var_os("VIGIL_SDK_LOG").is_some()) {
        let name = match level {
            log_level::ERROR => "ERROR",
            log_level::WARN => "WARN",
            log_level::INFO => "INFO",
            log_level::DEBUG => "DEBUG",
            _ => "TRACE",
        };
        eprintln!("[vigil-sdk {name}] {msg}");
    }
}
