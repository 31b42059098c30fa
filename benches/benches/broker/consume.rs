//! Consume passes, hot and cold.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use rdkafka::consumer::Consumer;
use vigil_server::server::Running;

use crate::broker::Snapshot;
use crate::common::{assign_from_start, assign_only_consumer, drain};
use crate::CONSUME_STALL;

// ---------------------------------------------------------------- consume

pub(crate) struct ConsumeResult {
    pub(crate) records: u64,
    pub(crate) bytes: u64,
    pub(crate) elapsed: Duration,
    pub(crate) broker: Snapshot,
}

impl ConsumeResult {
    pub(crate) fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

/// Reads every partition of `topic` from offset 0 up to its high watermark
/// with an assign-only consumer (no group membership, no commits).
pub(crate) fn consume(addr: &str, topic: &str, running: &Running) -> Result<ConsumeResult> {
    let consumer = assign_only_consumer(addr)?;
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .with_context(|| format!("metadata of {topic}"))?;
    let partitions: Vec<i32> = meta
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        bail!("topic {topic} has no partitions in the metadata");
    }
    let (assignment, remaining) = assign_from_start(&consumer, topic, partitions)?;
    let before = Snapshot::of(running);
    let start = Instant::now();
    let (records, bytes) = drain(&consumer, &assignment, remaining, CONSUME_STALL)?;
    let elapsed = start.elapsed();
    let broker = Snapshot::of(running).since(&before);
    Ok(ConsumeResult {
        records,
        bytes,
        elapsed,
        broker,
    })
}
