//! Storage benchmark: how vigil's object-store-backed log behaves, measured
//! with a real Kafka client (librdkafka, through the `rdkafka` crate) against
//! in-process brokers. Run it with
//! `cargo bench -p vigil-benches --bench storage`.
//!
//! What it measures, in one run:
//!
//! 1. **Produce by WAL mode**: `acks=all`, 1 KiB records at a fixed rate
//!    (default 5 000/s for 5 s) and as a max-throughput burst, with
//!    `--wal local` vs `--wal object`, against a `file://` object store and,
//!    when `target/test-venv/bin/weed` exists, against SeaweedFS (S3 on
//!    loopback).
//! 2. **PUTs per MiB** at 1, 10 and 100 partitions: the same bytes at the same
//!    rate spread over N partitions (local WAL); the broker's object store
//!    counters give PUT requests and bytes uploaded.
//! 3. **Catch-up reads**: a new broker with an empty data dir on a store
//!    holding ~200 MB reads everything from offset 0 with a cold block cache,
//!    then again with it hot; block cache counters for each pass.
//! 4. **Time to first fetch**: from `server::start` on an empty data dir to
//!    the first fetched record (the newest one), at two data sizes 10× apart.
//!
//! Timings are printed, never asserted: the machine is shared and noisy.
//! Settings come from `VIGIL_BENCH_*` environment variables (see
//! `benches/README.md`); the header prints the exact command to reproduce.

use std::path::Path;
use std::time::Duration;

mod broker;
mod catchup;
#[path = "../common/mod.rs"]
mod common;
mod consume;
mod modes;
mod produce;
mod puts;
mod seaweed;
mod settings;

use anyhow::{Context as _, Result};
use tokio::runtime::Runtime;

use catchup::{print_catchup, print_first_fetch, section_catchup};
use modes::{print_modes, section_produce};
use puts::{print_puts, section_puts};
use seaweed::Seaweed;
use settings::{print_header, Params};

// The same allocator as the `vigil` binary, so the broker behaves as it does
// in production.
#[global_allocator]
static ALLOC: vigil_protocol::alloc::LazyLargeAlloc = vigil_protocol::alloc::LazyLargeAlloc;

/// Records sent (unmeasured) through each new producer before measuring.
const WARMUP_RECORDS: u64 = 1_000;
/// A consumer that sees no new record for this long is reported as stuck.
const CONSUME_STALL: Duration = Duration::from_secs(30);
/// Partitions of the topics in sections 1, 3 and 4.
const PARTITIONS: i32 = 8;
/// Partition counts of section 2.
const PUT_PARTITIONS: [i32; 3] = [1, 10, 100];
/// Time limit for a broker's clean shutdown.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(300);
/// Fresh brokers per data size in section 4 (the median is reported).
const FIRST_FETCH_PASSES: usize = 3;

fn main() -> Result<()> {
    common::init_tracing();
    let p = Params::from_env()?;
    std::fs::create_dir_all(&p.dir)
        .with_context(|| format!("cannot create VIGIL_BENCH_DIR {}", p.dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("vigil-storage-bench-")
        .tempdir_in(&p.dir)
        .with_context(|| format!("cannot create a temp dir in {}", p.dir.display()))?;
    let root = tmp.path().to_path_buf();
    // SeaweedFS first: the broker's S3 client reads AWS_* variables, which
    // are set here while the process has a single thread.
    let seaweed = if p.s3 {
        match Seaweed::start(&p.weed, &root.join("seaweed")) {
            Ok(s) => Some(s),
            Err(e) => {
                println!("note: SeaweedFS rows skipped: {e:#}");
                None
            }
        }
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    print_header(&p, &root, seaweed.as_ref());
    let result = run(&rt, &p, &root, seaweed.as_ref());
    drop(rt);
    if let Some(s) = seaweed {
        s.stop();
    }
    result
}

// ---------------------------------------------------------------- the run

fn run(rt: &Runtime, p: &Params, root: &Path, seaweed: Option<&Seaweed>) -> Result<()> {
    let modes = section_produce(rt, p, root, seaweed).context("section 1 (produce by WAL mode)")?;
    print_modes(p, &modes, seaweed.is_some());
    let puts = section_puts(rt, p, root).context("section 2 (PUTs per MiB)")?;
    print_puts(p, &puts);
    let (catchup, first_fetch) =
        section_catchup(rt, p, root).context("sections 3 and 4 (catch-up, first fetch)")?;
    print_catchup(&catchup);
    print_first_fetch(&first_fetch);
    Ok(())
}
