//! Tests of [`InstrumentedStore`] against `InMemory` and `LocalFileSystem`.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
};
use tempfile::TempDir;

use super::faulty::{FaultKind, FaultyStore};
use super::instrumented::{InstrumentedStore, Outcome, StoreOp};

/// The stores under test; the tempdir must outlive its store.
fn backends() -> Vec<(&'static str, Arc<dyn ObjectStore>, Option<TempDir>)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let local = LocalFileSystem::new_with_prefix(dir.path()).expect("local store");
    vec![
        ("memory", Arc::new(InMemory::new()), None),
        ("local", Arc::new(local), Some(dir)),
    ]
}

fn create() -> PutOptions {
    PutOptions::from(PutMode::Create)
}

#[tokio::test]
async fn instrumented_counts_requests_and_bytes() {
    for (name, inner, _dir) in backends() {
        let store = InstrumentedStore::new(inner);
        let a = Path::from("t/a");
        let b = Path::from("t/b");
        store
            .put(&a, PutPayload::from(vec![1u8; 10]))
            .await
            .unwrap();
        store
            .put(&b, PutPayload::from(vec![2u8; 20]))
            .await
            .unwrap();

        let whole = store.get(&a).await.unwrap().bytes().await.unwrap();
        assert_eq!(whole.len(), 10, "{name}");
        let part = store.get_range(&b, 5..12).await.unwrap();
        assert_eq!(part.len(), 7, "{name}");
        let ranges = store.get_ranges(&b, &[0..2, 4..8]).await.unwrap();
        assert_eq!(ranges.iter().map(|r| r.len()).sum::<usize>(), 6, "{name}");
        assert_eq!(store.head(&b).await.unwrap().size, 20, "{name}");
        let missing = store.get(&Path::from("t/missing")).await.unwrap_err();
        assert!(
            matches!(missing, object_store::Error::NotFound { .. }),
            "{name}"
        );
        let listed: Vec<_> = store
            .list(Some(&Path::from("t")))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed.len(), 2, "{name}");
        store.delete(&a).await.unwrap();

        let stats = store.stats();
        assert_eq!(stats.requests(StoreOp::Put, Outcome::Ok), 2, "{name}");
        assert_eq!(stats.requests(StoreOp::Get, Outcome::Ok), 1, "{name}");
        assert_eq!(stats.requests(StoreOp::Get, Outcome::NotFound), 1, "{name}");
        assert_eq!(stats.requests(StoreOp::GetRange, Outcome::Ok), 1, "{name}");
        assert_eq!(stats.total_requests(StoreOp::GetRanges), 1, "{name}");
        assert_eq!(stats.requests(StoreOp::Head, Outcome::Ok), 1, "{name}");
        assert_eq!(stats.requests(StoreOp::List, Outcome::Ok), 1, "{name}");
        assert_eq!(stats.requests(StoreOp::Delete, Outcome::Ok), 1, "{name}");
        assert_eq!(stats.bytes_uploaded, 30, "{name}");
        // 10 (get) + 7 (range) + 6 (ranges); HEAD counts nothing.
        assert_eq!(stats.bytes_downloaded, 23, "{name}");
    }
}

#[tokio::test]
async fn instrumented_create_conflict_is_already_exists() {
    for (name, inner, _dir) in backends() {
        let store = InstrumentedStore::new(Arc::clone(&inner));
        let key = Path::from("manifest/00000001.json");
        store
            .put_opts(&key, PutPayload::from_static(b"first"), create())
            .await
            .unwrap();
        let conflict = store
            .put_opts(&key, PutPayload::from_static(b"second!"), create())
            .await
            .unwrap_err();
        assert!(
            matches!(conflict, object_store::Error::AlreadyExists { .. }),
            "{name}: {conflict}"
        );
        let stored = inner.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(&stored[..], b"first", "{name}");

        let stats = store.stats();
        assert_eq!(stats.requests(StoreOp::Put, Outcome::Ok), 1, "{name}");
        assert_eq!(
            stats.requests(StoreOp::Put, Outcome::AlreadyExists),
            1,
            "{name}"
        );
        // Only the successful PUT's payload counts.
        assert_eq!(stats.bytes_uploaded, 5, "{name}");
    }
}

#[tokio::test]
async fn instrumented_stale_update_is_precondition() {
    let store = InstrumentedStore::new(Arc::new(InMemory::new()));
    let key = Path::from("k");
    let first = store.put(&key, "v1".into()).await.unwrap();
    store
        .put_opts(
            &key,
            "v2".into(),
            PutMode::Update(UpdateVersion::from(first.clone())).into(),
        )
        .await
        .unwrap();
    let stale = store
        .put_opts(&key, "v3".into(), PutMode::Update(first.into()).into())
        .await
        .unwrap_err();
    assert!(matches!(stale, object_store::Error::Precondition { .. }));
    let stats = store.stats();
    assert_eq!(stats.requests(StoreOp::Put, Outcome::Ok), 2);
    assert_eq!(stats.requests(StoreOp::Put, Outcome::Precondition), 1);
}

#[tokio::test]
async fn instrumented_streamed_get_counts_bytes_as_read() {
    let store = InstrumentedStore::new(Arc::new(InMemory::new()));
    let key = Path::from("k");
    store
        .put(&key, PutPayload::from(vec![0u8; 100]))
        .await
        .unwrap();

    // A body that is never read downloads nothing.
    drop(store.get(&key).await.unwrap());
    assert_eq!(store.stats().bytes_downloaded, 0);

    let mut body = store.get(&key).await.unwrap().into_stream();
    while let Some(chunk) = body.next().await {
        chunk.unwrap();
    }
    assert_eq!(store.stats().bytes_downloaded, 100);
    assert_eq!(store.stats().requests(StoreOp::Get, Outcome::Ok), 2);
}

#[tokio::test]
async fn instrumented_multipart_counts_each_step() {
    for (name, inner, _dir) in backends() {
        let store = InstrumentedStore::new(Arc::clone(&inner));
        let key = Path::from("big");
        let mut upload = store.put_multipart(&key).await.unwrap();
        upload.put_part(vec![1u8; 7].into()).await.unwrap();
        upload.put_part(vec![2u8; 5].into()).await.unwrap();
        upload.complete().await.unwrap();
        assert_eq!(inner.head(&key).await.unwrap().size, 12, "{name}");

        let stats = store.stats();
        assert_eq!(
            stats.requests(StoreOp::PutMultipart, Outcome::Ok),
            1,
            "{name}"
        );
        assert_eq!(stats.requests(StoreOp::PutPart, Outcome::Ok), 2, "{name}");
        assert_eq!(
            stats.requests(StoreOp::CompleteMultipart, Outcome::Ok),
            1,
            "{name}"
        );
        assert_eq!(stats.bytes_uploaded, 12, "{name}");
    }
}

#[tokio::test]
async fn instrumented_delete_stream_counts_each_location() {
    for (name, inner, _dir) in backends() {
        let store = InstrumentedStore::new(inner);
        for key in ["p/1", "p/2", "p/3"] {
            store.put(&Path::from(key), "x".into()).await.unwrap();
        }
        let keys = store
            .list(Some(&Path::from("p")))
            .map_ok(|meta| meta.location)
            .boxed();
        let deleted: Vec<Path> = store.delete_stream(keys).try_collect().await.unwrap();
        assert_eq!(deleted.len(), 3, "{name}");
        let stats = store.stats();
        assert_eq!(stats.requests(StoreOp::Delete, Outcome::Ok), 3, "{name}");
        assert_eq!(stats.requests(StoreOp::List, Outcome::Ok), 1, "{name}");
    }
}

#[tokio::test]
async fn instrumented_list_abandoned_early_counts_once() {
    let store = InstrumentedStore::new(Arc::new(InMemory::new()));
    for key in ["l/1", "l/2"] {
        store.put(&Path::from(key), "x".into()).await.unwrap();
    }
    // Never polled: no request was made.
    drop(store.list(None));
    let mut listing = store.list(None);
    listing.next().await.unwrap().unwrap();
    drop(listing);
    assert_eq!(store.stats().total_requests(StoreOp::List), 1);
}

#[tokio::test]
async fn instrumented_latency_includes_store_time() {
    let faulty = FaultyStore::new(Arc::new(InMemory::new()));
    let delay = Duration::from_millis(20);
    faulty.control().delay(FaultKind::Write, delay);
    let store = InstrumentedStore::new(Arc::new(faulty));
    store.put(&Path::from("k"), "v".into()).await.unwrap();
    let stats = store.stats();
    assert!(stats.latency(StoreOp::Put) >= delay);
    assert_eq!(stats.latency(StoreOp::Get), Duration::ZERO);
}

#[tokio::test]
async fn instrumented_head_via_get_opts_counts_no_bytes() {
    let store = InstrumentedStore::new(Arc::new(InMemory::new()));
    let key = Path::from("k");
    store
        .put(&key, PutPayload::from(vec![0u8; 50]))
        .await
        .unwrap();
    let head = store
        .get_opts(&key, GetOptions::new().with_head(true))
        .await
        .unwrap();
    assert_eq!(head.meta.size, 50);
    let stats = store.stats();
    assert_eq!(stats.requests(StoreOp::Head, Outcome::Ok), 1);
    assert_eq!(stats.bytes_downloaded, 0);
}

#[tokio::test]
async fn instrumented_renders_prometheus_text() {
    let store = InstrumentedStore::new(Arc::new(InMemory::new()));
    let metrics = store.metrics();
    let key = Path::from("k");
    store
        .put(&key, PutPayload::from(vec![0u8; 12]))
        .await
        .unwrap();
    store
        .put_opts(&key, "again".into(), create())
        .await
        .unwrap_err();
    store.get(&key).await.unwrap().bytes().await.unwrap();

    let mut out = String::new();
    metrics.render_prometheus(&mut out);
    for line in [
        "# HELP vigil_object_store_requests_total ",
        "# TYPE vigil_object_store_requests_total counter",
        "vigil_object_store_requests_total{op=\"put\",outcome=\"ok\"} 1",
        "vigil_object_store_requests_total{op=\"put\",outcome=\"already_exists\"} 1",
        "vigil_object_store_requests_total{op=\"get\",outcome=\"ok\"} 1",
        "vigil_object_store_requests_total{op=\"delete\",outcome=\"error\"} 0",
        "# TYPE vigil_object_store_bytes_uploaded_total counter",
        "vigil_object_store_bytes_uploaded_total 12",
        "# TYPE vigil_object_store_bytes_downloaded_total counter",
        "vigil_object_store_bytes_downloaded_total 12",
        "# TYPE vigil_object_store_request_seconds_total counter",
        "vigil_object_store_request_seconds_total{op=\"put\"} ",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(line)),
            "missing {line:?} in\n{out}"
        );
    }
    // One HELP and one TYPE per metric, and every sample parses as a number.
    assert_eq!(out.matches("# TYPE ").count(), 4);
    assert_eq!(out.matches("# HELP ").count(), 4);
    for sample in out.lines().filter(|l| !l.starts_with('#')) {
        let value = sample.rsplit(' ').next().unwrap_or_default();
        assert!(value.parse::<f64>().is_ok(), "bad sample {sample:?}");
    }
    // The store's own accessors read the same counters.
    let mut again = String::new();
    store.render_prometheus(&mut again);
    assert_eq!(out, again);
}
