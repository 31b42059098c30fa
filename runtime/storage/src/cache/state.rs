//! The cache's bookkeeping: blocks in a segmented LRU, fetches in flight,
//! and the read streams that drive readahead.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use super::{bump, Counters, SharedFetch};

/// Streams remembered per object (concurrent sequential readers of one object).
const STREAMS_PER_OBJECT: usize = 8;
/// Objects whose streams are remembered; the least recently read are dropped.
const TRACKED_OBJECTS: usize = 4096;

pub(super) struct InFlight {
    /// Which fetch owns the entry: an object evicted and read again meanwhile
    /// has a newer fetch, and the older one must not touch its entries.
    pub(super) id: u64,
    /// First block of the fetched run (where this block sits in the result).
    pub(super) first: u64,
    pub(super) fut: SharedFetch,
}

pub(super) struct Block {
    pub(super) data: Bytes,
    /// Position in its segment's LRU order.
    pub(super) tick: u64,
    pub(super) protected: bool,
    /// Stream that last read it: a re-read by the same stream is not reuse.
    pub(super) stream: u64,
}

#[derive(Default)]
pub(super) struct Object {
    pub(super) blocks: HashMap<u64, Block>,
    pub(super) inflight: HashMap<u64, InFlight>,
}

struct Stream {
    id: u64,
    start: u64,
    end: u64,
    /// Block index up to which readahead has been issued.
    ra_end: u64,
    used: u64,
}

#[derive(Default)]
struct Streams {
    list: Vec<Stream>,
    used: u64,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) objects: HashMap<Arc<str>, Object>,
    /// LRU orders (oldest first), keyed by a monotonic tick.
    pub(super) probation: BTreeMap<u64, (Arc<str>, u64)>,
    pub(super) protected: BTreeMap<u64, (Arc<str>, u64)>,
    pub(super) probation_bytes: usize,
    pub(super) protected_bytes: usize,
    streams: HashMap<Arc<str>, Streams>,
    /// Source of ticks, stream ids and fetch ids.
    seq: u64,
}

impl State {
    pub(super) fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Finds the stream a read continues, or starts one. Returns the stream id
    /// and the blocks to read ahead, if the read is sequential and less than
    /// half the readahead window is left ahead of it.
    pub(super) fn track(
        &mut self,
        key: &Arc<str>,
        range: &Range<u64>,
        last: u64,
        nblocks: u64,
        block: u64,
        window: u64,
    ) -> (u64, Option<Range<u64>>) {
        let now = self.next();
        let id = self.next();
        let entry = self.streams.entry(key.clone()).or_default();
        entry.used = now;
        let continued = entry.list.iter_mut().find(|s| {
            range.start >= s.start
                && range.start <= s.end.saturating_add(block)
                && range.end > s.end
        });
        let result = match continued {
            Some(s) => {
                s.start = range.start;
                s.end = range.end;
                s.used = now;
                let next = last + 1;
                let from = s.ra_end.max(next);
                let to = (next + window).min(nblocks);
                if window > 0 && s.ra_end < next + window.div_ceil(2) && to > from {
                    s.ra_end = to;
                    (s.id, Some(from..to))
                } else {
                    (s.id, None)
                }
            }
            None => {
                let s = Stream {
                    id,
                    start: range.start,
                    end: range.end,
                    ra_end: last + 1,
                    used: now,
                };
                if entry.list.len() < STREAMS_PER_OBJECT {
                    entry.list.push(s);
                } else if let Some(old) = entry.list.iter_mut().min_by_key(|s| s.used) {
                    *old = s;
                }
                (id, None)
            }
        };
        if self.streams.len() > TRACKED_OBJECTS {
            // Drop the least recently read quarter at once, so the O(n) pass
            // is paid once per TRACKED_OBJECTS / 4 new objects.
            let mut used: Vec<u64> = self.streams.values().map(|s| s.used).collect();
            let (_, cutoff, _) = used.select_nth_unstable(TRACKED_OBJECTS / 4);
            let cutoff = *cutoff;
            self.streams.retain(|_, s| s.used > cutoff);
        }
        result
    }

    /// A cache hit: refreshes the block's recency and promotes it to the
    /// protected segment if a different stream read it before.
    pub(super) fn touch(
        &mut self,
        key: &str,
        i: u64,
        stream: u64,
        protected_cap: usize,
    ) -> Option<Bytes> {
        let tick = self.next();
        let block = self.objects.get_mut(key)?.blocks.get_mut(&i)?;
        let promote = !block.protected && block.stream != stream;
        let list = if block.protected {
            &mut self.protected
        } else {
            &mut self.probation
        };
        let entry = list.remove(&block.tick)?;
        block.tick = tick;
        block.protected |= promote;
        block.stream = stream;
        let data = block.data.clone();
        if block.protected {
            self.protected.insert(tick, entry);
        } else {
            self.probation.insert(tick, entry);
        }
        if promote {
            self.probation_bytes -= data.len();
            self.protected_bytes += data.len();
            while self.protected_bytes > protected_cap && self.demote() {}
        }
        Some(data)
    }

    /// Moves the protected segment's least recently used block to the most
    /// recently used end of probation.
    fn demote(&mut self) -> bool {
        let Some((_, (key, i))) = self.protected.pop_first() else {
            return false;
        };
        let tick = self.next();
        if let Some(block) = self
            .objects
            .get_mut(&key)
            .and_then(|o| o.blocks.get_mut(&i))
        {
            block.protected = false;
            block.tick = tick;
            self.protected_bytes -= block.data.len();
            self.probation_bytes += block.data.len();
            self.probation.insert(tick, (key, i));
        }
        true
    }

    /// Caches a fetched block in probation, evicting first so that the
    /// capacity is never exceeded. Returns whether it was cached.
    pub(super) fn insert(
        &mut self,
        key: &Arc<str>,
        i: u64,
        data: Bytes,
        stream: u64,
        capacity: usize,
        counters: &Counters,
    ) -> bool {
        if data.len() > capacity {
            return false;
        }
        if let Some(old) = self.objects.get_mut(key).and_then(|o| o.blocks.remove(&i)) {
            self.forget(old);
        }
        while self.probation_bytes + self.protected_bytes + data.len() > capacity {
            let victim = self
                .probation
                .first_key_value()
                .or_else(|| self.protected.first_key_value())
                .map(|(_, (k, i))| (k.clone(), *i));
            let Some((k, vi)) = victim else {
                return false;
            };
            let obj = self.objects.get_mut(&k);
            match obj.and_then(|o| o.blocks.remove(&vi)) {
                Some(old) => self.forget(old),
                // Unreachable while the lists mirror the blocks; dropping the
                // stray entry keeps the loop finite regardless.
                None => {
                    self.probation.pop_first();
                }
            }
            if self
                .objects
                .get(&k)
                .is_some_and(|o| o.blocks.is_empty() && o.inflight.is_empty())
            {
                self.objects.remove(&k);
            }
            bump(&counters.evictions, 1);
        }
        let tick = self.next();
        self.probation_bytes += data.len();
        self.probation.insert(tick, (key.clone(), i));
        let block = Block {
            data,
            tick,
            protected: false,
            stream,
        };
        self.objects
            .entry(key.clone())
            .or_default()
            .blocks
            .insert(i, block);
        true
    }

    /// Forgets an object's blocks and streams.
    pub(super) fn remove_object(&mut self, key: &str) {
        if let Some(obj) = self.objects.remove(key) {
            for block in obj.blocks.into_values() {
                self.forget(block);
            }
        }
        self.streams.remove(key);
    }

    /// Unlinks a block already removed from its object from the LRU orders.
    fn forget(&mut self, block: Block) {
        if block.protected {
            self.protected.remove(&block.tick);
            self.protected_bytes -= block.data.len();
        } else {
            self.probation.remove(&block.tick);
            self.probation_bytes -= block.data.len();
        }
    }
}
