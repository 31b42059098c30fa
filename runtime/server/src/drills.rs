//! Fault drills with real processes: `vigil serve --fault-file PATH` puts a
//! [`FaultyStore`] under the log and applies PATH's JSON to it whenever the
//! file changes (polled every 100 ms), so a chaos test can make the object
//! store fail, stall, hang or lie while real clients keep producing. Never
//! meant for production; the broker logs a warning at startup when it is on.
//!
//! ```json
//! {"fail_writes": true, "fail_reads": false, "hang_writes": false,
//!  "hang_reads": false, "write_delay_ms": 0, "read_delay_ms": 0,
//!  "lie_next_writes": 3, "generation": 7}
//! ```
//! Every field is optional (off). `lie_next_writes` reports the next N writes
//! that land as failed; it is applied when the spec changes, so bump
//! `generation` to apply the same budget again. A missing or empty file
//! clears every fault.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use serde::Deserialize;
use vigil_storage::store::{FaultControl, FaultKind, FaultyStore};

/// How often the fault file is read.
const POLL: Duration = Duration::from_millis(100);

/// The faults a drill asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSpec {
    /// Fail every put, delete, copy and multipart call.
    pub fail_writes: bool,
    /// Fail every get, head and list call.
    pub fail_reads: bool,
    /// Block writes until switched off.
    pub hang_writes: bool,
    /// Block reads until switched off.
    pub hang_reads: bool,
    /// Latency added to every write.
    pub write_delay_ms: u64,
    /// Latency added to every read.
    pub read_delay_ms: u64,
    /// Report the next N writes that land as failed.
    pub lie_next_writes: u64,
    /// Changes to re-apply an otherwise identical spec.
    pub generation: u64,
}

impl FaultSpec {
    fn apply(&self, control: &FaultControl) {
        control.fail_all(FaultKind::Write, self.fail_writes);
        control.fail_all(FaultKind::Read, self.fail_reads);
        control.hang(FaultKind::Write, self.hang_writes);
        control.hang(FaultKind::Read, self.hang_reads);
        control.delay(FaultKind::Write, Duration::from_millis(self.write_delay_ms));
        control.delay(FaultKind::Read, Duration::from_millis(self.read_delay_ms));
        control.fail_after_write_next(self.lie_next_writes);
    }
}

/// Reads the spec; a missing or empty file is "no faults".
fn read_spec(path: &Path) -> Result<FaultSpec, String> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(FaultSpec::default()),
        Ok(text) => serde_json::from_str(&text).map_err(|e| e.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FaultSpec::default()),
        Err(e) => Err(e.to_string()),
    }
}

/// Wraps `store` in a [`FaultyStore`] driven by `path` (see the module docs).
pub fn wrap(store: Arc<dyn ObjectStore>, path: PathBuf) -> std::io::Result<Arc<dyn ObjectStore>> {
    let faulty = FaultyStore::new(store);
    let control = faulty.control();
    tracing::warn!(file = %path.display(), "fault injection is on: the object store fails as that file says (drills only)");
    std::thread::Builder::new()
        .name("vigil-fault-drill".into())
        .spawn(move || {
            let mut current = FaultSpec::default();
            loop {
                match read_spec(&path) {
                    Ok(spec) if spec != current => {
                        tracing::warn!(?spec, "fault drill: applying");
                        spec.apply(&control);
                        current = spec;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "fault drill: unreadable spec; keeping the current faults")
                    }
                }
                // Polling a file for a drill, not synchronization.
                std::thread::sleep(POLL);
            }
        })?;
    Ok(Arc::new(faulty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_defaults_and_refuse_unknown_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("faults.json");
        assert_eq!(read_spec(&p), Ok(FaultSpec::default()));
        std::fs::write(&p, r#"{"fail_writes": true, "lie_next_writes": 2}"#).expect("write");
        let spec = read_spec(&p).expect("parses");
        assert!(spec.fail_writes && !spec.fail_reads);
        assert_eq!(spec.lie_next_writes, 2);
        std::fs::write(&p, r#"{"fail_everything": true}"#).expect("write");
        assert!(read_spec(&p).is_err());
    }
}
