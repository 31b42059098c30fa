//! Section 2 plumbing: alert consumers and the external (rdkafka) pipeline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::ThreadedProducer;
use rdkafka::{Offset, TopicPartitionList};
use vigil_engine::output::headers as alert_headers;

use crate::common;
use crate::common::detect::zscore_config;
use crate::common::lock;
use crate::common::native::{runs, send_alert, ErrorCount, InMsg, NativeZscore};
use crate::settings::Params;
use crate::EXT_MAX_BATCH;

// ------------------------------------------------ 2: alert latency

/// Consumer settings shared by the alert consumers and the external
/// pipeline's input consumer.
pub(crate) fn low_latency_consumer(addr: &str, fetch_wait_ms: u64) -> Result<BaseConsumer> {
    common::assign_only_config(addr)
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
        .set("fetch.min.bytes", "1")
        .create()
        .context("cannot create the consumer")
}

pub(crate) fn assign_all(consumer: &BaseConsumer, topic: &str, partitions: i32) -> Result<()> {
    let mut tpl = TopicPartitionList::new();
    for part in 0..partitions {
        tpl.add_partition_offset(topic, part, Offset::Beginning)
            .context("building the assignment")?;
    }
    consumer.assign(&tpl).context("assign")
}

/// The source (topic, partition, offset) an alert record's headers name.
pub(crate) fn alert_source<M: Message>(m: &M) -> Option<(String, i32, i64)> {
    let hs = m.headers()?;
    let (mut topic, mut part, mut off) = (None, None, None);
    for h in hs.iter() {
        let v = || h.value.and_then(|v| std::str::from_utf8(v).ok());
        match h.key {
            k if k == alert_headers::SOURCE_TOPIC => topic = v().map(str::to_string),
            k if k == alert_headers::SOURCE_PARTITION => part = v().and_then(|s| s.parse().ok()),
            k if k == alert_headers::SOURCE_OFFSET => off = v().and_then(|s| s.parse().ok()),
            _ => {}
        }
    }
    Some((topic?, part?, off?))
}

/// Reads `topic` until `stop`, recording (source partition, source offset,
/// consume time) of each alert about `source_topic`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn collect_alerts(
    addr: &str,
    topic: &str,
    partitions: i32,
    source_topic: &str,
    base: Instant,
    fetch_wait_ms: u64,
    stop: &AtomicBool,
    out: &Mutex<Vec<(i32, i64, u64)>>,
) -> Result<()> {
    let consumer = low_latency_consumer(addr, fetch_wait_ms)?;
    assign_all(&consumer, topic, partitions)?;
    while !stop.load(Ordering::SeqCst) {
        match consumer.poll(Duration::from_millis(20)) {
            Some(Ok(m)) => {
                let at = base.elapsed().as_nanos() as u64;
                if let Some((t, part, off)) = alert_source(&m) {
                    if t == source_topic {
                        lock(out).push((part, off, at));
                    }
                }
            }
            Some(Err(e)) => bail!("alert consumer on {topic}: {e}"),
            None => {}
        }
    }
    Ok(())
}

#[derive(Debug, Default)]
pub(crate) struct ExtStats {
    pub(crate) records: u64,
    pub(crate) polls: u64,
    pub(crate) batches: u64,
    pub(crate) alerts: u64,
    pub(crate) detect_ns: u64,
}

/// The external pipeline: consume `input`, run zscore natively (one
/// detector per partition, as a deployment has), produce alerts to `output`
/// with the same provenance headers vigil writes.
pub(crate) fn external_pipeline(
    addr: &str,
    input: &str,
    output: &str,
    p: &Params,
    stop: &AtomicBool,
) -> Result<ExtStats> {
    let consumer = low_latency_consumer(addr, p.fetch_wait_ms)?;
    assign_all(&consumer, input, p.partitions)?;
    let producer: ThreadedProducer<ErrorCount> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("linger.ms", p.ext_linger_ms.to_string())
        .set("compression.type", "none")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "60000")
        .create_with_context(ErrorCount::new())
        .context("cannot create the external pipeline's producer")?;
    let mut zscore = NativeZscore::new(zscore_config());
    let mut stats = ExtStats::default();
    while !stop.load(Ordering::SeqCst) {
        // One message (waiting briefly), then whatever else is ready.
        let mut msgs: Vec<InMsg> = Vec::new();
        let mut wait = Duration::from_millis(20);
        while msgs.len() < EXT_MAX_BATCH {
            match consumer.poll(wait) {
                Some(Ok(m)) => msgs.push(InMsg::of(&m)),
                Some(Err(e)) => bail!("external pipeline consumer: {e}"),
                None => break,
            }
            wait = Duration::ZERO;
        }
        if msgs.is_empty() {
            continue;
        }
        stats.polls += 1;
        stats.records += msgs.len() as u64;
        for run in runs(&msgs) {
            let part = run[0].partition;
            let t = Instant::now();
            let alerts = zscore.process(&run).context("external pipeline: zscore")?;
            stats.detect_ns += t.elapsed().as_nanos() as u64;
            stats.batches += 1;
            for a in alerts {
                send_alert(&producer, input, output, part, a)
                    .context("external pipeline: cannot produce an alert")?;
                stats.alerts += 1;
            }
        }
    }
    ErrorCount::flush_checked(&producer, "external pipeline", Duration::from_secs(30))?;
    Ok(stats)
}
