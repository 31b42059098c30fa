//! The fsync floor of the WAL disk.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::common::{payload, percentile};
use crate::FLOOR_MAX_BYTES;

// ---------------------------------------------------------------- floor

pub(crate) struct FloorResult {
    pub(crate) size: usize,
    /// Paced appends per second, if paced.
    pub(crate) paced: Option<f64>,
    /// Sorted nanoseconds per append (write + fdatasync).
    pub(crate) latencies_ns: Vec<u64>,
    pub(crate) elapsed: Duration,
}

impl FloorResult {
    pub(crate) fn p(&self, q: f64) -> f64 {
        percentile(&self.latencies_ns, q)
    }

    pub(crate) fn mb_per_sec(&self) -> f64 {
        (self.latencies_ns.len() * self.size) as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

/// Appends `size` bytes to a fresh file in `dir` and `fdatasync`s, again and
/// again for `secs` seconds (at `per_sec` appends/s if given), the way the WAL
/// writer does a group commit.
pub(crate) fn fsync_floor(
    dir: &Path,
    size: usize,
    per_sec: Option<f64>,
    secs: f64,
) -> Result<FloorResult> {
    let path = dir.join(format!("floor-{size}.log"));
    let mut file = create(&path)?;
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
    finish(&path, size, per_sec, latencies_ns, elapsed)
}

/// The best per-record ack latency any durable log could give on this disk
/// at `rate` records/s: records of `record_bytes` arrive evenly paced, and
/// one thread writes whatever has arrived, fdatasyncs it and takes the next
/// group (a group commit whose only cost is the two syscalls). A record's
/// latency is from its arrival to the end of its group's fdatasync, so a
/// slow fdatasync counts once for every record that arrived while it ran,
/// as it does in the broker; [`fsync_floor`] counts it once.
pub(crate) fn group_commit_floor(
    dir: &Path,
    record_bytes: usize,
    rate: f64,
    secs: f64,
) -> Result<FloorResult> {
    let path = dir.join(format!("group-commit-{record_bytes}.log"));
    let mut file = create(&path)?;
    let max_records = (FLOOR_MAX_BYTES / record_bytes.max(1) as u64).max(10);
    let total = ((rate * secs) as u64).clamp(10, max_records);
    let arrival = |i: u64| Duration::from_secs_f64(i as f64 / rate);
    let mut buf = Vec::new();
    let mut latencies_ns = Vec::with_capacity(total as usize);
    let mut next = 0u64;
    let start = Instant::now();
    while next < total {
        let now = start.elapsed();
        // Records 0..arrived have arrived (record i at i / rate).
        let arrived = ((now.as_secs_f64() * rate) as u64 + 1).min(total);
        if arrived <= next {
            std::thread::sleep(arrival(next).saturating_sub(now));
            continue;
        }
        let bytes = (arrived - next) as usize * record_bytes;
        if buf.len() < bytes {
            buf = payload(bytes);
        }
        file.write_all(&buf[..bytes])
            .and_then(|()| file.sync_data())
            .with_context(|| format!("append + fdatasync to {}", path.display()))?;
        let done = start.elapsed();
        latencies_ns
            .extend((next..arrived).map(|i| done.saturating_sub(arrival(i)).as_nanos() as u64));
        next = arrived;
    }
    let elapsed = start.elapsed();
    drop(file);
    finish(&path, record_bytes, Some(rate), latencies_ns, elapsed)
}

/// A fresh append-only file for a floor run.
fn create(path: &Path) -> Result<std::fs::File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// Removes a floor run's file and sorts its latencies into its result.
fn finish(
    path: &Path,
    size: usize,
    paced: Option<f64>,
    mut latencies_ns: Vec<u64>,
    elapsed: Duration,
) -> Result<FloorResult> {
    std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
    latencies_ns.sort_unstable();
    Ok(FloorResult {
        size,
        paced,
        latencies_ns,
        elapsed,
    })
}
