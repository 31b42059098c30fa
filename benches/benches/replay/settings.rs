//! Settings of the replay bench: `Params` from the `VIGIL_BENCH_*`
//! environment, and the header.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::common;
use crate::common::detect::{stale_module, DEFAULT_WASM_DIR};
use crate::common::env_or;

#[derive(Debug)]
pub(crate) struct Params {
    pub(crate) wasm_dir: PathBuf,
    pub(crate) throughput: bool,
    pub(crate) live: bool,
    /// Records in the filled topic.
    pub(crate) records: u64,
    pub(crate) partitions: i32,
    pub(crate) keys: u64,
    pub(crate) outlier_pct: f64,
    /// Section A: replay rows, one per budget parallelism (`None` = the
    /// broker's default, left out of the spec).
    pub(crate) parallelism: Vec<Option<u32>>,
    /// Section A: how many times the replay and baseline rows are repeated.
    pub(crate) passes: usize,
    /// Section A: most messages the baseline takes from one poll round.
    pub(crate) baseline_batch: usize,
    /// Section B: rate, seconds per window, the control window after.
    pub(crate) live_rate: f64,
    pub(crate) live_secs: f64,
    pub(crate) live_control: bool,
    pub(crate) live_linger_ms: u64,
    /// Section B: its replay's budget parallelism (`None`: the default).
    pub(crate) live_parallelism: Option<u32>,
    /// Section B: its replay's budget cpu_share (`None`: no cap).
    pub(crate) live_cpu_share: Option<f64>,
    /// Section B: records its replay covers (0: sized from section A).
    pub(crate) live_replay_records: u64,
    pub(crate) dir: PathBuf,
}

impl Params {
    pub(crate) fn from_env() -> Result<Self> {
        let sections: String = env_or("VIGIL_BENCH_SECTIONS", "throughput,live".to_string())?;
        let sections: Vec<String> = sections
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        for s in &sections {
            if !matches!(s.as_str(), "throughput" | "live") {
                bail!("VIGIL_BENCH_SECTIONS: unknown section {s:?} (use throughput, live)");
            }
        }
        let has = |s: &str| sections.iter().any(|x| x == s);
        let par: String = env_or("VIGIL_BENCH_PARALLELISM", "default,1".to_string())?;
        let parallelism = par
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| parse_parallelism("VIGIL_BENCH_PARALLELISM", s))
            .collect::<Result<Vec<_>>>()?;
        let live_par: String = env_or("VIGIL_BENCH_LIVE_PARALLELISM", "default".to_string())?;
        let p = Params {
            wasm_dir: env_or(
                "VIGIL_WASM_DIR",
                common::workspace_root().join(DEFAULT_WASM_DIR),
            )?,
            throughput: has("throughput"),
            live: has("live"),
            records: env_or("VIGIL_BENCH_RECORDS", 3_000_000)?,
            partitions: env_or("VIGIL_BENCH_PARTITIONS", 4)?,
            keys: env_or("VIGIL_BENCH_KEYS", 1000)?,
            outlier_pct: env_or("VIGIL_BENCH_OUTLIER_PCT", 1.0)?,
            parallelism,
            passes: env_or("VIGIL_BENCH_PASSES", 1)?,
            baseline_batch: env_or("VIGIL_BENCH_BASELINE_BATCH", 10_000)?,
            live_rate: env_or("VIGIL_BENCH_LIVE_RATE", 5000.0)?,
            live_secs: env_or("VIGIL_BENCH_LIVE_SECS", 15.0)?,
            live_control: env_or("VIGIL_BENCH_LIVE_CONTROL", 1u8)? != 0,
            live_linger_ms: env_or("VIGIL_BENCH_LIVE_LINGER_MS", 0)?,
            live_parallelism: parse_parallelism("VIGIL_BENCH_LIVE_PARALLELISM", live_par.trim())?,
            live_cpu_share: match env_or("VIGIL_BENCH_LIVE_CPU_SHARE", "none".to_string())?.trim() {
                "none" | "" => None,
                s => Some(s.parse().map_err(|e| {
                    anyhow::anyhow!("VIGIL_BENCH_LIVE_CPU_SHARE: {s:?} is not a number: {e}")
                })?),
            },
            live_replay_records: env_or("VIGIL_BENCH_LIVE_REPLAY_RECORDS", 0)?,
            dir: env_or("VIGIL_BENCH_DIR", std::env::temp_dir())?,
        };
        if p.records == 0 || p.partitions < 1 || p.keys == 0 || p.passes == 0 {
            bail!("VIGIL_BENCH_RECORDS, _PARTITIONS, _KEYS and _PASSES must be > 0");
        }
        if p.parallelism.is_empty() || p.baseline_batch == 0 {
            bail!("VIGIL_BENCH_PARALLELISM must list something; _BASELINE_BATCH must be > 0");
        }
        if !(p.live_rate > 0.0 && p.live_secs > 0.0) {
            bail!("VIGIL_BENCH_LIVE_RATE and _LIVE_SECS must be > 0");
        }
        if !(0.0..=50.0).contains(&p.outlier_pct) {
            bail!("VIGIL_BENCH_OUTLIER_PCT must be between 0 and 50");
        }
        Ok(p)
    }

    pub(crate) fn par_label(par: Option<u32>) -> String {
        par.map_or_else(|| "default".into(), |n| n.to_string())
    }

    pub(crate) fn zscore_path(&self) -> PathBuf {
        self.wasm_dir.join("vigil_plugin_zscore.wasm")
    }

    pub(crate) fn outlier_ppm(&self) -> u64 {
        (self.outlier_pct * 10_000.0).round() as u64
    }

    pub(crate) fn command(&self) -> String {
        let sections: Vec<&str> = [(self.throughput, "throughput"), (self.live, "live")]
            .into_iter()
            .filter_map(|(on, s)| on.then_some(s))
            .collect();
        let par: Vec<String> = self
            .parallelism
            .iter()
            .map(|&p| Self::par_label(p))
            .collect();
        format!(
            "VIGIL_BENCH_SECTIONS={} VIGIL_BENCH_RECORDS={} VIGIL_BENCH_PARTITIONS={} \
             VIGIL_BENCH_KEYS={} VIGIL_BENCH_OUTLIER_PCT={} VIGIL_BENCH_PARALLELISM={} \
             VIGIL_BENCH_PASSES={} VIGIL_BENCH_BASELINE_BATCH={} VIGIL_BENCH_LIVE_RATE={} \
             VIGIL_BENCH_LIVE_SECS={} VIGIL_BENCH_LIVE_CONTROL={} VIGIL_BENCH_LIVE_LINGER_MS={} \
             VIGIL_BENCH_LIVE_PARALLELISM={} VIGIL_BENCH_LIVE_CPU_SHARE={} VIGIL_BENCH_LIVE_REPLAY_RECORDS={} VIGIL_WASM_DIR={} VIGIL_BENCH_DIR={} cargo bench -p vigil-benches --bench replay",
            sections.join(","),
            self.records,
            self.partitions,
            self.keys,
            self.outlier_pct,
            par.join(","),
            self.passes,
            self.baseline_batch,
            self.live_rate,
            self.live_secs,
            u8::from(self.live_control),
            self.live_linger_ms,
            Self::par_label(self.live_parallelism),
            self.live_cpu_share.map_or("none".to_string(), |s| s.to_string()),
            self.live_replay_records,
            self.wasm_dir.display(),
            self.dir.display()
        )
    }
}

/// "default" (the broker's: left out of the spec) or N > 0.
fn parse_parallelism(var: &str, s: &str) -> Result<Option<u32>> {
    match s {
        "default" => Ok(None),
        n => n
            .parse::<u32>()
            .ok()
            .filter(|&n| n > 0)
            .map(Some)
            .with_context(|| format!("{var}: {s:?} (use default or N > 0)")),
    }
}

pub(crate) fn print_header(p: &Params, root: &Path, wasm_len: usize) {
    println!("== vigil replay benchmark ==");
    println!("machine:  {}", common::machine());
    println!("disk:     {} on {}", root.display(), common::mount_of(root));
    println!(
        "noise:    a shared {}-core box: the broker, the replay, the Kafka clients, the baseline \
         and whatever else runs here share the cores, so numbers move by 10-30 % between runs \
         (tails more); compare the ratios within one run, and rerun before believing a \
         difference",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "module:   {} ({} KiB)",
        p.zscore_path().display(),
        wasm_len / 1024
    );
    if let Some(s) = stale_module("zscore", &p.zscore_path()) {
        println!(
            "WARNING:  {s}: native and wasm may run different code; rebuild with \
             ./scripts/build-detectors.sh"
        );
    }
    println!("command:  {}", p.command());
    println!("(latencies in ms)\n");
}
