//! The in-process broker and its admin HTTP API, as the `detectors` and
//! `replay` benches drive them.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use tokio::runtime::Runtime;
use vigil_api::client::AdminClient;
use vigil_server::server::Running;
use vigil_server::settings::{Settings, WalKind};
use vigil_server::Components;
use vigil_storage::store::{ObjectStoreStats, StoreOp};

/// Starts a broker (local WAL, ephemeral ports) with its WAL and caches in
/// `data_dir` and a `file://` object store at `objects`.
/// `VIGIL_BENCH_DETECTOR_IDLE` / `VIGIL_BENCH_REPLAY_IDLE` (`true`/`false`)
/// and `VIGIL_BENCH_DETECTOR_NICE` override how the engine schedules
/// detector / replay threads, and `VIGIL_BENCH_REPLAY_LIVE_SHARE` (cores;
/// `0` = never yield) the share a replay keeps to while clients produce,
/// `VIGIL_BENCH_WAL_GROUP_HOLD_US` the WAL's group hold and
/// `VIGIL_BENCH_TAIL_LINGER_MS` how long an ungated runner lets a busy tail
/// accumulate and `VIGIL_BENCH_GATED_ON_APPEND` (`true`/`false`) whether
/// gated detectors run on the appending task (design 0019), so runs can
/// compare them.
pub fn start_broker(rt: &Runtime, data_dir: &Path, objects: &Path) -> Result<Running> {
    std::fs::create_dir_all(objects)
        .with_context(|| format!("cannot create {}", objects.display()))?;
    let mut settings = Settings::embedded(data_dir);
    settings.storage.object_store = Some(format!("file://{}", objects.display()));
    settings.storage.wal = WalKind::Local;
    settings.storage.wal_group_hold_us = crate::common::env_or(
        "VIGIL_BENCH_WAL_GROUP_HOLD_US",
        settings.storage.wal_group_hold_us,
    )?;
    let d = &mut settings.detectors;
    d.detector_idle = crate::common::env_or("VIGIL_BENCH_DETECTOR_IDLE", d.detector_idle)?;
    d.replay_idle = crate::common::env_or("VIGIL_BENCH_REPLAY_IDLE", d.replay_idle)?;
    d.detector_nice = crate::common::env_or("VIGIL_BENCH_DETECTOR_NICE", d.detector_nice)?;
    d.tail_linger_ms = crate::common::env_or("VIGIL_BENCH_TAIL_LINGER_MS", d.tail_linger_ms)?;
    d.gated_on_append = crate::common::env_or("VIGIL_BENCH_GATED_ON_APPEND", d.gated_on_append)?;
    let live_share = crate::common::env_or("VIGIL_BENCH_REPLAY_LIVE_SHARE", f64::NAN)?;
    if !live_share.is_nan() {
        d.replay_live_share = Some(live_share);
    }
    let components = Components::from_settings(&settings).context("broker components")?;
    rt.block_on(vigil_server::server::start(settings, components))
        .context("cannot start the broker")
}

/// Shuts `running` down cleanly (which uploads what is pending); returns how
/// long that took. Fails after `limit`.
pub fn shutdown(rt: &Runtime, running: Running, limit: Duration) -> Result<Duration> {
    let t = Instant::now();
    rt.block_on(async {
        tokio::time::timeout(limit, running.shutdown())
            .await
            .map_err(|_| anyhow!("a broker did not shut down within {} s", limit.as_secs()))
    })?;
    Ok(t.elapsed())
}

/// The typed client of `running`'s admin HTTP API.
pub fn admin_of(running: &Running) -> Result<AdminClient> {
    AdminClient::new(&running.admin_addr.to_string()).context("admin API client")
}

/// GET requests of every kind counted in `s`.
pub fn get_requests(s: &ObjectStoreStats) -> u64 {
    [StoreOp::Get, StoreOp::GetRange, StoreOp::GetRanges]
        .into_iter()
        .map(|op| s.total_requests(op))
        .sum()
}

/// CPU seconds (user + system) used so far by this whole process.
pub fn process_cpu_secs() -> Option<f64> {
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

/// The Produce buckets of the broker's request latency histogram (time from
/// a request's arrival to its response being ready), from its /metrics text.
pub fn produce_histogram(r: &Running) -> Vec<(f64, u64)> {
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
pub fn histogram_quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
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
/// makes one `write` per group commit (followed by one `fdatasync`). The
/// benches run one broker at a time, so there is at most one such thread.
pub fn wal_thread_io() -> Option<(u64, u64)> {
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
