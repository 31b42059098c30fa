//! `vigil_api::client::AdminClient` against a real in-process broker
//! (`memory://` object store, ephemeral ports) and a real SDK-built module
//! (`$VIGIL_WASM_DIR` or `target/wasm/wasm32-unknown-unknown/release`, built
//! by `scripts/build-detectors.sh`; a missing module fails the test).

use std::time::{Duration, Instant};

use serde_json::json;
use vigil_api::client::{decode_answer, AdminClient, ClientError};
use vigil_api::{
    DeploymentSpec, DeploymentState, DeploymentStatus, DiffRequest, ErrorKind, ReplaySpec,
    StartPosition,
};
use vigil_server::server::{self, Running};
use vigil_server::{Components, Settings};
use vigil_storage::log::TopicConfig;

fn module(name: &str) -> Vec<u8> {
    vigil_host::read_built_module(name).unwrap_or_else(|e| panic!("{e}"))
}

/// A broker on a `memory://` store, with topic `payments` (2 partitions).
fn broker(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> Running {
    let mut settings = Settings::embedded(dir);
    settings.storage.object_store = Some("memory://".into());
    let components = Components::from_settings(&settings).expect("components");
    let running = rt
        .block_on(server::start(settings, components))
        .expect("start");
    rt.block_on(running.broker.log.create_topic(
        "payments",
        TopicConfig {
            partitions: 2,
            ..Default::default()
        },
    ))
    .expect("create topic");
    running
}

fn zscore_spec(name: &str, module: &str) -> DeploymentSpec {
    serde_json::from_value(json!({
        "name": name,
        "module": module,
        "inputs": ["payments"],
        "output": format!("{name}.alerts"),
        "config": {"field": "amount", "window": 100, "threshold": 3.0, "min_samples": 20},
        "value_schema": {"amount": "float64"},
        "start": "earliest",
    }))
    .expect("spec")
}

fn api_error(e: &ClientError, status: u16, kind: ErrorKind, mentions: &str) {
    assert_eq!(e.status(), Some(status), "{e}");
    assert_eq!(e.kind(), Some(kind), "{e}");
    assert!(!e.retriable(), "{e}");
    let text = e.to_string();
    assert!(text.contains(mentions), "{text}");
    assert!(text.contains(&format!("HTTP {status}")), "{text}");
    assert!(text.contains("retrying will not help"), "{text}");
}

#[test]
fn deployment_life_cycle_through_the_typed_client() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let running = broker(&rt, dir.path());
    // Without a scheme, as `--admin host:port` may be given.
    let api = AdminClient::new(&running.admin_addr.to_string()).expect("client");
    api.healthz().expect("healthz");

    let wasm = module("vigil_plugin_zscore");
    let meta = api.upload_module(&wasm).expect("upload");
    assert_eq!(meta.size, wasm.len());
    assert_eq!(meta.hash.len(), 64, "{meta:?}");
    let name = meta.name.clone().expect("the SDK names the module");
    assert!(name.contains("zscore"), "{meta:?}");
    let all = api.modules(None).expect("modules");
    assert_eq!(
        all.iter().map(|m| &m.hash).collect::<Vec<_>>(),
        [&meta.hash]
    );
    let versions = api.modules(Some(&name)).expect("versions");
    assert_eq!(versions.len(), 1, "{versions:?}");
    // A name needing encoding reaches the server as one query value.
    assert!(api
        .modules(Some("no such & name"))
        .expect("none")
        .is_empty());

    let deployed = api
        .deploy(&zscore_spec("fraud", &meta.hash))
        .expect("deploy");
    assert_eq!(deployed.name, "fraud");
    assert_eq!(deployed.module, meta.hash);
    assert_eq!(deployed.state, DeploymentState::Running);
    assert_eq!(deployed.inputs, ["payments"]);
    assert_eq!(deployed.partitions.len(), 2, "{deployed:?}");

    let st = api.status("fraud").expect("status");
    assert_eq!(
        (st.name.as_str(), &st.state),
        ("fraud", &DeploymentState::Running)
    );
    let listed = api.deployments().expect("list");
    assert_eq!(
        listed.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["fraud"]
    );

    assert_eq!(
        api.pause("fraud").expect("pause").state,
        DeploymentState::Paused
    );
    assert_eq!(
        api.status("fraud").expect("status").state,
        DeploymentState::Paused
    );
    assert_eq!(
        api.resume("fraud").expect("resume").state,
        DeploymentState::Running
    );

    // The same name again: 409, decoded.
    let e = api
        .deploy(&zscore_spec("fraud", &meta.hash))
        .expect_err("a second deployment of one name");
    api_error(&e, 409, ErrorKind::Conflict, "fraud");
    // An unknown deployment and replay: 404, decoded.
    let e = api.status("ghost").expect_err("unknown deployment");
    api_error(&e, 404, ErrorKind::NotFound, "ghost");
    let e = api
        .replay_status("ghost-replay")
        .expect_err("unknown replay");
    api_error(&e, 404, ErrorKind::NotFound, "ghost-replay");

    let metrics = api.metrics().expect("metrics");
    assert!(metrics.contains("vigil_"), "{metrics}");

    let gone = api.undeploy("fraud").expect("undeploy");
    assert_eq!(gone.undeployed, "fraud");
    let e = api.status("fraud").expect_err("undeployed");
    api_error(&e, 404, ErrorKind::NotFound, "fraud");
    let e = api.undeploy("fraud").expect_err("undeployed twice");
    api_error(&e, 404, ErrorKind::NotFound, "fraud");
    assert!(api.deployments().expect("list").is_empty());

    rt.block_on(running.shutdown());
}

#[test]
fn replay_and_diff_answers_decode() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let running = broker(&rt, dir.path());
    let api = AdminClient::new(&format!("http://{}", running.admin_addr)).expect("client");
    let meta = api
        .upload_module(&module("vigil_plugin_zscore"))
        .expect("upload");

    // An empty range: the job has nothing to do and completes.
    let spec = ReplaySpec {
        module: meta.hash.clone(),
        topic: "payments".into(),
        from: Some(StartPosition::Earliest),
        to: Some(StartPosition::Latest),
        partitions: None,
        output: None,
        id: Some("r1".into()),
        config: json!({"field": "amount", "window": 100, "threshold": 3.0, "min_samples": 20}),
        value_schema: Some(json!({"amount": "float64"})),
        limits: Default::default(),
        on_failure: None,
        max_batch_bytes: None,
        budget: None,
        principal: None,
    };
    let started = api.replay(&spec).expect("replay");
    assert_eq!(
        (started.id.as_str(), started.topic.as_str()),
        ("r1", "payments")
    );
    assert_eq!(started.records_total, 0, "{started:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let s = api.replay_status("r1").expect("replay status");
        if s.state == DeploymentState::Completed {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "replay r1 did not complete within 30 s: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(done.alerts, 0);
    let all = api.replays().expect("replays");
    assert_eq!(
        all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r1"]
    );

    let report = api
        .diff(&DiffRequest {
            a: done.output.clone(),
            b: done.output.clone(),
            window: 0,
            from: None,
            to: None,
        })
        .expect("diff");
    assert_eq!(report.a, done.output);
    assert!(report.partitions.is_empty(), "{report:?}");
    assert_eq!((report.total.only_a, report.total.both), (0, 0));
    let e = api
        .diff(&DiffRequest {
            a: "nothing-here".into(),
            b: done.output.clone(),
            window: 0,
            from: None,
            to: None,
        })
        .expect_err("unknown side");
    api_error(&e, 404, ErrorKind::NotFound, "nothing-here");

    assert_eq!(api.cancel_replay("r1").expect("cancel").cancelled, "r1");
    assert!(api.replays().expect("replays").is_empty());

    rt.block_on(running.shutdown());
}

/// A field renamed or dropped in a real status answer is a decode error
/// naming the field and the route, not a silent default.
#[test]
fn a_renamed_or_missing_field_is_a_decode_error() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let running = broker(&rt, dir.path());
    let api = AdminClient::new(&running.admin_addr.to_string()).expect("client");
    let meta = api
        .upload_module(&module("vigil_plugin_zscore"))
        .expect("upload");
    let st = api
        .deploy(&zscore_spec("shape", &meta.hash))
        .expect("deploy");
    let real = serde_json::to_value(&st).expect("status as JSON");
    rt.block_on(running.shutdown());

    let route = "GET /v1/deployments/shape";
    let again: DeploymentStatus =
        decode_answer(route, real.to_string().as_bytes()).expect("the real answer decodes");
    assert_eq!(again, st);

    let mut renamed = real.clone();
    let obj = renamed.as_object_mut().expect("object");
    let parts = obj.remove("partitions").expect("partitions");
    obj.insert("parts".into(), parts);
    let e = decode_answer::<DeploymentStatus>(route, renamed.to_string().as_bytes())
        .expect_err("renamed field");
    assert!(matches!(e, ClientError::Decode { .. }), "{e:?}");
    assert!(!e.retriable());
    let text = e.to_string();
    assert!(
        text.contains("partitions") && text.contains(route),
        "{text}"
    );

    let mut missing = real.clone();
    missing["partitions"][0]
        .as_object_mut()
        .expect("partition object")
        .remove("lag");
    let e = decode_answer::<DeploymentStatus>(route, missing.to_string().as_bytes())
        .expect_err("missing field");
    assert!(e.to_string().contains("lag"), "{e}");
}

#[test]
fn an_unreachable_broker_is_retriable() {
    // A port that was just free: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind");
    let api = AdminClient::with_timeouts(
        &addr.to_string(),
        Duration::from_secs(2),
        Duration::from_secs(5),
    )
    .expect("client");
    let e = api.deployments().expect_err("nothing listens");
    assert!(e.is_unreachable() && e.retriable(), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("cannot reach") && text.contains("GET /v1/deployments"),
        "{text}"
    );
}
