//! Sections 3 and 4: catch-up reads and first fetch.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use tokio::runtime::Runtime;
use vigil_storage::cache::CacheStats;

use crate::broker::{broker_config, file_url, shutdown, start_broker, BrokerOpts};
use crate::common::create_topic;
use crate::common::server::get_requests;
use crate::consume::{consume_all, fetch_newest, Consumed};
use crate::produce::Producing;
use crate::settings::Params;
use crate::{FIRST_FETCH_PASSES, PARTITIONS, WARMUP_RECORDS};

// ------------------------------------------------ 3 + 4: catch-up, first fetch

pub(crate) struct CatchupPass {
    pub(crate) name: &'static str,
    pub(crate) consumed: Consumed,
    pub(crate) cache: CacheStats,
    pub(crate) gets: u64,
}

pub(crate) struct FirstFetch {
    pub(crate) mb: u64,
    pub(crate) records: u64,
    pub(crate) start: Duration,
    pub(crate) first: Duration,
    /// Every pass's first-fetch time, sorted.
    pub(crate) all: Vec<Duration>,
}

/// Fills an object store with `mb` MB in `topic` and shuts the broker down
/// cleanly (which uploads everything).
pub(crate) fn fill(
    rt: &Runtime,
    p: &Params,
    root: &Path,
    name: &str,
    mb: u64,
) -> Result<(String, u64)> {
    let objects = file_url(&root.join(format!("objects-{name}")))?;
    let data_dir = root.join(format!("data-{name}-writer"));
    let running = start_broker(
        rt,
        &BrokerOpts {
            data_dir: &data_dir,
            objects: &objects,
            wal_object: false,
            wal_window_ms: p.wal_window_ms,
            upload_interval_ms: None,
        },
    )?;
    let addr = running.kafka_addr.to_string();
    create_topic(rt, &addr, "bench-data", PARTITIONS)?;
    let n = p.records_for_mb(mb);
    let mut prod = Producing::new(&addr, "bench-data", PARTITIONS, p.record_bytes)?;
    prod.run(n, None, &format!("fill {name}"))?;
    drop(prod);
    shutdown(rt, running)?;
    Ok((objects, n + WARMUP_RECORDS))
}

pub(crate) fn cache_delta(a: CacheStats, b: CacheStats) -> CacheStats {
    CacheStats {
        hits: a.hits - b.hits,
        misses: a.misses - b.misses,
        coalesced: a.coalesced - b.coalesced,
        fetches: a.fetches - b.fetches,
        bytes_fetched: a.bytes_fetched - b.bytes_fetched,
        readahead_blocks: a.readahead_blocks - b.readahead_blocks,
        evictions: a.evictions - b.evictions,
        current_bytes: a.current_bytes,
    }
}

pub(crate) fn time_first_fetch(
    rt: &Runtime,
    p: &Params,
    root: &Path,
    name: &str,
    objects: &str,
) -> Result<(Duration, Duration)> {
    let data_dir = root.join(format!("data-{name}-first-fetch"));
    let (settings, components) = broker_config(&BrokerOpts {
        data_dir: &data_dir,
        objects,
        wal_object: false,
        wal_window_ms: p.wal_window_ms,
        upload_interval_ms: None,
    })?;
    let t = Instant::now();
    let running = rt
        .block_on(vigil_server::server::start(settings, components))
        .with_context(|| format!("cannot start a broker on {objects}"))?;
    let started = t.elapsed();
    let addr = running.kafka_addr.to_string();
    fetch_newest(&addr, "bench-data").with_context(|| format!("first fetch on {name}"))?;
    let first = t.elapsed();
    shutdown(rt, running)?;
    Ok((started, first))
}

pub(crate) fn section_catchup(
    rt: &Runtime,
    p: &Params,
    root: &Path,
) -> Result<(Vec<CatchupPass>, Vec<FirstFetch>)> {
    let small_mb = p.catchup_mb / 10;
    let (small, small_records) = fill(rt, p, root, "small", small_mb).context("fill small")?;
    let (large, large_records) = fill(rt, p, root, "large", p.catchup_mb).context("fill large")?;

    // 4: first fetch on each, before anything else reads the large store.
    let mut first = Vec::new();
    for (name, objects, mb, records) in [
        ("small", &small, small_mb, small_records),
        ("large", &large, p.catchup_mb, large_records),
    ] {
        let mut runs = Vec::new();
        for i in 0..FIRST_FETCH_PASSES {
            runs.push(time_first_fetch(
                rt,
                p,
                root,
                &format!("{name}-{i}"),
                objects,
            )?);
        }
        runs.sort_by_key(|r| r.1);
        let (start, t) = runs[runs.len() / 2];
        first.push(FirstFetch {
            mb,
            records,
            start,
            first: t,
            all: runs.iter().map(|r| r.1).collect(),
        });
    }

    // 3: a new broker, empty data dir, reads everything twice.
    let running = start_broker(
        rt,
        &BrokerOpts {
            data_dir: &root.join("data-large-reader"),
            objects: &large,
            wal_object: false,
            wal_window_ms: p.wal_window_ms,
            upload_interval_ms: None,
        },
    )?;
    let addr = running.kafka_addr.to_string();
    let mut passes = Vec::new();
    for name in ["cold", "hot"] {
        let cache_before = running.broker.log.block_cache_stats();
        let store_before = running.broker.store_metrics.stats();
        let consumed = consume_all(&addr, "bench-data", PARTITIONS)
            .with_context(|| format!("{name} catch-up read"))?;
        passes.push(CatchupPass {
            name,
            consumed,
            cache: cache_delta(running.broker.log.block_cache_stats(), cache_before),
            gets: get_requests(&running.broker.store_metrics.stats()) - get_requests(&store_before),
        });
    }
    shutdown(rt, running)?;
    Ok((passes, first))
}

pub(crate) fn print_catchup(passes: &[CatchupPass]) {
    println!(
        "== 3. catch-up read from the object store: new broker, empty data dir, BaseConsumer from \
         offset 0 to the high watermark, {PARTITIONS} partitions =="
    );
    println!(
        "{:<6} {:>9} {:>8} {:>7} {:>8} {:>7} {:>7} {:>9} {:>7} {:>9} {:>10}",
        "pass",
        "records",
        "MB",
        "secs",
        "MB/s",
        "GETs",
        "hits",
        "misses",
        "hit %",
        "readahead",
        "fetched MB"
    );
    for r in passes {
        println!(
            "{:<6} {:>9} {:>8.1} {:>7.2} {:>8.1} {:>7} {:>7} {:>9} {:>7.1} {:>9} {:>10.1}",
            r.name,
            r.consumed.records,
            r.consumed.bytes as f64 / 1e6,
            r.consumed.elapsed.as_secs_f64(),
            r.consumed.mb_per_sec(),
            r.gets,
            r.cache.hits,
            r.cache.misses,
            r.cache.hit_ratio() * 100.0,
            r.cache.readahead_blocks,
            r.cache.bytes_fetched as f64 / 1e6
        );
    }
    if let [cold, hot] = passes {
        println!(
            "hot/cold throughput: {:.2}×; block cache holds {:.1} MiB after the hot pass",
            hot.consumed.mb_per_sec() / cold.consumed.mb_per_sec(),
            hot.cache.current_bytes as f64 / (1 << 20) as f64
        );
    }
    println!(
        "(block cache counters per pass: hits / misses in blocks, readahead = blocks fetched \
         ahead, fetched MB = bytes received from the store; GETs = the store's GET requests; \
         file:// on the same disk, just written, so cold reads likely hit the OS page cache)\n"
    );
}

pub(crate) fn print_first_fetch(rows: &[FirstFetch]) {
    println!(
        "== 4. time to first fetch: fresh broker, empty data dir, already-uploaded data; \
         server::start → newest record of partition 0 fetched =="
    );
    println!(
        "{:>8} {:>9} {:>12} {:>16} {:>22}",
        "data MB", "records", "start ms", "first fetch ms", "all passes ms"
    );
    for r in rows {
        let all: Vec<String> = r
            .all
            .iter()
            .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
            .collect();
        println!(
            "{:>8} {:>9} {:>12.1} {:>16.1} {:>22}",
            r.mb,
            r.records,
            r.start.as_secs_f64() * 1e3,
            r.first.as_secs_f64() * 1e3,
            all.join(" ")
        );
    }
    if let [small, large] = rows {
        println!(
            "ratio {} MB / {} MB: {:.2}× (target ≈ 1: start-up must not scale with data size)",
            large.mb,
            small.mb,
            large.first.as_secs_f64() / small.first.as_secs_f64()
        );
    }
    println!(
        "(median of {FIRST_FETCH_PASSES} fresh brokers per size; start = the server::start call; first fetch includes it, the client's connection, \
         metadata, ListOffsets and the Fetch)\n"
    );
}
