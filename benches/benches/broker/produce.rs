//! Produce passes at fixed and open-loop rates.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use vigil_server::server::Running;

use crate::broker::Snapshot;
use crate::common::{lock, pace, payload, percentile, send_when_queued, Reports};
use crate::settings::{Params, RateSpec};
use crate::WARMUP_RECORDS;

/// How long a flush may wait for every acknowledgement.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------- produce

#[derive(Debug, Clone, Copy)]
pub(crate) enum Load {
    /// This many records, as fast as the client's queue allows.
    Max(u64),
    /// `n` records paced at `rate` records/s.
    Rate { rate: f64, n: u64, spec: RateSpec },
}

pub(crate) struct ProducePoint {
    pub(crate) label: String,
    /// The records/s the producer was paced at (`None`: as fast as it can).
    pub(crate) paced: Option<f64>,
    pub(crate) records: u64,
    pub(crate) record_bytes: usize,
    pub(crate) elapsed: Duration,
    /// Sorted.
    pub(crate) latencies_ns: Vec<u64>,
    pub(crate) broker: Snapshot,
    /// Seconds into the point at which the broker committed an upload.
    pub(crate) uploads_at: Vec<f64>,
    /// 100 ms windows (by send time, seconds into the point) whose slowest
    /// ack took over 10× the median, with that slowest ack in ms.
    pub(crate) slow_windows: Vec<(f64, f64)>,
}

impl ProducePoint {
    pub(crate) fn achieved_rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    pub(crate) fn mb_per_sec(&self) -> f64 {
        self.achieved_rate() * self.record_bytes as f64 / 1e6
    }

    pub(crate) fn p(&self, q: f64) -> f64 {
        percentile(&self.latencies_ns, q)
    }

    /// Average WAL group commit (bytes, per second) during the point.
    pub(crate) fn wal_group(&self) -> Option<(f64, f64)> {
        let (writes, bytes) = self.broker.wal?;
        (writes > 0).then(|| {
            (
                bytes as f64 / writes as f64,
                writes as f64 / self.elapsed.as_secs_f64(),
            )
        })
    }
}

pub(crate) fn produce(
    running: &Running,
    addr: &str,
    topic: &str,
    load: Load,
    p: &Params,
) -> Result<ProducePoint> {
    let reports = Reports::new();
    let producer: ThreadedProducer<Reports> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("linger.ms", p.linger_ms.to_string())
        .set("compression.type", "none")
        .set("enable.idempotence", "false")
        .set("queue.buffering.max.messages", p.max_queue.to_string())
        .set("message.timeout.ms", "60000")
        .create_with_context(reports)
        .context("cannot create the producer")?;
    let body = payload(p.record_bytes);
    let ctx = producer.context();

    // Warm-up: connections, metadata, the broker's first writes.
    send_all(&producer, topic, &body, WARMUP_RECORDS, None)?;
    ctx.flush_checked(&producer, WARMUP_RECORDS, "warm-up", FLUSH_TIMEOUT)?;
    // Start from a quiet broker: let it upload what earlier points left.
    settle(running);
    ctx.reset();

    let before = Snapshot::of(running);
    let (n, rate, label) = match load {
        Load::Max(n) => (n, None, "max".to_string()),
        Load::Rate { rate, n, spec } => (
            n,
            Some(rate),
            match spec {
                RateSpec::Fixed(_) => format!("{rate:.0}/s"),
                RateSpec::OfMax(_) => format!("{rate:.0}/s ({spec})"),
            },
        ),
    };
    let start_ns = ctx.now_ns() as u64;
    let start = Instant::now();
    let stop = AtomicBool::new(false);
    let (sent, uploads_ns) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| watch_uploads(running, ctx, &stop));
        let sent = send_all(&producer, topic, &body, n, rate)
            .and_then(|()| ctx.flush_checked(&producer, n, &label, FLUSH_TIMEOUT));
        stop.store(true, Ordering::SeqCst);
        (sent, watcher.join())
    });
    sent?;
    let uploads_ns = uploads_ns.map_err(|_| anyhow!("the upload watcher thread panicked"))?;
    let after = Snapshot::of(running);
    let end_ns = ctx.last_delivery_ns.load(Ordering::SeqCst);
    let elapsed = Duration::from_nanos(end_ns.saturating_sub(start_ns))
        .max(Duration::from_nanos(1))
        .min(start.elapsed());
    let samples = std::mem::take(&mut *lock(&ctx.samples));
    let mut latencies_ns: Vec<u64> = samples.iter().map(|&(_, l)| l).collect();
    latencies_ns.sort_unstable();
    let slow_windows = slow_windows(&samples, start_ns, percentile(&latencies_ns, 0.5));
    let secs = |ns: u64| ns.saturating_sub(start_ns) as f64 / 1e9;
    Ok(ProducePoint {
        label,
        paced: rate,
        records: n,
        record_bytes: p.record_bytes,
        elapsed,
        latencies_ns,
        broker: after.since(&before),
        uploads_at: uploads_ns.into_iter().map(secs).collect(),
        slow_windows,
    })
}

/// Waits for the broker's next upload cycle that commits something (it
/// uploads everything written before it started), or for two upload
/// intervals (at most 10 s) if there was nothing to upload.
pub(crate) fn settle(running: &Running) {
    let stats = &running.broker.log.stats;
    let before = stats.uploads.load(Ordering::SeqCst);
    let wait = (running.broker.settings.storage.upload_interval() * 2).min(Duration::from_secs(10));
    let deadline = Instant::now() + wait;
    while stats.uploads.load(Ordering::SeqCst) == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The counter goes up at the commit; the cycle then deletes WAL files.
    std::thread::sleep(Duration::from_millis(200));
}

/// Times (ns since the reports' base) at which the broker's upload counter
/// went up, sampled every millisecond until `stop`.
pub(crate) fn watch_uploads(running: &Running, ctx: &Reports, stop: &AtomicBool) -> Vec<u64> {
    let stats = &running.broker.log.stats;
    let mut seen = stats.uploads.load(Ordering::Relaxed);
    let mut at = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
        let now = stats.uploads.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            at.push(ctx.now_ns() as u64);
        }
    }
    at
}

/// Groups acks into 100 ms windows by send time and returns the windows whose
/// slowest ack exceeded 10× the median (and 1 ms): (start s, slowest ms).
pub(crate) fn slow_windows(samples: &[(u64, u64)], start_ns: u64, p50_ms: f64) -> Vec<(f64, f64)> {
    const WINDOW_NS: u64 = 100_000_000;
    let threshold_ns = (p50_ms * 10.0 * 1e6).max(1e6) as u64;
    let mut worst: std::collections::BTreeMap<u64, u64> = Default::default();
    for &(sent, lat) in samples {
        if lat > threshold_ns {
            let w = sent.saturating_sub(start_ns) / WINDOW_NS;
            let e = worst.entry(w).or_default();
            *e = (*e).max(lat);
        }
    }
    worst
        .into_iter()
        .map(|(w, lat)| ((w * WINDOW_NS) as f64 / 1e9, lat as f64 / 1e6))
        .collect()
}

/// Hands `n` records to librdkafka, paced at `rate` records/s if given;
/// waits (briefly sleeping) while the client's queue is full.
pub(crate) fn send_all(
    producer: &ThreadedProducer<Reports>,
    topic: &str,
    body: &[u8],
    n: u64,
    rate: Option<f64>,
) -> Result<()> {
    let ctx = producer.context();
    let start = Instant::now();
    for i in 0..n {
        if let Some(rate) = rate {
            pace(start, i, rate);
        }
        let record =
            BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, ctx.now_ns()).payload(body);
        send_when_queued(producer, record, Duration::from_micros(50), |r| {
            r.delivery_opaque(ctx.now_ns())
        })
        .context("cannot hand a record to librdkafka")?;
    }
    Ok(())
}
