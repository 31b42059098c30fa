//! Group holds (design 0019, "Alerts in the input's group commit"): the
//! local WAL writer waits, up to its hold time, for the readers gated on a
//! batch to queue their outputs, so batch and outputs share one fsync.

use crate::common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use vigil_storage::{Log, LogConfig};

use common::{batch, create_topic, StoreDir};

/// Upper bound of every wait here, and the hold time where a test needs
/// the hold never to run out.
const DEADLINE: Duration = Duration::from_secs(20);

async fn open(dir: &StoreDir, hold: Duration) -> (Arc<Log>, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("tempdir");
    let mut c = LogConfig::new(data.path());
    c.wal_group_hold = hold;
    let log = Log::open(c, dir.store()).await.expect("open log");
    (log, data)
}

fn groups(log: &Log) -> (u64, u64, u64) {
    let s = log.wal_stats();
    (
        s.groups.load(Ordering::SeqCst),
        s.held.load(Ordering::SeqCst),
        s.hold_timeouts.load(Ordering::SeqCst),
    )
}

#[tokio::test]
async fn a_batch_and_the_alerts_its_gated_reader_queues_share_one_group_commit() {
    let dir = StoreDir::new();
    let (log, _data) = open(&dir, DEADLINE).await;
    create_topic(&log, "in", 1).await;
    create_topic(&log, "alerts", 1).await;
    let input = log.partition("in", 0).expect("partition");
    let alerts = log.partition("alerts", 0).expect("partition");
    let gate = log.ack_gate(&input, 0, DEADLINE, true);
    let before = groups(&log);

    let pending = log
        .start_append(&input, batch("record", None))
        .await
        .expect("start");
    let ack = tokio::spawn(pending.wait());
    // The reader sees the batch before it is durable...
    let read = log
        .read_unacked(&input, 0, 1 << 20)
        .await
        .expect("gated read");
    assert!(!read.records.is_empty());
    // ...and the writer holds the batch's group for the reader's alerts.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        input.high_watermark(),
        0,
        "written before the gated reader queued its alerts"
    );
    let alert = log
        .start_append(&alerts, batch("alert", None))
        .await
        .expect("start alert");
    gate.queued(1);
    tokio::time::timeout(DEADLINE, alert.wait())
        .await
        .expect("alert durable")
        .expect("alert append");
    gate.advance(1);
    tokio::time::timeout(DEADLINE, ack)
        .await
        .expect("ack")
        .expect("join")
        .expect("append");
    let after = groups(&log);
    assert_eq!(
        (after.0 - before.0, after.1 - before.1, after.2 - before.2),
        (1, 1, 0),
        "batch and alert in one held group, met before its hold time"
    );
    assert_eq!((input.high_watermark(), alerts.high_watermark()), (1, 1));
}

#[tokio::test]
async fn a_reader_that_lets_its_holds_go_or_stops_holds_no_group() {
    let dir = StoreDir::new();
    let (log, _data) = open(&dir, DEADLINE).await;
    create_topic(&log, "in", 1).await;
    let input = log.partition("in", 0).expect("partition");

    // Released: the writer stops waiting for this reader at once.
    let gate = log.ack_gate(&input, 0, Duration::ZERO, true);
    let pending = log
        .start_append(&input, batch("a", None))
        .await
        .expect("start");
    gate.release_groups();
    tokio::time::timeout(DEADLINE, pending.wait())
        .await
        .expect("durable once the reader let go")
        .expect("append");

    // Dropped (a runner that stopped): likewise.
    let gate = log.ack_gate(&input, 1, Duration::ZERO, true);
    let pending = log
        .start_append(&input, batch("b", None))
        .await
        .expect("start");
    drop(gate);
    tokio::time::timeout(DEADLINE, pending.wait())
        .await
        .expect("durable once the reader is gone")
        .expect("append");

    // A gate opened without group holds never holds a group.
    let _gate = log.ack_gate(&input, 2, Duration::ZERO, false);
    tokio::time::timeout(DEADLINE, log.append(&input, batch("c", None)))
        .await
        .expect("durable without waiting")
        .expect("append");
    assert_eq!(groups(&log).2, 0, "no hold ran out");
}

#[tokio::test]
async fn the_hold_time_bounds_a_reader_that_never_reports() {
    let dir = StoreDir::new();
    let (log, _data) = open(&dir, Duration::from_millis(30)).await;
    create_topic(&log, "in", 1).await;
    let input = log.partition("in", 0).expect("partition");
    let _gate = log.ack_gate(&input, 0, Duration::ZERO, true);
    let pending = log
        .start_append(&input, batch("a", None))
        .await
        .expect("start");
    tokio::time::timeout(DEADLINE, pending.wait())
        .await
        .expect("durable after the hold time")
        .expect("append");
    // Counted before the group was written.
    assert_eq!(groups(&log).2, 1, "one hold ran out");
}

#[tokio::test]
async fn the_alerts_wal_completion_advances_the_gate_and_releases_the_ack() {
    // No hold: the alert takes its own group, and the reader never calls
    // `advance` itself; the ack goes because the alert's completion
    // advanced the gate.
    let dir = StoreDir::new();
    let (log, _data) = open(&dir, Duration::ZERO).await;
    create_topic(&log, "in", 1).await;
    create_topic(&log, "alerts", 1).await;
    let input = log.partition("in", 0).expect("partition");
    let alerts = log.partition("alerts", 0).expect("partition");
    let gate = log.ack_gate(&input, 0, DEADLINE, true);
    let pending = log
        .start_append(&input, batch("record", None))
        .await
        .expect("start");
    let ack = tokio::spawn(pending.wait());
    let alert = log
        .start_append_then(
            &alerts,
            batch("alert", None),
            Some(gate.advance_on_durable(1)),
        )
        .await
        .expect("start alert");
    gate.queued(1);
    tokio::time::timeout(DEADLINE / 2, ack)
        .await
        .expect("ack before the gate's budget: the completion advanced it")
        .expect("join")
        .expect("append");
    assert_eq!(gate.position(), 1);
    assert_eq!(input.ack_gate_misses(), 0);
    tokio::time::timeout(DEADLINE, alert.wait())
        .await
        .expect("alert durable")
        .expect("alert append");
}
