//! Issue 11 item 1: a paused owner that wakes up after another broker took
//! over must never acknowledge a write, commit a manifest or delete the new
//! owner's objects — however many manifest versions the new owner wrote
//! (old versions are deleted, so fencing cannot rely on them), in both WAL
//! modes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use vigil_protocol::kafka_protocol::records::Compression;
use vigil_protocol::BatchBuilder;
use vigil_storage::config::WalMode;
use vigil_storage::{Log, LogConfig, StorageError, TopicConfig};

fn batch(tag: &str) -> Bytes {
    BatchBuilder::new(Compression::None)
        .record(1, None, Some(Bytes::from(tag.to_string())))
        .build()
        .expect("encode")
}

fn topic() -> TopicConfig {
    TopicConfig {
        partitions: 1,
        configs: Default::default(),
    }
}

fn modes() -> [WalMode; 2] {
    [
        WalMode::Local,
        WalMode::Object {
            window: Duration::from_millis(1),
        },
    ]
}

async fn open(
    store: &Arc<dyn ObjectStore>,
    data: &std::path::Path,
    mode: &WalMode,
    name: &str,
    takeover: bool,
) -> Arc<Log> {
    let mut c = LogConfig::new(data);
    c.wal_mode = mode.clone();
    c.broker_id = name.to_string();
    c.lease_interval = Duration::from_millis(20);
    c.takeover = takeover;
    c.gc_grace = Duration::ZERO;
    c.cache_bytes_per_partition = 0;
    Log::open(c, store.clone()).await.expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_cannot_ack_commit_or_collect_after_a_takeover() {
    for mode in modes() {
        let objects = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(objects.path()).expect("store"));
        let (da, db) = (
            tempfile::tempdir().expect("a"),
            tempfile::tempdir().expect("b"),
        );

        // A owns the log and has data uploaded. Its lease renewal task is not
        // running: A is "paused" from here on.
        let a = open(&store, da.path(), &mode, "a", false).await;
        a.create_topic("t", topic()).await.expect("create");
        let pa = a.partition("t", 0).expect("partition");
        a.append(&pa, batch("a0"))
            .await
            .expect("append before the pause");
        a.upload_once().await.expect("upload");

        // B takes over and commits many manifest versions, so the versions
        // A would write next have been written and deleted again.
        let b = open(&store, db.path(), &mode, "b", true).await;
        for i in 0..10 {
            b.create_topic(&format!("b{i}"), topic())
                .await
                .expect("b creates");
        }
        let pb = b.partition("t", 0).expect("partition");
        b.append(&pb, batch("b0")).await.expect("b appends");
        b.upload_once().await.expect("b uploads");

        // A wakes up.
        let ack = a.append(&pa, batch("a-stale")).await;
        assert!(
            matches!(ack, Err(ref e) if e.to_string().contains("fenced") || e.to_string().contains("owner")),
            "{mode:?}: a stale owner acknowledged a write: {ack:?}"
        );
        let created = a.create_topic("a-stale", topic()).await;
        assert!(
            matches!(created, Err(StorageError::Fenced { .. })),
            "{mode:?}: a stale owner committed a manifest: {created:?}"
        );
        assert!(a.is_fenced(), "{mode:?}: A must know it was fenced");
        let collected = a.collect_garbage().await;
        assert!(
            matches!(collected, Ok(0) | Err(StorageError::Fenced { .. })),
            "{mode:?}: a stale owner collected garbage: {collected:?}"
        );
        a.abandon().await;

        // B's view, and a fresh broker's after B, hold B's data and none of
        // A's stale writes.
        let read = b.read(&pb, 0, 1 << 20).await.expect("b reads its data");
        assert!(!read.records.is_empty());
        b.close().await;
        let dc = tempfile::tempdir().expect("c");
        let c = open(&store, dc.path(), &mode, "c", false).await;
        assert!(c.topic("a-stale").is_none(), "{mode:?}");
        assert!(c.topic("b9").is_some(), "{mode:?}");
        let pc = c.partition("t", 0).expect("partition");
        assert_eq!(pc.high_watermark(), 2, "{mode:?}: a0 and b0, nothing else");
        c.read(&pc, 1, 1 << 20)
            .await
            .expect("B's uploaded data was not collected by A");
        c.abandon().await;
    }
}
