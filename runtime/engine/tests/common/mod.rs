//! An engine on an in-memory object store (behind the fault-injecting
//! store), real SDK-built detector modules, and bounded waits.
//!
//! Modules come from `$VIGIL_WASM_DIR` or
//! `target/wasm/wasm32-unknown-unknown/release` (built by
//! `scripts/build-detectors.sh`); a missing module fails the test.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::Compression;
use object_store::memory::InMemory;
use object_store::ObjectStore;
use serde_json::json;
use vigil_engine::spec::DeploymentSpec;
use vigil_engine::status::{DeploymentState, DeploymentStatus};
use vigil_engine::{Detectors, EngineSettings};
use vigil_host::{Host, HostConfig};
use vigil_protocol::batch::{set_base_offset, BatchBuilder};
use vigil_storage::config::WalMode;
use vigil_storage::store::{FaultControl, FaultKind, FaultyStore};
use vigil_storage::{Log, LogConfig, TopicConfig};

/// Upper bound of every wait in these tests.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub const THRESHOLD: &str = "vigil_plugin_threshold_rules";
pub const ZSCORE: &str = "vigil_plugin_zscore";

/// A module's bytes; panics (fails the test) when it was not built.
pub fn module(name: &str) -> Bytes {
    Bytes::from(vigil_host::read_built_module(name).unwrap_or_else(|e| panic!("{e}")))
}

/// One broker's world: a data dir, a module cache, and the object store
/// (in memory, behind a fault switch) that survives "restarts".
pub struct Env {
    pub data: tempfile::TempDir,
    pub cache: tempfile::TempDir,
    pub store: Arc<dyn ObjectStore>,
    pub faults: FaultControl,
    pub wal: WalMode,
}

impl Env {
    /// With the WAL on local disk.
    pub fn new() -> Self {
        Self::with_wal(WalMode::Local)
    }

    /// With the WAL in the object store, so key/value writes go through
    /// the fault switch.
    pub fn object_wal() -> Self {
        Self::with_wal(WalMode::Object {
            window: Duration::from_millis(2),
        })
    }

    fn with_wal(wal: WalMode) -> Self {
        let faulty = FaultyStore::new(Arc::new(InMemory::new()));
        let faults = faulty.control();
        Env {
            data: tempfile::tempdir().expect("tempdir"),
            cache: tempfile::tempdir().expect("tempdir"),
            store: Arc::new(faulty),
            faults,
            wal,
        }
    }

    pub async fn log(&self) -> Arc<Log> {
        let mut c = LogConfig::new(self.data.path());
        c.wal_mode = self.wal.clone();
        // A crashed owner's lease is waited out for 3 intervals at open.
        c.lease_interval = Duration::from_millis(10);
        Log::open(c, self.store.clone()).await.expect("open log")
    }

    pub fn host(&self) -> Host {
        Host::new(HostConfig {
            cache_dir: self.cache.path().to_path_buf(),
            max_instances: 64,
            max_memory_bytes: 256 << 20,
            ..HostConfig::default()
        })
        .expect("host")
    }

    pub async fn engine(&self, log: &Arc<Log>) -> Arc<Detectors> {
        self.engine_with(log, settings()).await
    }

    /// [`engine`](Self::engine) with `settings`.
    pub async fn engine_with(&self, log: &Arc<Log>, settings: EngineSettings) -> Arc<Detectors> {
        Detectors::open_with(log.clone(), self.host(), settings)
            .await
            .expect("open engine")
    }
}

/// Fast commits, so tests run in seconds. Commands wait as long as a test
/// may take: on a loaded machine a command can take seconds, and only the
/// outage tests are about the wait ending ([`short_commands`]).
pub fn settings() -> EngineSettings {
    EngineSettings {
        checkpoint_interval_ms: 20,
        retry_backoff_ms: 20,
        command_timeout_ms: DEADLINE.as_millis() as u64,
        detector_threads: 2,
        replay_threads: 1,
        ..EngineSettings::default()
    }
}

/// [`settings`] with a command wait short enough for a test to see it end
/// (an outage's "unavailable").
pub fn short_commands() -> EngineSettings {
    EngineSettings {
        command_timeout_ms: 2_000,
        ..settings()
    }
}

/// Stops the engine and the log the way a clean shutdown does.
pub async fn close(det: Arc<Detectors>, log: Arc<Log>) {
    det.shutdown().await;
    drop(det);
    log.close().await;
}

pub async fn create_topic(log: &Log, name: &str, partitions: i32) {
    log.create_topic(
        name,
        TopicConfig {
            partitions,
            configs: Default::default(),
        },
    )
    .await
    .expect("create topic");
}

/// Appends `n` JSON records `{"amount": ...}` to partition `p` of `topic`,
/// in batches of `per_batch`; every `big_every`-th record has a big amount.
pub async fn produce(log: &Log, topic: &str, p: i32, n: usize, per_batch: usize, big_every: usize) {
    let part = log.partition(topic, p).expect("partition");
    let mut i = 0;
    while i < n {
        let mut b = BatchBuilder::new(Compression::None);
        let k = per_batch.min(n - i);
        let now = chrono::Utc::now().timestamp_millis();
        for j in 0..k {
            let amount = if (i + j) % big_every == 0 { 1e6 } else { 10.0 };
            let v = json!({"amount": amount});
            b = b.record(
                now,
                Some(Bytes::from("k")),
                Some(Bytes::from(v.to_string())),
            );
        }
        let mut w = BytesMut::from(&b.build().expect("batch")[..]);
        set_base_offset(&mut w, 0);
        log.append(&part, w.freeze()).await.expect("append");
        i += k;
    }
}

pub async fn upload(det: &Detectors, name: &str) -> String {
    det.registry()
        .upload(module(name))
        .await
        .expect("upload module")
        .hash
}

/// A fresh engine over topic `in` (one partition) with module `name`
/// uploaded: (environment, log, engine, module hash).
pub async fn started(name: &str) -> (Env, Arc<Log>, Arc<Detectors>, String) {
    let env = Env::new();
    let log = env.log().await;
    create_topic(&log, "in", 1).await;
    let det = env.engine(&log).await;
    let hash = upload(&det, name).await;
    (env, log, det, hash)
}

/// A threshold-rules deployment: one alert per record with amount > 1000.
/// The zscore config the tests swap to (5 samples, then |z| >= 6 on `amount`).
pub fn zscore_config() -> serde_json::Value {
    serde_json::json!({"field": "amount", "window": 20, "threshold": 6.0, "min_samples": 5})
}

/// A hot swap to `module` running [`zscore_config`], re-warmed on nothing.
pub fn zscore_swap(module: &str) -> vigil_api::SwapRequest {
    vigil_api::SwapRequest {
        module: module.to_string(),
        config: Some(zscore_config()),
        rebuild_records: Some(0),
    }
}

/// A replay of topic `in` with the threshold rules module `module`.
pub fn replay_spec(id: &str, module: &str) -> vigil_api::ReplaySpec {
    serde_json::from_value(json!({
        "id": id,
        "module": module,
        "topic": "in",
        "config": {"rules": [{"field": "amount", "op": ">", "value": 1000}]},
        "value_schema": {"amount": "float64"},
    }))
    .expect("replay spec")
}

pub fn threshold_spec(name: &str, module: &str, input: &str, output: &str) -> DeploymentSpec {
    serde_json::from_value(json!({
        "name": name,
        "module": module,
        "inputs": [input],
        "output": output,
        "config": {"rules": [{"field": "amount", "op": ">", "value": 1000}]},
        "value_schema": {"amount": "float64"},
        "start": "earliest",
    }))
    .expect("spec")
}

/// Polls `f` until it returns `Some`, at most [`DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until every partition of `name` committed at least `offset`.
pub async fn wait_committed(det: &Detectors, name: &str, offset: i64) -> DeploymentStatus {
    wait_for(&format!("{name} to commit {offset}"), || async {
        let s = det.status(name).await.ok()?;
        (!s.partitions.is_empty() && s.partitions.iter().all(|p| p.committed_offset >= offset))
            .then_some(s)
    })
    .await
}

pub async fn wait_state(det: &Detectors, name: &str, state: DeploymentState) -> DeploymentStatus {
    wait_for(&format!("{name} to be {state:?}"), || async {
        let s = det.status(name).await.ok()?;
        (s.state == state).then_some(s)
    })
    .await
}

/// The high watermark of partition `p` of `topic`.
pub fn hw(log: &Log, topic: &str, p: i32) -> i64 {
    log.partition(topic, p).expect("partition").high_watermark()
}

/// What survives a restart, per deployment: name, module and state.
pub fn summary(list: &[DeploymentStatus]) -> Vec<(String, String, DeploymentState)> {
    let mut out: Vec<_> = list
        .iter()
        .map(|s| (s.name.clone(), s.module.clone(), s.state.clone()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

pub fn fail_writes(faults: &FaultControl, on: bool) {
    faults.fail_all(FaultKind::Write, on);
}
