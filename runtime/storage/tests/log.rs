//! The log end to end on a real local-filesystem object store: appends,
//! uploads, restarts, a wiped data dir, idempotence, key/value state and
//! fencing.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use vigil_protocol::kafka_protocol::records::{Compression, RecordBatchDecoder};
use vigil_protocol::BatchBuilder;
use vigil_storage::config::WalMode;
use vigil_storage::{AppendOutcome, Log, LogConfig, StorageError, TopicConfig};

/// One batch of `n` records as a producer would send it (offsets from 0).
fn batch(n: i32, ts0: i64, producer: Option<(i64, i32)>) -> Bytes {
    let mut b = BatchBuilder::new(Compression::Snappy);
    if let Some((pid, seq)) = producer {
        b = b.producer(pid, 0, seq);
    }
    for i in 0..n {
        b = b.record(
            ts0 + i64::from(i),
            Some(Bytes::from(format!("k{i}"))),
            Some(Bytes::from(format!("value-{ts0}-{i}"))),
        );
    }
    b.build().expect("encode")
}

/// Decodes all record values in fetched bytes, with their offsets.
fn values(mut bytes: Bytes) -> Vec<(i64, String)> {
    let sets = RecordBatchDecoder::decode_all(&mut bytes).expect("decode");
    sets.into_iter()
        .flat_map(|s| s.records)
        .map(|r| {
            let v = r
                .value
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default();
            (r.offset, v)
        })
        .collect()
}

struct Env {
    objects: tempfile::TempDir,
    data: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            objects: tempfile::tempdir().expect("tempdir"),
            data: tempfile::tempdir().expect("tempdir"),
        }
    }
    fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(LocalFileSystem::new_with_prefix(self.objects.path()).expect("store"))
    }
    async fn open(&self) -> Arc<Log> {
        self.open_in(self.data.path()).await
    }
    async fn open_in(&self, dir: &std::path::Path) -> Arc<Log> {
        self.open_with(dir, WalMode::Local).await
    }
    async fn open_with(&self, dir: &std::path::Path, mode: WalMode) -> Arc<Log> {
        let mut c = LogConfig::new(dir);
        c.cache_bytes_per_partition = 0;
        c.wal_mode = mode;
        // A crashed owner's lease is waited out for 3 intervals at open.
        c.lease_interval = std::time::Duration::from_millis(10);
        Log::open(c, self.store()).await.expect("open log")
    }
}

async fn read_all(log: &Log, topic: &str, partition: i32) -> Vec<(i64, String)> {
    let p = log.partition(topic, partition).expect("partition");
    let mut out = Vec::new();
    let mut offset = p.log_start_offset();
    while offset < p.high_watermark() {
        let f = log.read(&p, offset, 1 << 20).await.expect("read");
        let got = values(f.records);
        let last = got.last().map(|(o, _)| *o).expect("progress");
        out.extend(got.into_iter().filter(|(o, _)| *o >= offset));
        offset = last + 1;
    }
    out
}

#[tokio::test]
async fn data_survives_restart_before_and_after_upload_and_a_wiped_data_dir() {
    let env = Env::new();
    let log = env.open().await;
    log.create_topic(
        "t",
        TopicConfig {
            partitions: 2,
            configs: Default::default(),
        },
    )
    .await
    .expect("create");
    let p0 = log.partition("t", 0).expect("p0");
    let mut expected = Vec::new();
    for i in 0..3 {
        let out = log
            .append(&p0, batch(4, 1000 * i, None))
            .await
            .expect("append");
        assert_eq!(out, AppendOutcome::Appended { base_offset: 4 * i });
        expected.extend((0..4).map(|j| (4 * i + j, format!("value-{}-{j}", 1000 * i))));
    }
    assert_eq!(read_all(&log, "t", 0).await, expected);

    // Restart without an upload: everything comes back from the WAL.
    log.abandon().await;
    drop(log);
    let log = env.open().await;
    assert_eq!(read_all(&log, "t", 0).await, expected);

    // Upload, add more, upload again; then lose the local disk entirely.
    assert!(!log.upload_lag().is_zero(), "acked data waits for upload");
    let stats = log.upload_once().await.expect("upload");
    assert!(log.upload_lag().is_zero(), "everything uploaded");
    assert_eq!((stats.objects, stats.runs), (1, 1));
    assert!(stats.wal_segments_deleted >= 1);
    let p0 = log.partition("t", 0).expect("p0");
    log.append(&p0, batch(2, 5000, None)).await.expect("append");
    expected.extend((0..2).map(|j| (12 + j, format!("value-5000-{j}"))));
    log.upload_once().await.expect("upload");
    // With no cache budget, reads below the tail come from segment objects.
    let before = log.stats.object_reads.load(Ordering::Relaxed);
    assert_eq!(read_all(&log, "t", 0).await, expected);
    assert!(log.stats.object_reads.load(Ordering::Relaxed) > before);
    log.abandon().await;
    drop(log);

    let fresh = tempfile::tempdir().expect("tempdir");
    let log = env.open_in(fresh.path()).await;
    assert_eq!(read_all(&log, "t", 0).await, expected);
    assert_eq!(log.partition("t", 1).expect("p1").high_watermark(), 0);
    // Offsets continue where they left off.
    let p0 = log.partition("t", 0).expect("p0");
    assert_eq!(
        log.append(&p0, batch(1, 9000, None)).await.expect("append"),
        AppendOutcome::Appended { base_offset: 14 }
    );
}

#[tokio::test]
async fn idempotent_retries_are_not_written_twice_even_across_restarts() {
    let env = Env::new();
    let log = env.open().await;
    log.create_topic(
        "idem",
        TopicConfig {
            partitions: 1,
            configs: Default::default(),
        },
    )
    .await
    .expect("create");
    let pid = log.allocate_producer_id().await.expect("pid");
    let p = log.partition("idem", 0).expect("p");
    let first = batch(3, 0, Some((pid, 0)));
    assert_eq!(
        log.append(&p, first.clone()).await.expect("append"),
        AppendOutcome::Appended { base_offset: 0 }
    );
    assert_eq!(
        log.append(&p, first.clone()).await.expect("retry"),
        AppendOutcome::Duplicate { base_offset: 0 }
    );
    let gap = batch(1, 0, Some((pid, 7)));
    assert!(
        log.append(&p, gap).await.is_err(),
        "a sequence gap is refused"
    );

    log.upload_once().await.expect("upload");
    let second = batch(2, 10, Some((pid, 3)));
    log.append(&p, second.clone()).await.expect("append");
    log.abandon().await;
    drop(log);

    // After restart the state comes from the manifest (first batch) and the
    // WAL (second batch).
    let log = env.open().await;
    let p = log.partition("idem", 0).expect("p");
    assert_eq!(
        log.append(&p, first).await.expect("retry"),
        AppendOutcome::Duplicate { base_offset: 0 }
    );
    assert_eq!(
        log.append(&p, second).await.expect("retry"),
        AppendOutcome::Duplicate { base_offset: 3 }
    );
    assert_eq!(p.high_watermark(), 5);
    // A new producer id is never one handed out before the restart.
    assert!(log.allocate_producer_id().await.expect("pid") > pid);
}

#[tokio::test]
async fn key_value_state_survives_restarts_and_wal_reclamation() {
    let env = Env::new();
    let log = env.open().await;
    log.kv_put(vec![
        ("a".into(), Some("1".into())),
        ("b".into(), Some("2".into())),
    ])
    .await
    .expect("put");
    log.upload_once().await.expect("upload");
    log.kv_put(vec![("a".into(), Some("3".into())), ("b".into(), None)])
        .await
        .expect("put");
    log.abandon().await;
    drop(log);
    let log = env.open().await;
    assert_eq!(log.kv_at_open().get("a").map(String::as_str), Some("3"));
    assert_eq!(log.kv_at_open().get("b"), None);
    log.upload_once().await.expect("upload");
    log.abandon().await;
    drop(log);
    let fresh = tempfile::tempdir().expect("tempdir");
    let log = env.open_in(fresh.path()).await;
    assert_eq!(log.kv_at_open().get("a").map(String::as_str), Some("3"));
}

#[tokio::test]
async fn a_second_broker_on_the_same_store_fences_the_first() {
    let env = Env::new();
    let a = env.open().await;
    a.create_topic(
        "f",
        TopicConfig {
            partitions: 1,
            configs: Default::default(),
        },
    )
    .await
    .expect("create");
    let other = tempfile::tempdir().expect("tempdir");
    let b = env.open_in(other.path()).await;
    assert!(b.epoch() > a.epoch());
    match a
        .create_topic(
            "g",
            TopicConfig {
                partitions: 1,
                configs: Default::default(),
            },
        )
        .await
    {
        Err(StorageError::Fenced { ours, theirs, .. }) => {
            assert_eq!((ours, theirs), (a.epoch(), b.epoch()))
        }
        other => panic!("expected fencing, got {other:?}"),
    }
    let p = a.partition("f", 0).expect("p");
    assert!(
        a.append(&p, batch(1, 0, None)).await.is_err(),
        "a fenced broker refuses writes"
    );
    // The new owner sees the topic and can write.
    let p = b.partition("f", 0).expect("p");
    b.append(&p, batch(1, 0, None)).await.expect("append");
}

#[tokio::test]
async fn lookup_by_timestamp_finds_the_first_record_at_or_after() {
    let env = Env::new();
    let log = env.open().await;
    log.create_topic(
        "ts",
        TopicConfig {
            partitions: 1,
            configs: Default::default(),
        },
    )
    .await
    .expect("create");
    let p = log.partition("ts", 0).expect("p");
    log.append(&p, batch(5, 100, None)).await.expect("append"); // offsets 0..5, ts 100..105
    log.upload_once().await.expect("upload");
    log.append(&p, batch(5, 200, None)).await.expect("append"); // offsets 5..10, ts 200..205
    let hit = |ts| {
        let log = log.clone();
        let p = p.clone();
        async move {
            log.offset_for_timestamp(&p, ts)
                .await
                .expect("lookup")
                .map(|h| (h.offset, h.timestamp))
        }
    };
    assert_eq!(hit(0).await, Some((0, 100)));
    assert_eq!(hit(103).await, Some((3, 103)));
    assert_eq!(hit(150).await, Some((5, 200)));
    assert_eq!(hit(204).await, Some((9, 204)));
    assert_eq!(hit(999).await, None);
}

#[tokio::test]
async fn one_upload_writes_one_object_for_many_partitions() {
    let env = Env::new();
    let log = env.open().await;
    log.create_topic(
        "wide",
        TopicConfig {
            partitions: 10,
            configs: Default::default(),
        },
    )
    .await
    .expect("create");
    for i in 0..10 {
        let p = log.partition("wide", i).expect("p");
        log.append(&p, batch(2, 1000 * i64::from(i), None))
            .await
            .expect("append");
    }
    let stats = log.upload_once().await.expect("upload");
    assert_eq!((stats.objects, stats.runs), (1, 10));
    let store = env.store();
    let prefix = object_store::path::Path::from("objects");
    let listed: Vec<_> = futures::TryStreamExt::try_collect(store.list(Some(&prefix)))
        .await
        .expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    // Each partition reads its own run back from the shared object.
    for i in 0..10 {
        let expected: Vec<_> = (0..2)
            .map(|j| (j, format!("value-{}-{j}", 1000 * i)))
            .collect();
        assert_eq!(read_all(&log, "wide", i).await, expected);
    }
}

#[tokio::test]
async fn object_wal_acks_survive_losing_the_data_dir_before_any_upload() {
    let env = Env::new();
    let mode = WalMode::Object {
        window: std::time::Duration::from_millis(2),
    };
    let first = tempfile::tempdir().expect("tempdir");
    let log = env.open_with(first.path(), mode.clone()).await;
    log.create_topic(
        "ow",
        TopicConfig {
            partitions: 2,
            configs: Default::default(),
        },
    )
    .await
    .expect("create");
    let mut expected = Vec::new();
    for i in 0..4 {
        let p = log.partition("ow", 0).expect("p");
        log.append(&p, batch(2, 100 * i, None))
            .await
            .expect("append");
        expected.extend((0..2).map(|j| (2 * i + j, format!("value-{}-{j}", 100 * i))));
    }
    log.kv_put(vec![("g".into(), Some("7".into()))])
        .await
        .expect("kv");
    // kill -9 before any upload, and the local disk is gone.
    log.abandon().await;
    drop(log);
    drop(first);

    let second = tempfile::tempdir().expect("tempdir");
    let log = env.open_with(second.path(), mode.clone()).await;
    assert_eq!(read_all(&log, "ow", 0).await, expected);
    assert_eq!(log.kv_at_open().get("g").map(String::as_str), Some("7"));
    // After an upload the WAL objects are gone and a third broker still sees
    // everything, from data objects this time.
    log.upload_once().await.expect("upload");
    log.abandon().await;
    drop(log);
    let third = tempfile::tempdir().expect("tempdir");
    let log = env.open_with(third.path(), mode).await;
    assert_eq!(read_all(&log, "ow", 0).await, expected);
    assert_eq!(log.kv_at_open().get("g").map(String::as_str), Some("7"));
    let store = env.store();
    let wal = object_store::path::Path::from("wal");
    let left: Vec<_> = futures::TryStreamExt::try_collect(store.list(Some(&wal)))
        .await
        .expect("list");
    assert!(left.is_empty(), "WAL objects left after upload: {left:?}");
}

#[tokio::test]
async fn retention_drops_old_runs_moves_the_log_start_and_collects_their_objects() {
    let env = Env::new();
    let mut c = LogConfig::new(env.data.path());
    c.gc_grace = std::time::Duration::ZERO;
    c.lease_interval = std::time::Duration::from_millis(10);
    let log = Log::open(c, env.store()).await.expect("open");
    let by_size = [("retention.bytes".to_string(), "1".to_string())]
        .into_iter()
        .collect();
    log.create_topic(
        "small",
        TopicConfig {
            partitions: 1,
            configs: by_size,
        },
    )
    .await
    .expect("create");
    let by_time = [("retention.ms".to_string(), "86400000".to_string())]
        .into_iter()
        .collect();
    log.create_topic(
        "old",
        TopicConfig {
            partitions: 1,
            configs: by_time,
        },
    )
    .await
    .expect("create");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let small = log.partition("small", 0).expect("p");
    let old = log.partition("old", 0).expect("p");
    for i in 0..3 {
        log.append(&small, batch(2, now + i, None))
            .await
            .expect("append");
        // Two days old: past the one-day retention.
        log.append(&old, batch(1, now - 2 * 86_400_000, None))
            .await
            .expect("append");
        log.upload_once().await.expect("upload");
    }
    let stats = log.enforce_retention().await.expect("retention");
    // "small" keeps only its newest run; "old" loses all three.
    assert_eq!(stats.runs_dropped, 2 + 3);
    assert_eq!(small.log_start_offset(), 4);
    assert_eq!(old.log_start_offset(), 3);
    assert!(matches!(
        log.read(&small, 0, 1 << 20).await,
        Err(StorageError::OffsetOutOfRange { start: 4, .. })
    ));
    assert_eq!(read_all(&log, "small", 0).await.len(), 2);
    assert!(log
        .read(&old, 3, 1 << 20)
        .await
        .expect("read")
        .records
        .is_empty());
    // The first two objects held only dropped runs; the third still holds
    // "small"'s newest run.
    assert_eq!(stats.objects_deleted, 2);
    let listed: Vec<_> = futures::TryStreamExt::try_collect(
        env.store()
            .list(Some(&object_store::path::Path::from("objects"))),
    )
    .await
    .expect("list");
    assert_eq!(listed.len(), 1);
    // The new log start survives a restart.
    log.abandon().await;
    drop(log);
    let log = env.open().await;
    assert_eq!(log.partition("small", 0).expect("p").log_start_offset(), 4);
}

#[tokio::test]
async fn compaction_merges_small_runs_into_one_segment_and_frees_their_objects() {
    let env = Env::new();
    let mut c = LogConfig::new(env.data.path());
    c.gc_grace = std::time::Duration::ZERO;
    c.lease_interval = std::time::Duration::from_millis(10);
    c.cache_bytes_per_partition = 0;
    let log = Log::open(c, env.store()).await.expect("open");
    log.create_topic(
        "c",
        TopicConfig {
            partitions: 1,
            configs: Default::default(),
        },
    )
    .await
    .expect("create");
    let p = log.partition("c", 0).expect("p");
    let mut expected = Vec::new();
    for i in 0..10 {
        log.append(&p, batch(3, 10 * i, None))
            .await
            .expect("append");
        expected.extend((0..3).map(|j| (3 * i + j, format!("value-{}-{j}", 10 * i))));
        log.upload_once().await.expect("upload");
    }
    assert_eq!(log.compaction_backlog(), 10);
    let stats = log.compact_once().await.expect("compact");
    assert_eq!((stats.segments, stats.runs_merged), (1, 10));
    assert_eq!(log.compaction_backlog(), 0);
    assert_eq!(read_all(&log, "c", 0).await, expected);
    // Nothing references the ten data objects any more.
    assert_eq!(log.collect_garbage().await.expect("gc"), 10);
    // Timestamp lookups work on the merged segment.
    let hit = log.offset_for_timestamp(&p, 41).await.expect("lookup");
    assert_eq!(hit.map(|h| (h.offset, h.timestamp)), Some((13, 41)));
    log.abandon().await;
    drop(log);
    let fresh = tempfile::tempdir().expect("tempdir");
    let log = env.open_in(fresh.path()).await;
    assert_eq!(read_all(&log, "c", 0).await, expected);
}

#[tokio::test]
async fn an_object_wal_broker_learns_it_was_fenced_on_its_next_write_and_stays_fenced() {
    let env = Env::new();
    let mode = WalMode::Object {
        window: std::time::Duration::from_millis(1),
    };
    let a = env.open_with(env.data.path(), mode.clone()).await;
    a.create_topic(
        "fo",
        TopicConfig {
            partitions: 1,
            configs: Default::default(),
        },
    )
    .await
    .expect("create");
    let other = tempfile::tempdir().expect("tempdir");
    let b = env.open_with(other.path(), mode).await;
    let p = a.partition("fo", 0).expect("p");
    for attempt in 0..3 {
        match a.append(&p, batch(1, 0, None)).await {
            Err(vigil_storage::AppendError::Storage(StorageError::Fenced { .. })) => {}
            other => panic!("attempt {attempt}: expected Fenced, got {other:?}"),
        }
    }
    assert!(a.is_fenced());
    assert_eq!(p.high_watermark(), 0, "nothing was acknowledged");
    let pb = b.partition("fo", 0).expect("p");
    assert_eq!(
        b.append(&pb, batch(1, 0, None))
            .await
            .expect("new owner writes"),
        AppendOutcome::Appended { base_offset: 0 }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_owner_makes_a_newcomer_refuse_unless_it_takes_over() {
    let env = Env::new();
    let config = |dir: &std::path::Path, takeover: bool| {
        let mut c = LogConfig::new(dir);
        c.lease_interval = std::time::Duration::from_millis(20);
        c.takeover = takeover;
        c
    };
    let a = Log::open(config(env.data.path(), false), env.store())
        .await
        .expect("open a");
    let (stop_a, rx) = tokio::sync::watch::channel(false);
    let renewal = a.spawn_lease_renewal(rx);
    a.create_topic(
        "l",
        TopicConfig {
            partitions: 1,
            configs: Default::default(),
        },
    )
    .await
    .expect("create");

    let b_dir = tempfile::tempdir().expect("tempdir");
    match Log::open(config(b_dir.path(), false), env.store()).await {
        Err(StorageError::OwnedElsewhere { epoch, .. }) => assert_eq!(epoch, a.epoch()),
        Ok(_) => panic!("a newcomer must not silently take over a live owner"),
        Err(e) => panic!("unexpected error {e}"),
    }
    // A keeps serving.
    let p = a.partition("l", 0).expect("p");
    a.append(&p, batch(1, 0, None))
        .await
        .expect("a still writes");

    // Forced takeover fences A.
    let b = Log::open(config(b_dir.path(), true), env.store())
        .await
        .expect("takeover");
    assert!(b.epoch() > a.epoch());
    assert!(a
        .create_topic(
            "m",
            TopicConfig {
                partitions: 1,
                configs: Default::default()
            }
        )
        .await
        .is_err());
    assert!(a.is_fenced());

    // A crashes (renewals stop, no release): a third broker waits out the
    // lease and starts. B never renewed, so only A's stale lease is there.
    let _ = stop_a.send(true);
    renewal.await.expect("renewal task");
    drop(a);
    let c_dir = tempfile::tempdir().expect("tempdir");
    let c = Log::open(config(c_dir.path(), false), env.store())
        .await
        .expect("owner is gone");
    // A clean close releases the lease: the next broker starts at once.
    c.close().await;
    let d_dir = tempfile::tempdir().expect("tempdir");
    Log::open(config(d_dir.path(), false), env.store())
        .await
        .expect("released lease");
    drop(b);
}

#[tokio::test]
async fn producer_ids_never_handed_out_are_refused_and_leave_no_state() {
    let env = Env::new();
    let log = env.open().await;
    log.create_topic(
        "forged",
        TopicConfig {
            partitions: 1,
            configs: Default::default(),
        },
    )
    .await
    .expect("create");
    let p = log.partition("forged", 0).expect("p");
    // Before any InitProducerId nothing was handed out.
    match log.append(&p, batch(1, 0, Some((0, 0)))).await {
        Err(vigil_storage::AppendError::UnknownProducerId {
            producer_id: 0,
            issued_below: 0,
            ..
        }) => {}
        other => panic!("expected UnknownProducerId, got {other:?}"),
    }
    let pid = log.allocate_producer_id().await.expect("pid");
    for forged in [pid + 1_000_000, i64::MAX, 5_000_000_000] {
        assert!(
            matches!(
                log.append(&p, batch(1, 0, Some((forged, 0)))).await,
                Err(vigil_storage::AppendError::UnknownProducerId { .. })
            ),
            "producer id {forged} was never handed out"
        );
    }
    assert_eq!(
        log.append(&p, batch(1, 0, Some((pid, 0))))
            .await
            .expect("append"),
        AppendOutcome::Appended { base_offset: 0 }
    );
    // Non-idempotent batches are not affected.
    log.append(&p, batch(1, 0, None)).await.expect("append");
    log.upload_once().await.expect("upload");
    log.close().await;
    drop(log);
    // Only the real producer's state is persisted; ids handed out before
    // the restart stay valid after it.
    let log = env.open().await;
    let p = log.partition("forged", 0).expect("p");
    assert_eq!(
        log.append(&p, batch(1, 0, Some((pid, 0))))
            .await
            .expect("retry"),
        AppendOutcome::Duplicate { base_offset: 0 }
    );
    assert!(matches!(
        log.append(&p, batch(1, 0, Some((pid + 1_000_000, 0))))
            .await,
        Err(vigil_storage::AppendError::UnknownProducerId { .. })
    ));
}

#[tokio::test]
async fn the_partition_limit_counts_every_topic() {
    let env = Env::new();
    let mut c = LogConfig::new(env.data.path());
    c.lease_interval = std::time::Duration::from_millis(10);
    c.max_partitions = 5;
    let log = Log::open(c, env.store()).await.expect("open log");
    let topic = |partitions| TopicConfig {
        partitions,
        configs: Default::default(),
    };
    log.create_topic("a", topic(3)).await.expect("create a");
    match log.create_topic("b", topic(3)).await {
        Err(StorageError::TooManyPartitions {
            total: 6, limit: 5, ..
        }) => {}
        other => panic!("expected TooManyPartitions, got {other:?}"),
    }
    assert!(log.topic("b").is_none(), "nothing was created");
    log.create_topic("b", topic(2)).await.expect("create b");
    assert!(matches!(
        log.create_partitions("a", 4).await,
        Err(StorageError::TooManyPartitions { .. })
    ));
    log.delete_topic("b").await.expect("delete b");
    log.create_partitions("a", 5).await.expect("grow a");
    // Names: Kafka's 249 characters of [a-zA-Z0-9._-].
    log.delete_topic("a").await.expect("delete a");
    assert!(matches!(
        log.create_topic(&"x".repeat(250), topic(1)).await,
        Err(StorageError::Invalid(_))
    ));
    assert!(matches!(
        log.create_topic("bad/name", topic(1)).await,
        Err(StorageError::Invalid(_))
    ));
    log.create_topic(&"x".repeat(249), topic(1))
        .await
        .expect("249 characters are fine");
}
