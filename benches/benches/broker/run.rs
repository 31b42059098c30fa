//! The run: every section in order, and the header.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use tokio::runtime::Runtime;
use vigil_server::server::Running;

use crate::broker::start_broker;
use crate::common;
use crate::common::create_topic;
use crate::consume::consume;
use crate::floor::{fsync_floor, group_commit_floor};
use crate::produce::{produce, Load, ProducePoint};
use crate::settings::{Params, RateSpec};
use crate::tables::{print_consume, print_floor, print_free_disk, print_produce};
use crate::SWEEP_SIZES;

// ---------------------------------------------------------------- the run

pub(crate) fn run(rt: &Runtime, p: &Params) -> Result<()> {
    std::fs::create_dir_all(&p.dir)
        .with_context(|| format!("cannot create VIGIL_BENCH_DIR {}", p.dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("vigil-bench-")
        .tempdir_in(&p.dir)
        .with_context(|| format!("cannot create a temp dir in {}", p.dir.display()))?;
    let root = tmp.path().to_path_buf();
    let objects = root.join("objects");
    std::fs::create_dir_all(&objects)
        .with_context(|| format!("cannot create {}", objects.display()))?;
    let objects_url = match p.store.as_str() {
        "memory" => "memory://".to_string(),
        _ => format!("file://{}", objects.display()),
    };
    print_header(p, &root);

    // Broker 1: produce, hot consume.
    let first = start_broker(rt, &root.join("data-1"), &objects_url, p)?;
    let addr = first.kafka_addr.to_string();
    println!(
        "broker 1 on {addr}, data dir {}, objects {objects_url}\n",
        root.join("data-1").display()
    );

    let max_topic = "bench-max";
    create_topic(rt, &addr, max_topic, p.partitions)?;
    let max = produce(&first, &addr, max_topic, Load::Max(p.records), p)
        .context("max-throughput produce")?;
    let mut points = vec![max];
    let hot = (0..p.consume_passes)
        .map(|i| consume(&addr, max_topic, &first).with_context(|| format!("hot consume {i}")))
        .collect::<Result<Vec<_>>>()?;

    let max_rate = points[0].achieved_rate();
    let paced: Vec<Load> = p
        .rates
        .iter()
        .map(|spec| {
            let rate = match *spec {
                RateSpec::Fixed(r) => r,
                RateSpec::OfMax(f) => (max_rate * f).max(1.0),
            };
            let n = ((rate * p.rate_secs).ceil() as u64).max(1);
            Load::Rate {
                rate,
                n,
                spec: *spec,
            }
        })
        .collect();
    points.extend(produce_paced(&first, "bench-rate", &paced, rt, p)?);

    let broker = first.broker.clone();
    let t = Instant::now();
    shut_down(rt, first, "broker 1")?;
    let shutdown_secs = t.elapsed().as_secs_f64();
    let uploaded = broker.log.stats.uploaded_bytes.load(Ordering::Relaxed);
    drop(broker);

    // The paced points again where the disk costs nothing, to tell what
    // the disk adds from what CPU, scheduling and the client take.
    let free = match &p.free_disk_dir {
        Some(dir) => {
            let tmp = tempfile::Builder::new()
                .prefix("vigil-bench-free-disk-")
                .tempdir_in(dir)
                .with_context(|| format!("cannot create a temp dir in {}", dir.display()))?;
            let running = start_broker(rt, &tmp.path().join("data"), "memory://", p)?;
            let free = produce_paced(&running, "bench-free-disk", &paced, rt, p)?;
            shut_down(rt, running, "the free-disk broker")?;
            free
        }
        None => Vec::new(),
    };

    // The floor, with the broker stopped so it does not compete for the disk.
    let floor_dir = root.join("floor");
    std::fs::create_dir_all(&floor_dir)
        .with_context(|| format!("cannot create {}", floor_dir.display()))?;
    let mut matched = Vec::new();
    for pt in &points {
        let f = match pt.wal_group() {
            Some((bytes, per_sec)) => Some(fsync_floor(
                &floor_dir,
                bytes.round().max(1.0) as usize,
                Some(per_sec),
                p.floor_secs,
            )?),
            None => None,
        };
        matched.push(f);
    }
    // The same records at the same rate through a bare group commit.
    let mut grouped = Vec::new();
    // (Not for the max point: its latency is the client's queue.)
    for pt in &points {
        grouped.push(match pt.paced {
            Some(rate) => Some(group_commit_floor(
                &floor_dir,
                pt.record_bytes,
                rate,
                p.floor_secs,
            )?),
            None => None,
        });
    }
    let mut sweep = Vec::new();
    for size in SWEEP_SIZES {
        sweep.push(fsync_floor(&floor_dir, size, None, p.floor_secs)?);
    }

    // Fresh brokers, each with an empty data dir on the same objects: every
    // read is a segment read (a broker's own segment cache would make a second
    // pass warm, hence one broker per pass).
    let mut cold = Vec::new();
    // An in-memory store dies with its broker: nothing to read cold.
    let cold_passes = if p.store == "memory" {
        0
    } else {
        p.consume_passes
    };
    for i in 0..cold_passes {
        let broker = start_broker(rt, &root.join(format!("data-cold-{i}")), &objects_url, p)?;
        let addr = broker.kafka_addr.to_string();
        cold.push(consume(&addr, max_topic, &broker).with_context(|| format!("cold consume {i}"))?);
        shut_down(rt, broker, "a cold-read broker")?;
    }

    print_produce(p, &points);
    print_floor(&floor_dir, &points, &matched, &grouped, &sweep);
    if let Some(dir) = &p.free_disk_dir {
        print_free_disk(dir, &points, &grouped, &free);
    }
    print_consume(&hot, &cold, shutdown_secs, uploaded);
    Ok(())
}

/// Runs each of `loads` on `running`, each on a new topic named from
/// `prefix`.
fn produce_paced(
    running: &Running,
    prefix: &str,
    loads: &[Load],
    rt: &Runtime,
    p: &Params,
) -> Result<Vec<ProducePoint>> {
    let addr = running.kafka_addr.to_string();
    let mut points = Vec::with_capacity(loads.len());
    for (i, load) in loads.iter().enumerate() {
        let topic = format!("{prefix}-{i}");
        create_topic(rt, &addr, &topic, p.partitions)?;
        points.push(
            produce(running, &addr, &topic, *load, p)
                .with_context(|| format!("produce on {topic} ({load:?})"))?,
        );
    }
    Ok(points)
}

/// Shuts `running` down, at most 300 s.
fn shut_down(rt: &Runtime, running: Running, what: &str) -> Result<()> {
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(300), running.shutdown())
            .await
            .map_err(|_| anyhow!("{what} did not shut down within 300 s"))
    })
}

pub(crate) fn print_header(p: &Params, root: &Path) {
    println!("== vigil broker benchmark ==");
    println!("machine:  {}", common::machine());
    println!("disk:     {} on {}", root.display(), common::mount_of(root));
    println!(
        "workload: acks=all, {} B records, {} partitions, linger.ms={}, no compression, local \
         WAL; client and broker in one process sharing the cores",
        p.record_bytes, p.partitions, p.linger_ms
    );
    println!("command:  {}", p.command());
    println!("(MB = 10^6 bytes; latencies in ms)\n");
}
