//! Latency of the coordinator's leadership operations, both backends side
//! by side: acquire (a vacant partition), check (the per-ack "still leader
//! at epoch E?" question), transfer (a clean handover to another node).
//!
//! Starts its own etcd (Debian `etcd-server`) and SeaweedFS (target/test-venv,
//! both from scripts/install-test-deps.sh) on loopback. Run:
//!
//!     cargo run --release -p vigil-coord --example coord_bench [-- N]
//!
//! N partitions per backend (default 200); check is timed 100 000 times.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_coord::{Coordinator, SessionSettings, TopicPartition};

struct Row {
    backend: String,
    op: &'static str,
    samples: Vec<Duration>,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_micros(10) {
        format!("{} ns", d.as_nanos())
    } else if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

async fn measure(name: &str, c: Arc<dyn Coordinator>, n: i32) -> Vec<Row> {
    let settings = SessionSettings::with_ttl(Duration::from_secs(10));
    let a = c.join(common::node(1), settings).await.expect("join 1");
    let b = c.join(common::node(2), settings).await.expect("join 2");
    let tps: Vec<TopicPartition> = (0..n).map(|p| TopicPartition::new("bench", p)).collect();

    let mut acquire = Vec::new();
    let mut epochs = Vec::new();
    for tp in &tps {
        let t = Instant::now();
        let l = c.acquire(&a, tp).await.expect("acquire");
        acquire.push(t.elapsed());
        epochs.push(l.epoch);
    }
    let mut check = Vec::with_capacity(100_000);
    for i in 0..100_000usize {
        let k = i % tps.len();
        let t = Instant::now();
        let r = a.check(&tps[k], epochs[k]);
        check.push(t.elapsed());
        r.expect("check passes");
    }
    let mut transfer = Vec::new();
    for (tp, e) in tps.iter().zip(&epochs) {
        let t = Instant::now();
        c.transfer(&a, tp, Some(*e), 2).await.expect("transfer");
        transfer.push(t.elapsed());
    }
    a.close().await.expect("close");
    b.close().await.expect("close");
    [
        ("acquire", acquire),
        ("check", check),
        ("transfer", transfer),
    ]
    .into_iter()
    .map(|(op, mut samples)| {
        samples.sort();
        Row {
            backend: name.to_string(),
            op,
            samples,
        }
    })
    .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: i32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let etcd = common::Etcd::start().await;
    let mut rows = Vec::new();
    rows.extend(
        measure(
            "etcd 3.4 (loopback)",
            Arc::new(common::etcd_coord(&etcd).await),
            n,
        )
        .await,
    );
    let (local, _dir) = common::local_coord();
    rows.extend(measure("object store: LocalFileSystem", Arc::new(local), n).await);
    rows.extend(
        measure(
            "object store: InMemory",
            Arc::new(common::memory_coord()),
            n,
        )
        .await,
    );
    let s3 = common::Seaweed::start().await;
    let seaweed = Arc::new(s3.coord());
    rows.extend(measure("object store: SeaweedFS (loopback S3)", seaweed, n).await);

    println!("| backend | operation | n | p50 | p99 |");
    println!("|---|---|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.backend,
            r.op,
            r.samples.len(),
            fmt(pct(&r.samples, 0.5)),
            fmt(pct(&r.samples, 0.99))
        );
    }
}
