//! What the broker did during a window of section B, read at its edges:
//! its own Produce latency histogram, the WAL writer's group commits, disk
//! I/O, and CPU and run-queue time by thread group — to tell where a
//! replay's cost lands.

use std::path::Path;

use vigil_server::server::Running;

use crate::common::server::{histogram_quantile, produce_histogram, wal_thread_io};
use crate::live::Window;

/// Thread groups, by name prefix.
pub(crate) const GROUPS: [&str; 5] = ["detector", "tokio", "wal", "client", "other"];

pub(crate) struct Probe {
    hist: Vec<(f64, u64)>,
    /// (write syscalls, bytes) of the WAL writer.
    wal: Option<(u64, u64)>,
    /// CPU seconds by `GROUPS`.
    cpu: Option<[f64; 5]>,
    /// Seconds runnable but waiting for a CPU, by `GROUPS`.
    wait: [f64; 5],
    /// This process's bytes read from / written to storage (`/proc/self/io`:
    /// page cache hits are not reads).
    io: [u64; 2],
    /// The disk's reads completed, ms reading, writes completed, ms writing
    /// and ms busy (`/proc/diskstats`; every process on the box counts).
    disk: [u64; 5],
}

/// The differences between two `Probe`s.
#[derive(Default)]
pub(crate) struct Delta {
    pub(crate) hist: Vec<(f64, u64)>,
    pub(crate) wal: Option<(u64, u64)>,
    pub(crate) cpu: Option<[f64; 5]>,
    pub(crate) wait: [f64; 5],
    pub(crate) io: [u64; 2],
    pub(crate) disk: [u64; 5],
}

impl Probe {
    /// `disk`: the device name (`vda`) holding the broker's files.
    pub(crate) fn take(r: &Running, disk: &str) -> Probe {
        let (cpu, wait) = thread_cpu();
        let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
        let field = |name: &str| {
            io.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let stats = std::fs::read_to_string("/proc/diskstats").unwrap_or_default();
        let f: Vec<u64> = stats
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.get(2) == Some(&disk))
            .map(|f| f[3..].iter().filter_map(|v| v.parse().ok()).collect())
            .unwrap_or_default();
        let at = |i: usize| f.get(i).copied().unwrap_or(0);
        Probe {
            hist: produce_histogram(r),
            wal: wal_thread_io(),
            cpu,
            wait,
            io: [field("read_bytes:"), field("write_bytes:")],
            // After the name: reads 1, ms reading 4, writes 5, ms writing
            // 8, ms doing I/O 10.
            disk: [at(0), at(3), at(4), at(7), at(9)],
        }
    }

    pub(crate) fn since(&self, before: &Probe) -> Delta {
        let sub = |a: u64, b: u64| a.saturating_sub(b);
        Delta {
            hist: self
                .hist
                .iter()
                .zip(&before.hist)
                .map(|(&(le, a), &(_, b))| (le, sub(a, b)))
                .collect(),
            wal: match (self.wal, before.wal) {
                (Some(a), Some(b)) => Some((sub(a.0, b.0), sub(a.1, b.1))),
                _ => None,
            },
            cpu: match (self.cpu, before.cpu) {
                (Some(a), Some(b)) => Some(std::array::from_fn(|i| a[i] - b[i])),
                _ => None,
            },
            wait: std::array::from_fn(|i| self.wait[i] - before.wait[i]),
            io: std::array::from_fn(|i| sub(self.io[i], before.io[i])),
            disk: std::array::from_fn(|i| sub(self.disk[i], before.disk[i])),
        }
    }
}

/// The device name (`vda`) of the mount holding `path`, for `Probe::take`.
pub(crate) fn disk_of(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?, f.next()?))
        })
        .filter(|(_, at)| path.starts_with(at))
        .max_by_key(|(_, at)| at.len())
        .and_then(|(dev, _)| dev.strip_prefix("/dev/"))
        .unwrap_or("?")
        .to_string()
}

impl Delta {
    /// Upper bound (ms) of the broker's Produce histogram bucket holding the
    /// `q`-quantile.
    pub(crate) fn broker_ms(&self, q: f64) -> Option<f64> {
        histogram_quantile(&self.hist, q)
    }
}

/// CPU seconds and run-queue wait seconds (runnable, no CPU: from
/// `/proc/.../schedstat`) of this process's live threads by group: the
/// detector pools (`vigil-detector-*` for live deployments at nice +10,
/// `vigil-replay-*` for replays at nice +19: build_batch, wasm, alert
/// encoding), tokio
/// (the broker's request handling, log reads, alert writes, blocking pool),
/// the WAL writer, the Kafka client (librdkafka's `rdk:*`, its polling
/// thread, the bench's threads), and the rest. Threads that exited are not
/// counted.
fn thread_cpu() -> (Option<[f64; 5]>, [f64; 5]) {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let pid = std::process::id().to_string();
    let (mut cpu, mut wait) = ([0.0; 5], [0.0; 5]);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (None, wait);
    };
    for task in tasks.flatten() {
        let read = |f: &str| std::fs::read_to_string(task.path().join(f)).unwrap_or_default();
        let comm = read("comm");
        let comm = comm.trim();
        let group = if comm.starts_with("vigil-detector") || comm.starts_with("vigil-replay") {
            0
        } else if comm.starts_with("tokio") {
            1
        } else if comm == "vigil-wal" {
            2
        } else if comm.starts_with("rdk:")
            || comm.starts_with("producer")
            || task.file_name() == *pid
        {
            3
        } else {
            4
        };
        let stat = read("stat");
        let ticks = stat.rsplit_once(')').and_then(|(_, rest)| {
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        });
        cpu[group] += ticks.unwrap_or(0) as f64 / hz.max(1) as f64;
        let waited = read("schedstat")
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok());
        wait[group] += waited.unwrap_or(0) as f64 / 1e9;
    }
    ((hz > 0).then_some(cpu), wait)
}

fn table(head: &[&str]) {
    let cells: Vec<String> = head.iter().map(|h| format!(" {h:>10} ")).collect();
    println!("| {:<15} |{}|", "window", cells.join("|"));
    let dashes: Vec<String> = head.iter().map(|_| "-".repeat(12)).collect();
    println!("|{}|{}|", "-".repeat(17), dashes.join("|"));
}

fn row(label: &str, cells: &[String]) {
    let cells: Vec<String> = cells.iter().map(|c| format!(" {c:>10} ")).collect();
    println!("| {label:<15} |{}|", cells.join("|"));
}

/// The broker side of each window, below section B's latency table.
pub(crate) fn print_probes(windows: &[Window]) {
    table(&[
        "broker p50",
        "broker p99",
        "WAL wr/s",
        "WAL MB/s",
        "rd MB/s",
        "wr MB/s",
        "disk busy",
        "rd await",
        "wr await",
    ]);
    let ms = |v: Option<f64>| v.map_or_else(|| "n/a".into(), |v| format!("≤ {v:.2}"));
    for w in windows {
        let d = &w.probe;
        let per_sec =
            |v: u64, scale: f64, prec: usize| format!("{:.prec$}", v as f64 / scale / w.secs);
        let (writes, mb) = d.wal.map_or(("n/a".into(), "n/a".into()), |(n, b)| {
            (per_sec(n, 1.0, 0), per_sec(b, 1e6, 2))
        });
        row(
            w.label,
            &[
                ms(d.broker_ms(0.5)),
                ms(d.broker_ms(0.99)),
                writes,
                mb,
                per_sec(d.io[0], 1e6, 1),
                per_sec(d.io[1], 1e6, 1),
                format!("{:.0}%", d.disk[4] as f64 / 10.0 / w.secs),
                format!("{:.2}", d.disk[1] as f64 / d.disk[0].max(1) as f64),
                format!("{:.2}", d.disk[3] as f64 / d.disk[2].max(1) as f64),
            ],
        );
    }
    table(&GROUPS);
    for w in windows {
        let d = &w.probe;
        let pct = |v: f64| format!("{:.0}", 100.0 * v / w.secs);
        let cells: Vec<String> = (0..GROUPS.len())
            .map(|i| {
                let c = d.cpu.map_or_else(|| "n/a".into(), |c| pct(c[i]));
                format!("{c}/{}%", pct(d.wait[i]))
            })
            .collect();
        row(w.label, &cells);
    }
    println!(
        "(broker p50/p99 = upper bounds of the buckets of the broker's own Produce histogram \
         (request arrival → response ready, the WAL fsync included) holding them; WAL wr/s and \
         MB/s = the WAL writer's write syscalls (one per group commit, each followed by an \
         fdatasync) and bytes; rd/wr MB/s = this process's storage I/O (page cache hits are not \
         reads); disk busy and rd/wr await (mean ms per read / write request, queueing \
         included) from /proc/diskstats, for the whole box. Per thread group, cpu/wait = CPU time / time \
         runnable but waiting for a CPU (schedstat), as % of one core: detector = \
         vigil-detector-* / vigil-replay-* (build_batch, wasm, alert encoding; nice +10 / +19), tokio = the broker's async workers and \
         blocking pool (requests, log reads, alert appends), wal = the WAL writer, client = \
         librdkafka + the bench's threads)"
    );
}
