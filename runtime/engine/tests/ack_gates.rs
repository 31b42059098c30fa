//! Alerts in the producer's acknowledgement (design 0019): a caught-up live
//! runner holds acknowledgements until its alerts are durable, and reading
//! ahead of durability keeps alerts exactly-once when the WAL fails, with
//! or without a crash in between.

use crate::common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::Compression;
use vigil_engine::output::{header, headers, scan_records};
use vigil_engine::status::DeploymentStatus;
use vigil_engine::{Detectors, EngineSettings};
use vigil_protocol::batch::{set_base_offset, BatchBuilder};
use vigil_storage::leadership::{LeaderCheckError, Leadership};
use vigil_storage::Log;
use vigil_storage::Partition;

use common::*;

const NAME: &str = "gated";

/// One batch of one `{"amount": amount}` record.
fn record(amount: f64) -> Bytes {
    batch_of(&[serde_json::json!({ "amount": amount })])
}

/// One batch with one record per value.
fn batch_of(values: &[serde_json::Value]) -> Bytes {
    let now = chrono::Utc::now().timestamp_millis();
    let mut b = BatchBuilder::new(Compression::None);
    for v in values {
        b = b.record(now, None, Some(Bytes::from(v.to_string())));
    }
    let b = b.build().expect("batch");
    let mut w = BytesMut::from(&b[..]);
    set_base_offset(&mut w, 0);
    w.freeze()
}

/// How many alerts name each source offset.
async fn alerted(log: &Log) -> BTreeMap<i64, usize> {
    let p = log.partition("alerts", 0).expect("alert partition");
    let mut out = BTreeMap::new();
    scan_records(log, &p, 0, p.high_watermark(), 1 << 20, "alerts", |r| {
        let off = header(r, headers::SOURCE_OFFSET).and_then(|v| v.parse::<i64>().ok());
        *out.entry(off.expect("source offset header")).or_default() += 1;
    })
    .await
    .expect("scan alerts");
    out
}

fn once(offsets: &[i64]) -> BTreeMap<i64, usize> {
    offsets.iter().map(|o| (*o, 1)).collect()
}

/// A threshold deployment on `in` (amount > 1000) holding acks for up to
/// `budget_ms`, its runner caught up on `records` records and gated.
async fn deploy(det: &Detectors, budget_ms: u64, records: i64) {
    let hash = upload(det, THRESHOLD).await;
    let mut spec = threshold_spec(NAME, &hash, "in", "alerts");
    spec.ack_budget_ms = Some(budget_ms);
    det.deploy(spec).await.expect("deploy");
    wait_gated(det, records).await;
}

async fn wait_gated(det: &Detectors, offset: i64) {
    wait_for("the runner to hold acks", || async {
        let s = det.status(NAME).await.ok()?;
        let p = s.partitions.first()?;
        (p.ack_gate && p.offset >= offset).then_some(())
    })
    .await
}

/// A log with topic `in` and an engine whose deployment holds acks for up
/// to 10 s (longer than any runner here needs: the tests are exact).
async fn gated(env: &Env) -> (Arc<Log>, Arc<Detectors>) {
    let log = env.log().await;
    create_topic(&log, "in", 1).await;
    let det = env.engine(&log).await;
    deploy(&det, 10_000, 0).await;
    (log, det)
}

/// Waits until the runner queued alerts beyond the `durable` ones: it
/// scored input that is not durable yet (its alert append then waits).
async fn wait_alerts_queued(log: &Log, durable: i64) {
    let alerts = log.partition("alerts", 0).expect("alerts");
    wait_for("alerts about undurable input to be queued", || async {
        (alerts.log_end_offset() > durable).then_some(())
    })
    .await;
    assert_eq!(
        alerts.high_watermark(),
        durable,
        "alerts ahead of their input"
    );
}

#[tokio::test]
async fn an_acknowledged_record_has_its_alert_readable_already() {
    let env = Env::new();
    let (log, det) = gated(&env).await;
    let input = log.partition("in", 0).expect("input");
    let alerts = log.partition("alerts", 0).expect("alerts");
    let mut outliers = Vec::new();
    for i in 0..30i64 {
        let outlier = i % 3 == 0;
        log.append(&input, record(if outlier { 1e6 } else { 10.0 }))
            .await
            .expect("append");
        if outlier {
            outliers.push(i);
        }
        // No waiting: the acknowledgement itself says the alert is there.
        assert_eq!(
            alerts.high_watermark(),
            outliers.len() as i64,
            "after the ack of offset {i}"
        );
    }
    assert_eq!(alerted(&log).await, once(&outliers));
    assert_eq!(input.ack_gate_misses(), 0);
    close(det, log).await;
}

/// An engine on `log` whose deployment on `in` leaves acks alone
/// (`ack_budget_ms: 0`), its runner through 10 records whose outliers at 0
/// and 5 are alerted once each.
async fn ungated(env: &Env, log: &Arc<Log>) -> (Arc<Detectors>, DeploymentStatus) {
    create_topic(log, "in", 1).await;
    let det = env.engine(log).await;
    let hash = upload(&det, THRESHOLD).await;
    let mut spec = threshold_spec(NAME, &hash, "in", "alerts");
    spec.ack_budget_ms = Some(0);
    det.deploy(spec).await.expect("deploy");
    produce(log, "in", 0, 10, 1, 5).await;
    let s = wait_committed(&det, NAME, 10).await;
    assert_eq!(alerted(log).await, once(&[0, 5]));
    (det, s)
}

#[tokio::test]
async fn ack_budget_zero_leaves_acks_alone() {
    let env = Env::new();
    let log = env.log().await;
    let (det, s) = ungated(&env, &log).await;
    assert!(!s.partitions[0].ack_gate, "{s:?}");
    close(det, log).await;
}

/// An ungated runner on a busy tail waits out `tail-linger-ms` after its
/// previous read before the next (design 0019, "A busy tail waits for
/// company"); it still alerts every outlier once, and stopping it while it
/// lingers commits what it processed.
#[tokio::test]
async fn an_ungated_runner_lingers_on_a_busy_tail() {
    const LINGER: Duration = Duration::from_millis(400);
    let env = Env::new();
    let log = env.log().await;
    create_topic(&log, "in", 1).await;
    let det = env
        .engine_with(
            &log,
            EngineSettings {
                tail_linger_ms: LINGER.as_millis() as u64,
                ..settings()
            },
        )
        .await;
    let hash = upload(&det, THRESHOLD).await;
    let mut spec = threshold_spec(NAME, &hash, "in", "alerts");
    spec.ack_budget_ms = Some(0);
    det.deploy(spec).await.expect("deploy");
    let input = log.partition("in", 0).expect("input");
    let alerts = log.partition("alerts", 0).expect("alerts");
    wait_for("the runner to start", || async {
        let s = det.status(NAME).await.ok()?;
        (!s.partitions.is_empty()).then_some(())
    })
    .await;

    // The first record of a quiet tail is read at once; the second arrives
    // while the first read is recent, so its read waits for the linger.
    let first = std::time::Instant::now();
    log.append(&input, record(1e6)).await.expect("append");
    wait_for("the first alert", || async {
        (alerts.high_watermark() >= 1).then_some(())
    })
    .await;
    log.append(&input, record(1e6)).await.expect("append");
    wait_for("the second alert", || async {
        (alerts.high_watermark() >= 2).then_some(())
    })
    .await;
    assert!(
        first.elapsed() >= LINGER,
        "the second read came {:?} after the first record, within the linger",
        first.elapsed()
    );
    assert_eq!(alerted(&log).await, once(&[0, 1]));

    // A third lingers; stopping now commits the two processed records.
    log.append(&input, record(10.0)).await.expect("append");
    det.pause(NAME).await.expect("pause");
    let s = det.status(NAME).await.expect("status");
    assert!(
        s.partitions[0].committed_offset >= 2,
        "progress kept at the stop: {s:?}"
    );
    close(det, log).await;
}

/// Records the gated runner processed while the WAL could not write them
/// are lost with a crash, and their offsets reused by other records: the
/// alerts are exactly those of the records that exist.
#[tokio::test]
async fn a_crash_while_the_wal_fails_leaves_no_alert_of_lost_records() {
    let env = Env::object_wal();
    let (log, det) = gated(&env).await;
    produce(&log, "in", 0, 10, 1, 5).await;
    // Committed first: a commit in flight would wait on the failing WAL.
    wait_committed(&det, NAME, 10).await;
    wait_gated(&det, 10).await;
    assert_eq!(alerted(&log).await, once(&[0, 5]));

    fail_writes(&env.faults, true);
    let input = log.partition("in", 0).expect("input");
    let mut pending = Vec::new();
    for _ in 0..10 {
        pending.push(log.start_append(&input, record(1e6)).await.expect("queued"));
    }
    // The runner scores them from the tail; their alerts cannot land.
    wait_alerts_queued(&log, 2).await;
    assert_eq!(input.high_watermark(), 10);
    assert_eq!(
        alerted(&log).await,
        once(&[0, 5]),
        "alerts of undurable input"
    );

    // Crash: the WAL stops with the batches unwritten.
    log.abandon().await;
    for p in pending {
        assert!(
            p.wait().await.is_err(),
            "an unwritten batch was acknowledged"
        );
    }
    det.shutdown().await;
    drop(det);
    drop(log);
    env.faults.clear();

    let log = env.log().await;
    let input = log.partition("in", 0).expect("input");
    assert_eq!(
        input.log_end_offset(),
        10,
        "the lost batches' offsets are free"
    );
    let det = env.engine(&log).await;
    // Offsets 10..20 again, now ordinary amounts, then one outlier.
    for _ in 0..10 {
        log.append(&input, record(10.0)).await.expect("append");
    }
    log.append(&input, record(1e6)).await.expect("append");
    wait_committed(&det, NAME, 21).await;
    assert_eq!(alerted(&log).await, once(&[0, 5, 20]));
    close(det, log).await;
}

/// A WAL that fails for a while and recovers: the runner's early work
/// stands, each alert is written once, and every ack still implies its
/// alert.
#[tokio::test]
async fn a_wal_outage_without_a_crash_keeps_alerts_exactly_once() {
    let env = Env::object_wal();
    let (log, det) = gated(&env).await;
    let input = log.partition("in", 0).expect("input");
    let alerts = log.partition("alerts", 0).expect("alerts");

    fail_writes(&env.faults, true);
    let mut pending = Vec::new();
    for _ in 0..10 {
        pending.push(log.start_append(&input, record(1e6)).await.expect("queued"));
    }
    wait_alerts_queued(&log, 0).await;
    fail_writes(&env.faults, false);
    for p in pending {
        tokio::time::timeout(DEADLINE, p.wait())
            .await
            .expect("ack once the WAL recovers")
            .expect("append");
    }
    assert_eq!(
        alerts.high_watermark(),
        10,
        "acked before the alerts landed"
    );
    wait_committed(&det, NAME, 10).await;
    assert_eq!(alerted(&log).await, once(&(0..10).collect::<Vec<_>>()));

    // A restart re-processes nothing twice.
    close(det, log).await;
    let log: Arc<Log> = env.log().await;
    let det = env.engine(&log).await;
    produce(&log, "in", 0, 5, 1, 5).await;
    wait_committed(&det, NAME, 15).await;
    assert_eq!(alerted(&log).await, once(&(0..11).collect::<Vec<_>>()));
    close(det, log).await;
}

#[tokio::test]
async fn a_paused_deployment_holds_no_acks() {
    let env = Env::new();
    let (log, det) = gated(&env).await;
    let input = log.partition("in", 0).expect("input");
    // Pausing stops the runner, which drops its gate.
    det.pause(NAME).await.expect("pause");
    let t0 = std::time::Instant::now();
    log.append(&input, record(1e6)).await.expect("append");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(input.ack_gate_misses(), 0, "a paused runner held an ack");
    close(det, log).await;
}

/// Answers "unconfirmed" for the alert topic while `on` is set, as a
/// cluster member does whose coordinator session could not be renewed.
#[derive(Default)]
struct AlertsUnconfirmed {
    on: AtomicBool,
}

impl Leadership for AlertsUnconfirmed {
    fn check(&self, topic: &str, _: i32, _: i32) -> Result<(), LeaderCheckError> {
        if topic == "alerts" && self.on.load(SeqCst) {
            return Err(LeaderCheckError::Unconfirmed("session not renewed".into()));
        }
        Ok(())
    }
}

/// An alert append refused as "ownership unconfirmed" was written: once
/// ownership is confirmed it becomes visible. Writing it again would
/// publish the alert twice.
#[tokio::test]
async fn an_alert_written_while_leadership_was_unconfirmed_is_not_written_again() {
    let env = Env::new();
    let log = env.log().await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let renewal = log.spawn_lease_renewal(stop_rx);
    let (det, _) = ungated(&env, &log).await;

    let leadership = Arc::new(AlertsUnconfirmed::default());
    log.set_leadership(leadership.clone());
    leadership.on.store(true, SeqCst);
    let input = log.partition("in", 0).expect("input");
    log.append(&input, record(1e6)).await.expect("append");
    wait_for("the alert append to be refused as unconfirmed", || async {
        let s = det.status(NAME).await.ok()?;
        let e = s.partitions.first()?.last_error.clone()?;
        e.contains("session not renewed").then_some(())
    })
    .await;
    leadership.on.store(false, SeqCst);
    wait_committed(&det, NAME, 11).await;
    assert_eq!(alerted(&log).await, once(&[0, 5, 10]));
    let _ = stop_tx.send(true);
    let _ = renewal.await;
    close(det, log).await;
}

/// Batches the runner's detector processed on the appending task so far.
async fn on_append(det: &Detectors) -> u64 {
    let s = det.status(NAME).await.expect("status");
    s.partitions.first().map_or(0, |p| p.on_append_batches)
}

/// Appends 30 records, every third an outlier, each acknowledged with its
/// alert readable; returns the outliers' offsets.
async fn acked_with_alerts(log: &Log, input: &Arc<Partition>, from: i64) -> Vec<i64> {
    let alerts = log.partition("alerts", 0).expect("alerts");
    let before = alerts.high_watermark();
    let mut outliers = Vec::new();
    for i in from..from + 30 {
        let outlier = i % 3 == 0;
        log.append(input, record(if outlier { 1e6 } else { 10.0 }))
            .await
            .expect("append");
        if outlier {
            outliers.push(i);
        }
        assert_eq!(
            alerts.high_watermark() - before,
            outliers.len() as i64,
            "after the ack of offset {i}"
        );
    }
    outliers
}

/// A caught-up gated runner lends its detector to the partition: the
/// producer's task calls it (design 0019, "Detectors on the appending
/// task"), with the same guarantees; `gated-on-append = false` keeps every
/// call on the runner.
#[tokio::test]
async fn a_caught_up_gated_detector_runs_on_the_appending_task() {
    for lend in [true, false] {
        let env = Env::new();
        let log = env.log().await;
        create_topic(&log, "in", 1).await;
        let settings = EngineSettings {
            gated_on_append: lend,
            ..settings()
        };
        let det = env.engine_with(&log, settings).await;
        deploy(&det, 10_000, 0).await;
        let input = log.partition("in", 0).expect("input");
        let outliers = acked_with_alerts(&log, &input, 0).await;
        assert_eq!(alerted(&log).await, once(&outliers));
        assert_eq!(input.ack_gate_misses(), 0);
        wait_committed(&det, NAME, 30).await;
        let n = on_append(&det).await;
        if lend {
            // Recalled for each checkpoint (every 20 ms here), the runner
            // reads what was appended meanwhile itself.
            assert!(n >= 15, "{n} of 30 batches on the appending task");
        } else {
            assert_eq!(n, 0, "switched off");
        }
        close(det, log).await;
    }
}

/// What the loan cannot finish goes back to the runner, which settles it
/// its own way: a record that fails the schema (skip policy), a batch too
/// large to call inline; the loan resumes after each, and every outlier is
/// alerted once.
#[tokio::test]
async fn a_batch_the_appending_task_cannot_finish_goes_back_to_the_runner() {
    let env = Env::new();
    let log = env.log().await;
    create_topic(&log, "in", 1).await;
    let det = env.engine(&log).await;
    let hash = upload(&det, THRESHOLD).await;
    let mut spec = threshold_spec(NAME, &hash, "in", "alerts");
    spec.ack_budget_ms = Some(10_000);
    spec.on_failure = vigil_api::FailurePolicy::Skip;
    det.deploy(spec).await.expect("deploy");
    wait_gated(&det, 0).await;
    let input = log.partition("in", 0).expect("input");
    let mut outliers = acked_with_alerts(&log, &input, 0).await;
    let lent = on_append(&det).await;
    assert!(lent > 0, "never lent");

    // Offset 30 does not match the schema; 31 is an outlier in the same batch.
    let bad = batch_of(&[
        serde_json::json!({ "amount": "not a number" }),
        serde_json::json!({ "amount": 1e6 }),
    ]);
    log.append(&input, bad).await.expect("append");
    outliers.push(31);
    // Offsets 32..3032 in one batch of about 90 KiB, an outlier at 2032.
    let big: Vec<_> = (0..3000)
        .map(|i| serde_json::json!({ "amount": if i == 2000 { 1e6 } else { 10.0 } }))
        .collect();
    log.append(&input, batch_of(&big)).await.expect("append");
    outliers.push(2032);
    outliers.extend(acked_with_alerts(&log, &input, 3032).await);
    wait_committed(&det, NAME, 3062).await;
    assert_eq!(alerted(&log).await, once(&outliers));
    let s = det.status(NAME).await.expect("status");
    let p = s.partitions.first().expect("partition");
    assert_eq!(p.bad_records, 1);
    assert!(
        p.on_append_batches >= lent + 15,
        "the loan did not resume: {} then {}",
        lent,
        p.on_append_batches
    );
    assert_eq!(input.ack_gate_misses(), 0);
    close(det, log).await;
}

/// An alerting batch's ack waits for its alerts even when the loan has
/// since processed a later batch without any: the gate must not pass the
/// alerting batch before its alerts are durable. Here they never become
/// durable while ownership of the alert topic is unconfirmed, so the ack
/// may only go when the budget runs out, counted as a miss.
#[tokio::test]
async fn a_later_quiet_batch_does_not_release_an_ack_before_its_alerts() {
    let env = Env::new();
    let log = env.log().await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let renewal = log.spawn_lease_renewal(stop_rx);
    create_topic(&log, "in", 1).await;
    // Checkpoints (which recall the loan) far apart: the loan stays lent.
    let settings = EngineSettings {
        checkpoint_interval_ms: 2_000,
        ..settings()
    };
    let det = env.engine_with(&log, settings).await;
    deploy(&det, 300, 0).await;
    let input = log.partition("in", 0).expect("input");
    log.append(&input, record(10.0)).await.expect("append");
    assert_eq!(on_append(&det).await, 1, "not lent");

    let leadership = Arc::new(AlertsUnconfirmed::default());
    log.set_leadership(leadership.clone());
    leadership.on.store(true, SeqCst);
    let outlier = log.start_append(&input, record(1e6)).await.expect("queued");
    let quiet = log
        .start_append(&input, record(10.0))
        .await
        .expect("queued");
    let outlier = tokio::spawn(outlier.wait());
    let quiet = tokio::spawn(quiet.wait());
    for ack in [outlier, quiet] {
        tokio::time::timeout(DEADLINE, ack)
            .await
            .expect("ack within the deadline")
            .expect("join")
            .expect("append");
    }
    let alerts = log.partition("alerts", 0).expect("alerts");
    assert!(
        alerts.high_watermark() >= 1 || input.ack_gate_misses() >= 1,
        "the outlier was acknowledged without its alert and without a miss"
    );
    leadership.on.store(false, SeqCst);
    wait_committed(&det, NAME, 3).await;
    assert_eq!(alerted(&log).await, once(&[1]));
    let _ = stop_tx.send(true);
    let _ = renewal.await;
    close(det, log).await;
}
