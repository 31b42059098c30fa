//! Idempotent producer state of one partition: which sequence numbers each
//! producer id has written, so a retried batch is recognized and answered
//! with its original offsets instead of being written twice.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use vigil_protocol::BatchHeader;

/// Batches remembered per producer for duplicate detection (Kafka's
/// `max.in.flight.requests.per.connection` upper bound for idempotence).
const REMEMBERED_BATCHES: usize = 5;
/// Producers remembered per partition; the least recently used is forgotten
/// first (Kafka expires them by time instead).
const MAX_PRODUCERS: usize = 10_000;

/// One written batch of a producer.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct SeqEntry {
    /// First sequence number.
    pub first_seq: i32,
    /// Last sequence number.
    pub last_seq: i32,
    /// Offset of the first record.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
}

/// A producer's state, as persisted in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProducerSnapshot {
    /// Producer id.
    pub producer_id: i64,
    /// Current epoch.
    pub epoch: i16,
    /// Most recent batches, oldest first.
    pub batches: Vec<SeqEntry>,
    /// Append order stamp, for least-recently-used eviction.
    #[serde(default)]
    pub last_used: u64,
}

/// Outcome of checking a batch against the producer state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeqCheck {
    /// Not idempotent, or the next expected sequence: append it.
    Append,
    /// Already written at these offsets: answer success without writing.
    Duplicate(SeqEntry),
    /// The batch's epoch is older than the producer's current one.
    StaleEpoch {
        /// Epoch in the batch.
        got: i16,
        /// Current epoch.
        current: i16,
    },
    /// A gap or reordering in sequence numbers.
    OutOfOrder {
        /// The sequence that was expected.
        expected: i32,
        /// The batch's first sequence.
        got: i32,
    },
}

/// All producers of one partition.
#[derive(Debug, Default, Clone)]
pub struct ProducerStates {
    map: HashMap<i64, ProducerSnapshot>,
    clock: u64,
}

impl ProducerStates {
    /// Restores from a manifest snapshot.
    pub fn from_snapshot(snap: &[ProducerSnapshot]) -> Self {
        let clock = snap.iter().map(|p| p.last_used).max().unwrap_or(0);
        Self {
            map: snap.iter().map(|p| (p.producer_id, p.clone())).collect(),
            clock,
        }
    }

    /// The state to persist, sorted by producer id.
    pub fn snapshot(&self) -> Vec<ProducerSnapshot> {
        let mut v: Vec<_> = self.map.values().cloned().collect();
        v.sort_by_key(|p| p.producer_id);
        v
    }

    /// Decides what to do with a batch before offsets are assigned.
    pub fn check(&self, h: &BatchHeader) -> SeqCheck {
        if !h.has_producer_id() || h.base_sequence < 0 {
            return SeqCheck::Append;
        }
        let Some(p) = self.map.get(&h.producer_id) else {
            // Unknown producer (new, or forgotten): accept whatever sequence
            // it starts from rather than wedge it.
            return SeqCheck::Append;
        };
        if h.producer_epoch < p.epoch {
            return SeqCheck::StaleEpoch {
                got: h.producer_epoch,
                current: p.epoch,
            };
        }
        if h.producer_epoch > p.epoch {
            return if h.base_sequence == 0 {
                SeqCheck::Append
            } else {
                SeqCheck::OutOfOrder {
                    expected: 0,
                    got: h.base_sequence,
                }
            };
        }
        if let Some(dup) = p
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == h.last_sequence())
        {
            return SeqCheck::Duplicate(*dup);
        }
        let expected = p
            .batches
            .last()
            .map_or(0, |b| b.last_seq.wrapping_add(1) & i32::MAX);
        if h.base_sequence == expected {
            SeqCheck::Append
        } else {
            SeqCheck::OutOfOrder {
                expected,
                got: h.base_sequence,
            }
        }
    }

    /// Records a batch written at its final offsets (`h.base_offset` set).
    pub fn record(&mut self, h: &BatchHeader) {
        if !h.has_producer_id() || h.base_sequence < 0 {
            return;
        }
        self.clock += 1;
        let p = self
            .map
            .entry(h.producer_id)
            .or_insert_with(|| ProducerSnapshot {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                batches: Vec::new(),
                last_used: 0,
            });
        if h.producer_epoch != p.epoch {
            p.epoch = h.producer_epoch;
            p.batches.clear();
        }
        p.last_used = self.clock;
        p.batches.push(SeqEntry {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        if p.batches.len() > REMEMBERED_BATCHES {
            p.batches.remove(0);
        }
        if self.map.len() > MAX_PRODUCERS {
            if let Some(oldest) = self
                .map
                .values()
                .min_by_key(|p| p.last_used)
                .map(|p| p.producer_id)
            {
                self.map.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, n: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: n - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: n,
        }
    }

    #[test]
    fn accepts_in_order_and_answers_retries_with_original_offsets() {
        let mut s = ProducerStates::default();
        let a = header(7, 0, 0, 5, 100);
        assert_eq!(s.check(&a), SeqCheck::Append);
        s.record(&a);
        let b = header(7, 0, 5, 5, 105);
        assert_eq!(s.check(&b), SeqCheck::Append);
        s.record(&b);
        let retry = header(7, 0, 0, 5, -1);
        assert_eq!(
            s.check(&retry),
            SeqCheck::Duplicate(SeqEntry {
                first_seq: 0,
                last_seq: 4,
                base_offset: 100,
                last_offset: 104
            })
        );
        assert_eq!(
            s.check(&header(7, 0, 12, 1, -1)),
            SeqCheck::OutOfOrder {
                expected: 10,
                got: 12
            }
        );
    }

    #[test]
    fn epochs_fence_and_reset() {
        let mut s = ProducerStates::default();
        s.record(&header(7, 3, 0, 1, 0));
        assert_eq!(
            s.check(&header(7, 2, 1, 1, -1)),
            SeqCheck::StaleEpoch { got: 2, current: 3 }
        );
        assert_eq!(s.check(&header(7, 4, 0, 1, -1)), SeqCheck::Append);
        assert!(matches!(
            s.check(&header(7, 4, 3, 1, -1)),
            SeqCheck::OutOfOrder { .. }
        ));
    }

    #[test]
    fn snapshot_round_trips_and_remembers_only_recent_batches() {
        let mut s = ProducerStates::default();
        for i in 0..8 {
            s.record(&header(1, 0, i, 1, i64::from(i)));
        }
        let snap = s.snapshot();
        assert_eq!(snap[0].batches.len(), REMEMBERED_BATCHES);
        let r = ProducerStates::from_snapshot(&snap);
        assert_eq!(r.check(&header(1, 0, 8, 1, -1)), SeqCheck::Append);
        assert!(matches!(
            r.check(&header(1, 0, 7, 1, -1)),
            SeqCheck::Duplicate(_)
        ));
        assert!(matches!(
            r.check(&header(1, 0, 0, 1, -1)),
            SeqCheck::OutOfOrder { .. }
        ));
    }
}
