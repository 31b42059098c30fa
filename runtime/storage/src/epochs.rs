//! Leader epochs of a partition: which leader epoch wrote which offsets
//! (Kafka's leader-epoch checkpoint), so clients can validate their fetch
//! position after a leader change (KIP-320, OffsetsForLeaderEpoch).
//!
//! A partition starts a new epoch whenever a writer takes it over: in a
//! single broker, each open of the log (the writer epoch); in a cluster,
//! each new leadership. The history is stored in the partition's manifest.
//! Nothing acknowledged is ever truncated in vigil (the log lives in the
//! object store), so the answers only ever confirm a client's position;
//! they follow Kafka's rules so that clients reason about them as usual.

use serde::{Deserialize, Serialize};

/// "No epoch" / "no offset" on the wire.
pub const UNDEFINED: i32 = -1;

/// The first offset written in a leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochStart {
    /// Leader epoch.
    pub epoch: i32,
    /// First offset it wrote (the log end offset when it started).
    pub start_offset: i64,
}

/// A Kafka leader epoch for a writer epoch (Kafka's are 31-bit).
pub fn kafka_epoch(writer_epoch: u64) -> i32 {
    i32::try_from(writer_epoch).unwrap_or(i32::MAX)
}

/// Records that `epoch` starts at `log_end`; an epoch not above the
/// newest one recorded is ignored (epochs only grow). Returns whether the
/// history changed.
pub fn start(history: &mut Vec<EpochStart>, epoch: i32, log_end: i64) -> bool {
    if history.last().is_some_and(|e| e.epoch >= epoch) {
        return false;
    }
    // An epoch that wrote nothing is replaced by its successor.
    if history.last().is_some_and(|e| e.start_offset == log_end) {
        history.pop();
    }
    history.push(EpochStart {
        epoch,
        start_offset: log_end,
    });
    true
}

/// The answer to "where does epoch `requested` end?", as Kafka gives it:
/// `(epoch, end offset)` where `epoch` is the largest known epoch not above
/// `requested` and the end offset is where the next epoch starts (the log
/// end offset for the current epoch). A requested epoch older than every
/// known one ends where the first known epoch starts; one newer than the
/// current epoch is unknown (`(UNDEFINED, UNDEFINED)`).
pub fn end_offset_for(history: &[EpochStart], log_end: i64, requested: i32) -> (i32, i64) {
    let undefined = (UNDEFINED, i64::from(UNDEFINED));
    let Some(current) = history.last() else {
        return undefined;
    };
    if requested == current.epoch {
        return (requested, log_end);
    }
    let Some(higher) = history.iter().position(|e| e.epoch > requested) else {
        return undefined;
    };
    match higher.checked_sub(1).map(|i| history[i]) {
        Some(floor) => (floor.epoch, history[higher].start_offset),
        None => (requested, history[higher].start_offset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> Vec<EpochStart> {
        let mut h = Vec::new();
        assert!(start(&mut h, 3, 0));
        assert!(start(&mut h, 5, 100));
        assert!(start(&mut h, 9, 250));
        h
    }

    #[test]
    fn answers_follow_kafkas_rules() {
        let h = history();
        assert_eq!(
            end_offset_for(&h, 400, 9),
            (9, 400),
            "current epoch: log end"
        );
        assert_eq!(end_offset_for(&h, 400, 5), (5, 250));
        assert_eq!(
            end_offset_for(&h, 400, 7),
            (5, 250),
            "unknown epoch between two"
        );
        assert_eq!(end_offset_for(&h, 400, 1), (1, 0), "older than every epoch");
        assert_eq!(
            end_offset_for(&h, 400, 10),
            (-1, -1),
            "newer than the current"
        );
        assert_eq!(end_offset_for(&[], 400, 1), (-1, -1));
    }

    #[test]
    fn epochs_only_grow_and_empty_ones_are_replaced() {
        let mut h = history();
        assert!(!start(&mut h, 9, 300));
        assert!(!start(&mut h, 4, 300));
        assert!(start(&mut h, 11, 250), "epoch 9 wrote nothing");
        assert_eq!(
            h.last(),
            Some(&EpochStart {
                epoch: 11,
                start_offset: 250
            })
        );
        assert_eq!(h.len(), 3);
        assert_eq!(kafka_epoch(7), 7);
        assert_eq!(kafka_epoch(u64::MAX), i32::MAX);
    }
}
