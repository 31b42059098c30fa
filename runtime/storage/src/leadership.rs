//! Per-partition leadership: the seam through which a cluster coordinator
//! decides which partitions this broker may acknowledge writes to.
//!
//! A single broker leads every partition of its log (its epoch claim,
//! [`crate::fence`], already guarantees no one else writes). In a cluster,
//! the broker installs a [`Leadership`] backed by its coordinator session
//! (`vigil-coord`'s `Session::check`), and moves partitions with
//! [`Log::release_partition`](crate::Log::release_partition) and
//! [`Log::acquire_partition`](crate::Log::acquire_partition). The check runs
//! after the WAL made a batch durable and before the producer is answered,
//! in both WAL modes, so a broker that lost a partition while paused can
//! never acknowledge a write to it.

/// Why a leadership check did not pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaderCheckError {
    /// Another broker leads the partition now, or this one gave it up.
    #[error("not the leader: {0}")]
    NotLeader(String),
    /// This broker cannot tell right now (its coordinator session could not
    /// be renewed recently enough); retriable.
    #[error("leadership unconfirmed: {0}")]
    Unconfirmed(String),
}

/// Answers "may this broker acknowledge a write to this partition at this
/// leader epoch, now?". Called once per acknowledged batch: it must answer
/// from memory.
pub trait Leadership: Send + Sync + 'static {
    /// `Ok` if this broker leads `topic`/`partition` at `leader_epoch`.
    fn check(&self, topic: &str, partition: i32, leader_epoch: i32)
        -> Result<(), LeaderCheckError>;
}

/// The single broker: it leads every partition of its log.
#[derive(Debug, Default, Clone, Copy)]
pub struct SoleLeader;

impl Leadership for SoleLeader {
    fn check(&self, _: &str, _: i32, _: i32) -> Result<(), LeaderCheckError> {
        Ok(())
    }
}
