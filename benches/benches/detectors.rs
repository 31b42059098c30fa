//! Detector benchmark: what running anomaly detectors as wasm inside the
//! broker costs and buys. Run it with
//! `cargo bench -p vigil-benches --bench detectors`.
//!
//! What it measures, in one run:
//!
//! 1. **Throughput** (no broker): the zscore and rate-spike plugins compiled
//!    natively (their `Detector` impls through the rlib) vs the same plugins
//!    as wasm modules in `vigil-host`, on the same Kafka record batches (JSON
//!    values, built once with `BatchBuilder`). Both sides pay for the host's
//!    batch building (`vigil_host::build_batch` with a value schema, JSON →
//!    Arrow) on every iteration; then native wraps the batch in
//!    `vigil_sdk::Batch` and calls `Detector::process`, wasm calls
//!    `Instance::process`. Rows/s both ways, the time ratio (target ≤ 1.25×),
//!    and the split: batch building, detector call, and for wasm the guest
//!    call alone.
//! 2. **Alert latency**, produce ack → alert consumed: an rdkafka producer
//!    (`acks=all`) writes JSON records at a steady rate, a known fraction of
//!    them outliers. vigil path: a zscore deployment on the broker writes
//!    alerts to `alerts`. External path, on the same broker: an rdkafka
//!    consumer reads `in2`, runs the same zscore detector natively, and
//!    produces alerts to `alerts2` with an rdkafka producer. A consumer on
//!    each alert topic matches every alert to its source record (by the
//!    source partition/offset headers) and takes consume time − ack time.
//!    p50/p99 both ways and vigil p99 / external p99 (target ≤ 0.2×).
//! 3. **Produce latency with busy deployments**: the same fixed-rate
//!    `acks=all` load with no deployments, then with 4 zscore deployments
//!    consuming the produced topic (each processes every batch), then (as a
//!    control) with the 4 deployments present but idle. Ratio of p99s
//!    (target ≤ 1.2×).
//!
//! The broker runs in this process (like the other benches), with a
//! `file://` object store in a temp dir, and is driven through its Kafka
//! port and its admin HTTP API (`POST /v1/modules`, `POST /v1/deployments`).
//! Timings are printed, never asserted: the machine is shared and noisy.
//! Settings come from `VIGIL_BENCH_*` environment variables (see
//! `benches/README.md`); the header prints the exact command to reproduce.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context as _, Result};
use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::{json, Value};
use tokio::runtime::Runtime;
use vigil_broker::config::FileConfig;
use vigil_broker::detectors::output::headers as alert_headers;
use vigil_broker::server::Running;
use vigil_host::{build_batch, Host, HostConfig, Limits, ValueSchema};
use vigil_protocol::batch::set_base_offset;
use vigil_protocol::kafka_protocol::records::Compression;
use vigil_protocol::BatchBuilder;
use vigil_sdk::testing::{FieldType, Rows};
use vigil_sdk::{Alerts, Batch, Detector};

use common::{env_or, lock, percentile};

// The same allocator as the `vigil` binary, so the broker behaves as it does
// in production.
#[global_allocator]
static ALLOC: vigil_protocol::alloc::LazyLargeAlloc = vigil_protocol::alloc::LazyLargeAlloc;

/// Where `vigil detector build --target-dir target/wasm` puts the modules.
const DEFAULT_WASM_DIR: &str = "target/wasm/wasm32-unknown-unknown/release";
const BUILD_CMD: &str = "cargo build --release -p vigil-broker && ./target/release/vigil \
    detector build --target-dir target/wasm plugins/zscore plugins/rate-spike";
/// Keys of the throughput data set.
const TP_KEYS: u64 = 1000;
/// Outliers in the throughput data set, parts per million.
const TP_OUTLIER_PPM: u64 = 10_000;
/// Records per Kafka batch in the throughput data (a producer's batch).
const TP_PRODUCER_BATCH: usize = 500;
/// Event time of the first throughput record (ms); records are 1 ms apart.
const TP_TS0: i64 = 1_700_000_000_000;
/// zscore's config everywhere in this bench.
const ZSCORE_WINDOW: u64 = 100;
const ZSCORE_MIN_SAMPLES: u64 = 20;
/// Records sent before measuring through each new load producer, seconds of
/// the load's rate.
const LOAD_WARMUP_SECS: f64 = 1.0;
/// How long to wait for the last alerts after the last ack.
const DRAIN: Duration = Duration::from_secs(10);
/// Most messages the external pipeline takes from one poll round.
const EXT_MAX_BATCH: usize = 1000;

fn main() -> Result<()> {
    common::init_tracing();
    // `cargo bench` passes `--bench`; there are no other arguments.
    let p = Params::from_env()?;
    let wasm = Wasm::locate(&p)?;
    std::fs::create_dir_all(&p.dir)
        .with_context(|| format!("cannot create VIGIL_BENCH_DIR {}", p.dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("vigil-detectors-bench-")
        .tempdir_in(&p.dir)
        .with_context(|| format!("cannot create a temp dir in {}", p.dir.display()))?;
    let root = tmp.path().to_path_buf();
    print_header(&p, &root, &wasm);
    let started = Instant::now();

    if p.throughput {
        let rows = section_throughput(&p, &wasm, &root).context("section 1 (throughput)")?;
        print_throughput(&p, &rows);
    }
    if p.latency || p.load {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the tokio runtime")?;
        let running = start_broker(&rt, &root)?;
        let admin = Admin {
            base: format!("http://{}", running.admin_addr),
        };
        println!(
            "broker on {} (admin http://{}), data dir {}\n",
            running.kafka_addr,
            running.admin_addr,
            root.join("data").display()
        );
        let hash = admin
            .upload(&wasm.zscore)
            .context("uploading the zscore module through POST /v1/modules")?;
        let result = (|| -> Result<()> {
            if p.latency {
                let r = section_latency(&rt, &running, &admin, &hash, &p)
                    .context("section 2 (alert latency)")?;
                print_latency(&p, &r);
            }
            if p.load {
                let r = section_load(&rt, &running, &admin, &hash, &p)
                    .context("section 3 (produce with busy deployments)")?;
                print_load(&p, &r);
            }
            Ok(())
        })();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(120), running.shutdown())
                .await
                .map_err(|_| anyhow!("the broker did not shut down within 120 s"))
        })?;
        result?;
    }
    println!(
        "total time {:.0} s (after the build)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------- settings

#[derive(Debug)]
struct Params {
    wasm_dir: PathBuf,
    throughput: bool,
    latency: bool,
    load: bool,
    /// Section 1: rows per batch, one row of the table each.
    batch_rows: Vec<usize>,
    /// Section 1: distinct rows prepared per batch size (cycled through).
    tp_rows: usize,
    /// Section 1: measured seconds per variant per (detector, batch size).
    tp_secs: f64,
    /// Section 1: rounds those seconds are split into (native and wasm
    /// alternate; the median round is reported).
    tp_rounds: usize,
    /// Sections 2 and 3: keys of the produced records.
    keys: u64,
    /// Sections 2 and 3: outlier share, percent.
    outlier_pct: f64,
    partitions: i32,
    /// Section 2: rate (records/s) and measured seconds per pipeline.
    rate: f64,
    latency_secs: f64,
    /// Source producers' `linger.ms` (both pipelines and section 3).
    linger_ms: u64,
    /// The external pipeline's alert producer's `linger.ms`.
    ext_linger_ms: u64,
    /// `fetch.wait.max.ms` of every consumer (the external pipeline's input
    /// consumer and both alert consumers).
    fetch_wait_ms: u64,
    /// Section 3: rate, seconds per point, busy deployments, control row.
    load_rate: f64,
    load_secs: f64,
    deployments: usize,
    load_control: bool,
    dir: PathBuf,
}

impl Params {
    fn from_env() -> Result<Self> {
        let sections: String = env_or(
            "VIGIL_BENCH_SECTIONS",
            "throughput,latency,load".to_string(),
        )?;
        let sections: Vec<String> = sections
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        for s in &sections {
            if !matches!(s.as_str(), "throughput" | "latency" | "load") {
                bail!(
                    "VIGIL_BENCH_SECTIONS: unknown section {s:?} (use throughput, latency, load)"
                );
            }
        }
        let has = |s: &str| sections.iter().any(|x| x == s);
        let batch_rows: String = env_or("VIGIL_BENCH_BATCH_ROWS", "1000,10000".to_string())?;
        let batch_rows = batch_rows
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.trim()
                    .parse::<usize>()
                    .with_context(|| format!("VIGIL_BENCH_BATCH_ROWS: {s:?}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let p = Params {
            wasm_dir: env_or(
                "VIGIL_WASM_DIR",
                common::workspace_root().join(DEFAULT_WASM_DIR),
            )?,
            throughput: has("throughput"),
            latency: has("latency"),
            load: has("load"),
            batch_rows,
            tp_rows: env_or("VIGIL_BENCH_TP_ROWS", 200_000)?,
            tp_secs: env_or("VIGIL_BENCH_TP_SECS", 1.5)?,
            tp_rounds: env_or("VIGIL_BENCH_TP_ROUNDS", 5)?,
            keys: env_or("VIGIL_BENCH_KEYS", 100)?,
            outlier_pct: env_or("VIGIL_BENCH_OUTLIER_PCT", 2.0)?,
            partitions: env_or("VIGIL_BENCH_PARTITIONS", 4)?,
            rate: env_or("VIGIL_BENCH_RATE", 2000.0)?,
            latency_secs: env_or("VIGIL_BENCH_LATENCY_SECS", 15.0)?,
            linger_ms: env_or("VIGIL_BENCH_LINGER_MS", 0)?,
            ext_linger_ms: env_or("VIGIL_BENCH_EXT_LINGER_MS", 0)?,
            fetch_wait_ms: env_or("VIGIL_BENCH_FETCH_WAIT_MS", 10)?,
            load_rate: env_or("VIGIL_BENCH_LOAD_RATE", 5000.0)?,
            load_secs: env_or("VIGIL_BENCH_LOAD_SECS", 8.0)?,
            deployments: env_or("VIGIL_BENCH_DEPLOYMENTS", 4)?,
            load_control: env_or("VIGIL_BENCH_LOAD_CONTROL", 1u8)? != 0,
            dir: env_or("VIGIL_BENCH_DIR", std::env::temp_dir())?,
        };
        if p.batch_rows.is_empty() || p.batch_rows.contains(&0) {
            bail!("VIGIL_BENCH_BATCH_ROWS must list batch sizes > 0");
        }
        if p.tp_rows == 0 || p.tp_rounds == 0 || p.keys == 0 || p.partitions < 1 {
            bail!("VIGIL_BENCH_TP_ROWS, _TP_ROUNDS, _KEYS and _PARTITIONS must be > 0");
        }
        if !(p.tp_secs > 0.0
            && p.rate > 0.0
            && p.latency_secs > 0.0
            && p.load_rate > 0.0
            && p.load_secs > 0.0)
        {
            bail!(
                "VIGIL_BENCH_TP_SECS, _RATE, _LATENCY_SECS, _LOAD_RATE and _LOAD_SECS must be > 0"
            );
        }
        if !(0.0..=50.0).contains(&p.outlier_pct) {
            bail!("VIGIL_BENCH_OUTLIER_PCT must be between 0 and 50");
        }
        Ok(p)
    }

    fn outlier_ppm(&self) -> u64 {
        (self.outlier_pct * 10_000.0).round() as u64
    }

    /// Records each key needs before zscore scores it, plus margin: the
    /// warm-up of section 2.
    fn latency_warmup(&self) -> u64 {
        ((self.rate * 3.0).ceil() as u64).max(self.keys * (ZSCORE_MIN_SAMPLES + 10))
    }

    fn command(&self) -> String {
        let mut sections = Vec::new();
        for (on, name) in [
            (self.throughput, "throughput"),
            (self.latency, "latency"),
            (self.load, "load"),
        ] {
            if on {
                sections.push(name);
            }
        }
        let rows: Vec<String> = self.batch_rows.iter().map(ToString::to_string).collect();
        format!(
            "VIGIL_BENCH_SECTIONS={} VIGIL_BENCH_BATCH_ROWS={} VIGIL_BENCH_TP_ROWS={} \
             VIGIL_BENCH_TP_SECS={} VIGIL_BENCH_TP_ROUNDS={} VIGIL_BENCH_KEYS={} \
             VIGIL_BENCH_OUTLIER_PCT={} VIGIL_BENCH_PARTITIONS={} VIGIL_BENCH_RATE={} \
             VIGIL_BENCH_LATENCY_SECS={} VIGIL_BENCH_LINGER_MS={} VIGIL_BENCH_EXT_LINGER_MS={} \
             VIGIL_BENCH_FETCH_WAIT_MS={} VIGIL_BENCH_LOAD_RATE={} VIGIL_BENCH_LOAD_SECS={} \
             VIGIL_BENCH_DEPLOYMENTS={} VIGIL_BENCH_LOAD_CONTROL={} VIGIL_WASM_DIR={} \
             VIGIL_BENCH_DIR={} cargo bench -p vigil-benches --bench detectors",
            sections.join(","),
            rows.join(","),
            self.tp_rows,
            self.tp_secs,
            self.tp_rounds,
            self.keys,
            self.outlier_pct,
            self.partitions,
            self.rate,
            self.latency_secs,
            self.linger_ms,
            self.ext_linger_ms,
            self.fetch_wait_ms,
            self.load_rate,
            self.load_secs,
            self.deployments,
            u8::from(self.load_control),
            self.wasm_dir.display(),
            self.dir.display()
        )
    }
}

/// The wasm modules the bench runs.
struct Wasm {
    zscore: Vec<u8>,
    zscore_path: PathBuf,
    /// Absent: the rate-spike rows are skipped.
    rate_spike: Option<(Vec<u8>, PathBuf)>,
    /// Plugin sources newer than their module (the module may be stale).
    stale: Vec<String>,
}

impl Wasm {
    fn locate(p: &Params) -> Result<Wasm> {
        let zscore_path = p.wasm_dir.join("vigil_plugin_zscore.wasm");
        let zscore = std::fs::read(&zscore_path).map_err(|e| {
            anyhow!(
                "cannot read the zscore module {}: {e}\nThe detector bench needs the plugins \
                 built as wasm; build them with\n  {BUILD_CMD}\n(from the workspace root), or \
                 point VIGIL_WASM_DIR at the directory holding the .wasm files",
                zscore_path.display()
            )
        })?;
        let rs_path = p.wasm_dir.join("vigil_plugin_rate_spike.wasm");
        let rate_spike = std::fs::read(&rs_path).ok().map(|b| (b, rs_path));
        let mut stale = Vec::new();
        let root = common::workspace_root();
        let mut check = |plugin: &str, module: &Path| {
            let built = std::fs::metadata(module).and_then(|m| m.modified()).ok();
            // The plugin and everything it compiles in from the workspace.
            let sources = [
                root.join("plugins").join(plugin).join("src"),
                root.join("sdk/vigil-sdk/src"),
                root.join("sdk/vigil-abi/src"),
                root.join("sdk/vigil-macros/src"),
            ];
            let newest = sources.iter().filter_map(|d| newest_mtime(d)).max();
            if let (Some(b), Some(n)) = (built, newest) {
                if n > b {
                    stale.push(format!(
                        "{plugin}: its sources (or the SDK's) are newer than {}",
                        module.display()
                    ));
                }
            }
        };
        check("zscore", &zscore_path);
        if let Some((_, path)) = &rate_spike {
            check("rate-spike", path);
        }
        Ok(Wasm {
            zscore,
            zscore_path,
            rate_spike,
            stale,
        })
    }
}

fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let t = if e.path().is_dir() {
            newest_mtime(&e.path())
        } else {
            e.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(t);
    }
    newest
}

fn print_header(p: &Params, root: &Path, wasm: &Wasm) {
    println!("== vigil detector benchmark ==");
    println!("machine:  {}", common::machine());
    println!("disk:     {} on {}", root.display(), common::mount_of(root));
    println!(
        "noise:    a shared {}-core box: the broker, its detectors, the Kafka clients, the \
         external pipeline and whatever else runs here share the cores, so numbers move by \
         10-30 % between runs (tails more); compare the ratios within one run, and rerun \
         before believing a difference",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "modules:  {} ({} KiB){}",
        wasm.zscore_path.display(),
        wasm.zscore.len() / 1024,
        match &wasm.rate_spike {
            Some((b, path)) => format!(", {} ({} KiB)", path.display(), b.len() / 1024),
            None => ", rate-spike module not found (its rows are skipped)".into(),
        }
    );
    for s in &wasm.stale {
        println!(
            "WARNING:  {s}: native and wasm may run different code; rebuild with `{BUILD_CMD}`"
        );
    }
    println!("command:  {}", p.command());
    println!("(latencies in ms)\n");
}

// ---------------------------------------------------------------- data

/// SplitMix64: a well-mixed hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// One generated record.
struct Rec {
    key: String,
    value: String,
    outlier: bool,
}

/// Record `i` of a stream over `keys` keys with `outlier_ppm` outliers: a
/// card payment whose amount is uniform in 85..115 (so a key's |z| stays
/// below 1.8 without outliers), or an outlier of 1000..1100. Deterministic.
fn record(i: u64, keys: u64, outlier_ppm: u64) -> Rec {
    let h = mix(i);
    let key = format!("card-{:05}", h % keys);
    let u = (mix(h) >> 11) as f64 / (1u64 << 53) as f64;
    let outlier = mix(h ^ 0x5555) % 1_000_000 < outlier_ppm;
    let amount = if outlier {
        1000.0 + 100.0 * u
    } else {
        85.0 + 30.0 * u
    };
    let merchant = mix(h ^ 0xAAAA) % 500;
    let value = format!(r#"{{"card":"{key}","amount":{amount:.2},"merchant":"m-{merchant}"}}"#);
    Rec {
        key,
        value,
        outlier,
    }
}

fn zscore_config() -> Value {
    json!({
        "field": "amount",
        "window": ZSCORE_WINDOW,
        "threshold": 3.0,
        "min_samples": ZSCORE_MIN_SAMPLES,
    })
}

fn value_schema() -> Value {
    json!({"amount": "float64"})
}

// ------------------------------------------------ 1: throughput

/// One input batch as the log hands it to a deployment: concatenated
/// magic-v2 batches of `TP_PRODUCER_BATCH` records.
struct Wire {
    bytes: Bytes,
    from: i64,
}

fn tp_data(rows_per_batch: usize, total_rows: usize) -> Result<Vec<Wire>> {
    let n = total_rows.div_ceil(rows_per_batch).max(2);
    let mut out = Vec::with_capacity(n);
    for b in 0..n {
        let base = (b * rows_per_batch) as i64;
        let mut wire = Vec::new();
        let mut start = 0;
        while start < rows_per_batch {
            let end = (start + TP_PRODUCER_BATCH).min(rows_per_batch);
            let mut bb = BatchBuilder::new(Compression::None);
            for i in start..end {
                let idx = base as u64 + i as u64;
                let r = record(idx, TP_KEYS, TP_OUTLIER_PPM);
                bb = bb.record(
                    TP_TS0 + idx as i64,
                    Some(Bytes::from(r.key)),
                    Some(Bytes::from(r.value)),
                );
            }
            let mut bytes = bb.build().context("building a record batch")?.to_vec();
            set_base_offset(&mut bytes, base + start as i64);
            wire.extend_from_slice(&bytes);
            start = end;
        }
        out.push(Wire {
            bytes: Bytes::from(wire),
            from: base,
        });
    }
    Ok(out)
}

/// A native detector behind a trait object.
trait Native {
    fn run(&mut self, batch: &Batch, alerts: &mut Alerts) -> vigil_sdk::Result<()>;
}

impl<D: Detector> Native for D {
    fn run(&mut self, batch: &Batch, alerts: &mut Alerts) -> vigil_sdk::Result<()> {
        Detector::process(self, batch, alerts)
    }
}

fn native<D: Detector>(config: &Value) -> Result<Box<dyn Native>> {
    Ok(Box::new(vigil_sdk::testing::new_detector::<D>(
        config.clone(),
    )?))
}

struct Plugin<'a> {
    name: &'static str,
    wasm: &'a [u8],
    config: Value,
    native: fn(&Value) -> Result<Box<dyn Native>>,
}

/// Time spent over some batches.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    batches: u64,
    rows: u64,
    alerts: u64,
    build_ns: u64,
    /// Native: `Batch::new` + `process`; wasm: `Instance::process`.
    detect_ns: u64,
    /// Wasm: the `vigil_process` call alone.
    guest_ns: u64,
}

impl Tally {
    fn per_row(&self, ns: u64) -> f64 {
        ns as f64 / self.rows.max(1) as f64
    }
}

enum Variant {
    Native(Box<dyn Native>),
    Wasm(Box<vigil_host::Instance>),
}

impl Variant {
    /// Builds and processes `wires[cursor..]` cyclically until `budget` has
    /// passed (or, with `None`, exactly one pass over all of them).
    fn run(
        &mut self,
        wires: &[Wire],
        cursor: &mut usize,
        schema: &ValueSchema,
        budget: Option<Duration>,
    ) -> Result<Tally> {
        let mut t = Tally::default();
        let start = Instant::now();
        loop {
            match budget {
                Some(b) if start.elapsed() >= b && t.batches > 0 => break,
                None if t.batches as usize >= wires.len() => break,
                _ => {}
            }
            let w = &wires[*cursor % wires.len()];
            *cursor += 1;
            let t0 = Instant::now();
            let built = build_batch(0, &w.bytes, w.from, Some(schema)).context("build_batch")?;
            let t1 = Instant::now();
            let rows = built.batch.num_rows() as u64;
            let alerts = match self {
                Variant::Native(d) => {
                    let batch = Batch::new(built.batch).context("Batch::new")?;
                    let mut alerts = Alerts::new();
                    d.run(&batch, &mut alerts).context("native process")?;
                    alerts.len() as u64
                }
                Variant::Wasm(inst) => {
                    let alerts = inst.process(&built.batch).context("wasm process")?;
                    t.guest_ns += inst.fuel_or_time_used_last().as_nanos() as u64;
                    alerts.len() as u64
                }
            };
            let t2 = Instant::now();
            t.batches += 1;
            t.rows += rows;
            t.alerts += alerts;
            t.build_ns += (t1 - t0).as_nanos() as u64;
            t.detect_ns += (t2 - t1).as_nanos() as u64;
        }
        Ok(t)
    }
}

struct TpRow {
    detector: &'static str,
    rows_per_batch: usize,
    distinct_rows: usize,
    /// Alerts over one pass of the distinct rows, native and wasm.
    pass_alerts: (u64, u64),
    native: Vec<Tally>,
    wasm: Vec<Tally>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

impl TpRow {
    /// Median over rounds of ns per row of `f`.
    fn med(rounds: &[Tally], f: impl Fn(&Tally) -> u64) -> f64 {
        median(rounds.iter().map(|t| t.per_row(f(t))).collect())
    }
    fn build(&self) -> f64 {
        let all: Vec<Tally> = self.native.iter().chain(&self.wasm).copied().collect();
        Self::med(&all, |t| t.build_ns)
    }
    fn native_total(&self) -> f64 {
        Self::med(&self.native, |t| t.build_ns + t.detect_ns)
    }
    fn wasm_total(&self) -> f64 {
        Self::med(&self.wasm, |t| t.build_ns + t.detect_ns)
    }
}

fn section_throughput(p: &Params, wasm: &Wasm, root: &Path) -> Result<Vec<TpRow>> {
    let host = Host::new(HostConfig {
        cache_dir: root.join("module-cache"),
        ..Default::default()
    })
    .context("cannot start the wasm host")?;
    println!(
        "section 1: wasm host memory layout {:?}; compiling modules …",
        host.memory_layout()
    );
    let schema = ValueSchema::from_json(&value_schema()).context("value schema")?;
    let limits = Limits {
        memory_bytes: 256 << 20,
        cpu_per_batch: Duration::from_secs(10),
        max_alerts_per_batch: 1_000_000,
    };
    let mut plugins = vec![Plugin {
        name: "zscore",
        wasm: &wasm.zscore,
        config: zscore_config(),
        native: native::<vigil_plugin_zscore::ZScore>,
    }];
    if let Some((bytes, _)) = &wasm.rate_spike {
        plugins.push(Plugin {
            name: "rate-spike",
            wasm: bytes,
            config: json!({}),
            native: native::<vigil_plugin_rate_spike::RateSpike>,
        });
    }
    let mut rows = Vec::new();
    for plugin in &plugins {
        let t = Instant::now();
        let module = host
            .load(plugin.wasm)
            .with_context(|| format!("loading the {} module", plugin.name))?;
        println!(
            "  {}: module {} (sdk {}) compiled in {:.2} s",
            plugin.name,
            module.short_hash(),
            module.sdk_version,
            t.elapsed().as_secs_f64()
        );
        for &size in &p.batch_rows {
            let wires = tp_data(size, p.tp_rows.max(size))?;
            let distinct_rows = wires.len() * size;
            let config = plugin.config.to_string();
            let mut nat = Variant::Native((plugin.native)(&plugin.config)?);
            let inst = module
                .instantiate(&limits, &config, &format!("bench/{}", plugin.name))
                .with_context(|| format!("instantiating {}", plugin.name))?;
            let mut was = Variant::Wasm(Box::new(inst));
            // One unmeasured pass each: warms caches, grows the guest's
            // memory, and checks that both see the same alerts.
            let (mut cn, mut cw) = (0usize, 0usize);
            let pn = nat.run(&wires, &mut cn, &schema, None)?;
            let pw = was.run(&wires, &mut cw, &schema, None)?;
            let round = Duration::from_secs_f64(p.tp_secs / p.tp_rounds as f64);
            let (mut native_rounds, mut wasm_rounds) = (Vec::new(), Vec::new());
            for r in 0..p.tp_rounds {
                // Alternate which goes first, so drift hits both.
                if r % 2 == 0 {
                    native_rounds.push(nat.run(&wires, &mut cn, &schema, Some(round))?);
                    wasm_rounds.push(was.run(&wires, &mut cw, &schema, Some(round))?);
                } else {
                    wasm_rounds.push(was.run(&wires, &mut cw, &schema, Some(round))?);
                    native_rounds.push(nat.run(&wires, &mut cn, &schema, Some(round))?);
                }
            }
            rows.push(TpRow {
                detector: plugin.name,
                rows_per_batch: size,
                distinct_rows,
                pass_alerts: (pn.alerts, pw.alerts),
                native: native_rounds,
                wasm: wasm_rounds,
            });
        }
    }
    println!();
    Ok(rows)
}

fn print_throughput(p: &Params, rows: &[TpRow]) {
    println!(
        "== 1. detector throughput: Kafka record batches (JSON values) → vigil_host::build_batch \
         (value schema amount:float64) → detector; median of {} rounds ==",
        p.tp_rounds
    );
    println!(
        "{:<11} {:>6} | {:>9} {:>10} {:>10} {:>10} | {:>11} {:>11} | {:>8} {:>8}",
        "detector",
        "rows",
        "build ms",
        "native ms",
        "wasm ms",
        "guest ms",
        "native r/s",
        "wasm r/s",
        "wasm/nat",
        "det only"
    );
    for r in rows {
        let n = r.rows_per_batch as f64;
        let build = r.build();
        let nat_det = TpRow::med(&r.native, |t| t.detect_ns);
        let was_det = TpRow::med(&r.wasm, |t| t.detect_ns);
        let guest = TpRow::med(&r.wasm, |t| t.guest_ns);
        let (nt, wt) = (r.native_total(), r.wasm_total());
        println!(
            "{:<11} {:>6} | {:>9.3} {:>10.3} {:>10.3} {:>10.3} | {:>11.0} {:>11.0} | {:>7.2}× {:>7.2}×",
            r.detector,
            r.rows_per_batch,
            build * n / 1e6,
            nat_det * n / 1e6,
            was_det * n / 1e6,
            guest * n / 1e6,
            1e9 / nt,
            1e9 / wt,
            wt / nt,
            was_det / nat_det
        );
    }
    println!(
        "(per batch: build = build_batch, JSON → Arrow, paid by both; native = Batch::new + \
         Detector::process on the rlib; wasm = Instance::process: copy into guest memory + guest \
         call + alert decoding; guest = the vigil_process call alone. r/s = rows/s including the \
         build. wasm/nat = (build + wasm) / (build + native), target ≤ 1.25×; det only = wasm / \
         native without the build)"
    );
    for r in rows {
        let rounds: Vec<String> = r
            .native
            .iter()
            .zip(&r.wasm)
            .map(|(n, w)| {
                format!(
                    "{:.2}",
                    w.per_row(w.build_ns + w.detect_ns) / n.per_row(n.build_ns + n.detect_ns)
                )
            })
            .collect();
        let (an, aw) = r.pass_alerts;
        println!(
            "{} × {}: alerts over one pass of {} rows: native {an}, wasm {aw}{}; per-round \
             wasm/nat [{}]; rows measured native {}, wasm {}",
            r.detector,
            r.rows_per_batch,
            r.distinct_rows,
            if an == aw { " (same)" } else { " (DIFFERENT)" },
            rounds.join(" "),
            r.native.iter().map(|t| t.rows).sum::<u64>(),
            r.wasm.iter().map(|t| t.rows).sum::<u64>()
        );
    }
    println!(
        "(data: {TP_KEYS} keys, {:.0} % outliers, {TP_PRODUCER_BATCH} records per Kafka batch, \
         ~{} B values; the distinct batches are cycled through, so event time repeats)\n",
        TP_OUTLIER_PPM as f64 / 1e4,
        record(0, TP_KEYS, 0).value.len()
    );
}

// ---------------------------------------------------------------- broker

fn start_broker(rt: &Runtime, root: &Path) -> Result<Running> {
    let objects = root.join("objects");
    std::fs::create_dir_all(&objects)
        .with_context(|| format!("cannot create {}", objects.display()))?;
    let cfg = FileConfig {
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        data_dir: Some(root.join("data")),
        object_store: Some(format!("file://{}", objects.display())),
        wal: Some("local".into()),
        ..Default::default()
    }
    .resolve()
    .context("broker settings")?;
    rt.block_on(vigil_broker::server::start(cfg))
        .context("cannot start the broker")
}

/// The broker's admin HTTP API.
struct Admin {
    base: String,
}

impl Admin {
    fn reply(r: Result<ureq::Response, ureq::Error>, what: &str) -> Result<Value> {
        let resp = match r {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                let body = r.into_string().unwrap_or_default();
                bail!("{what}: HTTP {code}: {body}");
            }
            Err(e) => return Err(anyhow!("{what}: {e}")),
        };
        let body = resp
            .into_string()
            .with_context(|| format!("{what}: reading the reply"))?;
        serde_json::from_str(&body).with_context(|| format!("{what}: reply is not JSON: {body}"))
    }

    /// Uploads a module; returns its hash.
    fn upload(&self, wasm: &[u8]) -> Result<String> {
        let r = ureq::post(&format!("{}/v1/modules", self.base))
            .set("content-type", "application/wasm")
            .send_bytes(wasm);
        let v = Self::reply(r, "POST /v1/modules")?;
        v["hash"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("POST /v1/modules: no hash in {v}"))
    }

    fn deploy(&self, spec: &Value) -> Result<Value> {
        let r = ureq::post(&format!("{}/v1/deployments", self.base))
            .set("content-type", "application/json")
            .send_string(&spec.to_string());
        Self::reply(r, "POST /v1/deployments")
    }

    fn undeploy(&self, name: &str) -> Result<Value> {
        let r = ureq::delete(&format!("{}/v1/deployments/{name}", self.base)).call();
        Self::reply(r, &format!("DELETE /v1/deployments/{name}"))
    }

    fn status(&self, name: &str) -> Result<Value> {
        let r = ureq::get(&format!("{}/v1/deployments/{name}", self.base)).call();
        Self::reply(r, &format!("GET /v1/deployments/{name}"))
    }
}

fn zscore_spec(name: &str, hash: &str, input: &str, output: &str) -> Value {
    json!({
        "name": name,
        "module": hash,
        "inputs": [input],
        "output": output,
        "config": zscore_config(),
        "value_schema": value_schema(),
        "start": "latest",
    })
}

/// Sums of a deployment's per-partition status.
#[derive(Debug, Default, Clone)]
struct DeploymentTotals {
    state: String,
    records: u64,
    alerts: u64,
    lag: i64,
    last_error: Option<String>,
}

fn totals(status: &Value) -> DeploymentTotals {
    let mut t = DeploymentTotals {
        state: status["state"].as_str().unwrap_or("?").to_string(),
        ..Default::default()
    };
    for part in status["partitions"].as_array().into_iter().flatten() {
        t.records += part["records"].as_u64().unwrap_or(0);
        t.alerts += part["alerts"].as_u64().unwrap_or(0);
        t.lag += part["lag"].as_i64().unwrap_or(0);
        if let Some(e) = part["last_error"].as_str() {
            t.last_error.get_or_insert_with(|| e.to_string());
        }
    }
    if let Some(e) = status["error"].as_str() {
        t.last_error = Some(e.to_string());
    }
    t
}

// ---------------------------------------------------------------- produce

/// Delivery reports keyed by record index (the opaque).
struct Tracked {
    base: Instant,
    /// (index, partition, offset, ack time ns since base).
    acks: Mutex<Vec<(usize, i32, i64, u64)>>,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
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

/// The producer settings of every source producer (both pipelines and the
/// load), as printed.
fn source_producer_config(addr: &str, linger_ms: u64) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("compression.type", "none")
        .set("enable.idempotence", "false")
        .set("queue.buffering.max.messages", "100000")
        .set("message.timeout.ms", "60000");
    c
}

/// A paced produce run: `warmup` records, then `n` measured ones, all at
/// `rate`, indexes 0.. in one stream.
struct Sent {
    warmup: usize,
    /// Send time (ns since base) per index.
    send_ns: Vec<u64>,
    /// (partition, offset, ack ns) per index.
    acks: Vec<Option<(i32, i64, u64)>>,
    outlier: Vec<bool>,
    /// Seconds from the first measured send to the last ack.
    elapsed: f64,
    /// CPU seconds of this process over the measured part.
    cpu_secs: Option<f64>,
}

impl Sent {
    fn measured(&self) -> std::ops::Range<usize> {
        self.warmup..self.send_ns.len()
    }

    /// Sorted ack latencies (ns) of the measured records.
    fn ack_latencies(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .measured()
            .filter_map(|i| self.acks[i].map(|(_, _, ack)| ack.saturating_sub(self.send_ns[i])))
            .collect();
        v.sort_unstable();
        v
    }
}

/// CPU seconds (user + system) used so far by this whole process.
fn process_cpu_secs() -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / hz as f64)
}

#[allow(clippy::too_many_arguments)]
fn produce(
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
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        // Sleep only when well ahead: sleeps are coarse, bursts of a few
        // records are not.
        if due > now + Duration::from_micros(200) {
            std::thread::sleep(due - now);
        }
        let r = record(i as u64, keys, outlier_ppm);
        outlier.push(r.outlier);
        send_ns.push(now_ns());
        let mut rec = BaseRecord::<str, str, usize>::with_opaque_to(topic, i)
            .key(r.key.as_str())
            .payload(r.value.as_str());
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    std::thread::sleep(Duration::from_micros(100));
                    rec = back;
                }
                Err((e, _)) => return Err(e).context("cannot hand a record to librdkafka"),
            }
        }
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

// ------------------------------------------------ 2: alert latency

/// Consumer settings shared by the alert consumers and the external
/// pipeline's input consumer.
fn low_latency_consumer(addr: &str, fetch_wait_ms: u64) -> Result<BaseConsumer> {
    common::assign_only_config(addr)
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
        .set("fetch.min.bytes", "1")
        .create()
        .context("cannot create the consumer")
}

fn assign_all(consumer: &BaseConsumer, topic: &str, partitions: i32) -> Result<()> {
    let mut tpl = TopicPartitionList::new();
    for part in 0..partitions {
        tpl.add_partition_offset(topic, part, Offset::Beginning)
            .context("building the assignment")?;
    }
    consumer.assign(&tpl).context("assign")
}

/// The source (topic, partition, offset) an alert record's headers name.
fn alert_source<M: Message>(m: &M) -> Option<(String, i32, i64)> {
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
fn collect_alerts(
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
struct ExtStats {
    records: u64,
    polls: u64,
    batches: u64,
    alerts: u64,
    detect_ns: u64,
}

/// Counts failed alert deliveries of the external pipeline.
struct ErrorCount {
    errors: AtomicU64,
    first: Mutex<Option<String>>,
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
struct InMsg {
    partition: i32,
    offset: i64,
    timestamp: i64,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// The external pipeline: consume `input`, run zscore natively (one
/// detector per partition, as a deployment has), produce alerts to `output`
/// with the same provenance headers vigil writes.
fn external_pipeline(
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
                let mut rec = BaseRecord::<[u8], str, ()>::to(output)
                    .partition(part)
                    .key(key.as_slice())
                    .payload(value.as_str())
                    .headers(headers);
                loop {
                    match producer.send(rec) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            std::thread::sleep(Duration::from_micros(100));
                            rec = back;
                        }
                        Err((e, _)) => {
                            return Err(e).context("external pipeline: cannot produce an alert")
                        }
                    }
                }
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

/// Latency of one pipeline's alerts.
struct PipelineResult {
    name: &'static str,
    sent: Sent,
    /// Sorted ns, consume time − ack time (negative clamped to 0).
    from_ack: Vec<u64>,
    /// Sorted ns, consume time − send time.
    from_send: Vec<u64>,
    expected: usize,
    matched: usize,
    /// Alerts consumed before the producer saw the source record's ack.
    before_ack: usize,
    /// Alerts about measured records that are not outliers.
    unexpected: usize,
    duplicates: usize,
    deployment: Option<DeploymentTotals>,
    ext: Option<ExtStats>,
}

struct LatencyResult {
    vigil: PipelineResult,
    external: PipelineResult,
}

/// Produces to `input` while `collect_alerts` reads `alerts`, then matches
/// alerts to their source records.
fn run_pipeline(
    name: &'static str,
    addr: &str,
    input: &str,
    alerts: &str,
    p: &Params,
    side: impl FnOnce(&AtomicBool) -> Result<Option<ExtStats>> + Send,
) -> Result<PipelineResult> {
    let base = Instant::now();
    let stop = AtomicBool::new(false);
    let consumed: Mutex<Vec<(i32, i64, u64)>> = Mutex::new(Vec::new());
    let warmup = p.latency_warmup() as usize;
    let n = (p.rate * p.latency_secs).ceil() as usize;
    let (sent, ext) = std::thread::scope(|s| -> Result<(Sent, Option<ExtStats>)> {
        let collector = s.spawn(|| {
            collect_alerts(
                addr,
                alerts,
                p.partitions,
                input,
                base,
                p.fetch_wait_ms,
                &stop,
                &consumed,
            )
        });
        let side = s.spawn(|| side(&stop));
        let sent = produce(
            addr,
            input,
            base,
            p.linger_ms,
            p.keys,
            p.outlier_ppm(),
            warmup,
            n,
            p.rate,
        );
        // Wait for every expected alert (or give up after DRAIN).
        let expected: HashSet<(i32, i64)> = match &sent {
            Ok(sent) => sent
                .measured()
                .filter(|&i| sent.outlier[i])
                .filter_map(|i| sent.acks[i].map(|(part, off, _)| (part, off)))
                .collect(),
            Err(_) => HashSet::new(),
        };
        let deadline = Instant::now() + DRAIN;
        while sent.is_ok() && Instant::now() < deadline && !collector.is_finished() {
            let got: HashSet<(i32, i64)> = lock(&consumed)
                .iter()
                .map(|&(part, off, _)| (part, off))
                .filter(|k| expected.contains(k))
                .collect();
            if got.len() >= expected.len() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::SeqCst);
        let collected = collector
            .join()
            .map_err(|_| anyhow!("{name}: the alert consumer panicked"))?;
        let ext = side
            .join()
            .map_err(|_| anyhow!("{name}: the pipeline thread panicked"))?;
        let sent = sent?;
        collected?;
        Ok((sent, ext?))
    })?;

    let mut by_source: HashMap<(i32, i64), usize> = HashMap::new();
    for (i, a) in sent.acks.iter().enumerate() {
        if let Some((part, off, _)) = a {
            by_source.insert((*part, *off), i);
        }
    }
    let expected = sent.measured().filter(|&i| sent.outlier[i]).count();
    let (mut from_ack, mut from_send) = (Vec::new(), Vec::new());
    let (mut before_ack, mut unexpected, mut duplicates) = (0, 0, 0);
    let mut seen = HashSet::new();
    for &(part, off, at) in lock(&consumed).iter() {
        let Some(&i) = by_source.get(&(part, off)) else {
            continue;
        };
        if i < sent.warmup {
            continue;
        }
        if !seen.insert(i) {
            duplicates += 1;
            continue;
        }
        if !sent.outlier[i] {
            unexpected += 1;
        }
        let ack = sent.acks[i].map_or(0, |(_, _, a)| a);
        if at < ack {
            before_ack += 1;
        }
        from_ack.push(at.saturating_sub(ack));
        from_send.push(at.saturating_sub(sent.send_ns[i]));
    }
    from_ack.sort_unstable();
    from_send.sort_unstable();
    Ok(PipelineResult {
        name,
        matched: from_ack.len(),
        sent,
        from_ack,
        from_send,
        expected,
        before_ack,
        unexpected,
        duplicates,
        deployment: None,
        ext,
    })
}

fn section_latency(
    rt: &Runtime,
    running: &Running,
    admin: &Admin,
    hash: &str,
    p: &Params,
) -> Result<LatencyResult> {
    let addr = running.kafka_addr.to_string();
    println!(
        "section 2: vigil pipeline ({} s at {}/s after {} warm-up records) …",
        p.latency_secs,
        p.rate,
        p.latency_warmup()
    );
    common::create_topic(rt, &addr, "in", p.partitions)?;
    admin
        .deploy(&zscore_spec("zscore-latency", hash, "in", "alerts"))
        .context("deploying zscore on `in`")?;
    let mut vigil = run_pipeline("vigil", &addr, "in", "alerts", p, |_| Ok(None))?;
    vigil.deployment = Some(totals(&admin.status("zscore-latency")?));

    println!("section 2: external pipeline …");
    common::create_topic(rt, &addr, "in2", p.partitions)?;
    common::create_topic(rt, &addr, "alerts2", p.partitions)?;
    let external = run_pipeline("external", &addr, "in2", "alerts2", p, |stop| {
        external_pipeline(&addr, "in2", "alerts2", p, stop).map(Some)
    })?;
    println!();
    Ok(LatencyResult { vigil, external })
}

fn print_latency(p: &Params, r: &LatencyResult) {
    println!(
        "== 2. alert latency: produce ack → alert consumed; {} records/s for {} s, {} keys, {} % \
         outliers, {} partitions ==",
        p.rate, p.latency_secs, p.keys, p.outlier_pct, p.partitions
    );
    println!(
        "{:<9} {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>9} {:>9} | {:>8} {:>8}",
        "pipeline",
        "alerts",
        "expected",
        "p50",
        "p99",
        "max",
        "send p50",
        "send p99",
        "ack p50",
        "ack p99"
    );
    for x in [&r.vigil, &r.external] {
        let acks = x.sent.ack_latencies();
        println!(
            "{:<9} {:>8} {:>8} | {:>8.2} {:>8.2} {:>8.2} | {:>9.2} {:>9.2} | {:>8.2} {:>8.2}",
            x.name,
            x.matched,
            x.expected,
            percentile(&x.from_ack, 0.5),
            percentile(&x.from_ack, 0.99),
            percentile(&x.from_ack, 1.0),
            percentile(&x.from_send, 0.5),
            percentile(&x.from_send, 0.99),
            percentile(&acks, 0.5),
            percentile(&acks, 0.99),
        );
    }
    println!(
        "vigil p99 / external p99: {:.2}× (target ≤ 0.2×); p50 ratio {:.2}×",
        percentile(&r.vigil.from_ack, 0.99) / percentile(&r.external.from_ack, 0.99),
        percentile(&r.vigil.from_ack, 0.5) / percentile(&r.external.from_ack, 0.5)
    );
    println!(
        "(p50/p99/max = alert consumed − source record's ack (delivery report); send = alert \
         consumed − source record handed to librdkafka; ack = the source records' own ack \
         latency. Alerts are matched to sources by the vigil.source.partition/offset headers; \
         only measured records count, not the warm-up)"
    );
    for x in [&r.vigil, &r.external] {
        let mut notes = vec![format!(
            "{} of {} measured records, {:.0} records/s achieved",
            x.sent.measured().len(),
            x.sent.send_ns.len(),
            x.sent.measured().len() as f64 / x.sent.elapsed.max(1e-9)
        )];
        if x.before_ack > 0 {
            notes.push(format!(
                "{} alerts consumed before their source's delivery report (counted as 0)",
                x.before_ack
            ));
        }
        if x.unexpected > 0 {
            notes.push(format!("{} alerts about non-outliers", x.unexpected));
        }
        if x.duplicates > 0 {
            notes.push(format!("{} duplicate alerts", x.duplicates));
        }
        if x.matched < x.expected {
            notes.push(format!(
                "{} expected alerts missing after {} s",
                x.expected - x.matched,
                DRAIN.as_secs()
            ));
        }
        if let Some(d) = &x.deployment {
            notes.push(format!(
                "deployment {}: {} records, {} alerts, lag {}{}",
                d.state,
                d.records,
                d.alerts,
                d.lag,
                d.last_error
                    .as_ref()
                    .map_or(String::new(), |e| format!(", last error: {e}"))
            ));
        }
        if let Some(e) = &x.ext {
            notes.push(format!(
                "external: {} records in {} polls, {} detector batches ({:.1} records each, {:.3} \
                 ms each incl. JSON → Arrow), {} alerts produced",
                e.records,
                e.polls,
                e.batches,
                e.records as f64 / e.batches.max(1) as f64,
                e.detect_ns as f64 / e.batches.max(1) as f64 / 1e6,
                e.alerts
            ));
        }
        println!("{}: {}", x.name, notes.join("; "));
    }
    println!(
        "settings: source producers (both) acks=all, linger.ms={}, no compression, no \
         idempotence, default partitioner by key; vigil: deployment zscore {} with value_schema \
         {}, default max_batch_bytes; external: BaseConsumer assigned to every partition (no \
         group, no commits), fetch.wait.max.ms={}, fetch.min.bytes=1, up to {} messages per \
         poll round, one native zscore per partition, alert producer acks=all, linger.ms={}; \
         alert consumers (both): fetch.wait.max.ms={}, fetch.min.bytes=1. The broker \
         long-polls fetches (answers as soon as data arrives), so fetch.wait.max.ms bounds \
         only empty fetches\n",
        p.linger_ms,
        zscore_config(),
        value_schema(),
        p.fetch_wait_ms,
        EXT_MAX_BATCH,
        p.ext_linger_ms,
        p.fetch_wait_ms
    );
}

// ------------------------------------------------ 3: produce with deployments

struct LoadPoint {
    label: String,
    sent: Sent,
    /// Per deployment after the point.
    deployments: Vec<DeploymentTotals>,
    /// Time from the last ack until every deployment had no lag.
    catch_up: Option<Duration>,
}

fn load_point(
    label: String,
    addr: &str,
    topic: &str,
    p: &Params,
    admin: &Admin,
    deployments: &[String],
) -> Result<LoadPoint> {
    let warmup = (p.load_rate * LOAD_WARMUP_SECS).ceil() as usize;
    let n = (p.load_rate * p.load_secs).ceil() as usize;
    println!("section 3: {label} …");
    let sent = produce(
        addr,
        topic,
        Instant::now(),
        p.linger_ms,
        p.keys,
        p.outlier_ppm(),
        warmup,
        n,
        p.load_rate,
    )?;
    let t = Instant::now();
    let mut catch_up = None;
    let mut totals_now = Vec::new();
    while t.elapsed() < Duration::from_secs(30) {
        totals_now = deployments
            .iter()
            .map(|d| admin.status(d).map(|s| totals(&s)))
            .collect::<Result<Vec<_>>>()?;
        if totals_now.iter().all(|d| d.lag == 0) {
            catch_up = Some(t.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(LoadPoint {
        label,
        sent,
        deployments: totals_now,
        catch_up,
    })
}

fn section_load(
    rt: &Runtime,
    running: &Running,
    admin: &Admin,
    hash: &str,
    p: &Params,
) -> Result<Vec<LoadPoint>> {
    let addr = running.kafka_addr.to_string();
    let mut points = Vec::new();
    common::create_topic(rt, &addr, "load-none", p.partitions)?;
    points.push(load_point(
        "no deployments".into(),
        &addr,
        "load-none",
        p,
        admin,
        &[],
    )?);
    common::create_topic(rt, &addr, "load-busy", p.partitions)?;
    let names: Vec<String> = (0..p.deployments)
        .map(|i| format!("zscore-load-{i}"))
        .collect();
    for (i, name) in names.iter().enumerate() {
        admin
            .deploy(&zscore_spec(
                name,
                hash,
                "load-busy",
                &format!("load-busy-alerts-{i}"),
            ))
            .with_context(|| format!("deploying {name}"))?;
    }
    let status = |names: &[String]| -> Result<Vec<DeploymentTotals>> {
        names
            .iter()
            .map(|d| admin.status(d).map(|s| totals(&s)))
            .collect()
    };
    if p.load_control {
        // The same load on the other topic: the deployments exist but have
        // nothing to do.
        let before = status(&names)?;
        let mut pt = load_point(
            format!("{} idle deployments", p.deployments),
            &addr,
            "load-none",
            p,
            admin,
            &names,
        )?;
        for (d, b) in pt.deployments.iter_mut().zip(&before) {
            d.records -= b.records.min(d.records);
            d.alerts -= b.alerts.min(d.alerts);
        }
        points.push(pt);
    }
    points.push(load_point(
        format!("{} busy deployments", p.deployments),
        &addr,
        "load-busy",
        p,
        admin,
        &names,
    )?);
    if p.load_control {
        for name in &names {
            admin
                .undeploy(name)
                .with_context(|| format!("undeploying {name}"))?;
        }
        points.push(load_point(
            "none again (undeployed)".into(),
            &addr,
            "load-none",
            p,
            admin,
            &[],
        )?);
    }
    println!();
    Ok(points)
}

fn print_load(p: &Params, points: &[LoadPoint]) {
    println!(
        "== 3. produce ack latency with busy deployments: acks=all, {} records/s for {} s, {} \
         partitions, ~{} B JSON records, linger.ms={} ==",
        p.load_rate,
        p.load_secs,
        p.partitions,
        record(0, p.keys, 0).value.len(),
        p.linger_ms
    );
    println!(
        "{:<22} {:>8} {:>9} | {:>7} {:>7} {:>7} {:>7} | {:>8} | {:>10} {:>8} {:>9}",
        "point",
        "records",
        "rec/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "cpu",
        "processed",
        "alerts",
        "catch-up"
    );
    for pt in points {
        let l = pt.sent.ack_latencies();
        let secs = pt.sent.elapsed.max(1e-9);
        let processed: u64 = pt.deployments.iter().map(|d| d.records).sum();
        let alerts: u64 = pt.deployments.iter().map(|d| d.alerts).sum();
        println!(
            "{:<22} {:>8} {:>9.0} | {:>7.2} {:>7.2} {:>7.2} {:>7.2} | {:>8} | {:>10} {:>8} {:>9}",
            pt.label,
            l.len(),
            l.len() as f64 / secs,
            percentile(&l, 0.5),
            percentile(&l, 0.99),
            percentile(&l, 0.999),
            percentile(&l, 1.0),
            pt.sent
                .cpu_secs
                .map_or_else(|| "n/a".into(), |c| format!("{:.0}%", 100.0 * c / secs)),
            if pt.deployments.is_empty() {
                "-".to_string()
            } else {
                processed.to_string()
            },
            if pt.deployments.is_empty() {
                "-".to_string()
            } else {
                alerts.to_string()
            },
            match (&pt.catch_up, pt.deployments.is_empty()) {
                (_, true) => "-".to_string(),
                (Some(d), false) => format!("{:.0} ms", d.as_secs_f64() * 1e3),
                (None, false) => "> 30 s".to_string(),
            }
        );
    }
    let q = |label: &str, x| {
        points
            .iter()
            .find(|pt| pt.label.starts_with(label))
            .map(|pt| percentile(&pt.sent.ack_latencies(), x))
    };
    let ratio = |a: &str, b: &str| -> String {
        match (q(a, 0.99), q(b, 0.99), q(a, 0.5), q(b, 0.5)) {
            (Some(a99), Some(b99), Some(a50), Some(b50)) => {
                format!("p99 {:.2}×, p50 {:.2}×", a99 / b99, a50 / b50)
            }
            _ => "n/a".into(),
        }
    };
    println!(
        "busy / none: {} (target p99 ≤ 1.2×)",
        ratio(&format!("{} busy", p.deployments), "no deployments")
    );
    if p.load_control {
        println!(
            "controls: idle / none: {}; busy / none again: {}; none again / none: {}",
            ratio(&format!("{} idle", p.deployments), "no deployments"),
            ratio(&format!("{} busy", p.deployments), "none again"),
            ratio("none again", "no deployments")
        );
    }
    for pt in points {
        for (i, d) in pt.deployments.iter().enumerate() {
            if d.state != "running" || d.last_error.is_some() {
                println!(
                    "{}: deployment {i} is {}{}",
                    pt.label,
                    d.state,
                    d.last_error
                        .as_ref()
                        .map_or(String::new(), |e| format!(": {e}"))
                );
            }
        }
    }
    println!(
        "(latency = send → delivery report of the measured records, after {LOAD_WARMUP_SECS} s of \
         warm-up at the same rate; cpu = this process (broker + detectors + client) as % of one \
         core; processed / alerts = records and alerts of all deployments during the point \
         (warm-up included; busy = every record × {} deployments), from GET \
         /v1/deployments/NAME; catch-up = last ack → every deployment's lag 0. Each deployment: \
         zscore on every partition of the produced topic, its own alert topic. Order: no \
         deployments; deploy; idle (same load on the other topic); busy; undeploy; none again)\n",
        p.deployments
    );
}
