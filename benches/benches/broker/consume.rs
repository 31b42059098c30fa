//! Consume passes, hot and cold.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use vigil_broker::server::Running;

use crate::broker::Snapshot;
use crate::common::assign_only_consumer;
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
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for &part in &partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, part, Duration::from_secs(30))
            .with_context(|| format!("watermarks of {topic}/{part}"))?;
        if high > 0 {
            remaining.insert(part, high);
            assignment
                .add_partition_offset(topic, part, Offset::Offset(0))
                .context("building the assignment")?;
        }
    }
    let before = Snapshot::of(running);
    let start = Instant::now();
    consumer.assign(&assignment).context("assign")?;
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut last_progress = Instant::now();
    while !remaining.is_empty() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                records += 1;
                bytes += (m.payload_len() + m.key().map_or(0, <[u8]>::len)) as u64;
                last_progress = Instant::now();
                if remaining
                    .get(&m.partition())
                    .is_some_and(|&hw| m.offset() + 1 >= hw)
                {
                    remaining.remove(&m.partition());
                }
            }
            Some(Err(e)) => bail!("consumer error after {records} records: {e}"),
            None => {}
        }
        if last_progress.elapsed() > CONSUME_STALL {
            bail!(
                "consumer stuck: no record for {} s after {records} records; partitions not \
                 done (partition → high watermark): {remaining:?}",
                CONSUME_STALL.as_secs()
            );
        }
    }
    let elapsed = start.elapsed();
    let broker = Snapshot::of(running).since(&before);
    Ok(ConsumeResult {
        records,
        bytes,
        elapsed,
        broker,
    })
}
