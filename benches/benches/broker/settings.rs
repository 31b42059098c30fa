//! Settings of the broker bench, from the `VIGIL_BENCH_*` environment.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Context as _, Result};

use crate::common::env_or;

// ---------------------------------------------------------------- settings

/// A fixed-rate load point: an absolute rate or a fraction of the maximum.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RateSpec {
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
pub(crate) struct Params {
    /// Records of the max-throughput run (also what the consumers read).
    pub(crate) records: u64,
    pub(crate) record_bytes: usize,
    pub(crate) partitions: i32,
    pub(crate) rates: Vec<RateSpec>,
    pub(crate) rate_secs: f64,
    pub(crate) floor_secs: f64,
    pub(crate) linger_ms: u64,
    pub(crate) max_queue: u64,
    /// Hot and cold consume passes (the median is reported).
    pub(crate) consume_passes: usize,
    /// Broker's upload interval; `None` keeps the broker's default.
    pub(crate) upload_interval_ms: Option<u64>,
    /// Broker's `upload_bytes` (0: interval only); `None` keeps the default.
    pub(crate) upload_bytes: Option<u64>,
    /// Parent of the benchmark's temp dir (broker data, objects, floor file).
    pub(crate) dir: PathBuf,
    /// `file` (a directory on the data disk) or `memory` (in process: no
    /// upload I/O on the WAL's disk, which tells disk contention from CPU).
    pub(crate) store: String,
    /// Where the free-disk broker keeps its WAL (a tmpfs, where fdatasync
    /// costs nothing); `None` skips that section.
    pub(crate) free_disk_dir: Option<PathBuf>,
}

impl Params {
    pub(crate) fn from_env() -> Result<Self> {
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
            upload_bytes: std::env::var("VIGIL_BENCH_UPLOAD_BYTES")
                .ok()
                .map(|v| v.parse::<u64>())
                .transpose()
                .context("VIGIL_BENCH_UPLOAD_BYTES")?,
            dir: env_or("VIGIL_BENCH_DIR", std::env::temp_dir())?,
            store: env_or("VIGIL_BENCH_OBJECT_STORE", "file".to_string())?,
            free_disk_dir: free_disk_dir(env_or(
                "VIGIL_BENCH_FREE_DISK_DIR",
                DEFAULT_FREE_DISK_DIR.to_string(),
            )?),
        };
        if !matches!(p.store.as_str(), "file" | "memory") {
            bail!(
                "VIGIL_BENCH_OBJECT_STORE must be file or memory, not {:?}",
                p.store
            );
        }
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

    pub(crate) fn command(&self) -> String {
        let rates: Vec<String> = self.rates.iter().map(ToString::to_string).collect();
        let mut upload = self.upload_interval_ms.map_or_else(String::new, |ms| {
            format!("VIGIL_BENCH_UPLOAD_INTERVAL_MS={ms} ")
        });
        if let Some(b) = self.upload_bytes {
            upload.push_str(&format!("VIGIL_BENCH_UPLOAD_BYTES={b} "));
        }
        format!(
            "{upload}VIGIL_BENCH_RECORDS={} VIGIL_BENCH_RECORD_BYTES={} VIGIL_BENCH_PARTITIONS={} \
             VIGIL_BENCH_RATES={} VIGIL_BENCH_RATE_SECS={} VIGIL_BENCH_FLOOR_SECS={} \
             VIGIL_BENCH_LINGER_MS={} VIGIL_BENCH_MAX_QUEUE={} VIGIL_BENCH_CONSUME_PASSES={} \
             VIGIL_BENCH_DIR={} VIGIL_BENCH_OBJECT_STORE={} VIGIL_BENCH_FREE_DISK_DIR={} \
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
            self.dir.display(),
            self.store,
            self.free_disk_dir
                .as_ref()
                .map_or_else(|| "none".to_string(), |d| d.display().to_string())
        )
    }
}

/// Linux's usual tmpfs.
const DEFAULT_FREE_DISK_DIR: &str = "/dev/shm";

/// `none` (or a directory that does not exist, as `/dev/shm` on a machine
/// without it) skips the free-disk section.
fn free_disk_dir(v: String) -> Option<PathBuf> {
    let dir = PathBuf::from(v.trim());
    (v.trim() != "none" && dir.is_dir()).then_some(dir)
}
