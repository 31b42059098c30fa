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
