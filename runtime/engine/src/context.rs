//! The components the engine was given (log, object store, thread pools,
//! settings) and the read-only questions about topics that both the
//! command front end and the supervisor ask.

use std::sync::Arc;

use object_store::ObjectStore;
use vigil_storage::{Log, Partition, StorageError, Topic, TopicConfig};

use super::settings::EngineSettings;
use super::spec::{DeploymentSpec, SpecError, StartPosition};
use super::store::DeploymentStore;
use super::DetectorError;
use vigil_storage::pool::ThreadPool;

/// An input partition with its topic.
pub(crate) type InputPartition = (Arc<Topic>, Arc<Partition>);

/// Shared, immutable engine context.
pub(crate) struct Context {
    pub(crate) log: Arc<Log>,
    pub(crate) store: Arc<dyn ObjectStore>,
    /// Where deployment records and checkpoints live (the log's key/value
    /// state, or the cluster's shared metadata).
    pub(crate) records: Arc<dyn DeploymentStore>,
    pub(crate) settings: EngineSettings,
    /// Live and shadow deployments' threads.
    pub(crate) pool: Arc<ThreadPool>,
    /// Replays' threads: fewer than the cores and at a lower priority than
    /// live deployments, so a replay can neither take every core from the
    /// request path nor delay live alerts much.
    pub(crate) replay_pool: Arc<ThreadPool>,
}

impl Context {
    /// Starts the thread pools the settings ask for.
    pub(crate) fn new(
        log: Arc<Log>,
        store: Arc<dyn ObjectStore>,
        records: Arc<dyn DeploymentStore>,
        settings: EngineSettings,
    ) -> Result<Self, DetectorError> {
        let pool = ThreadPool::new(
            "vigil-detector",
            settings.live_threads(),
            settings.detector_priority(),
        )
        .map_err(|e| DetectorError::Internal(format!("cannot start detector threads: {e}")))?;
        let replay_pool = ThreadPool::new(
            "vigil-replay",
            settings.replay_pool_threads(),
            settings.replay_priority(),
        )
        .map_err(|e| DetectorError::Internal(format!("cannot start replay threads: {e}")))?;
        Ok(Context {
            log,
            store,
            records,
            settings,
            pool: Arc::new(pool),
            replay_pool: Arc::new(replay_pool),
        })
    }

    /// The spec's input topics, each of which must exist.
    pub(crate) fn inputs(&self, spec: &DeploymentSpec) -> Result<Vec<Arc<Topic>>, DetectorError> {
        spec.inputs
            .iter()
            .map(|t| {
                self.log
                    .topic(t)
                    .ok_or_else(|| DetectorError::UnknownTopic(t.clone()))
            })
            .collect()
    }

    /// The input partitions a spec covers, refusing partitions that exist
    /// in none of its inputs.
    pub(crate) fn input_partitions(
        &self,
        spec: &DeploymentSpec,
    ) -> Result<Vec<InputPartition>, DetectorError> {
        let mut out = Vec::new();
        for t in self.inputs(spec)? {
            for p in &t.partitions {
                if spec
                    .partitions
                    .as_ref()
                    .is_none_or(|ps| ps.contains(&p.index))
                {
                    out.push((t.clone(), p.clone()));
                }
            }
        }
        if let Some(ps) = &spec.partitions {
            if let Some(missing) = ps.iter().find(|i| !out.iter().any(|(_, p)| p.index == **i)) {
                return Err(DetectorError::Spec(SpecError(format!(
                    "partition {missing} does not exist in {:?}",
                    spec.inputs
                ))));
            }
        }
        Ok(out)
    }

    /// The offset `start` means on `p` now.
    pub(crate) async fn start_offset(
        &self,
        p: &Partition,
        start: StartPosition,
    ) -> Result<i64, DetectorError> {
        let (lo, hi) = (p.log_start_offset(), p.high_watermark());
        Ok(match start {
            StartPosition::Earliest => lo,
            StartPosition::Latest => hi,
            StartPosition::Offset(o) => o.clamp(lo, hi),
            StartPosition::Timestamp(ts) => self
                .log
                .offset_for_timestamp(p, ts)
                .await?
                .map_or(hi, |l| l.offset),
        })
    }

    /// The output topic `name`, created if missing with as many partitions
    /// as the widest input and the first input's retention: alerts carry
    /// their source record's timestamp, so they age with their input (a
    /// replay over years-old data must not write alerts that default
    /// retention deletes on its next pass).
    pub(crate) async fn ensure_topic(
        &self,
        name: &str,
        inputs: &[Arc<Topic>],
    ) -> Result<Arc<Topic>, DetectorError> {
        if let Some(t) = self.log.topic(name) {
            return Ok(t);
        }
        let partitions = inputs.iter().map(|t| t.partitions.len()).max().unwrap_or(1) as i32;
        let configs = inputs
            .first()
            .map(|t| {
                t.configs
                    .iter()
                    .filter(|(k, _)| k.starts_with("retention."))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let cfg = TopicConfig {
            partitions,
            configs,
        };
        match self.log.create_topic(name, cfg).await {
            Ok(t) => Ok(t),
            Err(StorageError::TopicExists(_)) => self
                .log
                .topic(name)
                .ok_or_else(|| DetectorError::UnknownTopic(name.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes deployment records and checkpoints durably. The log's
    /// write-ahead log retries a failed store write itself and never drops
    /// an entry, so this waits through a store outage; callers bound their
    /// wait, not this.
    pub(crate) async fn persist(
        &self,
        entries: Vec<(String, Option<String>)>,
    ) -> Result<(), DetectorError> {
        self.records.put(entries).await
    }

    /// Whether other brokers share the deployments (a cluster).
    pub(crate) fn shared(&self) -> bool {
        self.records.shared()
    }

    /// The partition of `topic` that input partition `index` writes to.
    pub(crate) fn output_partition(topic: &Topic, index: i32) -> Option<Arc<Partition>> {
        let n = topic.partitions.len();
        (n > 0).then(|| topic.partitions[index as usize % n].clone())
    }
}
