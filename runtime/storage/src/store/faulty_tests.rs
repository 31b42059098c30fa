//! Tests of [`FaultyStore`] against `InMemory` and `LocalFileSystem`.
//!
//! "Blocked" is asserted by polling a future by hand (`futures::poll!`) over
//! `InMemory`, whose calls complete on their first poll: a `Pending` there can
//! only come from the injected hang, and nothing waits on a clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tempfile::TempDir;

use super::faulty::{FaultCounts, FaultKind, FaultyStore, InjectedFault};

fn backends() -> Vec<(&'static str, Arc<dyn ObjectStore>, Option<TempDir>)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let local = LocalFileSystem::new_with_prefix(dir.path()).expect("local store");
    vec![
        ("memory", Arc::new(InMemory::new()), None),
        ("local", Arc::new(local), Some(dir)),
    ]
}

fn is_injected_before(err: &object_store::Error) -> bool {
    matches!(
        InjectedFault::find(err),
        Some(InjectedFault::BeforeRequest { .. })
    )
}

#[tokio::test]
async fn faulty_fail_next_fails_exactly_n_then_succeeds() {
    for (name, inner, _dir) in backends() {
        let store = FaultyStore::new(Arc::clone(&inner));
        let control = store.control();
        let key = Path::from("seg/1");
        control.fail_next(FaultKind::Write, 2);

        for attempt in 0..2 {
            let err = store.put(&key, "data".into()).await.unwrap_err();
            assert!(is_injected_before(&err), "{name} attempt {attempt}: {err}");
            assert!(err.to_string().contains("injected"), "{name}: {err}");
            assert!(
                matches!(
                    inner.head(&key).await,
                    Err(object_store::Error::NotFound { .. })
                ),
                "{name}: a fault before the request must not reach the store"
            );
        }
        store.put(&key, "data".into()).await.unwrap();
        store.put(&key, "data".into()).await.unwrap();
        // Reads were never affected.
        store.get(&key).await.unwrap().bytes().await.unwrap();

        assert_eq!(control.counts(FaultKind::Write).failed, 2, "{name}");
        assert_eq!(
            control.counts(FaultKind::Read),
            FaultCounts::default(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn faulty_fail_all_reads_until_switched_off() {
    for (name, inner, _dir) in backends() {
        let store = FaultyStore::new(inner);
        let control = store.control();
        let key = Path::from("k");
        store.put(&key, "v".into()).await.unwrap();

        control.fail_all(FaultKind::Read, true);
        for _ in 0..3 {
            let err = store.get(&key).await.unwrap_err();
            assert!(
                matches!(
                    err,
                    object_store::Error::Generic {
                        store: "faulty",
                        ..
                    }
                ),
                "{name}: {err}"
            );
        }
        assert!(is_injected_before(&store.head(&key).await.unwrap_err()));
        let listed: Vec<_> = store.list(None).collect().await;
        assert!(
            matches!(listed.as_slice(), [Err(e)] if is_injected_before(e)),
            "{name}: {listed:?}"
        );
        // Writes still work while reads fail.
        store.put(&Path::from("other"), "v".into()).await.unwrap();

        control.fail_all(FaultKind::Read, false);
        store.get(&key).await.unwrap();
        assert_eq!(control.counts(FaultKind::Read).failed, 5, "{name}");
    }
}

#[tokio::test]
async fn faulty_hang_blocks_until_released() {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = FaultyStore::new(Arc::clone(&inner));
    let control = store.control();
    let key = Path::from("k");
    control.hang(FaultKind::Write, true);

    let put = store.put(&key, "v".into());
    futures::pin_mut!(put);
    assert!(futures::poll!(put.as_mut()).is_pending());
    assert!(futures::poll!(put.as_mut()).is_pending());
    assert!(inner.head(&key).await.is_err(), "a hung PUT must not land");
    // Reads are a separate kind and keep flowing.
    assert!(store.head(&Path::from("missing")).await.is_err());
    assert_eq!(control.counts(FaultKind::Write).hung, 1);

    // Released from another task, the way a test drives a stuck broker.
    let releaser = control.clone();
    tokio::spawn(async move { releaser.hang(FaultKind::Write, false) })
        .await
        .unwrap();
    put.await.unwrap();
    assert!(inner.head(&key).await.is_ok());
    // Once lifted, new calls do not hang.
    store.put(&key, "v2".into()).now_or_never_ok();
}

/// `now_or_never` for a store future that must complete on its first poll.
trait NowOrNever {
    fn now_or_never_ok(self);
}

impl<F, T> NowOrNever for F
where
    F: std::future::Future<Output = object_store::Result<T>>,
{
    fn now_or_never_ok(self) {
        use futures::FutureExt;
        match self.now_or_never() {
            Some(result) => assert!(result.is_ok()),
            None => panic!("the call did not complete on its first poll"),
        }
    }
}

#[tokio::test]
async fn faulty_hang_on_reads_blocks_list_and_clear_releases() {
    let store = FaultyStore::new(Arc::new(InMemory::new()));
    let control = store.control();
    store.put(&Path::from("a"), "v".into()).await.unwrap();
    control.hang(FaultKind::Read, true);

    let mut listing = store.list(None);
    assert!(futures::poll!(listing.next()).is_pending());
    control.clear();
    let items: Vec<_> = listing.try_collect().await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(control.counts(FaultKind::Read).hung, 1);
}

#[tokio::test]
async fn faulty_fail_after_write_leaves_the_object() {
    for (name, inner, _dir) in backends() {
        let store = FaultyStore::new(Arc::clone(&inner));
        let control = store.control();
        let key = Path::from("manifest/00000002.json");
        control.fail_after_write_next(1);

        let create = PutOptions::from(PutMode::Create);
        let err = store
            .put_opts(&key, "v2".into(), create.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(
                InjectedFault::find(&err),
                Some(InjectedFault::AfterWrite { op: "put", .. })
            ),
            "{name}: {err}"
        );
        let stored = inner.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(&stored[..], b"v2", "{name}: the write must have landed");

        // The caller's retry of its CAS now meets its own write.
        let retry = store.put_opts(&key, "v2".into(), create).await.unwrap_err();
        assert!(
            matches!(retry, object_store::Error::AlreadyExists { .. }),
            "{name}: {retry}"
        );
        assert_eq!(control.counts(FaultKind::Write).failed_after_write, 1);
        assert_eq!(control.counts(FaultKind::Write).failed, 0);
    }
}

#[tokio::test]
async fn faulty_delay_adds_latency() {
    let store = FaultyStore::new(Arc::new(InMemory::new()));
    let control = store.control();
    let key = Path::from("k");
    store.put(&key, "v".into()).await.unwrap();
    let delay = Duration::from_millis(20);
    control.delay(FaultKind::Read, delay);

    let started = Instant::now();
    store.get(&key).await.unwrap();
    assert!(started.elapsed() >= delay);
    assert_eq!(control.counts(FaultKind::Read).delayed, 1);

    control.delay(FaultKind::Read, Duration::ZERO);
    store.get(&key).now_or_never_ok();
    assert_eq!(control.counts(FaultKind::Read).delayed, 1);
}

#[tokio::test]
async fn faulty_delete_stream_faults_per_location() {
    for (name, inner, _dir) in backends() {
        let store = FaultyStore::new(Arc::clone(&inner));
        let control = store.control();
        let keys = [Path::from("d/1"), Path::from("d/2"), Path::from("d/3")];
        for key in &keys {
            store.put(key, "x".into()).await.unwrap();
        }
        control.fail_next(FaultKind::Write, 1);
        control.fail_after_write_next(1);

        let input = futures::stream::iter(keys.clone().map(Ok)).boxed();
        let results: Vec<_> = store.delete_stream(input).collect().await;
        assert_eq!(results.len(), 3, "{name}");
        assert!(
            matches!(&results[0], Err(e) if is_injected_before(e)),
            "{name}: {results:?}"
        );
        assert!(
            matches!(&results[1], Err(e) if matches!(InjectedFault::find(e), Some(InjectedFault::AfterWrite { .. }))),
            "{name}: {results:?}"
        );
        assert!(results[2].is_ok(), "{name}: {results:?}");

        // Only the first (failed before the request) survives.
        assert!(inner.head(&keys[0]).await.is_ok(), "{name}");
        assert!(inner.head(&keys[1]).await.is_err(), "{name}");
        assert!(inner.head(&keys[2]).await.is_err(), "{name}");
    }
}

#[tokio::test]
async fn faulty_multipart_part_and_completion_faults() {
    for (name, inner, _dir) in backends() {
        let store = FaultyStore::new(Arc::clone(&inner));
        let control = store.control();
        let key = Path::from("big");
        let mut upload = store.put_multipart(&key).await.unwrap();

        control.fail_next(FaultKind::Write, 1);
        let err = upload.put_part(vec![1u8; 4].into()).await.unwrap_err();
        assert!(is_injected_before(&err), "{name}: {err}");
        upload.put_part(vec![1u8; 4].into()).await.unwrap();

        control.fail_after_write_next(1);
        let err = upload.complete().await.unwrap_err();
        assert!(InjectedFault::find(&err).is_some(), "{name}: {err}");
        assert_eq!(inner.head(&key).await.unwrap().size, 4, "{name}");
    }
}

#[tokio::test]
async fn faulty_passes_real_errors_through() {
    let store = FaultyStore::new(Arc::new(InMemory::new()));
    let err = store.get(&Path::from("missing")).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }));
    assert!(InjectedFault::find(&err).is_none());
    // A write the inner store rejects does not consume the after-write budget.
    let control = store.control();
    let key = Path::from("k");
    store
        .put(&key, PutPayload::from_static(b"a"))
        .await
        .unwrap();
    control.fail_after_write_next(1);
    let conflict = store
        .put_opts(&key, PutPayload::from_static(b"b"), PutMode::Create.into())
        .await
        .unwrap_err();
    assert!(matches!(
        conflict,
        object_store::Error::AlreadyExists { .. }
    ));
    let lost = store
        .put(&key, PutPayload::from_static(b"c"))
        .await
        .unwrap_err();
    assert!(InjectedFault::find(&lost).is_some());
    assert_eq!(control.counts(FaultKind::Write).failed_after_write, 1);
}
