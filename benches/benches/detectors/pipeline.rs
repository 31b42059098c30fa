//! Section 2 plumbing: alert consumers and the external (rdkafka) pipeline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::{json, Value};
use vigil_broker::detectors::output::headers as alert_headers;
use vigil_sdk::testing::{FieldType, Rows};
use vigil_sdk::{Alerts, Detector};

use crate::common;
use crate::common::{lock, send_when_queued};
use crate::data::zscore_config;
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

/// Counts failed alert deliveries of the external pipeline.
pub(crate) struct ErrorCount {
    pub(crate) errors: AtomicU64,
    pub(crate) first: Mutex<Option<String>>,
}

impl ClientContext for ErrorCount {}

impl ProducerContext for ErrorCount {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.errors.fetch_add(1, Ordering::Relaxed);
            lock(&self.first).get_or_insert_with(|| e.to_string());
        }
    }
}

/// A consumed input record, owned.
pub(crate) struct InMsg {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) timestamp: i64,
    pub(crate) key: Vec<u8>,
    pub(crate) value: Vec<u8>,
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
        .create_with_context(ErrorCount {
            errors: AtomicU64::new(0),
            first: Mutex::new(None),
        })
        .context("cannot create the external pipeline's producer")?;
    let mut detectors: HashMap<i32, vigil_plugin_zscore::ZScore> = HashMap::new();
    let mut stats = ExtStats::default();
    let config = zscore_config();
    while !stop.load(Ordering::SeqCst) {
        // One message (waiting briefly), then whatever else is ready.
        let mut msgs: Vec<InMsg> = Vec::new();
        let mut wait = Duration::from_millis(20);
        while msgs.len() < EXT_MAX_BATCH {
            match consumer.poll(wait) {
                Some(Ok(m)) => msgs.push(InMsg {
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp: m.timestamp().to_millis().unwrap_or(0),
                    key: m.key().unwrap_or_default().to_vec(),
                    value: m.payload().unwrap_or_default().to_vec(),
                }),
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
        // Runs of consecutive offsets of one partition, in arrival order.
        let mut runs: Vec<Vec<&InMsg>> = Vec::new();
        let mut open: HashMap<i32, usize> = HashMap::new();
        for m in &msgs {
            match open.get(&m.partition) {
                Some(&i) if runs[i].last().is_some_and(|l| l.offset + 1 == m.offset) => {
                    runs[i].push(m)
                }
                _ => {
                    open.insert(m.partition, runs.len());
                    runs.push(vec![m]);
                }
            }
        }
        for run in runs {
            let (part, first) = (run[0].partition, run[0].offset);
            let t = Instant::now();
            let mut rows = Rows::new(part, first).schema(&[("amount", FieldType::F64)]);
            for m in &run {
                let v: Value = serde_json::from_slice(&m.value).unwrap_or(Value::Null);
                rows = rows.row(m.timestamp, Some(&m.key), v);
            }
            let batch = rows
                .try_build()
                .context("external pipeline: building a batch")?;
            let det = match detectors.entry(part) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(
                    vigil_sdk::testing::new_detector(config.clone())
                        .context("external pipeline: zscore config")?,
                ),
            };
            let mut alerts = Alerts::new();
            det.process(&batch, &mut alerts)
                .context("external pipeline: zscore")?;
            stats.detect_ns += t.elapsed().as_nanos() as u64;
            stats.batches += 1;
            for a in alerts.into_vec() {
                let a = a.into_abi();
                let text = |b: &Option<Vec<u8>>| {
                    b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
                };
                let fields: serde_json::Map<String, Value> = a
                    .fields
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::from_str(v).unwrap_or(Value::Null)))
                    .collect();
                let value = json!({
                    "severity": a.severity.as_str(),
                    "score": a.score,
                    "key": text(&a.key),
                    "message": text(&a.value),
                    "source": {"topic": input, "partition": part, "offset": a.source_offset},
                    "fields": fields,
                })
                .to_string();
                let (ps, os) = (part.to_string(), a.source_offset.to_string());
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: alert_headers::SOURCE_TOPIC,
                        value: Some(input),
                    })
                    .insert(Header {
                        key: alert_headers::SOURCE_PARTITION,
                        value: Some(&ps),
                    })
                    .insert(Header {
                        key: alert_headers::SOURCE_OFFSET,
                        value: Some(&os),
                    });
                let key = a.key.clone().unwrap_or_default();
                let rec = BaseRecord::<[u8], str, ()>::to(output)
                    .partition(part)
                    .key(key.as_slice())
                    .payload(value.as_str())
                    .headers(headers);
                send_when_queued(&producer, rec, Duration::from_micros(100), |back| back)
                    .context("external pipeline: cannot produce an alert")?;
                stats.alerts += 1;
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .context("external pipeline: alerts not acknowledged within 30 s")?;
    let errors = producer.context().errors.load(Ordering::SeqCst);
    if errors > 0 {
        bail!(
            "external pipeline: {errors} alerts failed; first error: {}",
            lock(&producer.context().first).clone().unwrap_or_default()
        );
    }
    Ok(stats)
}
