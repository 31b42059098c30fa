//! Deployment specs and status, and the tracked fixed-rate producer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use serde_json::json;
use vigil_api::{DeploymentSpec, DeploymentStatus};

use crate::common::detect::{record, source_producer_config, value_schema, zscore_config};
use crate::common::server::process_cpu_secs;
use crate::common::{lock, pace, send_when_queued};

pub(crate) fn zscore_spec(
    name: &str,
    hash: &str,
    input: &str,
    output: &str,
) -> Result<DeploymentSpec> {
    serde_json::from_value(json!({
        "name": name,
        "module": hash,
        "inputs": [input],
        "output": output,
        "config": zscore_config(),
        "value_schema": value_schema(),
        "start": "latest",
    }))
    .context("the zscore deployment spec")
}

/// Sums of a deployment's per-partition status.
#[derive(Debug, Default, Clone)]
pub(crate) struct DeploymentTotals {
    pub(crate) state: String,
    pub(crate) records: u64,
    pub(crate) alerts: u64,
    /// Batches processed on the producers' tasks (design 0019).
    pub(crate) on_append: u64,
    pub(crate) lag: i64,
    pub(crate) last_error: Option<String>,
}

pub(crate) fn totals(status: &DeploymentStatus) -> DeploymentTotals {
    let mut t = DeploymentTotals {
        state: status.state.name().to_string(),
        ..Default::default()
    };
    for part in &status.partitions {
        t.records += part.records;
        t.alerts += part.alerts;
        t.on_append += part.on_append_batches;
        t.lag += part.lag;
        if let Some(e) = &part.last_error {
            t.last_error.get_or_insert_with(|| e.clone());
        }
    }
    if let Some(e) = status.state.error() {
        t.last_error = Some(e.to_string());
    }
    t
}

// ---------------------------------------------------------------- produce

/// Delivery reports keyed by record index (the opaque).
pub(crate) struct Tracked {
    pub(crate) base: Instant,
    /// (index, partition, offset, ack time ns since base).
    pub(crate) acks: Mutex<Vec<(usize, i32, i64, u64)>>,
    pub(crate) errors: AtomicU64,
    pub(crate) first_error: Mutex<Option<String>>,
}

impl ClientContext for Tracked {}

impl ProducerContext for Tracked {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, idx: usize) {
        let now = self.base.elapsed().as_nanos() as u64;
        match result {
            Ok(m) => lock(&self.acks).push((idx, m.partition(), m.offset(), now)),
            Err((e, _)) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                lock(&self.first_error).get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// A paced produce run: `warmup` records, then `n` measured ones, all at
/// `rate`, indexes 0.. in one stream.
pub(crate) struct Sent {
    pub(crate) warmup: usize,
    /// Send time (ns since base) per index.
    pub(crate) send_ns: Vec<u64>,
    /// (partition, offset, ack ns) per index.
    pub(crate) acks: Vec<Option<(i32, i64, u64)>>,
    pub(crate) outlier: Vec<bool>,
    /// Seconds from the first measured send to the last ack.
    pub(crate) elapsed: f64,
    /// CPU seconds of this process over the measured part.
    pub(crate) cpu_secs: Option<f64>,
}

impl Sent {
    pub(crate) fn measured(&self) -> std::ops::Range<usize> {
        self.warmup..self.send_ns.len()
    }

    /// Sorted ack latencies (ns) of the measured records.
    pub(crate) fn ack_latencies(&self) -> Vec<u64> {
        self.ack_latencies_of(|_| true)
    }

    /// Sorted ack latencies (ns) of the measured outliers: the records whose
    /// acknowledgement a gated deployment holds for its alerts.
    pub(crate) fn outlier_ack_latencies(&self) -> Vec<u64> {
        self.ack_latencies_of(|i| self.outlier[i])
    }

    fn ack_latencies_of(&self, keep: impl Fn(usize) -> bool) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .measured()
            .filter(|&i| keep(i))
            .filter_map(|i| self.acks[i].map(|(_, _, ack)| ack.saturating_sub(self.send_ns[i])))
            .collect();
        v.sort_unstable();
        v
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn produce(
    addr: &str,
    topic: &str,
    base: Instant,
    linger_ms: u64,
    keys: u64,
    outlier_ppm: u64,
    warmup: usize,
    n: usize,
    rate: f64,
) -> Result<Sent> {
    let producer: ThreadedProducer<Tracked> = source_producer_config(addr, linger_ms)
        .create_with_context(Tracked {
            base,
            acks: Mutex::new(Vec::new()),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
        })
        .context("cannot create the producer")?;
    let ctx = producer.context();
    let total = warmup + n;
    let mut send_ns = Vec::with_capacity(total);
    let mut outlier = Vec::with_capacity(total);
    let now_ns = || base.elapsed().as_nanos() as u64;
    let start = Instant::now();
    let mut measured_start = (now_ns(), process_cpu_secs());
    for i in 0..total {
        if i == warmup {
            measured_start = (now_ns(), process_cpu_secs());
        }
        pace(start, i as u64, rate);
        let r = record(i as u64, keys, outlier_ppm);
        outlier.push(r.outlier);
        send_ns.push(now_ns());
        let rec = BaseRecord::<str, str, usize>::with_opaque_to(topic, i)
            .key(r.key.as_str())
            .payload(r.value.as_str());
        send_when_queued(&producer, rec, Duration::from_micros(100), |back| back)
            .context("cannot hand a record to librdkafka")?;
    }
    producer
        .flush(Duration::from_secs(120))
        .context("not all records were acknowledged within 120 s")?;
    let cpu_end = process_cpu_secs();
    let errors = ctx.errors.load(Ordering::SeqCst);
    if errors > 0 {
        bail!(
            "{errors} of {total} records to {topic} failed; first error: {}",
            lock(&ctx.first_error).clone().unwrap_or_default()
        );
    }
    let mut acks = vec![None; total];
    let mut last_ack = 0;
    for &(i, part, off, at) in lock(&ctx.acks).iter() {
        if let Some(slot) = acks.get_mut(i) {
            *slot = Some((part, off, at));
            last_ack = last_ack.max(at);
        }
    }
    let missing = acks.iter().filter(|a| a.is_none()).count();
    if missing > 0 {
        bail!("{missing} of {total} records to {topic} got no delivery report");
    }
    let elapsed = last_ack.saturating_sub(measured_start.0) as f64 / 1e9;
    let cpu_secs = match (measured_start.1, cpu_end) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    Ok(Sent {
        warmup,
        send_ns,
        acks,
        outlier,
        elapsed,
        cpu_secs,
    })
}
