//! The deployment life cycle in process: one engine on an in-memory object
//! store with real SDK-built detectors, commands racing each other and the
//! runners, and restarts on the same store to check that what is in memory
//! is what was persisted.

use crate::common;

use std::time::Duration;

use common::*;
use vigil_api::ErrorKind;
use vigil_engine::status::DeploymentState;
use vigil_engine::DetectorError;
use vigil_storage::kvkeys;

/// How long a stopped deployment is watched for writes it must not make:
/// many commit intervals (20 ms in these tests).
const QUIET: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deploys_of_one_name_exactly_one_wins_and_it_stays_controllable() {
    tokio::time::timeout(DEADLINE, async {
        let (env, log, det, hash) = started(THRESHOLD).await;
        produce(&log, "in", 0, 50, 10, 10).await;
        let spec = threshold_spec("race", &hash, "in", "race-out");
        let (a, b) = tokio::join!(det.deploy(spec.clone()), det.deploy(spec.clone()));
        let (won, lost) = match (a, b) {
            (Ok(s), Err(e)) | (Err(e), Ok(s)) => (s, e),
            (a, b) => panic!("expected exactly one winner, got {a:?} and {b:?}"),
        };
        assert_eq!(won.name, "race");
        assert!(matches!(lost, DetectorError::Exists(_)), "{lost}");
        assert_eq!(lost.kind(), ErrorKind::Conflict);
        assert_eq!(lost.kind().http_status(), 409);
        assert_eq!(det.list().await.len(), 1);

        // The winner's runners answer to pause: nothing is processed while
        // paused.
        wait_committed(&det, "race", 50).await;
        let alerts = hw(&log, "race-out", 0);
        assert_eq!(alerts, 5, "one alert per big amount");
        let paused = det.pause("race").await.expect("pause");
        assert_eq!(paused.state, DeploymentState::Paused);
        produce(&log, "in", 0, 50, 10, 10).await;
        tokio::time::sleep(QUIET).await;
        assert_eq!(hw(&log, "race-out", 0), alerts, "a paused deployment wrote");
        assert_eq!(
            det.status("race").await.unwrap().partitions[0].committed_offset,
            50
        );

        // Resumed, it catches up; undeployed, it stops for good.
        det.resume("race").await.expect("resume");
        wait_committed(&det, "race", 100).await;
        assert_eq!(hw(&log, "race-out", 0), 10);
        det.undeploy("race").await.expect("undeploy");
        produce(&log, "in", 0, 50, 10, 10).await;
        tokio::time::sleep(QUIET).await;
        assert_eq!(
            hw(&log, "race-out", 0),
            10,
            "an undeployed deployment wrote"
        );
        assert!(det.list().await.is_empty());

        close(det, log).await;
        let log = env.log().await;
        assert!(
            !log.kv_at_open().keys().any(|k| k.starts_with("detectors/")),
            "keys left behind: {:?}",
            log.kv_at_open().keys().collect::<Vec<_>>()
        );
        let det = env.engine(&log).await;
        assert!(det.list().await.is_empty());
        close(det, log).await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_racing_a_replays_completion_is_never_lost() {
    tokio::time::timeout(DEADLINE, async {
        let (env, log, det, hash) = started(THRESHOLD).await;
        produce(&log, "in", 0, 40, 10, 7).await;
        // Each round pauses a replay as it finishes: sometimes before its
        // last commit, sometimes between its runner's report and the
        // supervisor handling it, sometimes after. The pause is the last
        // command, so the replay must end up paused every time.
        let mut completed_first = 0;
        for i in 0..12 {
            let id = format!("r{i}");
            det.replay(replay_spec(&id, &hash)).await.expect("replay");
            // Stagger the pause across the completion window.
            tokio::time::sleep(Duration::from_millis(3 * i)).await;
            if det.replay_status(&id).await.unwrap().state == DeploymentState::Completed {
                completed_first += 1;
            }
            let s = det.pause(&format!("replay-{id}")).await.expect("pause");
            assert_eq!(s.state, DeploymentState::Paused, "round {i}");
        }
        // Let any report still in flight arrive; none may undo a pause.
        tokio::time::sleep(QUIET).await;
        for r in det.replays().await {
            assert_eq!(r.state, DeploymentState::Paused, "replay {}", r.id);
        }
        let before = summary(&det.list().await);
        close(det, log).await;
        let log = env.log().await;
        let det = env.engine(&log).await;
        assert_eq!(
            summary(&det.list().await),
            before,
            "what was persisted differs"
        );
        // A resumed replay that had covered its range completes again.
        let id = "replay-r11";
        det.resume(id).await.expect("resume");
        wait_state(&det, id, DeploymentState::Completed).await;
        close(det, log).await;
        // Not an assertion on timing, only a hint in the output when the
        // race window was never hit on this machine.
        println!("{completed_first} of 12 replays completed before their pause");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_while_paused_stays_paused_and_resumes_on_the_new_module_where_it_stopped() {
    tokio::time::timeout(DEADLINE, async {
        let env = Env::new();
        let log = env.log().await;
        create_topic(&log, "in", 1).await;
        let det = env.engine(&log).await;
        let old = upload(&det, THRESHOLD).await;
        let new = upload(&det, ZSCORE).await;
        produce(&log, "in", 0, 60, 10, 20).await;
        det.deploy(threshold_spec("sw", &old, "in", "sw-out"))
            .await
            .expect("deploy");
        wait_committed(&det, "sw", 60).await;
        det.pause("sw").await.expect("pause");
        let s = det.swap("sw", zscore_swap(&new)).await.expect("swap");
        assert_eq!(s.state, DeploymentState::Paused, "a swap must not resume");
        assert_eq!(s.module, new);
        produce(&log, "in", 0, 40, 10, 20).await;
        tokio::time::sleep(QUIET).await;
        let s = det.status("sw").await.unwrap();
        assert_eq!(s.state, DeploymentState::Paused);
        assert_eq!(s.partitions[0].committed_offset, 60, "ran while paused");

        // What a restart sees is what memory says.
        let before = summary(&det.list().await);
        close(det, log).await;
        let log = env.log().await;
        let det = env.engine(&log).await;
        assert_eq!(summary(&det.list().await), before);

        det.resume("sw").await.expect("resume");
        let s = wait_committed(&det, "sw", 100).await;
        let versions = &s.partitions[0].versions;
        assert_eq!(versions.len(), 2, "{versions:?}");
        assert_eq!(
            (versions[0].module.as_str(), versions[0].to),
            (old.as_str(), Some(60))
        );
        assert_eq!(
            (versions[1].module.as_str(), versions[1].from),
            (new.as_str(), 60)
        );
        assert_eq!(
            s.partitions[0].records, 100,
            "input skipped or scored twice"
        );
        close(det, log).await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeploy_during_catch_up_stops_the_runners_and_deletes_every_key() {
    tokio::time::timeout(DEADLINE, async {
        let env = Env::new();
        let log = env.log().await;
        create_topic(&log, "in", 2).await;
        let det = env.engine(&log).await;
        let hash = upload(&det, THRESHOLD).await;
        for p in 0..2 {
            produce(&log, "in", p, 20_000, 50, 3).await;
        }
        let mut spec = threshold_spec("cu", &hash, "in", "cu-out");
        // Small reads: the backlog takes hundreds of batches.
        spec.max_batch_bytes = 1024;
        det.deploy(spec).await.expect("deploy");
        wait_committed(&det, "cu", 1).await;
        let s = det.status("cu").await.unwrap();
        assert!(
            s.partitions.iter().any(|p| p.offset < 20_000),
            "caught up before the undeploy; the backlog is too small: {:?}",
            s.partitions
        );
        det.undeploy("cu").await.expect("undeploy");
        let out: Vec<i64> = (0..2).map(|p| hw(&log, "cu-out", p)).collect();
        tokio::time::sleep(QUIET).await;
        let after: Vec<i64> = (0..2).map(|p| hw(&log, "cu-out", p)).collect();
        assert_eq!(out, after, "alerts written after the undeploy");
        assert!(matches!(
            det.status("cu").await,
            Err(DetectorError::NotFound(_))
        ));
        close(det, log).await;
        let log = env.log().await;
        let left: Vec<&String> = log
            .kv_at_open()
            .keys()
            .filter(|k| {
                kvkeys::parse_deployment(k).is_some() || kvkeys::checkpoint_input("cu", k).is_some()
            })
            .collect();
        assert!(left.is_empty(), "written after the undeploy: {left:?}");
        log.close().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_checkpoint_fails_only_its_deployment_naming_the_key() {
    tokio::time::timeout(DEADLINE, async {
        let (env, log, det, hash) = started(THRESHOLD).await;
        produce(&log, "in", 0, 30, 10, 10).await;
        det.deploy(threshold_spec("good", &hash, "in", "good-out"))
            .await
            .expect("deploy");
        det.deploy(threshold_spec("bad", &hash, "in", "bad-out"))
            .await
            .expect("deploy");
        wait_committed(&det, "good", 30).await;
        wait_committed(&det, "bad", 30).await;
        close(det, log).await;

        let log = env.log().await;
        let key = kvkeys::checkpoint("bad", "in", 0);
        log.kv_put(vec![(key.clone(), Some("{not json".into()))])
            .await
            .expect("corrupt it");
        let bad_spec_key = kvkeys::deployment("worse");
        log.kv_put(vec![(bad_spec_key.clone(), Some("[]".into()))])
            .await
            .expect("corrupt record");
        log.close().await;

        let log = env.log().await;
        let det = env.engine(&log).await;
        let bad = det.status("bad").await.expect("listed");
        match &bad.state {
            DeploymentState::Failed(why) => assert!(why.contains(&key), "{why}"),
            s => panic!("bad is {s:?}"),
        }
        match &det.status("worse").await.expect("listed").state {
            DeploymentState::Failed(why) => assert!(why.contains(&bad_spec_key), "{why}"),
            s => panic!("worse is {s:?}"),
        }
        let e = det.resume("bad").await.expect_err("resume must refuse");
        assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
        assert!(e.to_string().contains(&key), "{e}");
        // The good one did not start over: it continues from 30.
        produce(&log, "in", 0, 10, 10, 10).await;
        let s = wait_committed(&det, "good", 40).await;
        assert_eq!(s.state, DeploymentState::Running);
        assert_eq!(s.partitions[0].records, 40);
        assert_eq!(hw(&log, "good-out", 0), 4, "alerts repeated or lost");
        // Undeploy clears the unreadable keys too.
        det.undeploy("bad").await.expect("undeploy bad");
        det.undeploy("worse").await.expect("undeploy worse");
        close(det, log).await;
        let log = env.log().await;
        for k in [&key, &bad_spec_key] {
            assert!(
                !log.kv_at_open().contains_key(k.as_str()),
                "{k} left behind"
            );
        }
        log.close().await;
    })
    .await
    .expect("test timed out");
}

/// A replay of an empty topic has nothing to run and is completed at once.
/// Its finish time must be recorded (and persisted) like any other
/// completion: before, its state was completed while its elapsed time went
/// on growing from "now", so two status reads disagreed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_with_nothing_to_do_completes_with_a_fixed_finish_time() {
    tokio::time::timeout(DEADLINE, async {
        let (env, log, det, hash) = started(THRESHOLD).await;
        let first = det
            .replay(replay_spec("empty", &hash))
            .await
            .expect("replay");
        assert_eq!(first.state, DeploymentState::Completed);
        assert_eq!(first.eta_secs, None);
        // Time passing must not move a finished run's elapsed time.
        tokio::time::sleep(Duration::from_millis(120)).await;
        let later = det.replay_status("empty").await.expect("status");
        assert_eq!(
            later.elapsed_ms, first.elapsed_ms,
            "elapsed of a completed replay moved"
        );
        close(det, log).await;
        // What status showed is what was persisted.
        let log = env.log().await;
        let det = env.engine(&log).await;
        let reopened = det
            .replay_status("empty")
            .await
            .expect("status after restart");
        assert_eq!(reopened.state, DeploymentState::Completed);
        assert_eq!(
            reopened.elapsed_ms, first.elapsed_ms,
            "elapsed changed across a restart"
        );
        close(det, log).await;
    })
    .await
    .expect("test timed out");
}
