//! Where detector log lines go besides `tracing`: a sink the broker installs
//! so operators can read a deployment's recent lines (`vigil detector logs`)
//! without access to the broker's own log output.

use std::fmt;
use std::sync::{Arc, RwLock};

/// One line a detector wrote with the SDK's `log` functions.
#[derive(Debug, Clone, Copy)]
pub struct GuestLogLine<'a> {
    /// The instance's label (the engine uses `DEPLOYMENT/TOPIC-PARTITION`).
    pub label: &'a str,
    /// The module's hash prefix.
    pub module: &'a str,
    /// The level the guest asked for.
    pub level: tracing::Level,
    /// The message, already truncated to the host's limit.
    pub message: &'a str,
}

/// Receives every guest log line that passed the per-call limit. Called on
/// the guest's thread while the guest waits, so it must be quick.
pub trait GuestLogSink: Send + Sync + 'static {
    /// Keeps or forwards one line.
    fn line(&self, line: &GuestLogLine<'_>);
}

/// The sink slot every module of a host shares; set after the host exists
/// because the engine that owns the sink is built on top of the host.
#[derive(Clone, Default)]
pub(crate) struct SinkSlot(Arc<RwLock<Option<Arc<dyn GuestLogSink>>>>);

impl SinkSlot {
    pub(crate) fn set(&self, sink: Arc<dyn GuestLogSink>) {
        // A panic while holding the lock cannot leave an Option half-written.
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(sink);
    }

    pub(crate) fn get(&self) -> Option<Arc<dyn GuestLogSink>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl fmt::Debug for SinkSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.get().is_some() {
            "SinkSlot(set)"
        } else {
            "SinkSlot(empty)"
        })
    }
}
