//! Storage benchmark: how vigil's object-store-backed log behaves, measured
//! with a real Kafka client (librdkafka, through the `rdkafka` crate) against
//! in-process brokers. Run it with
//! `cargo bench -p vigil-benches --bench storage`.
//!
//! What it measures, in one run:
//!
//! 1. **Produce by WAL mode**: `acks=all`, 1 KiB records at a fixed rate
//!    (default 5 000/s for 5 s) and as a max-throughput burst, with
//!    `--wal local` vs `--wal object`, against a `file://` object store and,
//!    when `target/test-venv/bin/weed` exists, against SeaweedFS (S3 on
//!    loopback).
//! 2. **PUTs per MiB** at 1, 10 and 100 partitions: the same bytes at the same
//!    rate spread over N partitions (local WAL); the broker's object store
//!    counters give PUT requests and bytes uploaded.
//! 3. **Catch-up reads**: a new broker with an empty data dir on a store
//!    holding ~200 MB reads everything from offset 0 with a cold block cache,
//!    then again with it hot; block cache counters for each pass.
//! 4. **Time to first fetch**: from `server::start` on an empty data dir to
//!    the first fetched record (the newest one), at two data sizes 10× apart.
//!
//! Timings are printed, never asserted: the machine is shared and noisy.
//! Settings come from `VIGIL_BENCH_*` environment variables (see
//! `benches/README.md`); the header prints the exact command to reproduce.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod common;

use anyhow::{anyhow, bail, Context as _, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Runtime;
use vigil_broker::config::FileConfig;
use vigil_broker::server::Running;
use vigil_storage::cache::CacheStats;
use vigil_storage::store::{ObjectStoreStats, StoreOp};

use common::{
    assign_only_consumer, create_topic, env_or, lock, payload, percentile, workspace_root, Reports,
};

// The same allocator as the `vigil` binary, so the broker behaves as it does
// in production.
#[global_allocator]
static ALLOC: vigil_protocol::alloc::LazyLargeAlloc = vigil_protocol::alloc::LazyLargeAlloc;

/// Records sent (unmeasured) through each new producer before measuring.
const WARMUP_RECORDS: u64 = 1_000;
/// A consumer that sees no new record for this long is reported as stuck.
const CONSUME_STALL: Duration = Duration::from_secs(30);
/// Partitions of the topics in sections 1, 3 and 4.
const PARTITIONS: i32 = 8;
/// Partition counts of section 2.
const PUT_PARTITIONS: [i32; 3] = [1, 10, 100];
/// Time limit for a broker's clean shutdown.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(300);
/// Fresh brokers per data size in section 4 (the median is reported).
const FIRST_FETCH_PASSES: usize = 3;

fn main() -> Result<()> {
    common::init_tracing();
    let p = Params::from_env()?;
    std::fs::create_dir_all(&p.dir)
        .with_context(|| format!("cannot create VIGIL_BENCH_DIR {}", p.dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("vigil-storage-bench-")
        .tempdir_in(&p.dir)
        .with_context(|| format!("cannot create a temp dir in {}", p.dir.display()))?;
    let root = tmp.path().to_path_buf();
    // SeaweedFS first: the broker's S3 client reads AWS_* variables, which
    // are set here while the process has a single thread.
    let seaweed = if p.s3 {
        match Seaweed::start(&p.weed, &root.join("seaweed")) {
            Ok(s) => Some(s),
            Err(e) => {
                println!("note: SeaweedFS rows skipped: {e:#}");
                None
            }
        }
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    print_header(&p, &root, seaweed.as_ref());
    let result = run(&rt, &p, &root, seaweed.as_ref());
    drop(rt);
    if let Some(s) = seaweed {
        s.stop();
    }
    result
}

// ---------------------------------------------------------------- settings

#[derive(Debug)]
struct Params {
    record_bytes: usize,
    /// Section 1: fixed rate (records/s) and its duration.
    rate: f64,
    rate_secs: f64,
    /// Section 1: records of the max-throughput burst.
    burst_records: u64,
    /// Section 1: broker upload interval (`None`: broker default).
    upload_interval_ms: Option<u64>,
    /// Section 1: object WAL batching window.
    wal_window_ms: u64,
    /// Section 2: bytes per partition count, rate and upload interval.
    put_mb: u64,
    put_rate: f64,
    put_upload_interval_ms: u64,
    /// Sections 3 and 4: the large data set (MB); section 4's small one is a
    /// tenth of it.
    catchup_mb: u64,
    /// Run the SeaweedFS rows if `weed` exists.
    s3: bool,
    weed: PathBuf,
    dir: PathBuf,
}

impl Params {
    fn from_env() -> Result<Self> {
        let default_weed = workspace_root().join("target/test-venv/bin/weed");
        let p = Params {
            record_bytes: env_or("VIGIL_BENCH_RECORD_BYTES", 1024)?,
            rate: env_or("VIGIL_BENCH_RATE", 5000.0)?,
            rate_secs: env_or("VIGIL_BENCH_RATE_SECS", 5.0)?,
            burst_records: env_or("VIGIL_BENCH_BURST_RECORDS", 30_000)?,
            upload_interval_ms: env_or("VIGIL_BENCH_UPLOAD_INTERVAL_MS", 0)
                .map(|ms: u64| (ms > 0).then_some(ms))?,
            wal_window_ms: env_or("VIGIL_BENCH_WAL_WINDOW_MS", 5)?,
            put_mb: env_or("VIGIL_BENCH_PUT_MB", 40)?,
            put_rate: env_or("VIGIL_BENCH_PUT_RATE", 10_000.0)?,
            put_upload_interval_ms: env_or("VIGIL_BENCH_PUT_UPLOAD_INTERVAL_MS", 500)?,
            catchup_mb: env_or("VIGIL_BENCH_CATCHUP_MB", 200)?,
            s3: env_or("VIGIL_BENCH_S3", 1u8)? != 0,
            weed: env_or("VIGIL_WEED_BIN", default_weed)?,
            dir: env_or("VIGIL_BENCH_DIR", std::env::temp_dir())?,
        };
        if p.record_bytes == 0
            || p.burst_records == 0
            || p.put_mb == 0
            || p.put_upload_interval_ms == 0
            || p.catchup_mb < 10
        {
            bail!(
                "VIGIL_BENCH_RECORD_BYTES, _BURST_RECORDS, _PUT_MB and _PUT_UPLOAD_INTERVAL_MS \
                 must be > 0 and VIGIL_BENCH_CATCHUP_MB ≥ 10"
            );
        }
        if !(p.rate > 0.0 && p.rate_secs > 0.0 && p.put_rate > 0.0) {
            bail!("VIGIL_BENCH_RATE, _RATE_SECS and _PUT_RATE must be > 0");
        }
        Ok(p.with_s3_available())
    }

    /// Drops the S3 rows when there is no `weed` binary.
    fn with_s3_available(mut self) -> Self {
        self.s3 = self.s3
            && self.weed.is_file()
            && workspace_root().join("tests/clients/s3.py").is_file();
        self
    }

    fn records_for_mb(&self, mb: u64) -> u64 {
        (mb * 1_000_000).div_ceil(self.record_bytes as u64).max(1)
    }

    fn command(&self) -> String {
        let upload = self.upload_interval_ms.map_or_else(String::new, |ms| {
            format!("VIGIL_BENCH_UPLOAD_INTERVAL_MS={ms} ")
        });
        format!(
            "{upload}VIGIL_BENCH_RECORD_BYTES={} VIGIL_BENCH_RATE={} VIGIL_BENCH_RATE_SECS={} \
             VIGIL_BENCH_BURST_RECORDS={} VIGIL_BENCH_WAL_WINDOW_MS={} VIGIL_BENCH_PUT_MB={} \
             VIGIL_BENCH_PUT_RATE={} VIGIL_BENCH_PUT_UPLOAD_INTERVAL_MS={} \
             VIGIL_BENCH_CATCHUP_MB={} VIGIL_BENCH_S3={} VIGIL_BENCH_DIR={} \
             cargo bench -p vigil-benches --bench storage",
            self.record_bytes,
            self.rate,
            self.rate_secs,
            self.burst_records,
            self.wal_window_ms,
            self.put_mb,
            self.put_rate,
            self.put_upload_interval_ms,
            self.catchup_mb,
            u8::from(self.s3),
            self.dir.display()
        )
    }
}

fn print_header(p: &Params, root: &Path, seaweed: Option<&Seaweed>) {
    println!("== vigil storage benchmark ==");
    println!("machine:  {}", common::machine());
    println!("disk:     {} on {}", root.display(), common::mount_of(root));
    println!(
        "workload: acks=all, {} B records, linger.ms=0, no compression; client and broker in one \
         process sharing the cores; object store file:// on the same disk{}",
        p.record_bytes,
        match seaweed {
            Some(s) => format!(" and SeaweedFS S3 at {}", s.endpoint),
            None => String::new(),
        }
    );
    println!(
        "settings: fixed rate {}/s for {} s, burst {} records, {} partitions, upload interval {}, \
         object WAL window {} ms; PUT test {} MB at {}/s per partition count, upload interval {} \
         ms; catch-up {} MB",
        p.rate,
        p.rate_secs,
        p.burst_records,
        PARTITIONS,
        p.upload_interval_ms
            .map_or_else(|| "broker default".into(), |ms| format!("{ms} ms")),
        p.wal_window_ms,
        p.put_mb,
        p.put_rate,
        p.put_upload_interval_ms,
        p.catchup_mb
    );
    println!("command:  {}", p.command());
    println!("(MB = 10^6 bytes, MiB = 2^20 bytes; latencies in ms)\n");
}

// ---------------------------------------------------------------- seaweedfs

/// `weed mini` on loopback, started and stopped by the test suite's own
/// harness (`tests/clients/s3.py`, free ports, S3 identity, bucket) in a
/// Python child that keeps it running until its stdin closes.
struct Seaweed {
    child: Child,
    endpoint: String,
    bucket: String,
}

const SEAWEED_HELPER: &str = r#"
import sys, pathlib
sys.path.insert(0, sys.argv[1])
from s3 import SeaweedFS
d = pathlib.Path(sys.argv[3])
s = SeaweedFS(pathlib.Path(sys.argv[2]), d, d / "weed.log", bucket="vigil-bench").start()
try:
    for k, v in s.env().items():
        print(f"{k}={v}", flush=True)
    print(f"BUCKET={s.bucket}", flush=True)
    print("READY", flush=True)
    sys.stdin.read()
finally:
    s.stop()
"#;

impl Seaweed {
    fn start(weed: &Path, dir: &Path) -> Result<Self> {
        let root = workspace_root();
        let python = weed.with_file_name("python");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut child = Command::new(&python)
            .arg("-c")
            .arg(SEAWEED_HELPER)
            .arg(root.join("tests/clients"))
            .arg(weed)
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot run {}", python.display()))?;
        let stdout = child
            .stdout
            .take()
            .context("no stdout pipe to the SeaweedFS helper")?;
        let mut endpoint = None;
        let mut bucket = None;
        let mut ready = false;
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading the SeaweedFS helper's output")?;
            if line == "READY" {
                ready = true;
                break;
            }
            if let Some((k, v)) = line.split_once('=') {
                match k {
                    "BUCKET" => bucket = Some(v.to_string()),
                    _ => {
                        if k == "AWS_ENDPOINT_URL" {
                            endpoint = Some(v.to_string());
                        }
                        // Still single-threaded: no other thread reads the
                        // environment concurrently.
                        std::env::set_var(k, v);
                    }
                }
            }
        }
        let (true, Some(endpoint), Some(bucket)) = (ready, endpoint, bucket) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "SeaweedFS did not start (see its log in {}/weed.log)",
                dir.display()
            );
        };
        Ok(Seaweed {
            child,
            endpoint,
            bucket,
        })
    }

    fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// Closes the helper's stdin, which stops weed, and waits for it.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
            }
        }
    }
}

// ---------------------------------------------------------------- broker

struct BrokerOpts<'a> {
    data_dir: &'a Path,
    objects: &'a str,
    wal_object: bool,
    wal_window_ms: u64,
    upload_interval_ms: Option<u64>,
}

fn broker_config(o: &BrokerOpts<'_>) -> Result<vigil_broker::config::ServeConfig> {
    FileConfig {
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        data_dir: Some(o.data_dir.to_path_buf()),
        object_store: Some(o.objects.to_string()),
        upload_interval_ms: o.upload_interval_ms,
        wal: Some(if o.wal_object { "object" } else { "local" }.into()),
        wal_object_window_ms: o.wal_object.then_some(o.wal_window_ms),
        ..Default::default()
    }
    .resolve()
    .context("broker settings")
}

fn start_broker(rt: &Runtime, o: &BrokerOpts<'_>) -> Result<Running> {
    let cfg = broker_config(o)?;
    rt.block_on(vigil_broker::server::start(cfg))
        .with_context(|| format!("cannot start a broker on {}", o.objects))
}

fn shutdown(rt: &Runtime, running: Running) -> Result<Duration> {
    let t = Instant::now();
    rt.block_on(async {
        tokio::time::timeout(SHUTDOWN_LIMIT, running.shutdown())
            .await
            .map_err(|_| {
                anyhow!(
                    "a broker did not shut down within {} s",
                    SHUTDOWN_LIMIT.as_secs()
                )
            })
    })?;
    Ok(t.elapsed())
}

fn file_url(dir: &Path) -> Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(format!("file://{}", dir.display()))
}

// ---------------------------------------------------------------- produce

struct Produced {
    records: u64,
    record_bytes: usize,
    elapsed: Duration,
    /// Sorted.
    latencies_ns: Vec<u64>,
}

impl Produced {
    fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    fn mb_per_sec(&self) -> f64 {
        self.rate() * self.record_bytes as f64 / 1e6
    }

    fn p(&self, q: f64) -> f64 {
        percentile(&self.latencies_ns, q)
    }
}

struct Producing {
    producer: ThreadedProducer<Reports>,
    body: Vec<u8>,
    topic: String,
    /// Records go round-robin over this many partitions, explicitly.
    partitions: i32,
    next: u64,
}

impl Producing {
    fn new(addr: &str, topic: &str, partitions: i32, record_bytes: usize) -> Result<Self> {
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
    fn run(&mut self, n: u64, rate: Option<f64>, what: &str) -> Result<Produced> {
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
            let mut record =
                BaseRecord::<[u8], [u8], usize>::with_opaque_to(&self.topic, ctx.now_ns())
                    .payload(&self.body)
                    .partition(part);
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        std::thread::sleep(Duration::from_micros(50));
                        record = r.delivery_opaque(ctx.now_ns());
                    }
                    Err((e, _)) => {
                        return Err(e).context("cannot hand a record to librdkafka");
                    }
                }
            }
        }
        self.producer
            .flush(Duration::from_secs(180))
            .with_context(|| format!("{what}: not all records were acknowledged within 180 s"))?;
        let errors = ctx.errors.load(Ordering::SeqCst);
        if errors > 0 {
            bail!(
                "{what}: {errors} of {n} records failed; first error: {}",
                lock(&ctx.first_error).clone().unwrap_or_default()
            );
        }
        let delivered = ctx.delivered.load(Ordering::SeqCst);
        if delivered != n {
            bail!("{what}: {delivered} delivery reports for {n} records");
        }
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

// ---------------------------------------------------------------- consume

fn consumer(addr: &str) -> Result<BaseConsumer> {
    assign_only_consumer(addr)
}

struct Consumed {
    records: u64,
    bytes: u64,
    elapsed: Duration,
}

impl Consumed {
    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

/// Reads every partition of `topic` from offset 0 up to its high watermark.
fn consume_all(addr: &str, topic: &str, partitions: i32) -> Result<Consumed> {
    let consumer = consumer(addr)?;
    let mut remaining = std::collections::HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for part in 0..partitions {
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
    Ok(Consumed {
        records,
        bytes,
        elapsed: start.elapsed(),
    })
}

/// Fetches the newest record of `topic`/0: its watermark, then one record at
/// high watermark − 1.
fn fetch_newest(addr: &str, topic: &str) -> Result<i64> {
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

// ---------------------------------------------------------------- the run

fn run(rt: &Runtime, p: &Params, root: &Path, seaweed: Option<&Seaweed>) -> Result<()> {
    let modes = section_produce(rt, p, root, seaweed).context("section 1 (produce by WAL mode)")?;
    print_modes(p, &modes, seaweed.is_some());
    let puts = section_puts(rt, p, root).context("section 2 (PUTs per MiB)")?;
    print_puts(p, &puts);
    let (catchup, first_fetch) =
        section_catchup(rt, p, root).context("sections 3 and 4 (catch-up, first fetch)")?;
    print_catchup(&catchup);
    print_first_fetch(&first_fetch);
    Ok(())
}

// ------------------------------------------------ 1: produce by WAL mode

struct ModeRow {
    store: &'static str,
    wal: &'static str,
    fixed: Produced,
    burst: Produced,
    puts: u64,
    shutdown: Duration,
}

fn section_produce(
    rt: &Runtime,
    p: &Params,
    root: &Path,
    seaweed: Option<&Seaweed>,
) -> Result<Vec<ModeRow>> {
    let mut stores: Vec<(&'static str, String)> =
        vec![("file", file_url(&root.join("objects-modes"))?)];
    if let Some(s) = seaweed {
        stores.push(("seaweedfs", s.url("modes")));
    }
    let mut rows = Vec::new();
    for (store, base) in &stores {
        for wal_object in [false, true] {
            let wal = if wal_object { "object" } else { "local" };
            let data_dir = root.join(format!("data-modes-{store}-{wal}"));
            let objects = format!("{base}/{wal}");
            let running = start_broker(
                rt,
                &BrokerOpts {
                    data_dir: &data_dir,
                    objects: &objects,
                    wal_object,
                    wal_window_ms: p.wal_window_ms,
                    upload_interval_ms: p.upload_interval_ms,
                },
            )?;
            let metrics = running.broker.store_metrics.clone();
            let addr = running.kafka_addr.to_string();
            let topic = "bench-modes";
            create_topic(rt, &addr, topic, PARTITIONS)?;
            let what = format!("{store}/{wal}");
            let mut prod = Producing::new(&addr, topic, PARTITIONS, p.record_bytes)
                .with_context(|| format!("{what}: producer"))?;
            let before = metrics.stats();
            let n = ((p.rate * p.rate_secs).ceil() as u64).max(1);
            let fixed = prod
                .run(n, Some(p.rate), &what)
                .with_context(|| format!("{what}: fixed rate"))?;
            let burst = prod
                .run(p.burst_records, None, &what)
                .with_context(|| format!("{what}: burst"))?;
            let puts = put_requests(&metrics.stats()) - put_requests(&before);
            drop(prod);
            let shutdown = shutdown(rt, running)?;
            rows.push(ModeRow {
                store,
                wal,
                fixed,
                burst,
                puts,
                shutdown,
            });
        }
    }
    Ok(rows)
}

/// Every request that writes an object: single PUTs and multipart steps.
fn put_requests(s: &ObjectStoreStats) -> u64 {
    [
        StoreOp::Put,
        StoreOp::PutMultipart,
        StoreOp::PutPart,
        StoreOp::CompleteMultipart,
    ]
    .into_iter()
    .map(|op| s.total_requests(op))
    .sum()
}

fn print_modes(p: &Params, rows: &[ModeRow], s3: bool) {
    println!(
        "== 1. produce by WAL mode: acks=all, {} B records, {} partitions; ack latency = send → \
         delivery report ==",
        p.record_bytes, PARTITIONS
    );
    println!(
        "{:<10} {:<7} {:>10} {:>8} {:>8} {:>8} | {:>10} {:>8} {:>8} {:>8} | {:>6} {:>9}",
        "store",
        "wal",
        "fixed r/s",
        "p50",
        "p99",
        "max",
        "burst r/s",
        "MB/s",
        "p50",
        "p99",
        "PUTs",
        "shutdown"
    );
    for r in rows {
        println!(
            "{:<10} {:<7} {:>10.0} {:>8.2} {:>8.2} {:>8.2} | {:>10.0} {:>8.1} {:>8.2} {:>8.2} | \
             {:>6} {:>8.2}s",
            r.store,
            r.wal,
            r.fixed.rate(),
            r.fixed.p(0.5),
            r.fixed.p(0.99),
            r.fixed.p(1.0),
            r.burst.rate(),
            r.burst.mb_per_sec(),
            r.burst.p(0.5),
            r.burst.p(0.99),
            r.puts,
            r.shutdown.as_secs_f64()
        );
    }
    if !s3 {
        println!(
            "seaweedfs rows skipped: VIGIL_BENCH_S3=0, no weed binary at {} (install the test \
             venv, or set VIGIL_WEED_BIN), no tests/clients/s3.py, or weed did not start",
            p.weed.display()
        );
    }
    println!(
        "(fixed = {} records/s for {} s; burst = {} records as fast as the client queue allows, \
         so its latency is mostly client-side queueing; PUTs = object-writing requests during \
         both; shutdown = clean shutdown incl. the final upload)\n",
        p.rate, p.rate_secs, p.burst_records
    );
}

// ------------------------------------------------ 2: PUTs per MiB

struct PutRow {
    partitions: i32,
    produced: Produced,
    puts: u64,
    bytes_uploaded: u64,
    uploads: u64,
}

fn section_puts(rt: &Runtime, p: &Params, root: &Path) -> Result<Vec<PutRow>> {
    let mut rows = Vec::new();
    let n = p.records_for_mb(p.put_mb);
    for parts in PUT_PARTITIONS {
        let objects = file_url(&root.join(format!("objects-puts-{parts}")))?;
        let data_dir = root.join(format!("data-puts-{parts}"));
        let running = start_broker(
            rt,
            &BrokerOpts {
                data_dir: &data_dir,
                objects: &objects,
                wal_object: false,
                wal_window_ms: p.wal_window_ms,
                upload_interval_ms: Some(p.put_upload_interval_ms),
            },
        )?;
        let metrics = running.broker.store_metrics.clone();
        let log = running.broker.log.clone();
        let addr = running.kafka_addr.to_string();
        let topic = format!("bench-puts-{parts}");
        create_topic(rt, &addr, &topic, parts)?;
        let mut prod = Producing::new(&addr, &topic, parts, p.record_bytes)
            .with_context(|| format!("{parts} partitions: producer"))?;
        // Let the warm-up and topic creation be uploaded before counting.
        std::thread::sleep(Duration::from_millis(p.put_upload_interval_ms * 2 + 200));
        let before = metrics.stats();
        let uploads_before = log.stats.uploads.load(Ordering::SeqCst);
        let produced = prod
            .run(n, Some(p.put_rate), &format!("{parts} partitions"))
            .with_context(|| format!("{parts} partitions: produce"))?;
        drop(prod);
        // Clean shutdown uploads what is left.
        shutdown(rt, running)?;
        let after = metrics.stats();
        rows.push(PutRow {
            partitions: parts,
            produced,
            puts: put_requests(&after) - put_requests(&before),
            bytes_uploaded: after.bytes_uploaded - before.bytes_uploaded,
            uploads: log.stats.uploads.load(Ordering::SeqCst) - uploads_before,
        });
    }
    Ok(rows)
}

fn print_puts(p: &Params, rows: &[PutRow]) {
    println!(
        "== 2. object PUTs per MiB: {} MB at {}/s spread round-robin over N partitions, local \
         WAL, upload interval {} ms ==",
        p.put_mb, p.put_rate, p.put_upload_interval_ms
    );
    println!(
        "{:>10} {:>9} {:>7} {:>8} {:>12} {:>8} {:>9} {:>12}",
        "partitions",
        "records",
        "secs",
        "uploads",
        "MiB uploaded",
        "PUTs",
        "PUTs/MiB",
        "PUTs/upload"
    );
    for r in rows {
        let mib = r.bytes_uploaded as f64 / (1 << 20) as f64;
        println!(
            "{:>10} {:>9} {:>7.2} {:>8} {:>12.1} {:>8} {:>9.2} {:>12.2}",
            r.partitions,
            r.produced.records,
            r.produced.elapsed.as_secs_f64(),
            r.uploads,
            mib,
            r.puts,
            r.puts as f64 / mib.max(f64::MIN_POSITIVE),
            r.puts as f64 / r.uploads.max(1) as f64
        );
    }
    println!(
        "(counted from the broker's object store counters from the start of the timed produce \
         through its clean shutdown; PUTs = single PUTs + multipart steps; uploads = committed \
         upload cycles; target: PUTs/MiB flat across partition counts)\n"
    );
}

// ------------------------------------------------ 3 + 4: catch-up, first fetch

struct CatchupPass {
    name: &'static str,
    consumed: Consumed,
    cache: CacheStats,
    gets: u64,
}

struct FirstFetch {
    mb: u64,
    records: u64,
    start: Duration,
    first: Duration,
    /// Every pass's first-fetch time, sorted.
    all: Vec<Duration>,
}

/// Fills an object store with `mb` MB in `topic` and shuts the broker down
/// cleanly (which uploads everything).
fn fill(rt: &Runtime, p: &Params, root: &Path, name: &str, mb: u64) -> Result<(String, u64)> {
    let objects = file_url(&root.join(format!("objects-{name}")))?;
    let data_dir = root.join(format!("data-{name}-writer"));
    let running = start_broker(
        rt,
        &BrokerOpts {
            data_dir: &data_dir,
            objects: &objects,
            wal_object: false,
            wal_window_ms: p.wal_window_ms,
            upload_interval_ms: None,
        },
    )?;
    let addr = running.kafka_addr.to_string();
    create_topic(rt, &addr, "bench-data", PARTITIONS)?;
    let n = p.records_for_mb(mb);
    let mut prod = Producing::new(&addr, "bench-data", PARTITIONS, p.record_bytes)?;
    prod.run(n, None, &format!("fill {name}"))?;
    drop(prod);
    shutdown(rt, running)?;
    Ok((objects, n + WARMUP_RECORDS))
}

fn cache_delta(a: CacheStats, b: CacheStats) -> CacheStats {
    CacheStats {
        hits: a.hits - b.hits,
        misses: a.misses - b.misses,
        coalesced: a.coalesced - b.coalesced,
        fetches: a.fetches - b.fetches,
        bytes_fetched: a.bytes_fetched - b.bytes_fetched,
        readahead_blocks: a.readahead_blocks - b.readahead_blocks,
        evictions: a.evictions - b.evictions,
        current_bytes: a.current_bytes,
    }
}

fn get_requests(s: &ObjectStoreStats) -> u64 {
    [StoreOp::Get, StoreOp::GetRange, StoreOp::GetRanges]
        .into_iter()
        .map(|op| s.total_requests(op))
        .sum()
}

fn time_first_fetch(
    rt: &Runtime,
    p: &Params,
    root: &Path,
    name: &str,
    objects: &str,
) -> Result<(Duration, Duration)> {
    let data_dir = root.join(format!("data-{name}-first-fetch"));
    let cfg = broker_config(&BrokerOpts {
        data_dir: &data_dir,
        objects,
        wal_object: false,
        wal_window_ms: p.wal_window_ms,
        upload_interval_ms: None,
    })?;
    let t = Instant::now();
    let running = rt
        .block_on(vigil_broker::server::start(cfg))
        .with_context(|| format!("cannot start a broker on {objects}"))?;
    let started = t.elapsed();
    let addr = running.kafka_addr.to_string();
    fetch_newest(&addr, "bench-data").with_context(|| format!("first fetch on {name}"))?;
    let first = t.elapsed();
    shutdown(rt, running)?;
    Ok((started, first))
}

fn section_catchup(
    rt: &Runtime,
    p: &Params,
    root: &Path,
) -> Result<(Vec<CatchupPass>, Vec<FirstFetch>)> {
    let small_mb = p.catchup_mb / 10;
    let (small, small_records) = fill(rt, p, root, "small", small_mb).context("fill small")?;
    let (large, large_records) = fill(rt, p, root, "large", p.catchup_mb).context("fill large")?;

    // 4: first fetch on each, before anything else reads the large store.
    let mut first = Vec::new();
    for (name, objects, mb, records) in [
        ("small", &small, small_mb, small_records),
        ("large", &large, p.catchup_mb, large_records),
    ] {
        let mut runs = Vec::new();
        for i in 0..FIRST_FETCH_PASSES {
            runs.push(time_first_fetch(
                rt,
                p,
                root,
                &format!("{name}-{i}"),
                objects,
            )?);
        }
        runs.sort_by_key(|r| r.1);
        let (start, t) = runs[runs.len() / 2];
        first.push(FirstFetch {
            mb,
            records,
            start,
            first: t,
            all: runs.iter().map(|r| r.1).collect(),
        });
    }

    // 3: a new broker, empty data dir, reads everything twice.
    let running = start_broker(
        rt,
        &BrokerOpts {
            data_dir: &root.join("data-large-reader"),
            objects: &large,
            wal_object: false,
            wal_window_ms: p.wal_window_ms,
            upload_interval_ms: None,
        },
    )?;
    let addr = running.kafka_addr.to_string();
    let mut passes = Vec::new();
    for name in ["cold", "hot"] {
        let cache_before = running.broker.log.block_cache_stats();
        let store_before = running.broker.store_metrics.stats();
        let consumed = consume_all(&addr, "bench-data", PARTITIONS)
            .with_context(|| format!("{name} catch-up read"))?;
        passes.push(CatchupPass {
            name,
            consumed,
            cache: cache_delta(running.broker.log.block_cache_stats(), cache_before),
            gets: get_requests(&running.broker.store_metrics.stats()) - get_requests(&store_before),
        });
    }
    shutdown(rt, running)?;
    Ok((passes, first))
}

fn print_catchup(passes: &[CatchupPass]) {
    println!(
        "== 3. catch-up read from the object store: new broker, empty data dir, BaseConsumer from \
         offset 0 to the high watermark, {PARTITIONS} partitions =="
    );
    println!(
        "{:<6} {:>9} {:>8} {:>7} {:>8} {:>7} {:>7} {:>9} {:>7} {:>9} {:>10}",
        "pass",
        "records",
        "MB",
        "secs",
        "MB/s",
        "GETs",
        "hits",
        "misses",
        "hit %",
        "readahead",
        "fetched MB"
    );
    for r in passes {
        println!(
            "{:<6} {:>9} {:>8.1} {:>7.2} {:>8.1} {:>7} {:>7} {:>9} {:>7.1} {:>9} {:>10.1}",
            r.name,
            r.consumed.records,
            r.consumed.bytes as f64 / 1e6,
            r.consumed.elapsed.as_secs_f64(),
            r.consumed.mb_per_sec(),
            r.gets,
            r.cache.hits,
            r.cache.misses,
            r.cache.hit_ratio() * 100.0,
            r.cache.readahead_blocks,
            r.cache.bytes_fetched as f64 / 1e6
        );
    }
    if let [cold, hot] = passes {
        println!(
            "hot/cold throughput: {:.2}×; block cache holds {:.1} MiB after the hot pass",
            hot.consumed.mb_per_sec() / cold.consumed.mb_per_sec(),
            hot.cache.current_bytes as f64 / (1 << 20) as f64
        );
    }
    println!(
        "(block cache counters per pass: hits / misses in blocks, readahead = blocks fetched \
         ahead, fetched MB = bytes received from the store; GETs = the store's GET requests; \
         file:// on the same disk, just written, so cold reads likely hit the OS page cache)\n"
    );
}

fn print_first_fetch(rows: &[FirstFetch]) {
    println!(
        "== 4. time to first fetch: fresh broker, empty data dir, already-uploaded data; \
         server::start → newest record of partition 0 fetched =="
    );
    println!(
        "{:>8} {:>9} {:>12} {:>16} {:>22}",
        "data MB", "records", "start ms", "first fetch ms", "all passes ms"
    );
    for r in rows {
        let all: Vec<String> = r
            .all
            .iter()
            .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
            .collect();
        println!(
            "{:>8} {:>9} {:>12.1} {:>16.1} {:>22}",
            r.mb,
            r.records,
            r.start.as_secs_f64() * 1e3,
            r.first.as_secs_f64() * 1e3,
            all.join(" ")
        );
    }
    if let [small, large] = rows {
        println!(
            "ratio {} MB / {} MB: {:.2}× (target ≈ 1: start-up must not scale with data size)",
            large.mb,
            small.mb,
            large.first.as_secs_f64() / small.first.as_secs_f64()
        );
    }
    println!(
        "(median of {FIRST_FETCH_PASSES} fresh brokers per size; start = the server::start call; first fetch includes it, the client's connection, \
         metadata, ListOffsets and the Fetch)\n"
    );
}
