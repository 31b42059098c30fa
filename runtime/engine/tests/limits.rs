//! What the engine refuses or bounds whatever clients ask: deployments that
//! would feed their alerts back into their own input (alert cycles, through
//! live deployments, shadows, replays and dead-letter topics), and the number
//! of compiled modules kept in memory.

use crate::common;

use common::*;
use serde_json::json;
use vigil_api::{ErrorKind, ReplaySpec, ShadowRequest};
use vigil_engine::DetectorError;

/// Asserts a cycle refusal (409) whose message names every hop.
fn expect_cycle(r: Result<impl std::fmt::Debug, DetectorError>, hops: &[&str]) {
    let e = r.expect_err("a deployment closing a cycle must be refused");
    assert!(matches!(e, DetectorError::Cycle { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let text = e.to_string();
    for hop in hops {
        assert!(text.contains(hop), "{hop:?} not in {text:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_closing_an_alert_cycle_are_refused_naming_it() {
    tokio::time::timeout(DEADLINE, async {
        let env = Env::new();
        let log = env.log().await;
        for t in ["in", "x"] {
            create_topic(&log, t, 1).await;
        }
        let det = env.engine(&log).await;
        let hash = upload(&det, THRESHOLD).await;
        // A chain: in -[a]-> mid -[b]-> out.
        det.deploy(threshold_spec("a", &hash, "in", "mid"))
            .await
            .expect("a");
        det.deploy(threshold_spec("b", &hash, "mid", "out"))
            .await
            .expect("b");
        // A → B → A in two steps ...
        expect_cycle(
            det.deploy(threshold_spec("back", &hash, "mid", "in")).await,
            &["\"mid\" -[back]-> \"in\" -[a]-> \"mid\""],
        );
        // ... and in three.
        expect_cycle(
            det.deploy(threshold_spec("c", &hash, "out", "in")).await,
            &["-[c]-> \"in\"", "-[a]-> \"mid\"", "-[b]-> \"out\""],
        );
        // A dead-letter topic carries input records: it is a write too.
        let mut dlq = threshold_spec("dlq", &hash, "out", "dlq-alerts");
        dlq.on_failure = vigil_api::FailurePolicy::DeadLetter;
        dlq.dead_letter_topic = Some("in".into());
        expect_cycle(det.deploy(dlq).await, &["-[dlq]-> \"in\""]);
        // x -[d]-> in closes no cycle by itself ...
        det.deploy(threshold_spec("d", &hash, "x", "in"))
            .await
            .expect("d");
        // ... but a shadow of `a` (reading `in`) writing `x` would, and so
        // would a replay of `in` writing `x`.
        let shadow = ShadowRequest {
            module: hash.clone(),
            name: Some("a-shadow".into()),
            output: Some("x".into()),
            config: None,
        };
        expect_cycle(
            det.shadow("a", shadow).await,
            &["-[a-shadow]-> \"x\"", "-[d]-> \"in\""],
        );
        let replay: ReplaySpec = serde_json::from_value(json!({
            "id": "loop", "module": hash, "topic": "in", "output": "x",
            "config": {"rules": [{"field": "amount", "op": ">", "value": 1000}]},
        }))
        .expect("replay spec");
        expect_cycle(det.replay(replay).await, &["-[d]-> \"in\""]);
        // Nothing refused was persisted or started.
        let names: Vec<String> = det.list().await.into_iter().map(|s| s.name).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        // Once the deployment closing it is gone, the same spec is fine.
        det.undeploy("d").await.expect("undeploy d");
        det.replay(
            serde_json::from_value(json!({
                "id": "noloop", "module": hash, "topic": "in", "output": "x",
                "config": {"rules": [{"field": "amount", "op": ">", "value": 1000}]},
            }))
            .expect("replay spec"),
        )
        .await
        .expect("no cycle once d is gone");
        close(det, log).await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_modules_in_memory_are_capped_least_recently_used_first() {
    tokio::time::timeout(DEADLINE, async {
        let env = Env::new();
        let log = env.log().await;
        create_topic(&log, "in", 1).await;
        let host = env.host();
        let settings = vigil_engine::EngineSettings {
            max_compiled_modules: 2,
            ..settings()
        };
        let det = vigil_engine::Detectors::open_with(log.clone(), host.clone(), settings)
            .await
            .expect("open engine");
        let threshold = upload(&det, THRESHOLD).await;
        let zscore = upload(&det, ZSCORE).await;
        assert_eq!(det.registry().compiled(), 2);
        // Using threshold makes zscore the least recently used ...
        det.registry().module(&threshold).await.expect("threshold");
        let ewma = upload(&det, "vigil_plugin_ewma_bands").await;
        // ... so the third upload evicts zscore, from the host too.
        assert_eq!(det.registry().compiled(), 2);
        assert!(
            host.get(&zscore).is_none(),
            "evicted module still compiled in the host"
        );
        assert!(host.get(&threshold).is_some() && host.get(&ewma).is_some());
        // An evicted module compiles again from the store when a deployment
        // needs it, and the cap still holds.
        det.deploy(
            serde_json::from_value(json!({
                "name": "z", "module": zscore, "inputs": ["in"], "output": "z-out",
                "config": zscore_config(), "value_schema": {"amount": "float64"},
            }))
            .expect("spec"),
        )
        .await
        .expect("deploy the evicted module");
        assert_eq!(det.registry().compiled(), 2);
        assert!(host.get(&zscore).is_some());
        close(det, log).await;
    })
    .await
    .expect("test timed out");
}
