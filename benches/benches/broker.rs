//! End-to-end broker benchmark: a real Kafka client (librdkafka, through the
//! `rdkafka` crate) against an in-process vigil broker whose object store is a
//! local `file://` directory.
//!
//! What it measures, in one run:
//!
//! 1. **Produce**: throughput and per-record ack latency (from handing the
//!    record to librdkafka to its delivery report) with `acks=all` and
//!    1 KiB records, at maximum throughput and at fixed rates (by default 10 %
//!    and 50 % of the measured maximum), so latency can be compared at a given
//!    throughput. For each load point it also reads, from the broker and from
//!    the WAL writer thread's `/proc` I/O counters, how many Produce requests
//!    and WAL group commits (one `write` + one `fdatasync` each) it took.
//! 2. **The physical floor**: a bare loop that appends a buffer to a file in
//!    the same directory tree (so on the same disk and filesystem) as the
//!    broker's data dir and calls `fdatasync` after each append — exactly the
//!    syscalls vigil's WAL makes per group commit, with nothing else. An
//!    `acks=all` ack cannot be faster than the fsync that makes the record
//!    durable, so this is the floor for ack latency. It runs once per load
//!    point with that point's observed average group size and group rate
//!    ("the same throughput"), and as a sweep of fixed sizes back to back.
//!    The ratio vigil p99 / floor p99 is printed (target ≤ 3×: a record may
//!    wait for the fsync in progress before its own, plus the network and the
//!    client).
//! 3. **Consume**: a `BaseConsumer` with manual assignment from offset 0 (no
//!    group) reads the max-throughput topic up to its high watermark, right
//!    after producing (hot: the broker's in-memory log cache) and again from a
//!    second broker with a new, empty data dir on the same object store (cold:
//!    every read goes to segment objects). The first broker is shut down
//!    cleanly before, which uploads everything. Target: cold/hot ≥ 0.5.
//!
//! Timings are printed, never asserted: the machine is shared and noisy.
//! Settings come from `VIGIL_BENCH_*` environment variables (see
//! `benches/README.md`); the header prints the exact command to reproduce.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::runtime::Runtime;
use vigil_broker::config::FileConfig;
use vigil_broker::metrics::ApiLabel;
use vigil_broker::server::Running;

// The same allocator as the `vigil` binary, so the broker behaves as it does
// in production.
#[global_allocator]
static ALLOC: vigil_protocol::alloc::LazyLargeAlloc = vigil_protocol::alloc::LazyLargeAlloc;

/// Records sent (unmeasured) through each new producer before measuring.
const WARMUP_RECORDS: u64 = 2_000;
/// Sizes of the back-to-back fsync sweep.
const SWEEP_SIZES: [usize; 4] = [1 << 10, 16 << 10, 64 << 10, 256 << 10];
/// Most bytes one floor run writes (the file is deleted afterwards).
const FLOOR_MAX_BYTES: u64 = 1 << 30;
/// A consumer that sees no new record for this long is reported as stuck.
const CONSUME_STALL: Duration = Duration::from_secs(30);

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // `cargo bench` passes `--bench`; there are no other arguments.
    let params = Params::from_env()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    run(&rt, &params)
}

// ---------------------------------------------------------------- settings

/// A fixed-rate load point: an absolute rate or a fraction of the maximum.
#[derive(Debug, Clone, Copy)]
enum RateSpec {
    /// Records per second.
    Fixed(f64),
    /// Fraction of the measured maximum records per second.
    OfMax(f64),
}

impl FromStr for RateSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let spec = match s.strip_suffix('%') {
            Some(p) => RateSpec::OfMax(p.trim().parse::<f64>()? / 100.0),
            None => RateSpec::Fixed(s.parse()?),
        };
        match spec {
            RateSpec::Fixed(r) | RateSpec::OfMax(r) if r.is_finite() && r > 0.0 => Ok(spec),
            _ => bail!("{s:?} must be a positive rate (records/s) or percentage"),
        }
    }
}

impl std::fmt::Display for RateSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RateSpec::Fixed(r) => write!(f, "{r}"),
            RateSpec::OfMax(p) => write!(f, "{}%", p * 100.0),
        }
    }
}

#[derive(Debug)]
struct Params {
    /// Records of the max-throughput run (also what the consumers read).
    records: u64,
    record_bytes: usize,
    partitions: i32,
    rates: Vec<RateSpec>,
    rate_secs: f64,
    floor_secs: f64,
    linger_ms: u64,
    max_queue: u64,
    /// Parent of the benchmark's temp dir (broker data, objects, floor file).
    dir: PathBuf,
}

fn env_or<T: FromStr>(name: &str, default: T) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|e| anyhow!("environment variable {name}={v:?} is not valid: {e}")),
        Err(_) => Ok(default),
    }
}

impl Params {
    fn from_env() -> Result<Self> {
        let rates: String = env_or("VIGIL_BENCH_RATES", "10%,50%".to_string())?;
        let rates = rates
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.parse()
                    .with_context(|| format!("VIGIL_BENCH_RATES: {s:?}"))
            })
            .collect::<Result<Vec<RateSpec>>>()?;
        let p = Params {
            records: env_or("VIGIL_BENCH_RECORDS", 200_000)?,
            record_bytes: env_or("VIGIL_BENCH_RECORD_BYTES", 1024)?,
            partitions: env_or("VIGIL_BENCH_PARTITIONS", 8)?,
            rates,
            rate_secs: env_or("VIGIL_BENCH_RATE_SECS", 8.0)?,
            floor_secs: env_or("VIGIL_BENCH_FLOOR_SECS", 2.0)?,
            linger_ms: env_or("VIGIL_BENCH_LINGER_MS", 0)?,
            max_queue: env_or("VIGIL_BENCH_MAX_QUEUE", 10_000)?,
            dir: env_or("VIGIL_BENCH_DIR", std::env::temp_dir())?,
        };
        if p.records == 0 || p.record_bytes == 0 || p.partitions < 1 || p.max_queue == 0 {
            bail!("VIGIL_BENCH_RECORDS, _RECORD_BYTES, _PARTITIONS and _MAX_QUEUE must be > 0");
        }
        if !(p.rate_secs > 0.0 && p.floor_secs > 0.0) {
            bail!("VIGIL_BENCH_RATE_SECS and VIGIL_BENCH_FLOOR_SECS must be > 0");
        }
        Ok(p)
    }

    fn command(&self) -> String {
        let rates: Vec<String> = self.rates.iter().map(ToString::to_string).collect();
        format!(
            "VIGIL_BENCH_RECORDS={} VIGIL_BENCH_RECORD_BYTES={} VIGIL_BENCH_PARTITIONS={} \
             VIGIL_BENCH_RATES={} VIGIL_BENCH_RATE_SECS={} VIGIL_BENCH_FLOOR_SECS={} \
             VIGIL_BENCH_LINGER_MS={} VIGIL_BENCH_MAX_QUEUE={} VIGIL_BENCH_DIR={} \
             cargo bench -p vigil-benches --bench broker",
            self.records,
            self.record_bytes,
            self.partitions,
            rates.join(","),
            self.rate_secs,
            self.floor_secs,
            self.linger_ms,
            self.max_queue,
            self.dir.display()
        )
    }
}

// ---------------------------------------------------------------- the run

fn run(rt: &Runtime, p: &Params) -> Result<()> {
    std::fs::create_dir_all(&p.dir)
        .with_context(|| format!("cannot create VIGIL_BENCH_DIR {}", p.dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("vigil-bench-")
        .tempdir_in(&p.dir)
        .with_context(|| format!("cannot create a temp dir in {}", p.dir.display()))?;
    let root = tmp.path().to_path_buf();
    let objects = root.join("objects");
    std::fs::create_dir_all(&objects)
        .with_context(|| format!("cannot create {}", objects.display()))?;
    let objects_url = format!("file://{}", objects.display());
    print_header(p, &root);

    // Broker 1: produce, hot consume.
    let first = start_broker(rt, &root.join("data-1"), &objects_url)?;
    let addr = first.kafka_addr.to_string();
    println!(
        "broker 1 on {addr}, data dir {}, objects {objects_url}\n",
        root.join("data-1").display()
    );

    let max_topic = "bench-max";
    create_topic(rt, &addr, max_topic, p.partitions)?;
    let max = produce(&first, &addr, max_topic, Load::Max(p.records), p)
        .context("max-throughput produce")?;
    let mut points = vec![max];
    let hot = consume(&addr, max_topic, &first).context("hot consume")?;

    let max_rate = points[0].achieved_rate();
    for (i, spec) in p.rates.iter().enumerate() {
        let rate = match *spec {
            RateSpec::Fixed(r) => r,
            RateSpec::OfMax(f) => (max_rate * f).max(1.0),
        };
        let topic = format!("bench-rate-{i}");
        create_topic(rt, &addr, &topic, p.partitions)?;
        let n = ((rate * p.rate_secs).ceil() as u64).max(1);
        let point = produce(
            &first,
            &addr,
            &topic,
            Load::Rate {
                rate,
                n,
                spec: *spec,
            },
            p,
        )
        .with_context(|| format!("produce at {rate:.0} records/s"))?;
        points.push(point);
    }

    let broker = first.broker.clone();
    let t = Instant::now();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(300), first.shutdown())
            .await
            .map_err(|_| anyhow!("broker 1 did not shut down within 300 s"))
    })?;
    let shutdown_secs = t.elapsed().as_secs_f64();
    let uploaded = broker.log.stats.uploaded_bytes.load(Ordering::Relaxed);
    drop(broker);

    // The floor, with the broker stopped so it does not compete for the disk.
    let floor_dir = root.join("floor");
    std::fs::create_dir_all(&floor_dir)
        .with_context(|| format!("cannot create {}", floor_dir.display()))?;
    let mut matched = Vec::new();
    for pt in &points {
        let f = match pt.wal_group() {
            Some((bytes, per_sec)) => Some(fsync_floor(
                &floor_dir,
                bytes.round().max(1.0) as usize,
                Some(per_sec),
                p.floor_secs,
            )?),
            None => None,
        };
        matched.push(f);
    }
    let mut sweep = Vec::new();
    for size in SWEEP_SIZES {
        sweep.push(fsync_floor(&floor_dir, size, None, p.floor_secs)?);
    }

    // Broker 2: empty data dir, same objects: every read is a segment read.
    let second = start_broker(rt, &root.join("data-2"), &objects_url)?;
    let addr2 = second.kafka_addr.to_string();
    let cold = consume(&addr2, max_topic, &second).context("cold consume")?;
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(300), second.shutdown())
            .await
            .map_err(|_| anyhow!("broker 2 did not shut down within 300 s"))
    })?;

    print_produce(p, &points);
    print_floor(&floor_dir, &points, &matched, &sweep);
    print_consume(&hot, &cold, shutdown_secs, uploaded);
    Ok(())
}

fn print_header(p: &Params, root: &Path) {
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
                .map(|l| l.trim_start_matches("MemTotal:").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("== vigil broker benchmark ==");
    println!("machine:  {cores} cores ({cpu}), {mem} RAM");
    println!("disk:     {} on {}", root.display(), mount_of(root));
    println!(
        "workload: acks=all, {} B records, {} partitions, linger.ms={}, no compression, \
         client and broker in one process sharing the cores",
        p.record_bytes, p.partitions, p.linger_ms
    );
    println!("command:  {}", p.command());
    println!("(MB = 10^6 bytes; latencies in ms)\n");
}

/// "device (fstype) mounted at X" for the mount holding `path`.
fn mount_of(path: &Path) -> String {
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

// ---------------------------------------------------------------- broker

fn start_broker(rt: &Runtime, data_dir: &Path, objects_url: &str) -> Result<Running> {
    // The advertised listener defaults to the listen address, so port 0 would
    // be advertised as 0: pick a free port first and listen on it explicitly.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("cannot find a free port")?
        .port();
    let cfg = FileConfig {
        listen: Some(format!("127.0.0.1:{port}")),
        admin_listen: Some("127.0.0.1:0".into()),
        data_dir: Some(data_dir.to_path_buf()),
        object_store: Some(objects_url.to_string()),
        ..Default::default()
    }
    .resolve()
    .context("broker settings")?;
    rt.block_on(vigil_broker::server::start(cfg))
        .with_context(|| format!("cannot start a broker on 127.0.0.1:{port}"))
}

/// Counters of a broker at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    produce_requests: u64,
    appended_bytes: u64,
    /// (write syscalls, bytes written) of the WAL writer thread.
    wal: Option<(u64, u64)>,
    cache_reads: u64,
    object_reads: u64,
}

impl Snapshot {
    fn of(r: &Running) -> Self {
        let b = &r.broker;
        let produce_requests = b
            .metrics
            .requests
            .get_or_create(&ApiLabel {
                api: "Produce".into(),
            })
            .get();
        Snapshot {
            produce_requests,
            appended_bytes: b.log.stats.appended_bytes.load(Ordering::Relaxed),
            wal: wal_thread_io(),
            cache_reads: b.log.stats.cache_reads.load(Ordering::Relaxed),
            object_reads: b.log.stats.object_reads.load(Ordering::Relaxed),
        }
    }

    fn since(self, before: Snapshot) -> Snapshot {
        Snapshot {
            produce_requests: self.produce_requests - before.produce_requests,
            appended_bytes: self.appended_bytes - before.appended_bytes,
            wal: match (self.wal, before.wal) {
                (Some(a), Some(b)) => Some((a.0.saturating_sub(b.0), a.1.saturating_sub(b.1))),
                _ => None,
            },
            cache_reads: self.cache_reads - before.cache_reads,
            object_reads: self.object_reads - before.object_reads,
        }
    }
}

/// `syscw` and `wchar` of this process's `vigil-wal` thread: the WAL writer
/// makes one `write` per group commit (followed by one `fdatasync`). Only one
/// broker runs at a time, so there is at most one such thread.
fn wal_thread_io() -> Option<(u64, u64)> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != "vigil-wal" {
            continue;
        }
        let io = std::fs::read_to_string(task.path().join("io")).ok()?;
        let field = |name: &str| {
            io.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        return Some((field("syscw:")?, field("wchar:")?));
    }
    None
}

fn create_topic(rt: &Runtime, addr: &str, name: &str, partitions: i32) -> Result<()> {
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

// ---------------------------------------------------------------- produce

#[derive(Debug, Clone, Copy)]
enum Load {
    /// This many records, as fast as the client's queue allows.
    Max(u64),
    /// `n` records paced at `rate` records/s.
    Rate { rate: f64, n: u64, spec: RateSpec },
}

/// Delivery reports: the opaque of each record is its send time in
/// nanoseconds since `base`.
struct Reports {
    base: Instant,
    latencies_ns: Mutex<Vec<u64>>,
    delivered: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    last_delivery_ns: AtomicU64,
}

impl Reports {
    fn now_ns(&self) -> usize {
        self.base.elapsed().as_nanos() as usize
    }

    /// Clears what the warm-up left.
    fn reset(&self) {
        lock(&self.latencies_ns).clear();
        self.delivered.store(0, Ordering::SeqCst);
        self.errors.store(0, Ordering::SeqCst);
        *lock(&self.first_error) = None;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_ns: usize) {
        let now = self.now_ns();
        match result {
            Ok(_) => {
                lock(&self.latencies_ns).push(now.saturating_sub(sent_ns) as u64);
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

struct ProducePoint {
    label: String,
    records: u64,
    record_bytes: usize,
    elapsed: Duration,
    /// Sorted.
    latencies_ns: Vec<u64>,
    broker: Snapshot,
}

impl ProducePoint {
    fn achieved_rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    fn mb_per_sec(&self) -> f64 {
        self.achieved_rate() * self.record_bytes as f64 / 1e6
    }

    fn p(&self, q: f64) -> f64 {
        percentile(&self.latencies_ns, q)
    }

    /// Average WAL group commit (bytes, per second) during the point.
    fn wal_group(&self) -> Option<(f64, f64)> {
        let (writes, bytes) = self.broker.wal?;
        (writes > 0).then(|| {
            (
                bytes as f64 / writes as f64,
                writes as f64 / self.elapsed.as_secs_f64(),
            )
        })
    }
}

/// `q`-quantile of sorted nanoseconds, in milliseconds.
fn percentile(sorted_ns: &[u64], q: f64) -> f64 {
    if sorted_ns.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted_ns.len() as f64).ceil() as usize).clamp(1, sorted_ns.len());
    sorted_ns[rank - 1] as f64 / 1e6
}

fn payload(len: usize) -> Vec<u8> {
    // Incompressible-looking bytes (xorshift), the same for every record.
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

fn produce(
    running: &Running,
    addr: &str,
    topic: &str,
    load: Load,
    p: &Params,
) -> Result<ProducePoint> {
    let reports = Reports {
        base: Instant::now(),
        latencies_ns: Mutex::new(Vec::new()),
        delivered: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        first_error: Mutex::new(None),
        last_delivery_ns: AtomicU64::new(0),
    };
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
    flush(&producer, ctx, WARMUP_RECORDS, "warm-up")?;
    ctx.reset();

    let before = Snapshot::of(running);
    let (n, rate, label) = match load {
        Load::Max(n) => (n, None, "max".to_string()),
        Load::Rate { rate, n, spec } => (n, Some(rate), format!("{rate:.0}/s ({spec})")),
    };
    let start_ns = ctx.now_ns() as u64;
    let start = Instant::now();
    send_all(&producer, topic, &body, n, rate)?;
    flush(&producer, ctx, n, &label)?;
    let after = Snapshot::of(running);
    let end_ns = ctx.last_delivery_ns.load(Ordering::SeqCst);
    let elapsed = Duration::from_nanos(end_ns.saturating_sub(start_ns))
        .max(Duration::from_nanos(1))
        .min(start.elapsed());
    let mut latencies_ns = std::mem::take(&mut *lock(&ctx.latencies_ns));
    latencies_ns.sort_unstable();
    Ok(ProducePoint {
        label,
        records: n,
        record_bytes: p.record_bytes,
        elapsed,
        latencies_ns,
        broker: after.since(before),
    })
}

/// Hands `n` records to librdkafka, paced at `rate` records/s if given;
/// waits (briefly sleeping) while the client's queue is full.
fn send_all(
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
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            // Sleep only when well ahead: sleeps are coarse, bursts of a few
            // records are not.
            if due > now + Duration::from_micros(200) {
                std::thread::sleep(due - now);
            }
        }
        let mut record =
            BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, ctx.now_ns()).payload(body);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    std::thread::sleep(Duration::from_micros(50));
                    record = r.delivery_opaque(ctx.now_ns());
                }
                Err((e, _)) => return Err(e).context("cannot hand a record to librdkafka"),
            }
        }
    }
    Ok(())
}

fn flush(
    producer: &ThreadedProducer<Reports>,
    ctx: &Reports,
    expected: u64,
    what: &str,
) -> Result<()> {
    producer
        .flush(Duration::from_secs(120))
        .with_context(|| format!("{what}: not all records were acknowledged within 120 s"))?;
    let errors = ctx.errors.load(Ordering::SeqCst);
    if errors > 0 {
        bail!(
            "{what}: {errors} of {expected} records failed; first error: {}",
            lock(&ctx.first_error).clone().unwrap_or_default()
        );
    }
    let delivered = ctx.delivered.load(Ordering::SeqCst);
    if delivered != expected {
        bail!("{what}: {delivered} delivery reports for {expected} records");
    }
    Ok(())
}

// ---------------------------------------------------------------- consume

struct ConsumeResult {
    records: u64,
    bytes: u64,
    elapsed: Duration,
    broker: Snapshot,
}

impl ConsumeResult {
    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

/// Reads every partition of `topic` from offset 0 up to its high watermark.
/// librdkafka's `assign` needs a `group.id`, but with no `subscribe` the
/// consumer never joins the group and, with auto-commit off, never commits.
fn consume(addr: &str, topic: &str, running: &Running) -> Result<ConsumeResult> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "vigil-bench-assign-only")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .context("cannot create the consumer")?;
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
    let broker = Snapshot::of(running).since(before);
    Ok(ConsumeResult {
        records,
        bytes,
        elapsed,
        broker,
    })
}

// ---------------------------------------------------------------- floor

struct FloorResult {
    size: usize,
    /// Paced appends per second, if paced.
    paced: Option<f64>,
    /// Sorted nanoseconds per append (write + fdatasync).
    latencies_ns: Vec<u64>,
    elapsed: Duration,
}

impl FloorResult {
    fn p(&self, q: f64) -> f64 {
        percentile(&self.latencies_ns, q)
    }

    fn mb_per_sec(&self) -> f64 {
        (self.latencies_ns.len() * self.size) as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

/// Appends `size` bytes to a fresh file in `dir` and `fdatasync`s, again and
/// again for `secs` seconds (at `per_sec` appends/s if given), the way the WAL
/// writer does a group commit.
fn fsync_floor(dir: &Path, size: usize, per_sec: Option<f64>, secs: f64) -> Result<FloorResult> {
    let path = dir.join(format!("floor-{size}.log"));
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let buf = payload(size);
    let budget = Duration::from_secs_f64(secs);
    let max_appends = (FLOOR_MAX_BYTES / size as u64).max(10);
    let mut latencies_ns = Vec::new();
    let start = Instant::now();
    while (start.elapsed() < budget || latencies_ns.len() < 10)
        && (latencies_ns.len() as u64) < max_appends
    {
        if let Some(rate) = per_sec {
            let due = start + Duration::from_secs_f64(latencies_ns.len() as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let t = Instant::now();
        file.write_all(&buf)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("append + fdatasync to {}", path.display()))?;
        latencies_ns.push(t.elapsed().as_nanos() as u64);
    }
    let elapsed = start.elapsed();
    drop(file);
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    latencies_ns.sort_unstable();
    Ok(FloorResult {
        size,
        paced: per_sec,
        latencies_ns,
        elapsed,
    })
}

// ---------------------------------------------------------------- tables

fn kib(bytes: f64) -> String {
    format!("{:.1}", bytes / 1024.0)
}

fn print_produce(p: &Params, points: &[ProducePoint]) {
    println!(
        "== produce: acks=all, {} B records, {} partitions, ack latency = send → delivery report ==",
        p.record_bytes, p.partitions
    );
    println!(
        "{:<18} {:>9} {:>10} {:>8} {:>8} {:>8} {:>9} {:>8} {:>9} {:>9} {:>9} {:>10} {:>9}",
        "load point",
        "records",
        "records/s",
        "MB/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "requests",
        "req KiB",
        "WAL grps",
        "grp KiB",
        "grps/s"
    );
    for pt in points {
        let b = &pt.broker;
        let req_kib = if b.produce_requests > 0 {
            kib(b.appended_bytes as f64 / b.produce_requests as f64)
        } else {
            "-".into()
        };
        let (groups, grp_kib, grps) = match (b.wal, pt.wal_group()) {
            (Some((w, _)), Some((size, rate))) => (w.to_string(), kib(size), format!("{rate:.0}")),
            _ => ("n/a".into(), "n/a".into(), "n/a".into()),
        };
        println!(
            "{:<18} {:>9} {:>10.0} {:>8.1} {:>8.2} {:>8.2} {:>9.2} {:>8.2} {:>9} {:>9} {:>9} {:>10} {:>9}",
            pt.label,
            pt.records,
            pt.achieved_rate(),
            pt.mb_per_sec(),
            pt.p(0.50),
            pt.p(0.99),
            pt.p(0.999),
            pt.p(1.0),
            b.produce_requests,
            req_kib,
            groups,
            grp_kib,
            grps
        );
    }
    println!(
        "(requests = Produce requests the broker handled; req KiB = appended batch bytes per \
         request; WAL grps = group commits, one write + one fdatasync each, counted from the \
         vigil-wal thread's /proc I/O counters)\n"
    );
}

fn print_floor(
    dir: &Path,
    points: &[ProducePoint],
    matched: &[Option<FloorResult>],
    sweep: &[FloorResult],
) {
    println!(
        "== fsync floor: append + fdatasync per write to a growing file in {} ==",
        dir.display()
    );
    println!(
        "{:<22} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "run", "size KiB", "appends/s", "appends", "p50", "p99", "max", "MB/s"
    );
    let row = |name: &str, f: &FloorResult| {
        println!(
            "{:<22} {:>10} {:>10} {:>8} {:>8.2} {:>8.2} {:>8.2} {:>8.1}",
            name,
            kib(f.size as f64),
            f.paced.map_or_else(
                || format!(
                    "{:.0}",
                    f.latencies_ns.len() as f64 / f.elapsed.as_secs_f64()
                ),
                |r| format!("{r:.0}"),
            ),
            f.latencies_ns.len(),
            f.p(0.50),
            f.p(0.99),
            f.p(1.0),
            f.mb_per_sec()
        );
    };
    for (pt, f) in points.iter().zip(matched) {
        if let Some(f) = f {
            row(&format!("as {} (paced)", pt.label), f);
        }
    }
    for f in sweep {
        row("back to back", f);
    }
    println!();
    println!(
        "== vigil ack latency vs the fsync floor at the same throughput (target p99 ratio ≤ 3×) =="
    );
    println!(
        "{:<18} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "load point", "MB/s", "vigil p50", "floor p50", "vigil p99", "floor p99", "p99 ratio"
    );
    for (pt, f) in points.iter().zip(matched) {
        match f {
            Some(f) => println!(
                "{:<18} {:>8.1} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>9.1}×",
                pt.label,
                pt.mb_per_sec(),
                pt.p(0.5),
                f.p(0.5),
                pt.p(0.99),
                f.p(0.99),
                pt.p(0.99) / f.p(0.99)
            ),
            None => println!(
                "{:<18} {:>8.1} {:>10.2} {:>10} {:>10.2} {:>10} {:>10}",
                pt.label,
                pt.mb_per_sec(),
                pt.p(0.5),
                "n/a",
                pt.p(0.99),
                "n/a",
                "n/a"
            ),
        }
    }
    println!(
        "(floor = the same number of bytes per fdatasync at the same rate as the broker's WAL \
         group commits; the max point's latency includes queueing in the client, up to \
         VIGIL_BENCH_MAX_QUEUE records)\n"
    );
}

fn print_consume(hot: &ConsumeResult, cold: &ConsumeResult, shutdown_secs: f64, uploaded: u64) {
    println!("== consume: BaseConsumer, manual assign from offset 0 to the high watermark ==");
    println!(
        "{:<36} {:>9} {:>9} {:>8} {:>8} {:>12} {:>13}",
        "source", "records", "MB", "secs", "MB/s", "cache reads", "object reads"
    );
    for (name, c) in [
        ("hot (broker 1, right after produce)", hot),
        ("cold (broker 2, empty data dir)", cold),
    ] {
        println!(
            "{:<36} {:>9} {:>9.1} {:>8.2} {:>8.1} {:>12} {:>13}",
            name,
            c.records,
            c.bytes as f64 / 1e6,
            c.elapsed.as_secs_f64(),
            c.mb_per_sec(),
            c.broker.cache_reads,
            c.broker.object_reads
        );
    }
    println!(
        "cold/hot throughput ratio: {:.2} (target ≥ 0.5)",
        cold.mb_per_sec() / hot.mb_per_sec()
    );
    println!(
        "broker 1 clean shutdown took {shutdown_secs:.2} s; it uploaded {:.1} MB of segments \
         in total",
        uploaded as f64 / 1e6
    );
    println!(
        "(cache/object reads = the broker's log-cache and segment-object read counters during \
         the run; the object store is file:// on the same disk, and its files are likely still \
         in the OS page cache)"
    );
}
