//! Leadership and compare-and-swap rules both backends share, so that they
//! decide the same way and only differ in how they store the result.

use std::time::{Duration, Instant};

use crate::error::CoordError;
use crate::session::Session;
use crate::types::{Expect, Leader, LeaderEpoch, NodeId, TopicPartition};

/// How many times a write is retried when a concurrent writer won the
/// compare-and-swap (each attempt re-reads first).
pub(crate) const MAX_CAS_ATTEMPTS: usize = 32;

/// The error after [`MAX_CAS_ATTEMPTS`] lost races on `key`.
pub(crate) fn cas_exhausted(key: &str) -> CoordError {
    CoordError::Conflict {
        key: key.to_string(),
        expected: "a quiet moment".to_string(),
        found: format!("{MAX_CAS_ATTEMPTS} concurrent writes in a row"),
    }
}

/// What `acquire` answers when the partition has a live leader: that
/// leadership if it is the caller's own (held again locally, e.g. after a
/// release that did not reach the backend; the read that showed it started
/// after `started`), `HeldElsewhere` otherwise.
pub(crate) fn already_led(
    session: &Session,
    live: &Leader,
    started: Instant,
) -> Result<Leader, CoordError> {
    if live.session == session.id() {
        session.hold(live, started);
        return Ok(live.clone());
    }
    Err(CoordError::HeldElsewhere {
        topic: live.tp.topic.clone(),
        partition: live.tp.partition,
        leader: live.node,
        epoch: live.epoch,
    })
}

/// The leadership `acquire` writes for `session` after epoch `last`.
pub(crate) fn acquired(session: &Session, tp: &TopicPartition, last: LeaderEpoch) -> Leader {
    Leader {
        tp: tp.clone(),
        node: session.node().node_id,
        epoch: last + 1,
        session: session.id().to_string(),
        fence_wait_ms: 0,
    }
}

/// Fails unless the partition's epoch is the one the caller expects.
pub(crate) fn check_expected(
    tp: &TopicPartition,
    expected: Option<LeaderEpoch>,
    epoch: LeaderEpoch,
) -> Result<(), CoordError> {
    match expected {
        Some(exp) if exp != epoch => Err(CoordError::Conflict {
            key: tp.to_string(),
            expected: format!("epoch {exp}"),
            found: format!("epoch {epoch}"),
        }),
        _ => Ok(()),
    }
}

/// The leadership a transfer by `by` to node `to` (session `to_session`)
/// writes after epoch `epoch`, given the live leader. A clean handover (by
/// the leader itself) stops the caller's checks now, before the write; a
/// forced one makes the new leader wait out the old one's validity.
pub(crate) fn transferred(
    by: &Session,
    tp: &TopicPartition,
    live: Option<&Leader>,
    epoch: LeaderEpoch,
    to: NodeId,
    to_session: &str,
) -> Leader {
    let fence_wait = match live {
        Some(l) if l.session == by.id() => {
            by.relinquish(tp, l.epoch);
            Duration::ZERO
        }
        Some(_) => by.settings().validity,
        None => Duration::ZERO,
    };
    Leader {
        tp: tp.clone(),
        node: to,
        epoch: epoch + 1,
        session: to_session.to_string(),
        fence_wait_ms: fence_wait.as_millis() as u64,
    }
}

/// The `Conflict` of a metadata write whose condition did not hold;
/// `found` is the key's current version, if it has a value.
pub(crate) fn meta_conflict(key: &str, expect: Expect, found: Option<u64>) -> CoordError {
    CoordError::Conflict {
        key: key.to_string(),
        expected: match expect {
            Expect::Any => "anything".to_string(),
            Expect::Absent => "no value".to_string(),
            Expect::Version(v) => format!("version {v}"),
        },
        found: match found {
            Some(v) => format!("version {v}"),
            None => "no value".to_string(),
        },
    }
}
