use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::*;

/// An in-memory store that counts GETs, records their ranges, can fail the
/// next GETs, and can hold GETs until permits are added to its gate.
#[derive(Debug, Default)]
struct Counting {
    inner: InMemory,
    gets: AtomicUsize,
    ranges: Mutex<Vec<Range<u64>>>,
    fail_next: AtomicUsize,
    gate: Option<Semaphore>,
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = object_store::Result<T>> + Send + 'a>>;

// The trait is declared with #[async_trait]; these are its expanded
// signatures (this crate does not depend on async-trait).
impl ObjectStore for Counting {
    fn put_opts<'l0, 'l1, 'at>(
        &'l0 self,
        location: &'l1 Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> StoreFuture<'at, PutResult>
    where
        'l0: 'at,
        'l1: 'at,
        Self: 'at,
    {
        self.inner.put_opts(location, payload, opts)
    }

    fn put_multipart_opts<'l0, 'l1, 'at>(
        &'l0 self,
        location: &'l1 Path,
        opts: PutMultipartOptions,
    ) -> StoreFuture<'at, Box<dyn MultipartUpload>>
    where
        'l0: 'at,
        'l1: 'at,
        Self: 'at,
    {
        self.inner.put_multipart_opts(location, opts)
    }

    fn get_opts<'l0, 'l1, 'at>(
        &'l0 self,
        location: &'l1 Path,
        options: GetOptions,
    ) -> StoreFuture<'at, GetResult>
    where
        'l0: 'at,
        'l1: 'at,
        Self: 'at,
    {
        Box::pin(async move {
            if let Some(gate) = &self.gate {
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
            }
            self.gets.fetch_add(1, Ordering::SeqCst);
            if let Some(GetRange::Bounded(r)) = &options.range {
                self.ranges.lock().push(r.clone());
            }
            let fail = self
                .fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if fail.is_ok() {
                return Err(object_store::Error::Generic {
                    store: "counting",
                    source: "injected failure".into(),
                });
            }
            self.inner.get_opts(location, options).await
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_delimiter<'l0, 'l1, 'at>(
        &'l0 self,
        prefix: Option<&'l1 Path>,
    ) -> StoreFuture<'at, ListResult>
    where
        'l0: 'at,
        'l1: 'at,
        Self: 'at,
    {
        self.inner.list_with_delimiter(prefix)
    }

    fn copy_opts<'l0, 'l1, 'l2, 'at>(
        &'l0 self,
        from: &'l1 Path,
        to: &'l2 Path,
        options: CopyOptions,
    ) -> StoreFuture<'at, ()>
    where
        'l0: 'at,
        'l1: 'at,
        'l2: 'at,
        Self: 'at,
    {
        self.inner.copy_opts(from, to, options)
    }
}

const KB: usize = 1024;

/// Deterministic contents, different per object.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn config(capacity_blocks: usize, readahead_blocks: usize) -> BlockCacheConfig {
    BlockCacheConfig {
        capacity_bytes: capacity_blocks * KB,
        block_bytes: KB,
        readahead_blocks,
    }
}

/// A store holding `objects` (key, length) and a cache over it.
async fn setup(
    objects: &[(&str, usize)],
    config: BlockCacheConfig,
    gate: Option<Semaphore>,
) -> (Arc<Counting>, Arc<BlockCache>) {
    let store = Arc::new(Counting {
        gate,
        ..Default::default()
    });
    for (i, (key, len)) in objects.iter().enumerate() {
        let data = content(*len, i as u8);
        store
            .inner
            .put(&Path::from(*key), data.into())
            .await
            .unwrap();
    }
    let cache = BlockCache::new(store.clone(), config);
    (store, cache)
}

fn gets(store: &Counting) -> usize {
    store.gets.load(Ordering::SeqCst)
}

#[tokio::test]
async fn cache_exact_bytes_across_block_boundaries_and_tail() {
    let size = 10_000;
    let (_, cache) = setup(&[("k", size)], config(64, 4), None).await;
    let want = content(size, 0);
    let ranges = [
        0..1,
        1000..3000,
        1023..1025,
        1024..2048,
        9000..10_000,
        9999..10_000,
        0..10_000,
        5..5,
    ];
    // The second pass is served from the cache and must give the same bytes.
    for _ in 0..2 {
        for r in ranges.clone() {
            let got = cache.get_range("k", size as u64, r.start as u64..r.end as u64);
            assert_eq!(&got.await.unwrap()[..], &want[r.clone()], "range {r:?}");
        }
        cache.wait_idle().await;
    }
    cache.check_invariants();
}

#[tokio::test]
async fn cache_second_read_is_served_without_gets() {
    let (store, cache) = setup(&[("k", 5000)], config(64, 4), None).await;
    cache.get_range("k", 5000, 100..3000).await.unwrap();
    assert_eq!(gets(&store), 1);
    let again = cache.get_range("k", 5000, 100..3000).await.unwrap();
    assert_eq!(&again[..], &content(5000, 0)[100..3000]);
    assert_eq!(gets(&store), 1);
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.fetches), (3, 3, 1));
    assert_eq!(s.bytes_fetched, 3 * KB as u64);
    assert_eq!(s.hit_ratio(), 0.5);
}

#[tokio::test]
async fn cache_one_get_per_run_of_missing_blocks() {
    let (store, cache) = setup(&[("k", 8 * KB)], config(64, 0), None).await;
    cache.get_range("k", 8192, 2048..3072).await.unwrap();
    cache.get_range("k", 8192, 5120..6144).await.unwrap();
    store.ranges.lock().clear();
    let got = cache.get_range("k", 8192, 0..8192).await.unwrap();
    assert_eq!(&got[..], &content(8 * KB, 0)[..]);
    let mut ranges = store.ranges.lock().clone();
    ranges.sort_by_key(|r| r.start);
    assert_eq!(ranges, vec![0..2048, 3072..5120, 6144..8192]);
    assert_eq!(gets(&store), 5);
}

#[tokio::test]
async fn cache_sequential_reads_prefetch_without_waiting() {
    // Two permits: the caller's two GETs may proceed, readahead may not.
    let gate = Semaphore::new(2);
    let (store, cache) = setup(&[("k", 32 * KB)], config(64, 4), Some(gate)).await;
    let size = 32 * KB as u64;
    cache.get_range("k", size, 0..1024).await.unwrap();
    cache.get_range("k", size, 1024..2048).await.unwrap();
    // Returned although the readahead GET is still blocked.
    assert_eq!(cache.cached_blocks("k"), vec![0, 1]);
    let gate = store.gate.as_ref().unwrap();
    gate.add_permits(1);
    cache.wait_idle().await;
    assert_eq!(cache.cached_blocks("k"), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(store.ranges.lock().last(), Some(&(2048..6144)));
    assert_eq!(cache.stats().readahead_blocks, 4);

    // Half the window still ahead: hits, and no new readahead yet.
    cache.get_range("k", size, 2048..3072).await.unwrap();
    cache.get_range("k", size, 3072..4096).await.unwrap();
    cache.wait_idle().await;
    assert_eq!(gets(&store), 3);
    // Less than half left: the window is refilled with one GET.
    gate.add_permits(100);
    let got = cache.get_range("k", size, 4096..5120).await.unwrap();
    assert_eq!(&got[..], &content(32 * KB, 0)[4096..5120]);
    cache.wait_idle().await;
    assert_eq!(gets(&store), 4);
    assert_eq!(store.ranges.lock().last(), Some(&(6144..9216)));
    assert_eq!(cache.cached_blocks("k"), (0..9).collect::<Vec<_>>());
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.readahead_blocks), (3, 2, 7));
}

#[tokio::test]
async fn cache_scan_larger_than_capacity_keeps_hot_block() {
    let big = 64 * KB;
    let (store, cache) = setup(&[("hot", 4 * KB), ("big", big)], config(8, 2), None).await;
    let hot = content(4 * KB, 0);
    // Read twice: promoted. Block 1 is read once and is left to the scan.
    cache.get_range("hot", 4096, 0..100).await.unwrap();
    cache.get_range("hot", 4096, 0..100).await.unwrap();
    cache.get_range("hot", 4096, 1024..1124).await.unwrap();

    // A consumer catching up on a large object, in steps smaller than a
    // block (so it reads each block several times itself).
    let want = content(big, 1);
    for start in (0..big).step_by(512) {
        let got = cache.get_range("big", big as u64, start as u64..(start + 512) as u64);
        assert_eq!(&got.await.unwrap()[..], &want[start..start + 512]);
        assert!(cache.stats().current_bytes <= 8 * KB as u64);
    }
    cache.wait_idle().await;
    cache.check_invariants();
    let s = cache.stats();
    assert!(s.evictions >= 56, "{s:?}");
    assert!(s.readahead_blocks > 0, "{s:?}");
    assert!(cache.cached_blocks("hot").contains(&0));
    assert!(!cache.cached_blocks("hot").contains(&1));

    let before = gets(&store);
    let got = cache.get_range("hot", 4096, 0..100).await.unwrap();
    assert_eq!(&got[..], &hot[..100]);
    assert_eq!(gets(&store), before);
}

#[tokio::test]
async fn cache_capacity_is_never_exceeded() {
    let objects = [("a", 1000), ("b", 3333), ("c", 5000), ("d", 777)];
    let capacity = 5000;
    let cfg = BlockCacheConfig {
        capacity_bytes: capacity,
        block_bytes: 512,
        readahead_blocks: 4,
    };
    let (_, cache) = setup(&objects, cfg, None).await;
    let mut x: u64 = 12345;
    for _ in 0..300 {
        // A small LCG: varied but reproducible reads, some of them sequential.
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let which = (x >> 33) as usize % objects.len();
        let (key, len) = objects[which];
        let start = (x >> 40) as usize % len;
        let end = (start + 1 + (x >> 20) as usize % 1500).min(len);
        let got = cache.get_range(key, len as u64, start as u64..end as u64);
        assert_eq!(
            &got.await.unwrap()[..],
            &content(len, which as u8)[start..end]
        );
        assert!(cache.stats().current_bytes <= capacity as u64);
        cache.wait_idle().await;
        cache.check_invariants();
    }
    assert!(cache.stats().evictions > 0);
}

#[tokio::test]
async fn cache_concurrent_readers_of_a_missing_block_share_one_get() {
    let (store, cache) = setup(&[("k", 4 * KB)], config(64, 4), Some(Semaphore::new(0))).await;
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.get_range("k", 4096, 10..900).await })
        })
        .collect();
    // The GET is held at the gate until all readers have joined it.
    let joined = async {
        while cache.stats().coalesced < 7 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), joined)
        .await
        .expect("readers never joined the in-flight fetch");
    store.gate.as_ref().unwrap().add_permits(1);
    for r in readers {
        assert_eq!(&r.await.unwrap().unwrap()[..], &content(4 * KB, 0)[10..900]);
    }
    assert_eq!(gets(&store), 1);
    assert_eq!(cache.stats().misses, 8);
}

#[tokio::test]
async fn cache_store_error_is_returned_and_next_read_retries() {
    let (store, cache) = setup(&[("k", 4 * KB)], config(64, 4), None).await;
    store.fail_next.store(1, Ordering::SeqCst);
    let err = cache.get_range("k", 4096, 0..2000).await.unwrap_err();
    assert!(
        matches!(&err, StorageError::ObjectStore { op: "get", key, .. } if key == "k"),
        "{err}"
    );
    assert!(err.is_retriable());
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert!(cache.cached_blocks("k").is_empty());
    cache.check_invariants();

    let got = cache.get_range("k", 4096, 0..2000).await.unwrap();
    assert_eq!(&got[..], &content(4 * KB, 0)[..2000]);
    assert_eq!(gets(&store), 2);
    assert_eq!(cache.cached_blocks("k"), vec![0, 1]);
}

#[tokio::test]
async fn cache_missing_object_is_not_found() {
    let (_, cache) = setup(&[], config(64, 4), None).await;
    let err = cache.get_range("gone", 4096, 0..10).await.unwrap_err();
    assert!(
        matches!(
            &err,
            StorageError::ObjectStore {
                source: object_store::Error::NotFound { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn cache_rejects_ranges_outside_the_object() {
    let (store, cache) = setup(&[("k", 100)], config(64, 4), None).await;
    let (start, end) = (50, 20);
    for r in [0..101, start..end, 200..300] {
        let err = cache.get_range("k", 100, r.clone()).await.unwrap_err();
        assert!(matches!(err, StorageError::Invalid(_)), "{r:?}: {err}");
    }
    // Within a (claimed) huge object, but one absurdly large read.
    let err = cache.get_range("k", u64::MAX, 0..MAX_RANGE_BYTES + 1).await;
    assert!(matches!(err, Err(StorageError::Invalid(_))));
    assert_eq!(gets(&store), 0);
}

#[tokio::test]
async fn cache_object_shorter_than_its_size_is_corrupt() {
    let (_, cache) = setup(&[("k", 1000)], config(64, 4), None).await;
    let err = cache.get_range("k", 5000, 0..5000).await.unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert!(cache.cached_blocks("k").is_empty());
    cache.check_invariants();
}

#[tokio::test]
async fn cache_evict_object_forgets_its_blocks() {
    let (store, cache) = setup(&[("k", 4 * KB), ("other", KB)], config(64, 4), None).await;
    cache.get_range("k", 4096, 0..4096).await.unwrap();
    cache.get_range("other", 1024, 0..1024).await.unwrap();
    cache.evict_object("k");
    assert!(cache.cached_blocks("k").is_empty());
    assert_eq!(cache.cached_blocks("other"), vec![0]);
    assert_eq!(cache.stats().current_bytes, KB as u64);
    cache.check_invariants();
    cache.get_range("k", 4096, 0..10).await.unwrap();
    assert_eq!(gets(&store), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cache_parallel_readers_get_correct_bytes() {
    let objects = [("a", 20_000), ("b", 7_777), ("c", 33_333)];
    let cfg = BlockCacheConfig {
        capacity_bytes: 12_000,
        block_bytes: 1000,
        readahead_blocks: 3,
    };
    let (store, cache) = setup(&objects, cfg, None).await;
    // Some GETs fail: readers see errors, never wrong bytes or a stuck block.
    store.fail_next.store(5, Ordering::SeqCst);
    let readers: Vec<_> = (0..8u64)
        .map(|t| {
            let cache = cache.clone();
            tokio::spawn(async move {
                let mut x = t + 1;
                for n in 0..200 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let which = (x >> 33) as usize % objects.len();
                    let (key, len) = objects[which];
                    // Half the readers scan, half read at random.
                    let start = if t % 2 == 0 {
                        (n * 700) % len
                    } else {
                        (x >> 40) as usize % len
                    };
                    let end = (start + 1 + (x >> 20) as usize % 2500).min(len);
                    match cache
                        .get_range(key, len as u64, start as u64..end as u64)
                        .await
                    {
                        Ok(got) => assert_eq!(&got[..], &content(len, which as u8)[start..end]),
                        Err(e) => assert!(e.is_retriable(), "{e}"),
                    }
                }
            })
        })
        .collect();
    for r in readers {
        r.await.unwrap();
    }
    cache.wait_idle().await;
    cache.check_invariants();
    assert!(cache.stats().current_bytes <= 12_000);
}
