//! The producer used to fill topics.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use crate::common::{lock, payload, percentile, send_when_queued, Reports};
use crate::WARMUP_RECORDS;

// ---------------------------------------------------------------- produce

pub(crate) struct Produced {
    pub(crate) records: u64,
    pub(crate) record_bytes: usize,
    pub(crate) elapsed: Duration,
    /// Sorted.
    pub(crate) latencies_ns: Vec<u64>,
}

impl Produced {
    pub(crate) fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    pub(crate) fn mb_per_sec(&self) -> f64 {
        self.rate() * self.record_bytes as f64 / 1e6
    }

    pub(crate) fn p(&self, q: f64) -> f64 {
        percentile(&self.latencies_ns, q)
    }
}

pub(crate) struct Producing {
    pub(crate) producer: ThreadedProducer<Reports>,
    pub(crate) body: Vec<u8>,
    pub(crate) topic: String,
    /// Records go round-robin over this many partitions, explicitly.
    pub(crate) partitions: i32,
    pub(crate) next: u64,
}

impl Producing {
    pub(crate) fn new(
        addr: &str,
        topic: &str,
        partitions: i32,
        record_bytes: usize,
    ) -> Result<Self> {
        let reports = Reports::new();
        let producer: ThreadedProducer<Reports> = ClientConfig::new()
            .set("bootstrap.servers", addr)
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("compression.type", "none")
            .set("enable.idempotence", "false")
            .set("queue.buffering.max.messages", "10000")
            .set("message.timeout.ms", "120000")
            .create_with_context(reports)
            .context("cannot create the producer")?;
        let mut me = Producing {
            producer,
            body: payload(record_bytes),
            topic: topic.to_string(),
            partitions,
            next: 0,
        };
        // Connections, metadata, the broker's first writes.
        me.run(WARMUP_RECORDS, None, "warm-up")?;
        Ok(me)
    }

    /// Sends `n` records (paced at `rate` records/s if given) and waits for
    /// every ack.
    pub(crate) fn run(&mut self, n: u64, rate: Option<f64>, what: &str) -> Result<Produced> {
        let ctx = self.producer.context();
        ctx.reset();
        let start_ns = ctx.now_ns() as u64;
        let start = Instant::now();
        for i in 0..n {
            if let Some(rate) = rate {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                let now = Instant::now();
                if due > now + Duration::from_micros(200) {
                    std::thread::sleep(due - now);
                }
            }
            let part = (self.next % self.partitions as u64) as i32;
            self.next += 1;
            let record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&self.topic, ctx.now_ns())
                .payload(&self.body)
                .partition(part);
            send_when_queued(&self.producer, record, Duration::from_micros(50), |r| {
                r.delivery_opaque(ctx.now_ns())
            })
            .context("cannot hand a record to librdkafka")?;
        }
        ctx.flush_checked(&self.producer, n, what, Duration::from_secs(180))?;
        let end_ns = ctx.last_delivery_ns.load(Ordering::SeqCst);
        let elapsed = Duration::from_nanos(end_ns.saturating_sub(start_ns))
            .max(Duration::from_nanos(1))
            .min(start.elapsed());
        let mut latencies_ns: Vec<u64> = std::mem::take(&mut *lock(&ctx.samples))
            .into_iter()
            .map(|(_, latency)| latency)
            .collect();
        latencies_ns.sort_unstable();
        Ok(Produced {
            records: n,
            record_bytes: self.body.len(),
            elapsed,
            latencies_ns,
        })
    }
}
