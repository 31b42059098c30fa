//! End-to-end broker benchmark: a real Kafka client (librdkafka, through the
//! `rdkafka` crate) against an in-process vigil broker whose object store is a
//! local `file://` directory. Run it with
//! `cargo bench -p vigil-benches --bench broker`.
//!
//! What it measures, in one run:
//!
//! 1. **Produce**: throughput and per-record ack latency (from handing the
//!    record to librdkafka to its delivery report) with `acks=all` and
//!    1 KiB records, at maximum throughput and at fixed rates (by default
//!    5 000 and 50 000 records/s), so latency can be compared at a given
//!    throughput. For each load point it also reads, from the broker, how many
//!    Produce requests it handled and its own Produce latency histogram, and,
//!    from the WAL writer thread's `/proc` I/O counters, how many WAL group
//!    commits (one `write` + one `fdatasync` each) it took and how big they
//!    were. Slow 100 ms windows are listed next to the times the broker
//!    committed an upload, which is where the tail latency comes from.
//! 2. **The physical floor**: a bare loop that appends a buffer to a file in
//!    the same directory tree (so on the same disk and filesystem) as the
//!    broker's data dir and calls `fdatasync` after each append: exactly the
//!    syscalls vigil's WAL makes per group commit, and nothing else. An
//!    `acks=all` ack cannot come before the fsync that makes the record
//!    durable, so this is the floor for ack latency. It runs once per load
//!    point with that point's observed average group size and group rate
//!    ("the same throughput"), and as a back-to-back sweep of fixed sizes.
//!    The ratio vigil p99 / floor p99 is printed (target ≤ 3×: a record may
//!    wait for the fsync in progress before its own, plus the network and the
//!    client).
//! 3. **Consume**: a `BaseConsumer` with manual assignment from offset 0 (no
//!    group) reads the max-throughput topic up to its high watermark, right
//!    after producing (hot: the broker's in-memory log cache) and again from
//!    fresh brokers, each with a new, empty data dir on the same object store
//!    (cold: every read goes to segment objects). The first broker is shut
//!    down cleanly before that, which uploads everything. Each is done three
//!    times and the median printed. Target: cold/hot ≥ 0.5.
//!
//! Timings are printed, never asserted: the machine is shared and noisy.
//! Settings come from `VIGIL_BENCH_*` environment variables (see
//! `benches/README.md`); the header prints the exact command to reproduce.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;

use anyhow::{anyhow, bail, Context as _, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Runtime;
use vigil_broker::config::FileConfig;
use vigil_broker::metrics::ApiLabel;
use vigil_broker::server::Running;

use common::{assign_only_consumer, create_topic, env_or, lock, payload, percentile, Reports};

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
    common::init_tracing();
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
    /// Hot and cold consume passes (the median is reported).
    consume_passes: usize,
    /// Broker's upload interval; `None` keeps the broker's default.
    upload_interval_ms: Option<u64>,
    /// Parent of the benchmark's temp dir (broker data, objects, floor file).
    dir: PathBuf,
}

impl Params {
    fn from_env() -> Result<Self> {
        let rates: String = env_or("VIGIL_BENCH_RATES", "5000,50000".to_string())?;
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
            consume_passes: env_or("VIGIL_BENCH_CONSUME_PASSES", 3)?,
            upload_interval_ms: env_or("VIGIL_BENCH_UPLOAD_INTERVAL_MS", 0)
                .map(|ms: u64| (ms > 0).then_some(ms))?,
            dir: env_or("VIGIL_BENCH_DIR", std::env::temp_dir())?,
        };
        if p.records == 0
            || p.record_bytes == 0
            || p.partitions < 1
            || p.max_queue == 0
            || p.consume_passes == 0
        {
            bail!(
                "VIGIL_BENCH_RECORDS, _RECORD_BYTES, _PARTITIONS, _MAX_QUEUE and _CONSUME_PASSES \
                 must be > 0"
            );
        }
        if !(p.rate_secs > 0.0 && p.floor_secs > 0.0) {
            bail!("VIGIL_BENCH_RATE_SECS and VIGIL_BENCH_FLOOR_SECS must be > 0");
        }
        Ok(p)
    }

    fn command(&self) -> String {
        let rates: Vec<String> = self.rates.iter().map(ToString::to_string).collect();
        let upload = self.upload_interval_ms.map_or_else(String::new, |ms| {
            format!("VIGIL_BENCH_UPLOAD_INTERVAL_MS={ms} ")
        });
        format!(
            "{upload}VIGIL_BENCH_RECORDS={} VIGIL_BENCH_RECORD_BYTES={} VIGIL_BENCH_PARTITIONS={} \
             VIGIL_BENCH_RATES={} VIGIL_BENCH_RATE_SECS={} VIGIL_BENCH_FLOOR_SECS={} \
             VIGIL_BENCH_LINGER_MS={} VIGIL_BENCH_MAX_QUEUE={} VIGIL_BENCH_CONSUME_PASSES={} \
             VIGIL_BENCH_DIR={} \
             cargo bench -p vigil-benches --bench broker",
            self.records,
            self.record_bytes,
            self.partitions,
            rates.join(","),
            self.rate_secs,
            self.floor_secs,
            self.linger_ms,
            self.max_queue,
            self.consume_passes,
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
    let first = start_broker(rt, &root.join("data-1"), &objects_url, p)?;
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
    let hot = (0..p.consume_passes)
        .map(|i| consume(&addr, max_topic, &first).with_context(|| format!("hot consume {i}")))
        .collect::<Result<Vec<_>>>()?;

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

    // Fresh brokers, each with an empty data dir on the same objects: every
    // read is a segment read (a broker's own segment cache would make a second
    // pass warm, hence one broker per pass).
    let mut cold = Vec::new();
    for i in 0..p.consume_passes {
        let broker = start_broker(rt, &root.join(format!("data-cold-{i}")), &objects_url, p)?;
        let addr = broker.kafka_addr.to_string();
        cold.push(consume(&addr, max_topic, &broker).with_context(|| format!("cold consume {i}"))?);
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(300), broker.shutdown())
                .await
                .map_err(|_| anyhow!("a cold-read broker did not shut down within 300 s"))
        })?;
    }

    print_produce(p, &points);
    print_floor(&floor_dir, &points, &matched, &sweep);
    print_consume(&hot, &cold, shutdown_secs, uploaded);
    Ok(())
}

fn print_header(p: &Params, root: &Path) {
    println!("== vigil broker benchmark ==");
    println!("machine:  {}", common::machine());
    println!("disk:     {} on {}", root.display(), common::mount_of(root));
    println!(
        "workload: acks=all, {} B records, {} partitions, linger.ms={}, no compression, local \
         WAL; client and broker in one process sharing the cores",
        p.record_bytes, p.partitions, p.linger_ms
    );
    println!("command:  {}", p.command());
    println!("(MB = 10^6 bytes; latencies in ms)\n");
}

// ---------------------------------------------------------------- broker

fn start_broker(rt: &Runtime, data_dir: &Path, objects_url: &str, p: &Params) -> Result<Running> {
    // Port 0: the broker advertises the port it actually bound.
    let cfg = FileConfig {
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        data_dir: Some(data_dir.to_path_buf()),
        object_store: Some(objects_url.to_string()),
        upload_interval_ms: p.upload_interval_ms,
        // The fsync floor is the local WAL's floor; pin that mode.
        wal: Some("local".into()),
        ..Default::default()
    }
    .resolve()
    .context("broker settings")?;
    let running = rt
        .block_on(vigil_broker::server::start(cfg))
        .context("cannot start the broker")?;
    let advertised = running.broker.advertised();
    if advertised.1 != i32::from(running.kafka_addr.port()) {
        bail!(
            "the broker listens on {} but advertises {}:{}",
            running.kafka_addr,
            advertised.0,
            advertised.1
        );
    }
    Ok(running)
}

/// Counters of a broker at one moment.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    produce_requests: u64,
    appended_bytes: u64,
    /// (write syscalls, bytes written) of the WAL writer thread.
    wal: Option<(u64, u64)>,
    cache_reads: u64,
    object_reads: u64,
    /// CPU seconds of the whole process and of its client threads.
    cpu: Option<(f64, f64)>,
    /// The broker's Produce latency histogram: (upper bound s, cumulative).
    produce_hist: Vec<(f64, u64)>,
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
            cpu: cpu_seconds(),
            produce_hist: produce_histogram(r),
        }
    }

    fn since(self, before: &Snapshot) -> Snapshot {
        Snapshot {
            produce_requests: self.produce_requests - before.produce_requests,
            appended_bytes: self.appended_bytes - before.appended_bytes,
            wal: match (self.wal, before.wal) {
                (Some(a), Some(b)) => Some((a.0.saturating_sub(b.0), a.1.saturating_sub(b.1))),
                _ => None,
            },
            cache_reads: self.cache_reads - before.cache_reads,
            object_reads: self.object_reads - before.object_reads,
            cpu: match (self.cpu, before.cpu) {
                (Some(a), Some(b)) => Some((a.0 - b.0, a.1 - b.1)),
                _ => None,
            },
            produce_hist: if self.produce_hist.len() == before.produce_hist.len() {
                self.produce_hist
                    .iter()
                    .zip(&before.produce_hist)
                    .map(|(&(le, a), &(_, b))| (le, a.saturating_sub(b)))
                    .collect()
            } else {
                self.produce_hist
            },
        }
    }
}

/// CPU seconds (user + system) used so far by the whole process (exited
/// threads included) and by its client threads: librdkafka's (`rdk:*`), the
/// producer's polling thread and the main thread that hands records over.
/// Everything else is the broker: tokio workers, blocking-pool threads, the
/// WAL writer.
fn cpu_seconds() -> Option<(f64, f64)> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return None;
    }
    let ticks = |stat: &str| -> Option<u64> {
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After the command: state is field 3, utime 14, stime 15.
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    };
    let total = ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let pid = std::process::id().to_string();
    let mut client = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if comm.starts_with("rdk:") || comm.starts_with("producer") || task.file_name() == *pid {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            client += ticks(&stat).unwrap_or(0);
        }
    }
    Some((total as f64 / hz as f64, client as f64 / hz as f64))
}

/// The Produce buckets of the broker's request latency histogram (time from
/// a request's arrival to its response being ready), from its /metrics text.
fn produce_histogram(r: &Running) -> Vec<(f64, u64)> {
    let text = r
        .broker
        .metrics
        // No deployment statuses: only the Produce histogram is read.
        .render(&r.broker.log, &r.broker.store_metrics, &[]);
    let mut buckets: Vec<(f64, u64)> = text
        .lines()
        .filter(|l| {
            l.starts_with("vigil_request_duration_seconds_bucket{") && l.contains("api=\"Produce\"")
        })
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = l.rsplit_once(' ')?.1.parse().ok()?;
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// Upper bound (ms) of the histogram bucket holding the `q`-quantile.
fn histogram_quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil() as u64;
    buckets
        .iter()
        .find(|(_, c)| *c >= rank)
        .map(|(le, _)| le * 1e3)
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

// ---------------------------------------------------------------- produce

#[derive(Debug, Clone, Copy)]
enum Load {
    /// This many records, as fast as the client's queue allows.
    Max(u64),
    /// `n` records paced at `rate` records/s.
    Rate { rate: f64, n: u64, spec: RateSpec },
}

struct ProducePoint {
    label: String,
    records: u64,
    record_bytes: usize,
    elapsed: Duration,
    /// Sorted.
    latencies_ns: Vec<u64>,
    broker: Snapshot,
    /// Seconds into the point at which the broker committed an upload.
    uploads_at: Vec<f64>,
    /// 100 ms windows (by send time, seconds into the point) whose slowest
    /// ack took over 10× the median, with that slowest ack in ms.
    slow_windows: Vec<(f64, f64)>,
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

fn produce(
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
    flush(&producer, ctx, WARMUP_RECORDS, "warm-up")?;
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
            .and_then(|()| flush(&producer, ctx, n, &label));
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
fn settle(running: &Running) {
    let stats = &running.broker.log.stats;
    let before = stats.uploads.load(Ordering::SeqCst);
    let wait = (running.broker.config.upload_interval * 2).min(Duration::from_secs(10));
    let deadline = Instant::now() + wait;
    while stats.uploads.load(Ordering::SeqCst) == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The counter goes up at the commit; the cycle then deletes WAL files.
    std::thread::sleep(Duration::from_millis(200));
}

/// Times (ns since the reports' base) at which the broker's upload counter
/// went up, sampled every millisecond until `stop`.
fn watch_uploads(running: &Running, ctx: &Reports, stop: &AtomicBool) -> Vec<u64> {
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
fn slow_windows(samples: &[(u64, u64)], start_ns: u64, p50_ms: f64) -> Vec<(f64, f64)> {
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

/// Reads every partition of `topic` from offset 0 up to its high watermark
/// with an assign-only consumer (no group membership, no commits).
fn consume(addr: &str, topic: &str, running: &Running) -> Result<ConsumeResult> {
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
        "== produce: acks=all, {} B records, {} partitions; ack latency = send → delivery report ==",
        p.record_bytes, p.partitions
    );
    println!(
        "{:<18} {:>9} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "load point", "records", "secs", "records/s", "MB/s", "p50", "p99", "p99.9", "max"
    );
    for pt in points {
        println!(
            "{:<18} {:>9} {:>7.2} {:>10.0} {:>8.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            pt.label,
            pt.records,
            pt.elapsed.as_secs_f64(),
            pt.achieved_rate(),
            pt.mb_per_sec(),
            pt.p(0.50),
            pt.p(0.99),
            pt.p(0.999),
            pt.p(1.0),
        );
    }
    println!();
    println!("== produce, broker side (same load points) ==");
    println!(
        "{:<18} {:>9} {:>8} {:>9} {:>9} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "load point",
        "requests",
        "req KiB",
        "WAL grps",
        "grp KiB",
        "grps/s",
        "req p50 ≤",
        "req p99 ≤",
        "client cpu",
        "broker cpu"
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
        let secs = pt.elapsed.as_secs_f64();
        let (client, broker) = b.cpu.map_or_else(
            || ("n/a".to_string(), "n/a".to_string()),
            |(total, client)| {
                (
                    format!("{:.0}%", 100.0 * client / secs),
                    format!("{:.0}%", 100.0 * (total - client) / secs),
                )
            },
        );
        let q = |q| {
            histogram_quantile(&b.produce_hist, q)
                .map_or_else(|| "n/a".into(), |ms| format!("{ms:.2}"))
        };
        println!(
            "{:<18} {:>9} {:>8} {:>9} {:>9} {:>8} {:>10} {:>10} {:>10} {:>10}",
            pt.label,
            b.produce_requests,
            req_kib,
            groups,
            grp_kib,
            grps,
            q(0.5),
            q(0.99),
            client,
            broker
        );
    }
    println!(
        "(requests = Produce requests handled; req KiB = record batch bytes per request; WAL grps = \
         group commits, one write + one fdatasync each, from the vigil-wal thread's /proc I/O \
         counters; req p50/p99 ≤ = the broker's own Produce latency, arrival to response ready, as \
         the upper bound of its histogram bucket (buckets double from 0.05 ms); cpu = % of one \
         core over the point, {} cores in all)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for pt in points {
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "none".to_string()
            } else if v.len() > 12 {
                format!("{} … ({} in all)", v[..12].join(", "), v.len())
            } else {
                v.join(", ")
            }
        };
        println!(
            "{}: upload commits at [{}] s; 100-ms send windows with an ack over 10× p50: [{}]",
            pt.label,
            list(pt.uploads_at.iter().map(|t| format!("{t:.2}")).collect()),
            list(
                pt.slow_windows
                    .iter()
                    .map(|(t, ms)| format!("{t:.1} s: {ms:.0} ms"))
                    .collect()
            )
        );
    }
    println!();
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

/// The pass with the median throughput.
fn median(passes: &[ConsumeResult]) -> Option<&ConsumeResult> {
    let mut sorted: Vec<&ConsumeResult> = passes.iter().collect();
    sorted.sort_by(|a, b| a.mb_per_sec().total_cmp(&b.mb_per_sec()));
    sorted.get(sorted.len() / 2).copied()
}

fn print_consume(hot: &[ConsumeResult], cold: &[ConsumeResult], shutdown_secs: f64, uploaded: u64) {
    println!(
        "== consume: BaseConsumer, manual assign from offset 0 to the high watermark; median of \
         {} passes ==",
        hot.len()
    );
    println!(
        "{:<36} {:>8} {:>7} {:>6} {:>7} {:>18} {:>6} {:>7}",
        "source", "records", "MB", "secs", "MB/s", "all passes MB/s", "cache", "objects"
    );
    let (Some(h), Some(c)) = (median(hot), median(cold)) else {
        println!("(no consume passes)");
        return;
    };
    for (name, m, all) in [
        ("hot (broker 1, right after produce)", h, hot),
        ("cold (new broker, empty data dir)", c, cold),
    ] {
        let passes: Vec<String> = all
            .iter()
            .map(|r| format!("{:.0}", r.mb_per_sec()))
            .collect();
        println!(
            "{:<36} {:>8} {:>7.1} {:>6.2} {:>7.1} {:>18} {:>6} {:>7}",
            name,
            m.records,
            m.bytes as f64 / 1e6,
            m.elapsed.as_secs_f64(),
            m.mb_per_sec(),
            passes.join(" "),
            m.broker.cache_reads,
            m.broker.object_reads
        );
    }
    println!(
        "cold/hot throughput ratio (medians): {:.2} (target ≥ 0.5)",
        c.mb_per_sec() / h.mb_per_sec()
    );
    println!(
        "broker 1 clean shutdown took {shutdown_secs:.2} s; it uploaded {:.1} MB of segments \
         in total",
        uploaded as f64 / 1e6
    );
    println!(
        "(cache / objects = reads the broker served from its log cache / from segment objects \
         in the median pass; the object store is file:// on the same disk and was just \
         written, so its files are likely in the OS page cache)"
    );
}
