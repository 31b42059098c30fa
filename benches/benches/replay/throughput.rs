//! Section A: replay throughput vs a librdkafka consumer + native zscore.

use std::path::Path;

use anyhow::{Context as _, Result};
use tokio::runtime::Runtime;

use crate::baseline::{timed_baseline, BaselineRun};
use crate::fill::{Cost, Filled};
use crate::jobs::{timed_replay, ReplayRun};
use crate::settings::Params;
use crate::POLL;

pub(crate) struct Runs {
    pub(crate) replays: Vec<ReplayRun>,
    pub(crate) baselines: Vec<BaselineRun>,
}

impl Runs {
    /// Median rows/s of the replays with `par`, by the job's elapsed_ms.
    pub(crate) fn replay_rate(&self, par: Option<u32>, records: u64) -> f64 {
        median(
            self.replays
                .iter()
                .filter(|r| r.parallelism == par)
                .map(|r| records as f64 / r.job_secs())
                .collect(),
        )
    }
}

fn label(par: Option<u32>) -> String {
    Params::par_label(par)
}

pub(crate) fn section_throughput(
    rt: &Runtime,
    p: &Params,
    root: &Path,
    wasm: &[u8],
    filled: &Filled,
) -> Result<Runs> {
    let mut runs = Runs {
        replays: Vec::new(),
        baselines: Vec::new(),
    };
    for pass in 0..p.passes {
        // The baseline right after the first replay row, so drift in the
        // machine's load hits both sides of the main ratio alike.
        for (i, &par) in p.parallelism.iter().enumerate() {
            println!(
                "section A pass {}: replay, parallelism {} …",
                pass + 1,
                label(par)
            );
            let id = format!("bench-{pass}-{}", label(par));
            let r = timed_replay(rt, root, filled, wasm, &id, par)
                .with_context(|| format!("replay {id}"))?;
            println!(
                "  {:.2} s wall, {:.2} s by the job",
                r.wall.as_secs_f64(),
                r.job_secs()
            );
            runs.replays.push(r);
            if i == 0 {
                println!("section A pass {}: baseline …", pass + 1);
                let b = timed_baseline(rt, p, root, filled, wasm, pass).context("baseline")?;
                println!("  {:.2} s", b.wall.as_secs_f64());
                runs.baselines.push(b);
            }
        }
    }
    println!();
    Ok(runs)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn cpu(cost: &Cost, secs: f64) -> String {
    cost.cpu_secs
        .map_or_else(|| "n/a".into(), |c| format!("{:.0}%", 100.0 * c / secs))
}

pub(crate) fn print_throughput(p: &Params, filled: &Filled, runs: &Runs) {
    let n = filled.records as f64;
    println!(
        "== A. replay throughput: zscore over {} records ({:.1} MB of keys + JSON values, {} \
         partitions, {:.1} MB in the object store); every run on a new broker with an empty \
         data dir (cold block cache) ==",
        filled.records,
        filled.bytes as f64 / 1e6,
        p.partitions,
        filled.store_bytes as f64 / 1e6
    );
    println!(
        "(filled by librdkafka in {:.1} s, {:.0} records/s; everything in the object store {:.2} \
         s after the last ack)",
        filled.produce.as_secs_f64(),
        n / filled.produce.as_secs_f64(),
        filled.upload_wait.as_secs_f64()
    );
    println!(
        "| {:<34} | {:>4} | {:>7} | {:>7} | {:>11} | {:>11} | {:>9} | {:>7} | {:>5} | {:>5} | {:>10} |",
        "run", "pass", "wall s", "job s", "rows/s wall", "rows/s job", "×baseline", "alerts",
        "cpu", "GETs", "fetched MB"
    );
    println!(
        "|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|",
        "-".repeat(36),
        "-".repeat(6),
        "-".repeat(9),
        "-".repeat(9),
        "-".repeat(13),
        "-".repeat(13),
        "-".repeat(11),
        "-".repeat(9),
        "-".repeat(7),
        "-".repeat(7),
        "-".repeat(12)
    );
    let base_rate = median(
        runs.baselines
            .iter()
            .map(|b| n / b.wall.as_secs_f64())
            .collect(),
    );
    let per_pass = p.parallelism.len();
    for (i, r) in runs.replays.iter().enumerate() {
        let wall = r.wall.as_secs_f64();
        println!(
            "| {:<34} | {:>4} | {:>7.2} | {:>7.2} | {:>11.0} | {:>11.0} | {:>8.2}× | {:>7} | {:>5} | {:>5} | {:>10.1} |",
            format!("replay (wasm), parallelism {}", label(r.parallelism)),
            i / per_pass + 1,
            wall,
            r.job_secs(),
            n / wall,
            n / r.job_secs(),
            n / wall / base_rate,
            r.status.alerts,
            cpu(&r.cost, wall),
            r.cost.gets,
            r.cost.fetched_bytes as f64 / 1e6
        );
    }
    for (i, b) in runs.baselines.iter().enumerate() {
        let wall = b.wall.as_secs_f64();
        println!(
            "| {:<34} | {:>4} | {:>7.2} | {:>7} | {:>11.0} | {:>11} | {:>8.2}× | {:>7} | {:>5} | {:>5} | {:>10.1} |",
            "baseline: rdkafka + native",
            i + 1,
            wall,
            "-",
            n / wall,
            "-",
            n / wall / base_rate,
            b.alerts,
            cpu(&b.cost, wall),
            b.cost.gets,
            b.cost.fetched_bytes as f64 / 1e6
        );
    }
    let rate = |par: Option<u32>, job: bool| {
        if job {
            return runs.replay_rate(par, filled.records);
        }
        median(
            runs.replays
                .iter()
                .filter(|r| r.parallelism == par)
                .map(|r| n / r.wall.as_secs_f64())
                .collect(),
        )
    };
    let first = p.parallelism[0];
    println!(
        "replay (parallelism {}) / baseline: {:.2}× by wall time, {:.2}× by the job's elapsed_ms \
         (target ≥ 5×)",
        label(first),
        rate(first, false) / base_rate,
        rate(first, true) / base_rate
    );
    for &par in &p.parallelism[1..] {
        println!(
            "replay parallelism {} / parallelism {}: {:.2}× by wall time, {:.2}× by elapsed_ms",
            label(first),
            label(par),
            rate(first, false) / rate(par, false),
            rate(first, true) / rate(par, true)
        );
    }
    let alerts: Vec<u64> = runs
        .replays
        .iter()
        .map(|r| r.status.alerts)
        .chain(runs.baselines.iter().map(|b| b.alerts))
        .collect();
    println!(
        "alerts: {} ({} runs)",
        if alerts.windows(2).all(|w| w[0] == w[1]) {
            format!("{} in every run (same)", alerts[0])
        } else {
            format!("DIFFERENT: {alerts:?} (replay rows first, then baselines)")
        },
        alerts.len()
    );
    for r in &runs.replays {
        println!(
            "replay {}: module compiled in {:.2} s before the clock; POST answered in {:.1} ms; \
             job's own rows_per_sec {:.0}; output {}; {} status polls",
            label(r.parallelism),
            r.compile.as_secs_f64(),
            r.submit.as_secs_f64() * 1e3,
            r.status.rows_per_sec,
            r.status.output,
            r.polls
        );
    }
    for b in &runs.baselines {
        println!(
            "baseline: {} poll rounds, {} detector batches ({:.0} records each), JSON → Arrow + \
             zscore {:.2} s of the {:.2} s ({:.0}%)",
            b.polls,
            b.batches,
            b.records as f64 / b.batches.max(1) as f64,
            b.detect.as_secs_f64(),
            b.wall.as_secs_f64(),
            100.0 * b.detect.as_secs_f64() / b.wall.as_secs_f64()
        );
    }
    println!(
        "(wall = POST /v1/replays sent → completed status read, polled every {} ms; job = the \
         job's elapsed_ms; baseline wall = assign → last record processed and its alerts acked. \
         Baseline: BaseConsumer assigned to every partition from offset 0 with librdkafka's \
         default fetch settings, up to {} messages per poll round, runs of consecutive offsets \
         per partition → Arrow batch (serde_json + the SDK's Rows builder) → zscore compiled \
         natively (one per partition), alerts produced acks=all linger.ms=5. cpu = this process \
         (broker + clients) as % of one core; GETs / fetched MB = object store GETs and block \
         cache bytes fetched during the run; the file:// store was just written, so cold reads \
         likely hit the OS page cache)\n",
        POLL.as_millis(),
        p.baseline_batch
    );
}
