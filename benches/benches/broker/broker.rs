//! The in-process broker and what is read from it: metrics snapshots and
//! CPU time (the produce histogram and WAL thread I/O readers are shared, in
//! `common::server`).

use std::path::Path;
use std::sync::atomic::Ordering;

use anyhow::{bail, Context as _, Result};
use tokio::runtime::Runtime;
use vigil_server::metrics::ApiLabel;
use vigil_server::server::Running;
use vigil_server::settings::{Settings, WalKind};
use vigil_server::Components;

use crate::common::server::{produce_histogram, wal_thread_io};
use crate::settings::Params;

// ---------------------------------------------------------------- broker

pub(crate) fn start_broker(
    rt: &Runtime,
    data_dir: &Path,
    objects_url: &str,
    p: &Params,
) -> Result<Running> {
    // Port 0: the broker advertises the port it actually bound.
    let mut settings = Settings::embedded(data_dir);
    settings.storage.object_store = Some(objects_url.to_string());
    if let Some(ms) = p.upload_interval_ms {
        settings.storage.upload_interval_ms = ms;
    }
    if let Some(b) = p.upload_bytes {
        settings.storage.upload_bytes = b;
    }
    // The fsync floor is the local WAL's floor; pin that mode.
    settings.storage.wal = WalKind::Local;
    let components = Components::from_settings(&settings).context("broker components")?;
    let running = rt
        .block_on(vigil_server::server::start(settings, components))
        .context("cannot start the broker")?;
    let advertised = running.broker.advertised();
    if advertised.1 != i32::from(running.kafka_addr.port()) {
        bail!(
            "the broker listens on {} but advertises {}:{}",
            running.kafka_addr,
            advertised.0,
            advertised.1
        );
    }
    Ok(running)
}

/// Counters of a broker at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub(crate) produce_requests: u64,
    pub(crate) appended_bytes: u64,
    /// (write syscalls, bytes written) of the WAL writer thread.
    pub(crate) wal: Option<(u64, u64)>,
    pub(crate) cache_reads: u64,
    pub(crate) object_reads: u64,
    /// CPU seconds of the whole process and of its client threads.
    pub(crate) cpu: Option<(f64, f64)>,
    /// The broker's Produce latency histogram: (upper bound s, cumulative).
    pub(crate) produce_hist: Vec<(f64, u64)>,
}

impl Snapshot {
    pub(crate) fn of(r: &Running) -> Self {
        let b = &r.broker;
        let produce_requests = b
            .metrics
            .requests
            .get_or_create(&ApiLabel {
                api: "Produce".into(),
            })
            .get();
        Snapshot {
            produce_requests,
            appended_bytes: b.log.stats.appended_bytes.load(Ordering::Relaxed),
            wal: wal_thread_io(),
            cache_reads: b.log.stats.cache_reads.load(Ordering::Relaxed),
            object_reads: b.log.stats.object_reads.load(Ordering::Relaxed),
            cpu: cpu_seconds(),
            produce_hist: produce_histogram(r),
        }
    }

    pub(crate) fn since(self, before: &Snapshot) -> Snapshot {
        Snapshot {
            produce_requests: self.produce_requests - before.produce_requests,
            appended_bytes: self.appended_bytes - before.appended_bytes,
            wal: match (self.wal, before.wal) {
                (Some(a), Some(b)) => Some((a.0.saturating_sub(b.0), a.1.saturating_sub(b.1))),
                _ => None,
            },
            cache_reads: self.cache_reads - before.cache_reads,
            object_reads: self.object_reads - before.object_reads,
            cpu: match (self.cpu, before.cpu) {
                (Some(a), Some(b)) => Some((a.0 - b.0, a.1 - b.1)),
                _ => None,
            },
            produce_hist: if self.produce_hist.len() == before.produce_hist.len() {
                self.produce_hist
                    .iter()
                    .zip(&before.produce_hist)
                    .map(|(&(le, a), &(_, b))| (le, a.saturating_sub(b)))
                    .collect()
            } else {
                self.produce_hist
            },
        }
    }
}

/// CPU seconds (user + system) used so far by the whole process (exited
/// threads included) and by its client threads: librdkafka's (`rdk:*`), the
/// producer's polling thread and the main thread that hands records over.
/// Everything else is the broker: tokio workers, blocking-pool threads, the
/// WAL writer.
pub(crate) fn cpu_seconds() -> Option<(f64, f64)> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return None;
    }
    let ticks = |stat: &str| -> Option<u64> {
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After the command: state is field 3, utime 14, stime 15.
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    };
    let total = ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let pid = std::process::id().to_string();
    let mut client = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if comm.starts_with("rdk:") || comm.starts_with("producer") || task.file_name() == *pid {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            client += ticks(&stat).unwrap_or(0);
        }
    }
    Some((total as f64 / hz as f64, client as f64 / hz as f64))
}
