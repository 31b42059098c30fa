//! Replay benchmark: what a server-side replay job (`POST /v1/replays`)
//! buys over reading the log back with a Kafka consumer, and what it costs
//! live traffic. Run it with `cargo bench -p vigil-benches --bench replay`.
//!
//! What it measures, in one run:
//!
//! **Fill**: N small JSON card payments (the detectors bench's records,
//! zscore on `amount`) produced with librdkafka into a topic of P
//! partitions; the bench waits until the broker reports nothing left to
//! upload (`Log::upload_lag` = 0), then shuts it down.
//!
//! **A. Replay throughput**, rows/s: for every measured run a new broker
//! starts on the same object store with an empty data dir (so its block
//! cache is cold) and the zscore module is uploaded (compiled) before the
//! clock starts. Replay rows: `POST /v1/replays` of the wasm zscore over
//! the whole topic, polled with `GET /v1/replays/ID` until completed;
//! rows/s from the job's own `elapsed_ms` and from wall time (POST →
//! completed seen), with budget parallelism default (cores) and 1.
//! Baseline row: a librdkafka consumer assigned to every partition from
//! offset 0 (default fetch settings) feeds zscore compiled natively,
//! batches built the way the detectors bench's external pipeline builds
//! them, and produces its alerts to a topic of its own. Ratio replay /
//! baseline (target ≥ 5×).
//!
//! **B. Live produce latency during a replay**: a paced `acks=all` producer
//! (5 000 records/s) on another topic, one continuous stream cut into
//! windows: without replay, with a replay of the whole filled topic
//! running (re-submitted if it finishes inside the window, and reported),
//! and again without (control). p50/p99/max per window and with / without
//! (target p99 ≤ 1.2×).
//!
//! Brokers run in this process (the `vigil` binary's allocator included), on
//! a `file://` object store in a temp dir. Timings are printed, never
//! asserted: the machine is shared and noisy. Settings come from
//! `VIGIL_BENCH_*` environment variables (see `benches/README.md`); the
//! header prints the exact command to reproduce.

mod baseline;
#[path = "../common/mod.rs"]
mod common;
mod fill;
mod jobs;
mod live;
mod probe;
mod settings;
mod throughput;

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use fill::fill;
use live::{print_live, section_live};
use settings::{print_header, Params};
use throughput::{print_throughput, section_throughput};

// The same allocator as the `vigil` binary, so the broker behaves as it does
// in production.
#[global_allocator]
static ALLOC: vigil_protocol::alloc::LazyLargeAlloc = vigil_protocol::alloc::LazyLargeAlloc;

/// The topic section A replays.
const TOPIC: &str = "events";
/// The topic section B replays, when `TOPIC` is too small to keep a replay
/// busy through the window.
const LIVE_REPLAY_TOPIC: &str = "history";
/// Section B's replay is sized to last this many windows at section A's
/// replay rate: live traffic slows it, but a noisy section A may have too.
const LIVE_REPLAY_MARGIN: f64 = 1.3;
/// Section B's replay size without section A's rate.
const LIVE_REPLAY_DEFAULT: u64 = 15_000_000;
/// Most records filled for section B (~80 B each in the store): beyond it a
/// replay that finishes inside the window is re-submitted (and reported).
const LIVE_REPLAY_CAP: u64 = 40_000_000;
/// Longest wait for the broker to have uploaded everything after the fill.
const UPLOAD_LIMIT: Duration = Duration::from_secs(120);
/// Longest a replay or the baseline may take.
const RUN_LIMIT: Duration = Duration::from_secs(900);
/// A consumer that sees no new record for this long is reported as stuck.
const STALL: Duration = Duration::from_secs(60);
/// How often a replay's status is polled while timing it.
const POLL: Duration = Duration::from_millis(20);
/// Records of the live stream sent before the first measured window.
const LIVE_WARMUP_SECS: f64 = 2.0;
/// Time limit for a broker's clean shutdown.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(300);

/// Records section B's replay covers, and why.
fn live_replay_records(p: &Params, rate: Option<f64>) -> (u64, String) {
    if p.live_replay_records > 0 {
        return (
            p.live_replay_records,
            "VIGIL_BENCH_LIVE_REPLAY_RECORDS".into(),
        );
    }
    match rate {
        Some(r) if r.is_finite() && r > 0.0 => {
            let n = (r * p.live_secs * LIVE_REPLAY_MARGIN / 100_000.0).ceil() as u64 * 100_000;
            let capped = if n > LIVE_REPLAY_CAP { ", capped" } else { "" };
            (
                n.min(LIVE_REPLAY_CAP).max(p.records),
                format!(
                    "sized to {LIVE_REPLAY_MARGIN} × the window at section A's {r:.0} \
                     rows/s{capped}"
                ),
            )
        }
        _ => (
            LIVE_REPLAY_DEFAULT.max(p.records),
            "the default size: section A did not run".into(),
        ),
    }
}

fn main() -> Result<()> {
    common::init_tracing();
    let p = Params::from_env()?;
    let wasm = std::fs::read(p.zscore_path()).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the zscore module {}: {e}\nThe replay bench needs the plugins built as \
             wasm; build them with\n  ./scripts/build-detectors.sh\n(or {}), or point \
             VIGIL_WASM_DIR at the directory holding the .wasm files",
            p.zscore_path().display(),
            common::detect::BUILD_CMD
        )
    })?;
    std::fs::create_dir_all(&p.dir)
        .with_context(|| format!("cannot create VIGIL_BENCH_DIR {}", p.dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("vigil-replay-bench-")
        .tempdir_in(&p.dir)
        .with_context(|| format!("cannot create a temp dir in {}", p.dir.display()))?;
    let root = tmp.path().to_path_buf();
    print_header(&p, &root, wasm.len());
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;

    let filled = fill(&rt, &p, &root, &wasm, TOPIC, p.records).context("filling the topic")?;
    let mut replay_rate = None;
    if p.throughput {
        let runs = section_throughput(&rt, &p, &root, &wasm, &filled)
            .context("section A (replay throughput)")?;
        print_throughput(&p, &filled, &runs);
        // Section B's replay runs with live_parallelism: its rate, if
        // measured.
        let par = if p.parallelism.contains(&p.live_parallelism) {
            p.live_parallelism
        } else {
            p.parallelism[0]
        };
        replay_rate = Some(runs.replay_rate(par, filled.records));
    }
    if p.live {
        let (records, sizing) = live_replay_records(&p, replay_rate);
        let history = if records <= filled.records {
            None
        } else {
            Some(
                fill(&rt, &p, &root, &wasm, LIVE_REPLAY_TOPIC, records)
                    .context("filling the topic replayed in section B")?,
            )
        };
        let r = section_live(
            &rt,
            &p,
            &root,
            &wasm,
            history.as_ref().unwrap_or(&filled),
            sizing,
        )
        .context("section B (live produce during a replay)")?;
        print_live(&p, &r);
    }
    println!(
        "total time {:.0} s (after the build)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
