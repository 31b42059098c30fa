//! The read-side block cache for objects in the object store.
//!
//! Reads below the in-memory log tail come from segment objects. Objects are
//! cut into fixed-size blocks; a read is served from cached blocks, and the
//! missing ones are fetched with one ranged GET per run of consecutive missing
//! blocks, so a small fetch never pulls a whole 16 MiB object.
//!
//! **Readahead.** A consumer catching up reads an object front to back in
//! fetch-sized steps. Each object keeps a few *streams* (where recent reads
//! ended); a read that starts at or shortly after a stream's end continues that
//! stream, and once a stream is sequential the next `readahead_blocks` blocks
//! are fetched in the background. The window is refilled when less than half
//! of it is left ahead of the reader, so steady-state GETs cover several
//! blocks and the reader finds its next block already there. Streams are
//! detected from positions rather than from a reader id because the fetch path
//! has no stable consumer identity, and several consumers of one partition
//! simply show up as several streams.
//!
//! **Eviction: segmented LRU.** Plain LRU lets one catch-up scan of a large
//! topic flush every block that tail readers keep coming back to. Here new
//! blocks (demand-fetched or readahead) enter a *probationary* segment; a
//! block read again by a *different* stream (or by a non-sequential read) is
//! promoted to a *protected* segment, capped at 80% of the capacity, whose
//! least recently used blocks are demoted back to probation when it overflows.
//! Eviction takes probation's least recently used block first. A scan's
//! re-reads of the block it is currently consuming come from the same stream,
//! so they do not count as reuse: a scan only ever churns probation. The 20%
//! floor for probation gives new blocks (and readahead windows) room to prove
//! themselves before being evicted.
//! The capacity counts cached blocks only: the buffers of fetches in flight
//! belong to the reads (and readahead windows) waiting for them.
//!
//! **Concurrency.** All maps sit behind one `parking_lot::Mutex`: every
//! critical section is a handful of map operations and is never held across
//! an `.await` (an async mutex would only add cost and make holding it across
//! a GET possible). Each fetch runs in its own task, registered per block in
//! an in-flight map as a shared future, so concurrent misses on a block share
//! one GET, and a reader that gives up (a cancelled fetch request) does not
//! cancel a fetch other readers are waiting for. A failed fetch removes its
//! in-flight entries and caches nothing, so the next read simply retries.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt, Shared};
use object_store::{path::Path, GetOptions, GetRange, ObjectStore};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::error::StorageError;

mod error;
mod state;
#[cfg(test)]
mod tests;

use error::{size_mismatch, FetchError, FetchResult};
use state::{InFlight, State};

/// Longest range one read may ask for: a read is a fetch response's worth,
/// and anything near this size is a caller bug that would otherwise become
/// one giant allocation.
pub const MAX_RANGE_BYTES: u64 = 1 << 30;

/// Sizing of a [`BlockCache`].
#[derive(Debug, Clone)]
pub struct BlockCacheConfig {
    /// Upper bound on the bytes of cached blocks.
    pub capacity_bytes: usize,
    /// Block size: the unit of caching and of ranged GETs (0 is treated as 1).
    pub block_bytes: usize,
    /// Blocks fetched ahead of a sequential reader. Capped at a quarter of the
    /// capacity so that readahead cannot evict itself before it is read.
    pub readahead_blocks: usize,
}

impl Default for BlockCacheConfig {
    fn default() -> Self {
        Self {
            capacity_bytes: 256 << 20,
            block_bytes: 1 << 20,
            readahead_blocks: 4,
        }
    }
}

/// A snapshot of the cache's counters (for /metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Blocks served from the cache.
    pub hits: u64,
    /// Blocks that were not cached when read (fetched, or waited for).
    pub misses: u64,
    /// Misses that joined a fetch already in flight instead of issuing a GET.
    pub coalesced: u64,
    /// GET requests issued (successful or not).
    pub fetches: u64,
    /// Bytes received from the object store.
    pub bytes_fetched: u64,
    /// Blocks fetched by readahead.
    pub readahead_blocks: u64,
    /// Blocks evicted to stay within capacity (not counting `evict_object`).
    pub evictions: u64,
    /// Bytes of cached blocks now.
    pub current_bytes: u64,
}

impl CacheStats {
    /// hits / (hits + misses), or 0 before any read.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// Plain atomics, so reading stats never contends with readers for the lock.
#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
    fetches: AtomicU64,
    bytes_fetched: AtomicU64,
    readahead_blocks: AtomicU64,
    evictions: AtomicU64,
    current_bytes: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A bounded, scan-resistant cache of object blocks with readahead.
pub struct BlockCache {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    block: u64,
    capacity: usize,
    protected_cap: usize,
    readahead: u64,
    state: Mutex<State>,
    counters: Counters,
    /// Fetch tasks not yet finished, for [`BlockCache::wait_idle`].
    outstanding: AtomicUsize,
    idle: Notify,
}

type SharedFetch = Shared<BoxFuture<'static, FetchResult>>;

/// A run of consecutive blocks fetched with one GET.
struct Run {
    key: Arc<str>,
    blocks: Range<u64>,
    /// The stream whose read caused the fetch.
    stream: u64,
    readahead: bool,
}

/// How one block of a read will be served.
enum Part {
    Ready(u64, Bytes),
    Pending(u64, u64, SharedFetch),
}

impl BlockCache {
    /// A cache over `store`. Must be used from within a Tokio runtime: fetches
    /// run in spawned tasks.
    pub fn new(store: Arc<dyn ObjectStore>, config: BlockCacheConfig) -> Arc<Self> {
        let block = config.block_bytes.max(1);
        let capacity_blocks = config.capacity_bytes / block;
        Arc::new(Self {
            inner: Arc::new(Inner {
                store,
                block: block as u64,
                capacity: config.capacity_bytes,
                protected_cap: config.capacity_bytes / 5 * 4,
                readahead: config.readahead_blocks.min(capacity_blocks / 4) as u64,
                state: Mutex::new(State::default()),
                counters: Counters::default(),
                outstanding: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
        })
    }

    /// Bytes `[range.start, range.end)` of object `key`, whose total size is
    /// `object_size` (from the manifest, so no HEAD is needed). Served from
    /// cached blocks; missing blocks are fetched with one ranged GET per run of
    /// consecutive missing blocks. A read continuing a sequential stream
    /// starts background readahead, which the caller does not wait for.
    ///
    /// A range reaching past `object_size` is rejected with
    /// [`StorageError::Invalid`]; store failures are
    /// [`StorageError::ObjectStore`] (retriable: nothing is cached); an object
    /// shorter than `object_size` is [`StorageError::Corrupt`].
    pub async fn get_range(
        &self,
        key: &str,
        object_size: u64,
        range: Range<u64>,
    ) -> Result<Bytes, StorageError> {
        if range.start > range.end
            || range.end > object_size
            || range.end - range.start > MAX_RANGE_BYTES
        {
            return Err(StorageError::Invalid(format!(
                "byte range {}..{} of object {key} ({object_size} bytes) is reversed, \
                 outside the object or longer than {MAX_RANGE_BYTES} bytes",
                range.start, range.end
            )));
        }
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let parts = self.inner.plan(key, object_size, &range);
        let b = self.inner.block;
        let mut blocks = Vec::with_capacity(parts.len());
        for part in parts {
            // Every fetch was spawned by `plan`, so awaiting them in turn
            // still lets them all run at once.
            let (index, data) = match part {
                Part::Ready(index, data) => (index, data),
                Part::Pending(index, first, fut) => {
                    let run = fut.await.map_err(|e| e.into_storage(key))?;
                    let lo = (index - first) * b;
                    let hi = (lo + b).min(run.len() as u64);
                    if lo >= hi {
                        return Err(size_mismatch(key, object_size));
                    }
                    (index, run.slice(lo as usize..hi as usize))
                }
            };
            let start = index * b;
            let lo = range.start.max(start) - start;
            let hi = range.end.min(start.saturating_add(b)) - start;
            if hi > data.len() as u64 {
                return Err(size_mismatch(key, object_size));
            }
            blocks.push(data.slice(lo as usize..hi as usize));
        }
        if blocks.len() == 1 {
            return Ok(blocks.swap_remove(0));
        }
        let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
        for data in blocks {
            out.extend_from_slice(&data);
        }
        Ok(out.freeze())
    }

    /// Forgets all blocks of an object (deleted by retention or compaction).
    /// A fetch of it still in flight completes for its waiters but caches
    /// nothing.
    pub fn evict_object(&self, key: &str) {
        let mut st = self.inner.state.lock();
        st.remove_object(key);
        self.inner.publish_bytes(&st);
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            hits: get(&c.hits),
            misses: get(&c.misses),
            coalesced: get(&c.coalesced),
            fetches: get(&c.fetches),
            bytes_fetched: get(&c.bytes_fetched),
            readahead_blocks: get(&c.readahead_blocks),
            evictions: get(&c.evictions),
            current_bytes: get(&c.current_bytes),
        }
    }

    /// Waits until no fetch (demand or readahead) is in flight: lets tests
    /// observe readahead deterministically and shutdown drain cleanly.
    pub async fn wait_idle(&self) {
        loop {
            // Created before the check, so a wakeup in between is not lost.
            let notified = self.inner.idle.notified();
            if self.inner.outstanding.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Indices of the cached blocks of `key`, sorted.
    #[cfg(test)]
    pub(crate) fn cached_blocks(&self, key: &str) -> Vec<u64> {
        let st = self.inner.state.lock();
        let mut v: Vec<u64> = st
            .objects
            .get(key)
            .map(|o| o.blocks.keys().copied().collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Checks that the byte counts and LRU orders agree with the blocks.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let st = self.inner.state.lock();
        let (mut prob, mut prot, mut n) = (0, 0, 0);
        for (key, obj) in &st.objects {
            for (i, b) in &obj.blocks {
                let list = if b.protected {
                    prot += b.data.len();
                    &st.protected
                } else {
                    prob += b.data.len();
                    &st.probation
                };
                assert_eq!(list.get(&b.tick), Some(&(key.clone(), *i)));
                n += 1;
            }
        }
        assert_eq!((prob, prot), (st.probation_bytes, st.protected_bytes));
        assert_eq!(n, st.probation.len() + st.protected.len());
        assert!(prob + prot <= self.inner.capacity);
        assert!(prot <= self.inner.protected_cap);
    }
}

impl Inner {
    /// Decides, under the lock, how each block of a read is served, spawning
    /// the fetches for missing runs and for readahead.
    fn plan(self: &Arc<Self>, key: &str, object_size: u64, range: &Range<u64>) -> Vec<Part> {
        let b = self.block;
        let (first, last) = (range.start / b, (range.end - 1) / b);
        let nblocks = object_size.div_ceil(b);
        let mut st = self.state.lock();
        let key: Arc<str> = match st.objects.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => Arc::from(key),
        };
        let (stream, readahead) = st.track(&key, range, last, nblocks, b, self.readahead);
        let run_of = |blocks, readahead| Run {
            key: key.clone(),
            blocks,
            stream,
            readahead,
        };

        let mut parts = Vec::with_capacity((last - first + 1) as usize);
        let mut run: Option<u64> = None;
        let (mut hits, mut misses, mut coalesced) = (0, 0, 0);
        for i in first..=last {
            let part = if let Some(data) = st.touch(&key, i, stream, self.protected_cap) {
                hits += 1;
                Part::Ready(i, data)
            } else {
                misses += 1;
                match st.objects.get(&key).and_then(|o| o.inflight.get(&i)) {
                    Some(f) => {
                        coalesced += 1;
                        Part::Pending(i, f.first, f.fut.clone())
                    }
                    None => {
                        run.get_or_insert(i);
                        continue;
                    }
                }
            };
            if let Some(start) = run.take() {
                self.fetch_into(&mut st, run_of(start..i, false), object_size, &mut parts);
            }
            parts.push(part);
        }
        if let Some(start) = run.take() {
            let run = run_of(start..last + 1, false);
            self.fetch_into(&mut st, run, object_size, &mut parts);
        }

        if let Some(ahead) = readahead {
            let mut run: Option<u64> = None;
            for i in ahead.start..=ahead.end {
                let missing = i < ahead.end
                    && st
                        .objects
                        .get(&key)
                        .is_none_or(|o| !o.blocks.contains_key(&i) && !o.inflight.contains_key(&i));
                match (missing, run) {
                    (true, None) => run = Some(i),
                    (false, Some(start)) => {
                        run = None;
                        // Runs on its own; no reader waits for readahead.
                        let _prefetch =
                            self.spawn_fetch(&mut st, run_of(start..i, true), object_size);
                    }
                    _ => {}
                }
            }
        }
        drop(st);
        let c = &self.counters;
        bump(&c.hits, hits);
        bump(&c.misses, misses);
        bump(&c.coalesced, coalesced);
        parts
    }

    /// Spawns the fetch of a run of blocks a read is waiting for.
    fn fetch_into(
        self: &Arc<Self>,
        st: &mut State,
        run: Run,
        object_size: u64,
        parts: &mut Vec<Part>,
    ) {
        let blocks = run.blocks.clone();
        let fut = self.spawn_fetch(st, run, object_size);
        for i in blocks.clone() {
            parts.push(Part::Pending(i, blocks.start, fut.clone()));
        }
    }

    /// Starts one ranged GET for a run of blocks in its own task and registers
    /// it as in flight for each of them. Called with the lock held: the task
    /// takes the lock to finish, so it cannot complete before it is
    /// registered.
    fn spawn_fetch(self: &Arc<Self>, st: &mut State, run: Run, object_size: u64) -> SharedFetch {
        let id = st.next();
        let (key, first, blocks) = (run.key.clone(), run.blocks.start, run.blocks.clone());
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        let guard = IdleGuard(self.clone());
        let handle = tokio::spawn(self.clone().fetch(run, id, object_size, guard));
        let fut = async move {
            let joined = handle.await;
            joined.unwrap_or_else(|e| Err(FetchError::Task(e.to_string().into())))
        }
        .boxed()
        .shared();
        let obj = st.objects.entry(key).or_default();
        for i in blocks {
            let fut = fut.clone();
            obj.inflight.insert(i, InFlight { id, first, fut });
        }
        fut
    }

    /// The body of a fetch task: GET, then cache the blocks (if the object
    /// was not evicted meanwhile) and clear the in-flight entries.
    async fn fetch(
        self: Arc<Self>,
        run: Run,
        id: u64,
        object_size: u64,
        _guard: IdleGuard,
    ) -> FetchResult {
        let Run {
            key,
            blocks,
            stream,
            readahead,
        } = run;
        let bytes =
            blocks.start * self.block..blocks.end.saturating_mul(self.block).min(object_size);
        let result = self.get(&key, bytes).await;
        bump(&self.counters.fetches, 1);
        let mut st = self.state.lock();
        let mut cached = 0;
        for i in blocks.clone() {
            let Some(obj) = st.objects.get_mut(&key) else {
                break;
            };
            if obj.inflight.get(&i).is_none_or(|f| f.id != id) {
                continue;
            }
            obj.inflight.remove(&i);
            if let Ok(run) = &result {
                let lo = ((i - blocks.start) * self.block) as usize;
                let hi = (lo + self.block as usize).min(run.len());
                // A copy, so that evicting a block really frees its memory
                // instead of pinning the whole run's buffer.
                let Some(slice) = run.get(lo..hi) else {
                    continue;
                };
                let data = Bytes::copy_from_slice(slice);
                cached += st.insert(&key, i, data, stream, self.capacity, &self.counters) as u64;
            }
        }
        if st
            .objects
            .get(&key)
            .is_some_and(|o| o.blocks.is_empty() && o.inflight.is_empty())
        {
            st.objects.remove(&key);
        }
        self.publish_bytes(&st);
        drop(st);
        if let Ok(run) = &result {
            bump(&self.counters.bytes_fetched, run.len() as u64);
            if readahead {
                bump(&self.counters.readahead_blocks, cached);
            }
        }
        result
    }

    async fn get(&self, key: &str, range: Range<u64>) -> FetchResult {
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..Default::default()
        };
        let store_err = |e| FetchError::Store(Arc::new(e));
        let data = self
            .store
            .get_opts(&Path::from(key), options)
            .await
            .map_err(store_err)?
            .bytes()
            .await
            .map_err(store_err)?;
        if data.len() as u64 != range.end - range.start {
            return Err(FetchError::Short {
                range,
                got: data.len() as u64,
            });
        }
        Ok(data)
    }

    fn publish_bytes(&self, st: &State) {
        let bytes = (st.probation_bytes + st.protected_bytes) as u64;
        self.counters.current_bytes.store(bytes, Ordering::Relaxed);
    }
}

/// Counts a fetch task as outstanding until it ends, even if it is dropped
/// unfinished (runtime shutdown), so `wait_idle` cannot hang.
struct IdleGuard(Arc<Inner>);

impl Drop for IdleGuard {
    fn drop(&mut self) {
        if self.0.outstanding.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
