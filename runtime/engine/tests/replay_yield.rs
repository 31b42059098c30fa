//! A replay without a `cpu_share` of its own leaves the CPU to live writes
//! (design 0020): it rests while clients produce, runs flat out otherwise,
//! and its status says how long it rested.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use vigil_engine::status::DeploymentState;
use vigil_engine::{Detectors, EngineSettings};

/// Runs replay `id` to completion; its rest over all partitions, in ms.
async fn rested_ms(det: &Detectors, id: &str, module: &str) -> u64 {
    let mut spec = replay_spec(id, module);
    // Many small batches: one rest per batch.
    spec.max_batch_bytes = Some(2048);
    det.replay(spec).await.expect("replay");
    wait_state(det, &format!("replay-{id}"), DeploymentState::Completed).await;
    let s = det.replay_status(id).await.expect("replay status");
    s.partitions.iter().map(|p| p.throttled_ms).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_rests_while_clients_write_and_runs_flat_out_otherwise() {
    tokio::time::timeout(DEADLINE, async {
        let env = Env::new();
        let log = env.log().await;
        create_topic(&log, "in", 2).await;
        for p in 0..2 {
            produce(&log, "in", p, 2000, 20, 7).await;
        }
        // A twentieth of a core while clients write: every batch's module
        // time is followed by 19 times as much rest.
        let settings = EngineSettings {
            replay_live_share: Some(0.05),
            ..settings()
        };
        let det = Detectors::open_with(log.clone(), env.host(), settings)
            .await
            .expect("open engine");
        let hash = upload(&det, THRESHOLD).await;

        // The input was appended by the engine's own log calls, not by
        // clients: nothing to yield to.
        assert_eq!(rested_ms(&det, "idle", &hash).await, 0);

        // A producer keeps writing (the produce handler notes each request).
        let writes = log.stats.client_writes.clone();
        let done = Arc::new(AtomicBool::new(false));
        let producer = tokio::spawn({
            let done = done.clone();
            async move {
                while !done.load(Ordering::Relaxed) {
                    writes.note();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        let rested = rested_ms(&det, "busy", &hash).await;
        done.store(true, Ordering::Relaxed);
        producer.await.expect("producer task");
        assert!(rested > 0, "the replay never rested while a client wrote");
        close(det, log).await;
    })
    .await
    .expect("test timed out");
}
