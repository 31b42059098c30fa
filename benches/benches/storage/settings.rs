//! Settings of the storage bench, from the `VIGIL_BENCH_*` environment,
//! and the header.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::common;
use crate::common::{env_or, workspace_root};
use crate::seaweed::Seaweed;
use crate::PARTITIONS;

// ---------------------------------------------------------------- settings

#[derive(Debug)]
pub(crate) struct Params {
    pub(crate) record_bytes: usize,
    /// Section 1: fixed rate (records/s) and its duration.
    pub(crate) rate: f64,
    pub(crate) rate_secs: f64,
    /// Section 1: records of the max-throughput burst.
    pub(crate) burst_records: u64,
    /// Section 1: broker upload interval (`None`: broker default).
    pub(crate) upload_interval_ms: Option<u64>,
    /// Section 1: object WAL batching window.
    pub(crate) wal_window_ms: u64,
    /// Section 2: bytes per partition count, rate and upload interval.
    pub(crate) put_mb: u64,
    pub(crate) put_rate: f64,
    pub(crate) put_upload_interval_ms: u64,
    /// Sections 3 and 4: the large data set (MB); section 4's small one is a
    /// tenth of it.
    pub(crate) catchup_mb: u64,
    /// Run the SeaweedFS rows if `weed` exists.
    pub(crate) s3: bool,
    pub(crate) weed: PathBuf,
    pub(crate) dir: PathBuf,
}

impl Params {
    pub(crate) fn from_env() -> Result<Self> {
        let default_weed = workspace_root().join("target/test-venv/bin/weed");
        let p = Params {
            record_bytes: env_or("VIGIL_BENCH_RECORD_BYTES", 1024)?,
            rate: env_or("VIGIL_BENCH_RATE", 5000.0)?,
            rate_secs: env_or("VIGIL_BENCH_RATE_SECS", 5.0)?,
            burst_records: env_or("VIGIL_BENCH_BURST_RECORDS", 30_000)?,
            upload_interval_ms: env_or("VIGIL_BENCH_UPLOAD_INTERVAL_MS", 0)
                .map(|ms: u64| (ms > 0).then_some(ms))?,
            wal_window_ms: env_or("VIGIL_BENCH_WAL_WINDOW_MS", 5)?,
            put_mb: env_or("VIGIL_BENCH_PUT_MB", 40)?,
            put_rate: env_or("VIGIL_BENCH_PUT_RATE", 10_000.0)?,
            put_upload_interval_ms: env_or("VIGIL_BENCH_PUT_UPLOAD_INTERVAL_MS", 500)?,
            catchup_mb: env_or("VIGIL_BENCH_CATCHUP_MB", 200)?,
            s3: env_or("VIGIL_BENCH_S3", 1u8)? != 0,
            weed: env_or("VIGIL_WEED_BIN", default_weed)?,
            dir: env_or("VIGIL_BENCH_DIR", std::env::temp_dir())?,
        };
        if p.record_bytes == 0
            || p.burst_records == 0
            || p.put_mb == 0
            || p.put_upload_interval_ms == 0
            || p.catchup_mb < 10
        {
            bail!(
                "VIGIL_BENCH_RECORD_BYTES, _BURST_RECORDS, _PUT_MB and _PUT_UPLOAD_INTERVAL_MS \
                 must be > 0 and VIGIL_BENCH_CATCHUP_MB ≥ 10"
            );
        }
        if !(p.rate > 0.0 && p.rate_secs > 0.0 && p.put_rate > 0.0) {
            bail!("VIGIL_BENCH_RATE, _RATE_SECS and _PUT_RATE must be > 0");
        }
        Ok(p.with_s3_available())
    }

    /// Drops the S3 rows when there is no `weed` binary.
    pub(crate) fn with_s3_available(mut self) -> Self {
        self.s3 = self.s3
            && self.weed.is_file()
            && workspace_root().join("tests/clients/s3.py").is_file();
        self
    }

    pub(crate) fn records_for_mb(&self, mb: u64) -> u64 {
        (mb * 1_000_000).div_ceil(self.record_bytes as u64).max(1)
    }

    pub(crate) fn command(&self) -> String {
        let upload = self.upload_interval_ms.map_or_else(String::new, |ms| {
            format!("VIGIL_BENCH_UPLOAD_INTERVAL_MS={ms} ")
        });
        format!(
            "{upload}VIGIL_BENCH_RECORD_BYTES={} VIGIL_BENCH_RATE={} VIGIL_BENCH_RATE_SECS={} \
             VIGIL_BENCH_BURST_RECORDS={} VIGIL_BENCH_WAL_WINDOW_MS={} VIGIL_BENCH_PUT_MB={} \
             VIGIL_BENCH_PUT_RATE={} VIGIL_BENCH_PUT_UPLOAD_INTERVAL_MS={} \
             VIGIL_BENCH_CATCHUP_MB={} VIGIL_BENCH_S3={} VIGIL_BENCH_DIR={} \
             cargo bench -p vigil-benches --bench storage",
            self.record_bytes,
            self.rate,
            self.rate_secs,
            self.burst_records,
            self.wal_window_ms,
            self.put_mb,
            self.put_rate,
            self.put_upload_interval_ms,
            self.catchup_mb,
            u8::from(self.s3),
            self.dir.display()
        )
    }
}

pub(crate) fn print_header(p: &Params, root: &Path, seaweed: Option<&Seaweed>) {
    println!("== vigil storage benchmark ==");
    println!("machine:  {}", common::machine());
    println!("disk:     {} on {}", root.display(), common::mount_of(root));
    println!(
        "workload: acks=all, {} B records, linger.ms=0, no compression; client and broker in one \
         process sharing the cores; object store file:// on the same disk{}",
        p.record_bytes,
        match seaweed {
            Some(s) => format!(" and SeaweedFS S3 at {}", s.endpoint),
            None => String::new(),
        }
    );
    println!(
        "settings: fixed rate {}/s for {} s, burst {} records, {} partitions, upload interval {}, \
         object WAL window {} ms; PUT test {} MB at {}/s per partition count, upload interval {} \
         ms; catch-up {} MB",
        p.rate,
        p.rate_secs,
        p.burst_records,
        PARTITIONS,
        p.upload_interval_ms
            .map_or_else(|| "broker default".into(), |ms| format!("{ms} ms")),
        p.wal_window_ms,
        p.put_mb,
        p.put_rate,
        p.put_upload_interval_ms,
        p.catchup_mb
    );
    println!("command:  {}", p.command());
    println!("(MB = 10^6 bytes, MiB = 2^20 bytes; latencies in ms)\n");
}
