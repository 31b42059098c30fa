//! The external pipeline's core, shared by the `detectors` bench (alert
//! latency) and the `replay` bench (its baseline): records consumed with
//! librdkafka, grouped into runs of consecutive offsets, built into Arrow
//! batches with the SDK's test builder (serde_json per record), run through
//! zscore compiled natively (one detector per partition, as a deployment
//! has), and the alerts produced with the provenance headers vigil writes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use rdkafka::message::{DeliveryResult, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use serde_json::{json, Value};
use vigil_engine::output::headers as alert_headers;
use vigil_sdk::testing::{FieldType, Rows};
use vigil_sdk::{Alerts, Detector};

use super::{lock, send_when_queued};

/// A consumed input record, owned.
pub struct InMsg {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

impl InMsg {
    pub fn of<M: Message>(m: &M) -> Self {
        InMsg {
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis().unwrap_or(0),
            key: m.key().unwrap_or_default().to_vec(),
            value: m.payload().unwrap_or_default().to_vec(),
        }
    }
}

/// Runs of consecutive offsets of one partition, in arrival order: each is
/// one detector batch.
pub fn runs(msgs: &[InMsg]) -> Vec<Vec<&InMsg>> {
    let mut runs: Vec<Vec<&InMsg>> = Vec::new();
    let mut open: HashMap<i32, usize> = HashMap::new();
    for m in msgs {
        match open.get(&m.partition) {
            Some(&i) if runs[i].last().is_some_and(|l| l.offset + 1 == m.offset) => runs[i].push(m),
            _ => {
                open.insert(m.partition, runs.len());
                runs.push(vec![m]);
            }
        }
    }
    runs
}

/// zscore compiled natively, one detector per partition.
pub struct NativeZscore {
    config: Value,
    detectors: HashMap<i32, vigil_plugin_zscore::ZScore>,
}

impl NativeZscore {
    pub fn new(config: Value) -> Self {
        NativeZscore {
            config,
            detectors: HashMap::new(),
        }
    }

    /// Builds `run` (one partition, consecutive offsets) into a batch of
    /// the value schema `amount: float64` and processes it.
    pub fn process(&mut self, run: &[&InMsg]) -> Result<Vec<vigil_sdk::Alert>> {
        let (part, first) = (run[0].partition, run[0].offset);
        let mut rows = Rows::new(part, first).schema(&[("amount", FieldType::F64)]);
        for m in run {
            let v: Value = serde_json::from_slice(&m.value).unwrap_or(Value::Null);
            rows = rows.row(m.timestamp, Some(&m.key), v);
        }
        let batch = rows.try_build().context("building a batch")?;
        let det = match self.detectors.entry(part) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(
                vigil_sdk::testing::new_detector(self.config.clone()).context("zscore config")?,
            ),
        };
        let mut alerts = Alerts::new();
        det.process(&batch, &mut alerts).context("zscore")?;
        Ok(alerts.into_vec())
    }
}

/// Counts failed deliveries (alerts, or the records of a bulk fill).
pub struct ErrorCount {
    pub errors: AtomicU64,
    pub first: Mutex<Option<String>>,
}

impl ErrorCount {
    pub fn new() -> Self {
        ErrorCount {
            errors: AtomicU64::new(0),
            first: Mutex::new(None),
        }
    }

    /// Flushes `producer` (at most `timeout`) and fails if any record was
    /// not delivered.
    pub fn flush_checked(
        producer: &ThreadedProducer<ErrorCount>,
        what: &str,
        timeout: Duration,
    ) -> Result<()> {
        super::flush_within(producer, what, timeout)?;
        let errors = producer.context().errors.load(Ordering::SeqCst);
        if errors > 0 {
            bail!(
                "{what}: {errors} records failed; first error: {}",
                lock(&producer.context().first).clone().unwrap_or_default()
            );
        }
        Ok(())
    }
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

/// Produces `a`, raised on `input`/`part`, to the same partition of
/// `output`: a JSON value like vigil's alert records and the source headers.
pub fn send_alert(
    producer: &ThreadedProducer<ErrorCount>,
    input: &str,
    output: &str,
    part: i32,
    alert: vigil_sdk::Alert,
) -> Result<()> {
    let a = alert.into_abi();
    let text = |b: &Option<Vec<u8>>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
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
    send_when_queued(producer, rec, Duration::from_micros(100), |back| back)
        .context("cannot produce an alert")
}
