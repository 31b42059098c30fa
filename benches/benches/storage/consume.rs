//! Consumers that read topics back.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::common::{assign_from_start, assign_only_consumer, drain};
use crate::CONSUME_STALL;

// ---------------------------------------------------------------- consume

pub(crate) fn consumer(addr: &str) -> Result<BaseConsumer> {
    assign_only_consumer(addr)
}

pub(crate) struct Consumed {
    pub(crate) records: u64,
    pub(crate) bytes: u64,
    pub(crate) elapsed: Duration,
}

impl Consumed {
    pub(crate) fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

/// Reads every partition of `topic` from offset 0 up to its high watermark.
pub(crate) fn consume_all(addr: &str, topic: &str, partitions: i32) -> Result<Consumed> {
    let consumer = consumer(addr)?;
    let (assignment, remaining) = assign_from_start(&consumer, topic, 0..partitions)?;
    let start = Instant::now();
    let (records, bytes) = drain(&consumer, &assignment, remaining, CONSUME_STALL)?;
    Ok(Consumed {
        records,
        bytes,
        elapsed: start.elapsed(),
    })
}

/// Fetches the newest record of `topic`/0: its watermark, then one record at
/// high watermark − 1.
pub(crate) fn fetch_newest(addr: &str, topic: &str) -> Result<i64> {
    let consumer = consumer(addr)?;
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(30))
        .with_context(|| format!("watermarks of {topic}/0"))?;
    if high == 0 {
        bail!("{topic}/0 is empty on the new broker");
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(high - 1))
        .context("building the assignment")?;
    consumer.assign(&assignment).context("assign")?;
    let deadline = Instant::now() + CONSUME_STALL;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => return Ok(m.offset()),
            Some(Err(e)) => bail!("consumer error: {e}"),
            None => {}
        }
    }
    bail!(
        "no record at offset {} of {topic}/0 within {} s",
        high - 1,
        CONSUME_STALL.as_secs()
    )
}
