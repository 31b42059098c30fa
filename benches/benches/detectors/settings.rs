//! Settings of the detector bench: `Params` from the `VIGIL_BENCH_*`
//! environment, the wasm modules, and the header.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};

use crate::common;
use crate::common::detect::{stale_module, BUILD_CMD, DEFAULT_WASM_DIR, ZSCORE_MIN_SAMPLES};
use crate::common::env_or;

// ---------------------------------------------------------------- settings

#[derive(Debug)]
pub(crate) struct Params {
    pub(crate) wasm_dir: PathBuf,
    pub(crate) throughput: bool,
    pub(crate) latency: bool,
    pub(crate) load: bool,
    /// Section 1: rows per batch, one row of the table each.
    pub(crate) batch_rows: Vec<usize>,
    /// Section 1: distinct rows prepared per batch size (cycled through).
    pub(crate) tp_rows: usize,
    /// Section 1: measured seconds per variant per (detector, batch size).
    pub(crate) tp_secs: f64,
    /// Section 1: rounds those seconds are split into (native and wasm
    /// alternate; the median round is reported).
    pub(crate) tp_rounds: usize,
    /// Sections 2 and 3: keys of the produced records.
    pub(crate) keys: u64,
    /// Sections 2 and 3: outlier share, percent.
    pub(crate) outlier_pct: f64,
    pub(crate) partitions: i32,
    /// Section 2: rate (records/s) and measured seconds per pipeline.
    pub(crate) rate: f64,
    pub(crate) latency_secs: f64,
    /// Source producers' `linger.ms` (both pipelines and section 3).
    pub(crate) linger_ms: u64,
    /// The external pipeline's alert producer's `linger.ms`.
    pub(crate) ext_linger_ms: u64,
    /// `fetch.wait.max.ms` of every consumer (the external pipeline's input
    /// consumer and both alert consumers).
    pub(crate) fetch_wait_ms: u64,
    /// Section 3: rate, seconds per point, busy deployments, control row.
    pub(crate) load_rate: f64,
    pub(crate) load_secs: f64,
    pub(crate) deployments: usize,
    /// Section 3: idle/busy round pairs per ack-gate setting.
    pub(crate) load_rounds: usize,
    pub(crate) dir: PathBuf,
}

impl Params {
    pub(crate) fn from_env() -> Result<Self> {
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
            load_rounds: env_or("VIGIL_BENCH_LOAD_ROUNDS", 3)?,
            dir: env_or("VIGIL_BENCH_DIR", std::env::temp_dir())?,
        };
        if p.batch_rows.is_empty() || p.batch_rows.contains(&0) {
            bail!("VIGIL_BENCH_BATCH_ROWS must list batch sizes > 0");
        }
        if p.tp_rows == 0
            || p.tp_rounds == 0
            || p.keys == 0
            || p.partitions < 1
            || p.load_rounds == 0
        {
            bail!(
                "VIGIL_BENCH_TP_ROWS, _TP_ROUNDS, _KEYS, _PARTITIONS and _LOAD_ROUNDS must be > 0"
            );
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

    pub(crate) fn outlier_ppm(&self) -> u64 {
        (self.outlier_pct * 10_000.0).round() as u64
    }

    /// Records each key needs before zscore scores it, plus margin: the
    /// warm-up of section 2.
    pub(crate) fn latency_warmup(&self) -> u64 {
        ((self.rate * 3.0).ceil() as u64).max(self.keys * (ZSCORE_MIN_SAMPLES + 10))
    }

    pub(crate) fn command(&self) -> String {
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
             VIGIL_BENCH_DEPLOYMENTS={} VIGIL_BENCH_LOAD_ROUNDS={} VIGIL_WASM_DIR={} \
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
            self.load_rounds,
            self.wasm_dir.display(),
            self.dir.display()
        )
    }
}

/// The wasm modules the bench runs.
pub(crate) struct Wasm {
    pub(crate) zscore: Vec<u8>,
    pub(crate) zscore_path: PathBuf,
    /// Absent: the rate-spike rows are skipped.
    pub(crate) rate_spike: Option<(Vec<u8>, PathBuf)>,
    /// Absent: the rcf rows are skipped.
    pub(crate) rcf: Option<(Vec<u8>, PathBuf)>,
    /// Plugin sources newer than their module (the module may be stale).
    pub(crate) stale: Vec<String>,
}

impl Wasm {
    pub(crate) fn locate(p: &Params) -> Result<Wasm> {
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
        let rcf_path = p.wasm_dir.join("vigil_plugin_rcf.wasm");
        let rcf = std::fs::read(&rcf_path).ok().map(|b| (b, rcf_path));
        let mut stale: Vec<String> = stale_module("zscore", &zscore_path).into_iter().collect();
        if let Some((_, path)) = &rate_spike {
            stale.extend(stale_module("rate-spike", path));
        }
        if let Some((_, path)) = &rcf {
            stale.extend(stale_module("rcf", path));
        }
        Ok(Wasm {
            zscore,
            zscore_path,
            rate_spike,
            rcf,
            stale,
        })
    }
}

pub(crate) fn print_header(p: &Params, root: &Path, wasm: &Wasm) {
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
    if wasm.rcf.is_none() {
        println!("          rcf module not found (its rows are skipped)");
    }
    for s in &wasm.stale {
        println!(
            "WARNING:  {s}: native and wasm may run different code; rebuild with `{BUILD_CMD}`"
        );
    }
    println!("command:  {}", p.command());
    println!("(latencies in ms)\n");
}
