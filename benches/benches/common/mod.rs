//! Helpers shared by the bench targets (`broker`, `storage`, `detectors`,
//! `replay`),
//! each of which includes this file with
//! `#[path = "../common/mod.rs"] mod common;`: settings from the
//! environment, machine description, topic creation, the assign-only
//! consumer, and the librdkafka producer context that records ack latencies.
//!
//! Not every target uses every helper. The submodules hold what the
//! detector-driving targets (`detectors`, `replay`) share.
#![allow(dead_code)]

pub mod detect;
pub mod native;
pub mod server;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message, ToBytes};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::runtime::Runtime;

/// Logs to stderr at `RUST_LOG` (default `warn`).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// The variable `name` parsed as `T`, or `default` when unset or blank.
pub fn env_or<T: FromStr>(name: &str, default: T) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|e| anyhow!("environment variable {name}={v:?} is not valid: {e}")),
        _ => Ok(default),
    }
}

/// The workspace root (this package is `benches/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// "N cores (CPU model), X GiB RAM".
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or_else(
            || "unknown".into(),
            |kb| format!("{:.1} GiB", kb / 1048576.0),
        );
    format!("{cores} cores ({cpu}), {mem} RAM")
}

/// "device (fstype) mounted at X" for the mount holding `path`.
pub fn mount_of(path: &Path) -> String {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return "unknown filesystem".into();
    };
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?, f.next()?, f.next()?))
        })
        .filter(|(_, at, _)| path.starts_with(at))
        .max_by_key(|(_, at, _)| at.len())
        .map_or_else(
            || "unknown filesystem".into(),
            |(dev, at, fs)| format!("{dev} ({fs}) mounted at {at}"),
        )
}

/// Creates `name` with `partitions` partitions through the Kafka admin API.
pub fn create_topic(rt: &Runtime, addr: &str, name: &str, partitions: i32) -> Result<()> {
    let _guard = rt.enter();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .context("cannot create the admin client")?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = rt
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(60),
                admin.create_topics([&topic], &opts),
            )
            .await
        })
        .map_err(|_| anyhow!("CreateTopics {name} did not answer within 60 s"))?
        .with_context(|| format!("CreateTopics {name}"))?;
    for r in results {
        r.map_err(|(t, e)| anyhow!("cannot create topic {t}: {e}"))?;
    }
    Ok(())
}

/// The settings of a consumer that is only ever `assign`ed: librdkafka's
/// `assign` needs a `group.id`, but with no `subscribe` the consumer never
/// joins the group and, with auto-commit off, never commits.
pub fn assign_only_config(addr: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr)
        .set("group.id", "vigil-bench-assign-only")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    c
}

/// An assign-only consumer with librdkafka's default fetch settings.
pub fn assign_only_consumer(addr: &str) -> Result<BaseConsumer> {
    assign_only_config(addr)
        .create()
        .context("cannot create the consumer")
}

/// `q`-quantile of sorted nanoseconds, in milliseconds (NaN when empty).
pub fn percentile(sorted_ns: &[u64], q: f64) -> f64 {
    if sorted_ns.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted_ns.len() as f64).ceil() as usize).clamp(1, sorted_ns.len());
    sorted_ns[rank - 1] as f64 / 1e6
}

/// Incompressible-looking bytes (xorshift), the same for every call.
pub fn payload(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Sleeps until record `i` of a stream paced at `rate` records/s is due,
/// but only when well ahead: sleeps are coarse, bursts of a few records are
/// not.
pub fn pace(start: Instant, i: u64, rate: f64) {
    let due = start + Duration::from_secs_f64(i as f64 / rate);
    let now = Instant::now();
    if due > now + Duration::from_micros(200) {
        std::thread::sleep(due - now);
    }
}

/// Hands `record` to librdkafka, sleeping `backoff` while the client's queue
/// is full; `requeue` prepares the record handed back for the next try
/// (e.g. stamps a new send time into its opaque).
pub fn send_when_queued<'a, K, P, C>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'a, K, P, C::DeliveryOpaque>,
    backoff: Duration,
    mut requeue: impl FnMut(
        BaseRecord<'a, K, P, C::DeliveryOpaque>,
    ) -> BaseRecord<'a, K, P, C::DeliveryOpaque>,
) -> Result<(), KafkaError>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
    C: ProducerContext + 'static,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                std::thread::sleep(backoff);
                record = requeue(back);
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// An assignment of every partition in `partitions` of `topic` that has
/// records, from offset 0, with each one's high watermark (where reading it
/// is done).
pub fn assign_from_start(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: impl IntoIterator<Item = i32>,
) -> Result<(TopicPartitionList, std::collections::HashMap<i32, i64>)> {
    let mut remaining = std::collections::HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for part in partitions {
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
    Ok((assignment, remaining))
}

/// Assigns `assignment` and polls until every partition in `remaining`
/// reached its high watermark; returns (records, key + payload bytes). Fails
/// if no record arrives for `stall`.
pub fn drain(
    consumer: &BaseConsumer,
    assignment: &TopicPartitionList,
    mut remaining: std::collections::HashMap<i32, i64>,
    stall: Duration,
) -> Result<(u64, u64)> {
    consumer.assign(assignment).context("assign")?;
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
            Some(Err(e)) => return Err(anyhow!("consumer error after {records} records: {e}")),
            None => {}
        }
        if last_progress.elapsed() > stall {
            return Err(anyhow!(
                "consumer stuck: no record for {} s after {records} records; partitions not \
                 done (partition → high watermark): {remaining:?}",
                stall.as_secs()
            ));
        }
    }
    Ok((records, bytes))
}

/// Flushes `producer`, failing if its records are not all acknowledged
/// within `timeout` (what the delivery reports said is the caller's check).
pub fn flush_within<C: rdkafka::producer::ProducerContext + 'static>(
    producer: &ThreadedProducer<C>,
    what: &str,
    timeout: Duration,
) -> Result<()> {
    producer.flush(timeout).with_context(|| {
        format!(
            "{what}: not all records were acknowledged within {} s",
            timeout.as_secs()
        )
    })
}

/// Producer context recording delivery reports: the opaque of each record
/// is its send time in nanoseconds since `base`.
pub struct Reports {
    pub base: Instant,
    /// (send time, ack latency) of each delivered record, in ns.
    pub samples: Mutex<Vec<(u64, u64)>>,
    pub delivered: AtomicU64,
    pub errors: AtomicU64,
    pub first_error: Mutex<Option<String>>,
    pub last_delivery_ns: AtomicU64,
}

impl Reports {
    pub fn new() -> Self {
        Reports {
            base: Instant::now(),
            samples: Mutex::new(Vec::new()),
            delivered: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            last_delivery_ns: AtomicU64::new(0),
        }
    }

    pub fn now_ns(&self) -> usize {
        self.base.elapsed().as_nanos() as usize
    }

    /// Flushes `producer` (at most `timeout`) and checks that all
    /// `expected` records were acknowledged without errors.
    pub fn flush_checked(
        &self,
        producer: &ThreadedProducer<Reports>,
        expected: u64,
        what: &str,
        timeout: Duration,
    ) -> Result<()> {
        flush_within(producer, what, timeout)?;
        let errors = self.errors.load(Ordering::SeqCst);
        if errors > 0 {
            return Err(anyhow!(
                "{what}: {errors} of {expected} records failed; first error: {}",
                lock(&self.first_error).clone().unwrap_or_default()
            ));
        }
        let delivered = self.delivered.load(Ordering::SeqCst);
        if delivered != expected {
            return Err(anyhow!(
                "{what}: {delivered} delivery reports for {expected} records"
            ));
        }
        Ok(())
    }

    /// Clears what a warm-up left.
    pub fn reset(&self) {
        lock(&self.samples).clear();
        self.delivered.store(0, Ordering::SeqCst);
        self.errors.store(0, Ordering::SeqCst);
        *lock(&self.first_error) = None;
    }
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_ns: usize) {
        let now = self.now_ns();
        match result {
            Ok(_) => {
                lock(&self.samples).push((sent_ns as u64, now.saturating_sub(sent_ns) as u64));
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                lock(&self.first_error).get_or_insert_with(|| e.to_string());
            }
        }
        self.last_delivery_ns
            .fetch_max(now as u64, Ordering::Relaxed);
    }
}
