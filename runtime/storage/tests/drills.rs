//! Recovery drills against a failing object store (a fault-injecting wrapper
//! around a real local-filesystem store): writes stall or fail retriably,
//! nothing acknowledged is lost, and the log recovers by itself.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use vigil_protocol::kafka_protocol::records::Compression;
use vigil_protocol::BatchBuilder;
use vigil_storage::config::WalMode;
use vigil_storage::store::{FaultControl, FaultKind, FaultyStore};
use vigil_storage::{AppendError, AppendOutcome, Log, LogConfig, StorageError, TopicConfig};

fn batch(tag: &str) -> Bytes {
    BatchBuilder::new(Compression::Lz4)
        .record(1, None, Some(Bytes::from(tag.to_string())))
        .build()
        .expect("encode")
}

struct Env {
    objects: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            objects: tempfile::tempdir().expect("tempdir"),
        }
    }
    fn inner(&self) -> Arc<dyn ObjectStore> {
        Arc::new(LocalFileSystem::new_with_prefix(self.objects.path()).expect("store"))
    }
    async fn open(
        &self,
        data: &std::path::Path,
        mode: WalMode,
        faulty: bool,
    ) -> (Arc<Log>, Option<FaultControl>) {
        let mut c = LogConfig::new(data);
        c.wal_mode = mode;
        // A crashed owner's lease is waited out for 3 intervals at open.
        c.lease_interval = Duration::from_millis(10);
        c.cache_bytes_per_partition = 0;
        let (store, control): (Arc<dyn ObjectStore>, _) = if faulty {
            let f = FaultyStore::new(self.inner());
            let control = f.control();
            (Arc::new(f), Some(control))
        } else {
            (self.inner(), None)
        };
        (Log::open(c, store).await.expect("open"), control)
    }
}

/// Waits (bounded) until the store has refused at least `n` writes.
async fn until_refused(control: &FaultControl, n: u64) {
    for _ in 0..2_000 {
        if control.counts(FaultKind::Write).failed >= n {
            return;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the store never saw {n} write attempts");
}

/// Every record value of partition 0, reading as a consumer does (one
/// fetch may stop at the end of a run).
async fn values(log: &Log, topic: &str) -> Vec<String> {
    let p = log.partition(topic, 0).expect("p");
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < p.high_watermark() {
        let mut bytes = log.read(&p, offset, 1 << 20).await.expect("read").records;
        let records: Vec<_> =
            vigil_protocol::kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes)
                .expect("decode")
                .into_iter()
                .flat_map(|s| s.records)
                .collect();
        let last = records.last().map(|r| r.offset).expect("progress");
        out.extend(
            records
                .into_iter()
                .filter(|r| r.offset >= offset)
                .map(|r| String::from_utf8_lossy(&r.value.unwrap_or_default()).into_owned()),
        );
        offset = last + 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_wal_stalls_while_the_store_fails_and_lands_once_it_recovers() {
    let env = Env::new();
    let data = tempfile::tempdir().expect("tempdir");
    let mode = WalMode::Object {
        window: Duration::from_millis(1),
    };
    let (log, control) = env.open(data.path(), mode.clone(), true).await;
    let control = control.expect("faulty");
    log.create_topic(
        "d",
        TopicConfig {
            partitions: 1,
            configs: Default::default(),
        },
    )
    .await
    .expect("create");
    let p = log.partition("d", 0).expect("p");
    log.append(&p, batch("before")).await.expect("append");

    control.fail_all(FaultKind::Write, true);
    let writer = {
        let (log, p) = (log.clone(), p.clone());
        tokio::spawn(async move { log.append(&p, batch("during")).await })
    };
    until_refused(&control, 3).await;
    assert!(
        !writer.is_finished(),
        "an append must not be acknowledged while the store refuses it"
    );
    assert_eq!(p.high_watermark(), 1, "nothing unacknowledged is visible");

    control.fail_all(FaultKind::Write, false);
    let outcome = writer.await.expect("task").expect("append after recovery");
    assert_eq!(outcome, AppendOutcome::Appended { base_offset: 1 });
    log.abandon().await;
    drop(log);

    // A broker with no local state sees both records.
    let fresh = tempfile::tempdir().expect("tempdir");
    let (log, _) = env.open(fresh.path(), mode, false).await;
    assert_eq!(values(&log, "d").await, vec!["before", "during"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_wal_keeps_acking_while_uploads_and_reads_fail_then_catches_up() {
    let env = Env::new();
    let data = tempfile::tempdir().expect("tempdir");
    let (log, control) = env.open(data.path(), WalMode::Local, true).await;
    let control = control.expect("faulty");
    log.create_topic(
        "u",
        TopicConfig {
            partitions: 1,
            configs: Default::default(),
        },
    )
    .await
    .expect("create");
    let p = log.partition("u", 0).expect("p");
    log.append(&p, batch("a")).await.expect("append");
    log.upload_once().await.expect("upload");

    // Reads of uploaded data fail retriably while the store is down.
    control.fail_all(FaultKind::Read, true);
    match log.read(&p, 0, 1 << 20).await {
        Err(e @ StorageError::ObjectStore { .. }) => assert!(e.is_retriable()),
        other => panic!("expected a retriable store error, got {other:?}"),
    }
    control.fail_all(FaultKind::Read, false);

    // Uploads fail retriably; produce is unaffected (the local WAL acks,
    // and the store still answers the ownership check).
    control.fail_all(FaultKind::Write, true);
    log.append(&p, batch("b"))
        .await
        .expect("append while the store is down");
    match log.upload_once().await {
        Err(e) => assert!(e.is_retriable(), "{e}"),
        Ok(s) => panic!("upload should fail, got {s:?}"),
    }
    assert!(!log.upload_lag().is_zero());

    control.clear();
    assert_eq!(values(&log, "u").await, vec!["a", "b"]);
    log.upload_once().await.expect("upload after recovery");
    assert!(log.upload_lag().is_zero());
    log.abandon().await;
    drop(log);
    let fresh = tempfile::tempdir().expect("tempdir");
    let (log, _) = env.open(fresh.path(), WalMode::Local, false).await;
    assert_eq!(values(&log, "u").await, vec!["a", "b"]);
}

/// Issue 11 item 1, the price of fencing through the store: a broker that
/// cannot list the epoch claims for longer than its confirmation lasts
/// cannot know it still owns the log, so it answers a retriable error
/// instead of an acknowledgement, and acknowledges again once the store
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_pause_while_ownership_cannot_be_confirmed_and_resume() {
    for mode in wal_modes() {
        let env = Env::new();
        let data = tempfile::tempdir().expect("tempdir");
        let (log, control) = env.open(data.path(), mode.clone(), true).await;
        let control = control.expect("faulty");
        log.create_topic("o", topic()).await.expect("create");
        let p = log.partition("o", 0).expect("p");
        log.append(&p, batch("a")).await.expect("append");

        control.fail_all(FaultKind::Read, true);
        for _ in 0..2_000 {
            if !log.ownership_confirmed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(
            !log.ownership_confirmed(),
            "{mode:?}: the confirmation never expired"
        );
        match log.append(&p, batch("b")).await {
            Err(AppendError::Storage(e @ StorageError::OwnershipUnconfirmed { .. })) => {
                assert!(e.is_retriable(), "{mode:?}: {e}");
            }
            Err(e) => panic!("{mode:?}: expected an unconfirmed ownership, got {e}"),
            Ok(o) => panic!("{mode:?}: acknowledged without confirmed ownership: {o:?}"),
        }
        assert!(
            !log.is_fenced(),
            "{mode:?}: an unreachable store is not a takeover"
        );

        control.clear();
        log.append(&p, batch("c")).await.expect("acks resume");
        // "b" was written before its acknowledgement was refused: like a
        // timeout, the refusal says "unknown", and the retry of an
        // idempotent producer finds it.
        assert_eq!(values(&log, "o").await, vec!["a", "b", "c"], "{mode:?}");
        log.abandon().await;
    }
}

/// Both WAL modes, the object one with a short batching window.
fn wal_modes() -> [WalMode; 2] {
    [
        WalMode::Local,
        WalMode::Object {
            window: Duration::from_millis(1),
        },
    ]
}

fn topic() -> TopicConfig {
    TopicConfig {
        partitions: 1,
        configs: Default::default(),
    }
}

/// Issue 11 item 2: a manifest PUT that lands but is reported failed (lost
/// reply, timeout, 5xx after the write) made the next commit of that
/// version find its own earlier write and fence the broker for good.
#[tokio::test]
async fn a_manifest_write_reported_failed_after_it_landed_does_not_fence_the_broker() {
    for mode in wal_modes() {
        let env = Env::new();
        let data = tempfile::tempdir().expect("tempdir");
        let (log, control) = env.open(data.path(), mode.clone(), true).await;
        let control = control.expect("faulty store");
        control.fail_after_write_next(1);
        // The create either reports success (its own write is recognised)
        // or an error; either way the broker must keep working.
        let first = log.create_topic("landed", topic()).await;
        assert_eq!(control.counts(FaultKind::Write).failed_after_write, 1);
        log.create_topic("next", topic())
            .await
            .unwrap_or_else(|e| panic!("{mode:?}: the broker fenced itself: {e}"));
        assert!(!log.is_fenced());
        let p = log.partition("next", 0).expect("partition");
        assert_eq!(
            log.append(&p, batch("a")).await.expect("append"),
            AppendOutcome::Appended { base_offset: 0 }
        );
        log.close().await;
        drop(log);
        let (log, _) = env.open(data.path(), mode, false).await;
        assert!(log.topic("next").is_some());
        // What was reported is what is stored.
        assert_eq!(log.topic("landed").is_some(), first.is_ok());
        assert_eq!(values(&log, "next").await, vec!["a".to_string()]);
        log.abandon().await;
    }
}
