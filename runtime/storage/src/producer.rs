//! Idempotent producer state of one partition: which sequence numbers each
//! producer id has written, so a retried batch is recognized and answered
//! with its original offsets instead of being written twice.
//!
//! The state is bounded: at most [`MAX_PRODUCERS`] producers per partition,
//! forgotten least recently written first. Kafka forgets producers by time
//! (`producer.id.expiration.ms`); a count is used here because the state is
//! persisted in the manifest and must not grow with what clients send. A
//! producer that wrote within the last [`PROTECTED_MS`] is never forgotten to
//! make room: its retries are still possible (a client gives up on a batch
//! after `delivery.timeout.ms`, 120 s by default), and forgetting it would
//! turn a retry into a duplicate. When every remembered producer is that
//! recent, a *new* producer is refused (retriable) instead — a flood of
//! producer ids can delay newcomers but never break established producers'
//! exactly-once writes.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use vigil_protocol::BatchHeader;

/// Batches remembered per producer for duplicate detection (Kafka's
/// `max.in.flight.requests.per.connection` upper bound for idempotence).
const REMEMBERED_BATCHES: usize = 5;
/// Producers remembered per partition; the least recently written is
/// forgotten first, but never one written in the last [`PROTECTED_MS`].
pub const MAX_PRODUCERS: usize = 10_000;
/// A producer that wrote this recently (ms) is never forgotten to make room
/// for another: Kafka clients retry a batch for up to `delivery.timeout.ms`
/// (default 120 000), so its state may still be needed to recognize a retry.
pub const PROTECTED_MS: i64 = 120_000;

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
    /// Wall-clock time (ms) of the producer's last append on this broker.
    /// Not persisted: after a restart every restored producer counts as
    /// written at the first append (clients retry in-flight batches right
    /// after a restart, which is exactly when the state is needed).
    #[serde(skip)]
    pub last_write_ms: i64,
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
    /// The producer id was never handed out by this log (InitProducerId
    /// allocates every id below `issued_below`): the id is forged or from
    /// another cluster.
    UnknownProducerId {
        /// Ids below this have been handed out.
        issued_below: i64,
    },
    /// A new producer while [`MAX_PRODUCERS`] producers all wrote within
    /// [`PROTECTED_MS`]: none can be forgotten safely. Retriable.
    TooManyProducers,
}

/// All producers of one partition.
#[derive(Debug, Default, Clone)]
pub struct ProducerStates {
    map: HashMap<i64, ProducerSnapshot>,
    /// `(last_used, producer_id)` of every producer, least recent first.
    lru: BTreeSet<(u64, i64)>,
    clock: u64,
    /// Time of the first timed call after a restore: restored producers
    /// count as written then (see [`ProducerSnapshot::last_write_ms`]).
    restored_ms: Option<i64>,
}

impl ProducerStates {
    /// Restores from a manifest snapshot.
    pub fn from_snapshot(snap: &[ProducerSnapshot]) -> Self {
        let clock = snap.iter().map(|p| p.last_used).max().unwrap_or(0);
        Self {
            map: snap.iter().map(|p| (p.producer_id, p.clone())).collect(),
            lru: snap.iter().map(|p| (p.last_used, p.producer_id)).collect(),
            clock,
            restored_ms: None,
        }
    }

    /// The state to persist, sorted by producer id.
    pub fn snapshot(&self) -> Vec<ProducerSnapshot> {
        let mut v: Vec<_> = self.map.values().cloned().collect();
        v.sort_by_key(|p| p.producer_id);
        v
    }

    /// Producers remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no producer is remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Decides what to do with a batch before offsets are assigned, at
    /// wall-clock time `now_ms`; producer ids at or above `issued_below`
    /// were never handed out.
    pub fn check(&mut self, h: &BatchHeader, issued_below: i64, now_ms: i64) -> SeqCheck {
        if !h.has_producer_id() || h.base_sequence < 0 {
            return SeqCheck::Append;
        }
        if h.producer_id >= issued_below {
            return SeqCheck::UnknownProducerId { issued_below };
        }
        let restored_ms = *self.restored_ms.get_or_insert(now_ms);
        let Some(p) = self.map.get(&h.producer_id) else {
            // Unknown producer (new, or forgotten): accept whatever sequence
            // it starts from rather than wedge it — if there is room.
            if self.map.len() >= MAX_PRODUCERS && !self.lru_evictable(now_ms, restored_ms) {
                return SeqCheck::TooManyProducers;
            }
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

    /// Whether the least recently written producer may be forgotten: it
    /// last wrote [`PROTECTED_MS`] or longer ago.
    fn lru_evictable(&self, now_ms: i64, restored_ms: i64) -> bool {
        self.lru
            .first()
            .and_then(|(_, id)| self.map.get(id))
            .is_none_or(|p| now_ms.saturating_sub(p.last_write_ms.max(restored_ms)) >= PROTECTED_MS)
    }

    /// Records a batch appended at `now_ms` at its final offsets
    /// (`h.base_offset` set), after [`check`](Self::check) said `Append`.
    pub fn record_at(&mut self, h: &BatchHeader, now_ms: i64) {
        self.record_inner(h, Some(now_ms));
    }

    /// Records a batch whose append time is unknown (WAL replay, the
    /// manifest's copy of the state): a known producer keeps its last write
    /// time, a new one counts as written at restore.
    pub fn record(&mut self, h: &BatchHeader) {
        self.record_inner(h, None);
    }

    fn record_inner(&mut self, h: &BatchHeader, now_ms: Option<i64>) {
        if !h.has_producer_id() || h.base_sequence < 0 {
            return;
        }
        self.clock += 1;
        let stamp = self.clock;
        let p = self
            .map
            .entry(h.producer_id)
            .or_insert_with(|| ProducerSnapshot {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                batches: Vec::new(),
                last_used: 0,
                last_write_ms: 0,
            });
        self.lru.remove(&(p.last_used, p.producer_id));
        if h.producer_epoch != p.epoch {
            p.epoch = h.producer_epoch;
            p.batches.clear();
        }
        p.last_used = stamp;
        if let Some(now) = now_ms {
            p.last_write_ms = now;
        }
        p.batches.push(SeqEntry {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        if p.batches.len() > REMEMBERED_BATCHES {
            p.batches.remove(0);
        }
        self.lru.insert((stamp, h.producer_id));
        while self.map.len() > MAX_PRODUCERS {
            let Some((_, oldest)) = self.lru.pop_first() else {
                break;
            };
            self.map.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every producer id counts as handed out.
    const ALL: i64 = i64::MAX;

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
        assert_eq!(s.check(&a, ALL, 0), SeqCheck::Append);
        s.record_at(&a, 0);
        let b = header(7, 0, 5, 5, 105);
        assert_eq!(s.check(&b, ALL, 0), SeqCheck::Append);
        s.record_at(&b, 0);
        let retry = header(7, 0, 0, 5, -1);
        assert_eq!(
            s.check(&retry, ALL, 0),
            SeqCheck::Duplicate(SeqEntry {
                first_seq: 0,
                last_seq: 4,
                base_offset: 100,
                last_offset: 104
            })
        );
        assert_eq!(
            s.check(&header(7, 0, 12, 1, -1), ALL, 0),
            SeqCheck::OutOfOrder {
                expected: 10,
                got: 12
            }
        );
    }

    #[test]
    fn epochs_fence_and_reset() {
        let mut s = ProducerStates::default();
        s.record_at(&header(7, 3, 0, 1, 0), 0);
        assert_eq!(
            s.check(&header(7, 2, 1, 1, -1), ALL, 0),
            SeqCheck::StaleEpoch { got: 2, current: 3 }
        );
        assert_eq!(s.check(&header(7, 4, 0, 1, -1), ALL, 0), SeqCheck::Append);
        assert!(matches!(
            s.check(&header(7, 4, 3, 1, -1), ALL, 0),
            SeqCheck::OutOfOrder { .. }
        ));
    }

    #[test]
    fn snapshot_round_trips_and_remembers_only_recent_batches() {
        let mut s = ProducerStates::default();
        for i in 0..8 {
            s.record_at(&header(1, 0, i, 1, i64::from(i)), 0);
        }
        let snap = s.snapshot();
        assert_eq!(snap[0].batches.len(), REMEMBERED_BATCHES);
        let mut r = ProducerStates::from_snapshot(&snap);
        assert_eq!(r.check(&header(1, 0, 8, 1, -1), ALL, 0), SeqCheck::Append);
        assert!(matches!(
            r.check(&header(1, 0, 7, 1, -1), ALL, 0),
            SeqCheck::Duplicate(_)
        ));
        assert!(matches!(
            r.check(&header(1, 0, 0, 1, -1), ALL, 0),
            SeqCheck::OutOfOrder { .. }
        ));
    }

    #[test]
    fn never_issued_producer_ids_are_refused() {
        let mut s = ProducerStates::default();
        assert_eq!(
            s.check(&header(1_000, 0, 0, 1, -1), 1_000, 0),
            SeqCheck::UnknownProducerId {
                issued_below: 1_000
            }
        );
        assert_eq!(
            s.check(&header(999, 0, 0, 1, -1), 1_000, 0),
            SeqCheck::Append
        );
        // Batches without a producer id are not idempotent: nothing to check.
        assert_eq!(s.check(&header(-1, -1, -1, 1, -1), 0, 0), SeqCheck::Append);
        assert!(s.is_empty());
    }

    /// Writes `n` one-record batches of distinct producer ids starting at
    /// `first`, as the partition does: check, then record what it accepts.
    fn flood(s: &mut ProducerStates, first: i64, n: i64, now_ms: i64) -> (usize, usize) {
        let (mut accepted, mut refused) = (0, 0);
        for pid in first..first + n {
            let h = header(pid, 0, 0, 1, pid);
            match s.check(&h, ALL, now_ms) {
                SeqCheck::Append => {
                    s.record_at(&h, now_ms);
                    accepted += 1;
                }
                SeqCheck::TooManyProducers => refused += 1,
                other => panic!("producer {pid}: unexpected {other:?}"),
            }
        }
        (accepted, refused)
    }

    #[test]
    fn a_flood_of_producer_ids_cannot_turn_a_retry_into_a_duplicate() {
        let mut s = ProducerStates::default();
        let real = header(7, 0, 0, 5, 100);
        assert_eq!(s.check(&real, ALL, 1_000), SeqCheck::Append);
        s.record_at(&real, 1_000);
        // 10k more producers (forged, but in the issued range) within
        // seconds of the real one's write.
        let (accepted, refused) = flood(&mut s, 1_000_000, 10_000, 2_000);
        assert_eq!(accepted, MAX_PRODUCERS - 1);
        assert_eq!(refused, 10_000 - accepted);
        assert_eq!(s.len(), MAX_PRODUCERS);
        // The real producer's retry is still recognized.
        assert!(matches!(
            s.check(&header(7, 0, 0, 5, -1), ALL, 3_000),
            SeqCheck::Duplicate(SeqEntry {
                base_offset: 100,
                ..
            })
        ));
        // Once the real producer has been idle past any retry window, room is
        // made by forgetting the least recently written producer.
        let later = 1_000 + PROTECTED_MS;
        assert_eq!(flood(&mut s, 2_000_000, 1, later), (1, 0));
        assert_eq!(s.len(), MAX_PRODUCERS);
        assert!(s.snapshot().iter().all(|p| p.producer_id != 7));
    }

    #[test]
    fn restored_producers_are_protected_from_the_first_append_after_a_restart() {
        let mut s = ProducerStates::default();
        flood(&mut s, 0, MAX_PRODUCERS as i64, 0);
        let mut r = ProducerStates::from_snapshot(&s.snapshot());
        // Hours later (wall clock), right after the restart: the restored
        // producers may be retrying, so none is displaced.
        let now = 10 * 3_600_000;
        assert_eq!(flood(&mut r, 1_000_000, 1, now), (0, 1));
        assert_eq!(flood(&mut r, 1_000_000, 1, now + PROTECTED_MS), (1, 0));
    }

    #[test]
    fn untimed_records_are_bounded_too() {
        let mut s = ProducerStates::default();
        for pid in 0..(MAX_PRODUCERS as i64 + 10) {
            s.record(&header(pid, 0, 0, 1, pid));
        }
        assert_eq!(s.len(), MAX_PRODUCERS);
        assert_eq!(s.snapshot().first().map(|p| p.producer_id), Some(10));
    }
}
