//! Handing a partition over and taking it back: a released partition
//! refuses appends and reads with NotLeader and leaves everything it
//! acknowledged in the object store; an acquired one continues from its
//! partition manifest in a new leader epoch, idempotent producers included;
//! and no append is acknowledged unless the leadership check passes.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use vigil_storage::leadership::{LeaderCheckError, Leadership};
use vigil_storage::manifest::ManifestStore;
use vigil_storage::{AppendError, AppendOutcome, Log, StorageError};

use crate::common;

use common::{batch, create_topic, StoreDir};

async fn open(env: &StoreDir) -> (Arc<Log>, tempfile::TempDir) {
    let (log, data) = env.open_fresh().await;
    create_topic(&log, "t", 2).await;
    (log, data)
}

fn is_not_leader(e: &AppendError) -> bool {
    matches!(e, AppendError::Storage(StorageError::NotLeader { .. }))
}

fn is_unconfirmed(e: &AppendError) -> bool {
    matches!(
        e,
        AppendError::Storage(StorageError::OwnershipUnconfirmed { .. })
    )
}

#[tokio::test]
async fn a_released_partition_refuses_work_and_an_acquired_one_continues_from_the_store() {
    let env = StoreDir::new();
    let (log, _data) = open(&env).await;
    let pid = log.allocate_producer_id().await.expect("pid");
    let p0 = log.partition("t", 0).expect("p0");
    let first_epoch = p0.leader_epoch();
    for (seq, tag) in ["a", "b", "c"].iter().enumerate() {
        log.append(&p0, batch(tag, Some((pid, seq as i32))))
            .await
            .expect("append");
    }

    log.release_partition("t", 0).await.expect("release");
    let refused = log
        .append(&p0, batch("x", None))
        .await
        .expect_err("refused");
    assert!(is_not_leader(&refused), "{refused:?}");
    assert!(matches!(
        log.read(&p0, 0, 1 << 20).await,
        Err(StorageError::NotLeader { .. })
    ));
    // The other partition is not affected.
    let p1 = log.partition("t", 1).expect("p1");
    log.append(&p1, batch("other", None))
        .await
        .expect("p1 append");
    // Everything acknowledged is in the store, with nothing left in the WAL
    // that only this broker could replay.
    let stored = ManifestStore::new(log.object_store())
        .load_latest()
        .await
        .expect("load")
        .expect("manifest");
    assert_eq!(stored.topics["t"].partitions[0].uploaded_next, 3);

    let next_epoch = first_epoch + 5;
    let p0 = log
        .acquire_partition("t", 0, next_epoch)
        .await
        .expect("acquire");
    assert!(p0.is_serving());
    assert_eq!(p0.leader_epoch(), next_epoch);
    assert_eq!(p0.high_watermark(), 3);
    // A producer's retry from before the handover is still a duplicate.
    assert_eq!(
        log.append(&p0, batch("c", Some((pid, 2))))
            .await
            .expect("retry"),
        AppendOutcome::Duplicate { base_offset: 2 }
    );
    assert_eq!(
        log.append(&p0, batch("d", Some((pid, 3))))
            .await
            .expect("append"),
        AppendOutcome::Appended { base_offset: 3 }
    );
    assert_eq!(p0.end_offset_for_epoch(first_epoch), (first_epoch, 3));
    let read = log.read(&p0, 0, 1 << 20).await.expect("read");
    assert!(!read.records.is_empty());
    // Epochs only grow.
    assert!(log.acquire_partition("t", 0, first_epoch).await.is_err());
    log.close().await;
}

/// A log whose leadership check the test switches (see [`Switch`]).
async fn open_switched() -> (StoreDir, Arc<Log>, tempfile::TempDir, Arc<Switch>) {
    let env = StoreDir::new();
    let (log, data) = open(&env).await;
    let switch = Arc::new(Switch::default());
    log.set_leadership(switch.clone());
    (env, log, data, switch)
}

/// The log's lease renewal, as a broker runs it.
struct Renewal {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Renewal {
    fn start(log: &Arc<Log>) -> Self {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let task = log.spawn_lease_renewal(rx);
        Renewal { stop, task }
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        self.task.await.expect("renewal task");
    }
}

/// A leadership check whose answer a test switches: 0 leads, 1 not the
/// leader, 2 unconfirmed.
#[derive(Default)]
struct Switch(AtomicU8);

impl Leadership for Switch {
    fn check(&self, _: &str, _: i32, _: i32) -> Result<(), LeaderCheckError> {
        match self.0.load(Ordering::SeqCst) {
            0 => Ok(()),
            1 => Err(LeaderCheckError::NotLeader("moved to broker 2".into())),
            _ => Err(LeaderCheckError::Unconfirmed("session not renewed".into())),
        }
    }
}

#[tokio::test]
async fn no_append_is_acknowledged_unless_the_leadership_check_passes() {
    let (_env, log, _data, switch) = open_switched().await;
    let p = log.partition("t", 0).expect("p");
    log.append(&p, batch("a", None)).await.expect("leads");

    switch.0.store(1, Ordering::SeqCst);
    let e = log
        .append(&p, batch("b", None))
        .await
        .expect_err("not leader");
    assert!(is_not_leader(&e), "{e:?}");
    assert_eq!(p.high_watermark(), 1, "a refused ack must not publish");

    switch.0.store(2, Ordering::SeqCst);
    let e = log
        .append(&p, batch("c", None))
        .await
        .expect_err("unconfirmed");
    assert!(is_unconfirmed(&e), "{e:?}");
    assert_eq!(p.high_watermark(), 1);

    switch.0.store(0, Ordering::SeqCst);
    log.append(&p, batch("d", None)).await.expect("leads again");
    log.close().await;
}

/// A broker that lost a partition (paused past its session, say) still has
/// the producer state it had then; another leader has taken sequences
/// since. Its answer to the producer's next batch must be NOT_LEADER /
/// unconfirmed, which clients retry elsewhere, never a sequence error,
/// which is fatal to an idempotent producer (found by
/// tests/clients/test_cluster_faults.py: librdkafka failed with
/// OUT_OF_ORDER_SEQUENCE_NUMBER from a resumed broker).
#[tokio::test]
async fn a_lost_partition_answers_a_sequence_gap_with_not_leader() {
    let (_env, log, _data, switch) = open_switched().await;
    let pid = log.allocate_producer_id().await.expect("pid");
    let p = log.partition("t", 0).expect("p");
    log.append(&p, batch("a", Some((pid, 0))))
        .await
        .expect("leads");

    // Sequences 1..=4 went to the new leader meanwhile.
    switch.0.store(1, Ordering::SeqCst);
    let e = log
        .append(&p, batch("f", Some((pid, 5))))
        .await
        .expect_err("not leader");
    assert!(is_not_leader(&e), "{e:?}");

    switch.0.store(2, Ordering::SeqCst);
    let e = log
        .append(&p, batch("f", Some((pid, 5))))
        .await
        .expect_err("unconfirmed");
    assert!(is_unconfirmed(&e), "{e:?}");
    // While it leads, a gap is still the producer's error.
    switch.0.store(0, Ordering::SeqCst);
    let e = log
        .append(&p, batch("f", Some((pid, 5))))
        .await
        .expect_err("gap");
    assert!(matches!(e, AppendError::OutOfOrder { .. }), "{e:?}");
    log.close().await;
}

/// Appends written to the WAL but refused at acknowledgement (the broker
/// was no longer the leader) are settled: releasing the partition must not
/// wait the drain timeout for them (found by test_cluster_faults.py: a
/// resumed broker's placement stalled 30 s on such a release).
#[tokio::test]
async fn a_release_does_not_wait_for_appends_refused_at_acknowledgement() {
    let (_env, log, _data, switch) = open_switched().await;
    let p = log.partition("t", 0).expect("p");
    log.append(&p, batch("a", None)).await.expect("leads");
    switch.0.store(1, Ordering::SeqCst);
    let e = log
        .append(&p, batch("b", None))
        .await
        .expect_err("not leader");
    assert!(is_not_leader(&e), "{e:?}");
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        log.release_partition("t", 0),
    )
    .await
    .expect("release within 5 s (the drain timeout is 30 s)")
    .expect("release");
    log.close().await;
}

/// A batch written while the leadership was unconfirmed (a cluster node cut
/// off from its coordinator) must not become acknowledged later unless the
/// leadership check passes then: the node's own store lease renewing is not
/// enough, another node may lead the partition by now (found by
/// test_cluster_faults.py::test_etcd_restart: with etcd down past the
/// session TTL, retried batches kept being acknowledged).
#[tokio::test]
async fn a_write_refused_as_unconfirmed_is_not_published_until_the_leadership_check_passes() {
    let (_env, log, _data, switch) = open_switched().await;
    let renewal = Renewal::start(&log);
    let pid = log.allocate_producer_id().await.expect("pid");
    let p = log.partition("t", 0).expect("p");

    switch.0.store(2, Ordering::SeqCst);
    let e = log
        .append(&p, batch("a", Some((pid, 0))))
        .await
        .expect_err("unconfirmed");
    assert!(is_unconfirmed(&e), "{e:?}");
    // The producer retries while the leadership stays unconfirmed: over
    // many lease renewals (10 ms each) nothing is acknowledged.
    let retry = log.append(&p, batch("a", Some((pid, 0))));
    tokio::pin!(retry);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(500), &mut retry)
            .await
            .is_err(),
        "a retry was acknowledged while the leadership was unconfirmed"
    );
    assert_eq!(p.high_watermark(), 0);
    // Confirmed again: the next renewal publishes it and the retry is
    // answered from the original append.
    switch.0.store(0, Ordering::SeqCst);
    let ack = tokio::time::timeout(std::time::Duration::from_secs(10), retry)
        .await
        .expect("acknowledged once the leadership is confirmed")
        .expect("retry");
    assert_eq!(ack, AppendOutcome::Duplicate { base_offset: 0 });
    renewal.stop().await;
    log.close().await;
}

/// A produce request whose batch reached the WAL while the leadership was
/// briefly unconfirmed waits (as Kafka's produce purgatory does) for the
/// check to pass and is answered with its offsets. Refusing it at once
/// made librdkafka, whose next pipelined batch then succeeded, report the
/// first one delivered without an offset (found by
/// tests/clients/test_cluster_detectors.py on a loaded machine).
#[tokio::test]
async fn an_append_written_while_unconfirmed_is_acknowledged_once_the_check_passes() {
    let (_env, log, _data, switch) = open_switched().await;
    // As in a broker: the lease renewal keeps the log's own ownership
    // confirmed (its validity is 20 ms in these tests).
    let renewal = Renewal::start(&log);
    let pid = log.allocate_producer_id().await.expect("pid");
    let p = log.partition("t", 0).expect("p");

    switch.0.store(2, Ordering::SeqCst);
    let append = tokio::spawn({
        let (log, p) = (log.clone(), p.clone());
        async move { log.append(&p, batch("a", Some((pid, 0)))).await }
    });
    common::wait_until("the batch to be written unconfirmed", || {
        p.written_unconfirmed() == 1
    })
    .await;
    switch.0.store(0, Ordering::SeqCst);
    let ack = tokio::time::timeout(std::time::Duration::from_secs(10), append)
        .await
        .expect("answered within 10 s")
        .expect("task")
        .expect("acknowledged once the leadership is confirmed");
    assert_eq!(ack, AppendOutcome::Appended { base_offset: 0 });
    assert_eq!(p.high_watermark(), 1);
    renewal.stop().await;
    log.close().await;
}
