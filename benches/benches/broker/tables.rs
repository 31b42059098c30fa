//! The printed tables.

use std::path::Path;

use crate::common::server::histogram_quantile;
use crate::consume::ConsumeResult;
use crate::floor::FloorResult;
use crate::produce::ProducePoint;
use crate::settings::Params;

// ---------------------------------------------------------------- tables

pub(crate) fn kib(bytes: f64) -> String {
    format!("{:.1}", bytes / 1024.0)
}

pub(crate) fn print_produce(p: &Params, points: &[ProducePoint]) {
    println!(
        "== produce: acks=all, {} B records, {} partitions; ack latency = send → delivery report ==",
        p.record_bytes, p.partitions
    );
    println!(
        "{:<18} {:>9} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "load point", "records", "secs", "records/s", "MB/s", "p50", "p99", "p99.9", "max"
    );
    for pt in points {
        println!(
            "{:<18} {:>9} {:>7.2} {:>10.0} {:>8.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            pt.label,
            pt.records,
            pt.elapsed.as_secs_f64(),
            pt.achieved_rate(),
            pt.mb_per_sec(),
            pt.p(0.50),
            pt.p(0.99),
            pt.p(0.999),
            pt.p(1.0),
        );
    }
    println!();
    println!("== produce, broker side (same load points) ==");
    println!(
        "{:<18} {:>9} {:>8} {:>9} {:>9} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "load point",
        "requests",
        "req KiB",
        "WAL grps",
        "grp KiB",
        "grps/s",
        "req p50 ≤",
        "req p99 ≤",
        "client cpu",
        "broker cpu"
    );
    for pt in points {
        let b = &pt.broker;
        let req_kib = if b.produce_requests > 0 {
            kib(b.appended_bytes as f64 / b.produce_requests as f64)
        } else {
            "-".into()
        };
        let (groups, grp_kib, grps) = match (b.wal, pt.wal_group()) {
            (Some((w, _)), Some((size, rate))) => (w.to_string(), kib(size), format!("{rate:.0}")),
            _ => ("n/a".into(), "n/a".into(), "n/a".into()),
        };
        let (client, broker) = cpu_shares(pt);
        let q = |q| broker_quantile(pt, q);
        println!(
            "{:<18} {:>9} {:>8} {:>9} {:>9} {:>8} {:>10} {:>10} {:>10} {:>10}",
            pt.label,
            b.produce_requests,
            req_kib,
            groups,
            grp_kib,
            grps,
            q(0.5),
            q(0.99),
            client,
            broker
        );
    }
    println!(
        "(requests = Produce requests handled; req KiB = record batch bytes per request; WAL grps = \
         group commits, one write + one fdatasync each, from the vigil-wal thread's /proc I/O \
         counters; req p50/p99 ≤ = the broker's own Produce latency, arrival to response ready, as \
         the upper bound of its histogram bucket (buckets double from 0.05 ms); cpu = % of one \
         core over the point, {} cores in all)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for pt in points {
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "none".to_string()
            } else if v.len() > 12 {
                format!("{} … ({} in all)", v[..12].join(", "), v.len())
            } else {
                v.join(", ")
            }
        };
        println!(
            "{}: upload commits at [{}] s; 100-ms send windows with an ack over 10× p50: [{}]",
            pt.label,
            list(pt.uploads_at.iter().map(|t| format!("{t:.2}")).collect()),
            list(
                pt.slow_windows
                    .iter()
                    .map(|(t, ms)| format!("{t:.1} s: {ms:.0} ms"))
                    .collect()
            )
        );
    }
    println!();
}

/// (client, broker) CPU over a point, as % of one core.
fn cpu_shares(pt: &ProducePoint) -> (String, String) {
    let secs = pt.elapsed.as_secs_f64();
    pt.broker.cpu.map_or_else(
        || ("n/a".to_string(), "n/a".to_string()),
        |(total, client)| {
            (
                format!("{:.0}%", 100.0 * client / secs),
                format!("{:.0}%", 100.0 * (total - client) / secs),
            )
        },
    )
}

/// The broker's own Produce latency quantile `q` over a point (the upper
/// bound of its histogram bucket), ms.
fn broker_quantile(pt: &ProducePoint, q: f64) -> String {
    histogram_quantile(&pt.broker.produce_hist, q)
        .map_or_else(|| "n/a".into(), |ms| format!("{ms:.2}"))
}

/// The paced points beside the same points on a broker whose disk costs
/// nothing (`free`, same order): the difference is what the disk adds to
/// the ack latency, and what the free-disk broker still takes is CPU,
/// scheduling and the client. `grouped` are the group-commit floors.
pub(crate) fn print_free_disk(
    dir: &Path,
    points: &[ProducePoint],
    grouped: &[Option<FloorResult>],
    free: &[ProducePoint],
) {
    if free.is_empty() {
        return;
    }
    println!(
        "== what the disk adds: the paced points again, on a broker with its WAL in {} (tmpfs: \
         fdatasync costs nothing) and its objects in memory ==",
        dir.display()
    );
    println!(
        "{:<18} {:>9} {:>9} {:>9} {:>9} {:>11} {:>13} {:>15} {:>9}",
        "load point",
        "disk p50",
        "disk p99",
        "free p50",
        "free p99",
        "disk's part",
        "free / gc p99",
        "free req p99 ≤",
        "free cpu"
    );
    let paced = points
        .iter()
        .zip(grouped)
        .filter(|(pt, _)| pt.paced.is_some());
    for ((pt, g), f) in paced.zip(free) {
        let part = 100.0 * (pt.p(0.99) - f.p(0.99)) / pt.p(0.99);
        let over_gc = g.as_ref().map_or_else(
            || "n/a".into(),
            |g| format!("{:.1}×", f.p(0.99) / g.p(0.99)),
        );
        println!(
            "{:<18} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>10.0}% {:>13} {:>15} {:>9}",
            pt.label,
            pt.p(0.5),
            pt.p(0.99),
            f.p(0.5),
            f.p(0.99),
            part,
            over_gc,
            broker_quantile(f, 0.99),
            cpu_shares(f).1
        );
    }
    println!(
        "(disk's part = (disk p99 - free p99) / disk p99, negative when the spread between runs \
         is larger; free / gc p99 = the free-disk broker's p99 over the group-commit floor of the \
         same point: past 3× there, no change to the WAL's disk path alone can meet the target; \
         free cpu = the free-disk broker's CPU, % of one core)\n"
    );
}

pub(crate) fn print_floor(
    dir: &Path,
    points: &[ProducePoint],
    matched: &[Option<FloorResult>],
    grouped: &[Option<FloorResult>],
    sweep: &[FloorResult],
) {
    println!(
        "== fsync floor: append + fdatasync per write to a growing file in {} ==",
        dir.display()
    );
    println!(
        "{:<22} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "run", "size KiB", "appends/s", "appends", "p50", "p99", "max", "MB/s"
    );
    let row = |name: &str, f: &FloorResult| {
        println!(
            "{:<22} {:>10} {:>10} {:>8} {:>8.2} {:>8.2} {:>8.2} {:>8.1}",
            name,
            kib(f.size as f64),
            f.paced.map_or_else(
                || format!(
                    "{:.0}",
                    f.latencies_ns.len() as f64 / f.elapsed.as_secs_f64()
                ),
                |r| format!("{r:.0}"),
            ),
            f.latencies_ns.len(),
            f.p(0.50),
            f.p(0.99),
            f.p(1.0),
            f.mb_per_sec()
        );
    };
    for (pt, f) in points.iter().zip(matched) {
        if let Some(f) = f {
            row(&format!("as {} (paced)", pt.label), f);
        }
    }
    for (pt, f) in points.iter().zip(grouped) {
        if let Some(f) = f {
            row(&format!("as {} (group commit)", pt.label), f);
        }
    }
    for f in sweep {
        row("back to back", f);
    }
    println!();
    println!(
        "== vigil ack latency vs the fsync floor at the same throughput (target p99 ratio ≤ 3×) =="
    );
    println!(
        "{:<18} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "load point",
        "MB/s",
        "vigil p50",
        "floor p50",
        "vigil p99",
        "floor p99",
        "p99 ratio",
        "gc p99",
        "gc ratio"
    );
    for ((pt, f), g) in points.iter().zip(matched).zip(grouped) {
        let (floor50, floor99, ratio) = match f {
            Some(f) => (
                format!("{:.2}", f.p(0.5)),
                format!("{:.2}", f.p(0.99)),
                format!("{:.1}×", pt.p(0.99) / f.p(0.99)),
            ),
            None => ("n/a".into(), "n/a".into(), "n/a".into()),
        };
        let (gc99, gc_ratio) = match g {
            Some(g) => (
                format!("{:.2}", g.p(0.99)),
                format!("{:.1}×", pt.p(0.99) / g.p(0.99)),
            ),
            None => ("n/a".into(), "n/a".into()),
        };
        println!(
            "{:<18} {:>8.1} {:>10.2} {:>10} {:>10.2} {:>10} {:>10} {:>10} {:>10}",
            pt.label,
            pt.mb_per_sec(),
            pt.p(0.5),
            floor50,
            pt.p(0.99),
            floor99,
            ratio,
            gc99,
            gc_ratio
        );
    }
    println!(
        "(floor = the same number of bytes per fdatasync at the same rate as the broker's WAL \
         group commits, latency per fdatasync; gc = the same records at the same rate through a \
         bare group-commit loop, latency per record from its arrival to its group's fdatasync, so \
         a slow fdatasync counts for every record behind it as in the broker; the max point's \
         latency includes queueing in the client, up to VIGIL_BENCH_MAX_QUEUE records)\n"
    );
}

/// The pass with the median throughput.
pub(crate) fn median(passes: &[ConsumeResult]) -> Option<&ConsumeResult> {
    let mut sorted: Vec<&ConsumeResult> = passes.iter().collect();
    sorted.sort_by(|a, b| a.mb_per_sec().total_cmp(&b.mb_per_sec()));
    sorted.get(sorted.len() / 2).copied()
}

pub(crate) fn print_consume(
    hot: &[ConsumeResult],
    cold: &[ConsumeResult],
    shutdown_secs: f64,
    uploaded: u64,
) {
    println!(
        "== consume: BaseConsumer, manual assign from offset 0 to the high watermark; median of \
         {} passes ==",
        hot.len()
    );
    println!(
        "{:<36} {:>8} {:>7} {:>6} {:>7} {:>18} {:>6} {:>7}",
        "source", "records", "MB", "secs", "MB/s", "all passes MB/s", "cache", "objects"
    );
    let (Some(h), Some(c)) = (median(hot), median(cold)) else {
        println!("(no consume passes)");
        return;
    };
    for (name, m, all) in [
        ("hot (broker 1, right after produce)", h, hot),
        ("cold (new broker, empty data dir)", c, cold),
    ] {
        let passes: Vec<String> = all
            .iter()
            .map(|r| format!("{:.0}", r.mb_per_sec()))
            .collect();
        println!(
            "{:<36} {:>8} {:>7.1} {:>6.2} {:>7.1} {:>18} {:>6} {:>7}",
            name,
            m.records,
            m.bytes as f64 / 1e6,
            m.elapsed.as_secs_f64(),
            m.mb_per_sec(),
            passes.join(" "),
            m.broker.cache_reads,
            m.broker.object_reads
        );
    }
    println!(
        "cold/hot throughput ratio (medians): {:.2} (target ≥ 0.5)",
        c.mb_per_sec() / h.mb_per_sec()
    );
    println!(
        "broker 1 clean shutdown took {shutdown_secs:.2} s; it uploaded {:.1} MB of segments \
         in total",
        uploaded as f64 / 1e6
    );
    println!(
        "(cache / objects = reads the broker served from its log cache / from segment objects \
         in the median pass; the object store is file:// on the same disk and was just \
         written, so its files are likely in the OS page cache)"
    );
}
