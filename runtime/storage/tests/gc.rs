//! Garbage collection of everything the log writes to the object store.

use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ObjectStore;
use vigil_protocol::kafka_protocol::records::Compression;
use vigil_protocol::BatchBuilder;
use vigil_storage::{Log, LogConfig, TopicConfig};

const DAY_MS: i64 = 86_400_000;

fn batch(ts: i64) -> Bytes {
    BatchBuilder::new(Compression::None)
        .record(ts, None, Some(Bytes::from_static(b"v")))
        .build()
        .expect("encode")
}

async fn count(store: &Arc<dyn ObjectStore>, prefix: &str) -> usize {
    let listed: Vec<_> = futures::TryStreamExt::try_collect(store.list(Some(&Path::from(prefix))))
        .await
        .expect("list");
    listed.len()
}

/// Issue 11 item 4: the collector listed only `objects/`, so a compacted
/// segment (under `data/`) that retention dropped stayed in the store
/// forever.
#[tokio::test]
async fn segments_written_by_compaction_are_collected_once_retention_drops_them() {
    let objects = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(objects.path()).expect("store"));
    let mut c = LogConfig::new(data.path());
    c.gc_grace = std::time::Duration::ZERO;
    c.lease_interval = std::time::Duration::from_millis(10);
    c.cache_bytes_per_partition = 0;
    let log = Log::open(c, store.clone()).await.expect("open");
    let configs = [("retention.ms".to_string(), DAY_MS.to_string())]
        .into_iter()
        .collect();
    log.create_topic(
        "old",
        TopicConfig {
            partitions: 1,
            configs,
        },
    )
    .await
    .expect("create");
    let p = log.partition("old", 0).expect("partition");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    for i in 0..10 {
        // Two days old: past the topic's one-day retention.
        log.append(&p, batch(now - 2 * DAY_MS + i))
            .await
            .expect("append");
        log.upload_once().await.expect("upload");
    }
    let compacted = log.compact_once().await.expect("compact");
    assert_eq!(compacted.segments, 1);
    assert_eq!(count(&store, "data").await, 1, "the compacted segment");
    let stats = log.enforce_retention().await.expect("retention");
    assert_eq!(stats.runs_dropped, 1, "the whole segment is past retention");
    assert_eq!(p.log_start_offset(), 10);
    assert_eq!(
        count(&store, "data").await,
        0,
        "the dropped segment is collected"
    );
    assert_eq!(count(&store, "objects").await, 0);
    log.abandon().await;
}

/// Retention asks the log's clock for "now": moving an injected clock past
/// a topic's retention drops its data, with records written at any time.
#[tokio::test]
async fn retention_follows_the_injected_clock() {
    let objects = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(objects.path()).expect("store"));
    // 2001-09-09: nowhere near the system clock.
    let t0 = 1_000_000_000_000;
    let clock = Arc::new(vigil_storage::ManualClock::new(t0 + 3_600_000));
    let mut c = LogConfig::new(data.path());
    c.lease_interval = std::time::Duration::from_millis(10);
    let log = Log::open_with_clock(c, store, clock.clone())
        .await
        .expect("open");
    let configs = [("retention.ms".to_string(), DAY_MS.to_string())]
        .into_iter()
        .collect();
    log.create_topic(
        "t",
        TopicConfig {
            partitions: 1,
            configs,
        },
    )
    .await
    .expect("create");
    let p = log.partition("t", 0).expect("partition");
    for i in 0..3 {
        log.append(&p, batch(t0 + i)).await.expect("append");
    }
    log.upload_once().await.expect("upload");
    let kept = log.enforce_retention().await.expect("retention");
    assert_eq!(kept.runs_dropped, 0, "an hour old, retention is a day");
    assert_eq!(p.log_start_offset(), 0);
    clock.advance(2 * DAY_MS);
    let dropped = log.enforce_retention().await.expect("retention");
    assert_eq!(dropped.runs_dropped, 1);
    assert_eq!(p.log_start_offset(), 3);
    log.abandon().await;
}
