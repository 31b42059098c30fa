//! Object store failures at each step of the life cycle, through the
//! fault-injecting store. Key/value writes ride the log's WAL, which retries
//! a failing store and never drops an entry: a command caught by an outage
//! answers "unavailable" (retriable) after the command timeout, changes
//! nothing in memory meanwhile, and applies once the store is back. After
//! each case the engine is reopened on the same store and its state
//! compared with what memory said.

use crate::common;

use std::time::Duration;

use common::*;
use vigil_api::ErrorKind;
use vigil_engine::status::DeploymentState;
use vigil_engine::{DetectorError, Detectors};
use vigil_storage::kvkeys;

/// Status reads must answer while a command waits on the store.
async fn status_answers_promptly(det: &Detectors, name: &str) -> DeploymentState {
    tokio::time::timeout(Duration::from_millis(200), det.status(name))
        .await
        .expect("status waited behind a command")
        .expect("status")
        .state
}

fn assert_unavailable(e: &DetectorError) {
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.kind().retriable());
    assert!(e.to_string().contains("retry may help"), "{e}");
}

/// An engine with one running deployment "d" that processed 20 records.
async fn running(
    env: &Env,
) -> (
    std::sync::Arc<vigil_storage::Log>,
    std::sync::Arc<Detectors>,
    String,
) {
    let log = env.log().await;
    create_topic(&log, "in", 1).await;
    create_topic(&log, "d-out", 1).await;
    create_topic(&log, "e-out", 1).await;
    let det = env.engine_with(&log, short_commands()).await;
    let hash = upload(&det, THRESHOLD).await;
    produce(&log, "in", 0, 20, 10, 10).await;
    det.deploy(threshold_spec("d", &hash, "in", "d-out"))
        .await
        .expect("deploy");
    wait_committed(&det, "d", 20).await;
    (log, det, hash)
}

/// Closes, reopens on the same store, and checks the reopened engine lists
/// exactly what the closed one did.
async fn reopen_matches(
    env: &Env,
    log: std::sync::Arc<vigil_storage::Log>,
    det: std::sync::Arc<Detectors>,
) -> (
    std::sync::Arc<vigil_storage::Log>,
    std::sync::Arc<Detectors>,
) {
    let before = summary(&det.list().await);
    close(det, log).await;
    let log = env.log().await;
    let det = env.engine_with(&log, short_commands()).await;
    assert_eq!(
        summary(&det.list().await),
        before,
        "memory and store disagree"
    );
    (log, det)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_during_an_outage_is_unavailable_then_applies_once() {
    tokio::time::timeout(DEADLINE, async {
        let env = Env::object_wal();
        let (log, det, hash) = running(&env).await;
        fail_writes(&env.faults, true);
        let e = det
            .deploy(threshold_spec("e", &hash, "in", "e-out"))
            .await
            .expect_err("deploy during an outage");
        assert_unavailable(&e);
        assert!(
            det.status("e").await.is_err(),
            "listed before it was durable"
        );
        assert_eq!(
            status_answers_promptly(&det, "d").await,
            DeploymentState::Running
        );
        fail_writes(&env.faults, false);
        // The command was queued, not dropped: it lands once.
        wait_state(&det, "e", DeploymentState::Running).await;
        let again = det.deploy(threshold_spec("e", &hash, "in", "e-out")).await;
        assert!(matches!(again, Err(DetectorError::Exists(_))), "{again:?}");
        let (log, det) = reopen_matches(&env, log, det).await;
        assert_eq!(det.list().await.len(), 2);
        close(det, log).await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_during_an_outage_changes_nothing_until_it_is_durable() {
    tokio::time::timeout(DEADLINE, async {
        let env = Env::object_wal();
        let (log, det, _) = running(&env).await;
        fail_writes(&env.faults, true);
        let e = det.pause("d").await.expect_err("pause during an outage");
        assert_unavailable(&e);
        assert_eq!(
            status_answers_promptly(&det, "d").await,
            DeploymentState::Running
        );
        fail_writes(&env.faults, false);
        wait_state(&det, "d", DeploymentState::Paused).await;
        let (log, det) = reopen_matches(&env, log, det).await;
        assert_eq!(
            det.status("d").await.unwrap().state,
            DeploymentState::Paused
        );
        close(det, log).await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_during_an_outage_keeps_the_old_version_until_it_is_durable() {
    tokio::time::timeout(DEADLINE, async {
        let env = Env::object_wal();
        let (log, det, old) = running(&env).await;
        let new = upload(&det, ZSCORE).await;
        fail_writes(&env.faults, true);
        let e = det
            .swap("d", zscore_swap(&new))
            .await
            .expect_err("swap during an outage");
        assert_unavailable(&e);
        let s = det.status("d").await.unwrap();
        assert_eq!(
            (s.module.as_str(), &s.state),
            (old.as_str(), &DeploymentState::Running)
        );
        fail_writes(&env.faults, false);
        wait_for("the swap to apply", || async {
            let s = det.status("d").await.ok()?;
            (s.module == new && s.state == DeploymentState::Running).then_some(())
        })
        .await;
        let (log, det) = reopen_matches(&env, log, det).await;
        // Checkpoints were written with the record: the version history
        // survives the restart.
        let s = det.status("d").await.unwrap();
        let versions = &s.partitions[0].versions;
        assert_eq!(
            versions.last().map(|v| v.module.as_str()),
            Some(new.as_str()),
            "{versions:?}"
        );
        close(det, log).await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeploy_during_an_outage_keeps_it_listed_until_it_is_durable() {
    tokio::time::timeout(DEADLINE, async {
        let env = Env::object_wal();
        let (log, det, _) = running(&env).await;
        fail_writes(&env.faults, true);
        let e = det
            .undeploy("d")
            .await
            .expect_err("undeploy during an outage");
        assert_unavailable(&e);
        status_answers_promptly(&det, "d").await;
        fail_writes(&env.faults, false);
        wait_for("the undeploy to apply", || async {
            det.status("d").await.is_err().then_some(())
        })
        .await;
        let (log, det) = reopen_matches(&env, log, det).await;
        assert!(det.list().await.is_empty());
        close(det, log).await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_checkpoint_commit_is_not_reported_and_a_restart_continues_from_the_last_good_one()
{
    tokio::time::timeout(DEADLINE, async {
        // Local WAL: key/value writes work, state uploads to the store fail.
        let (env, log, det, hash) = started(ZSCORE).await;
        produce(&log, "in", 0, 100, 10, 25).await;
        let mut spec = threshold_spec("z", &hash, "in", "z-out");
        spec.config = zscore_config();
        det.deploy(spec).await.expect("deploy");
        wait_committed(&det, "z", 100).await;
        let alerts = hw(&log, "z-out", 0);
        assert!(
            alerts > 0,
            "the detector should have flagged the big amounts"
        );

        fail_writes(&env.faults, true);
        produce(&log, "in", 0, 50, 10, 1000).await;
        let s = wait_for("the runner to process past a failing commit", || async {
            let s = det.status("z").await.ok()?;
            let p = &s.partitions[0];
            (p.offset == 150 && p.last_error.as_deref().is_some_and(|e| e.contains("state")))
                .then_some(s)
        })
        .await;
        assert_eq!(
            s.partitions[0].committed_offset, 100,
            "reported a commit that failed"
        );
        // Alerts of the records after the last good commit are in the topic
        // already; the restart re-processes those records without repeating them.
        let alerts = hw(&log, "z-out", 0);
        det.shutdown().await;
        assert_eq!(
            det.status("z").await.unwrap().partitions[0].committed_offset,
            100
        );
        drop(det);
        log.close().await;
        fail_writes(&env.faults, false);

        let log = env.log().await;
        let key = kvkeys::checkpoint("z", "in", 0);
        let cp: serde_json::Value =
            serde_json::from_str(log.kv_at_open().get(&key).expect("checkpoint")).unwrap();
        assert_eq!(
            cp["offset"], 100,
            "persisted progress differs from what status said"
        );
        let det = env.engine(&log).await;
        let s = wait_committed(&det, "z", 150).await;
        assert_eq!(
            hw(&log, "z-out", 0),
            alerts,
            "re-processing repeated alerts"
        );
        // The alerts written after the last good commit count too (found
        // by test_replay.py: a replay resumed after kill -9 reported fewer
        // alerts than its topic holds).
        assert_eq!(
            i64::try_from(s.partitions[0].alerts).expect("count"),
            alerts,
            "status counts every alert in the topic once"
        );
        close(det, log).await;
    })
    .await
    .expect("test timed out");
}
