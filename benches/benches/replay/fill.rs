//! Filling the topic, and the cold brokers every measured run starts on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, ThreadedProducer};
use tokio::runtime::Runtime;
use vigil_api::client::AdminClient;
use vigil_server::server::Running;
use vigil_storage::store::ObjectStoreStats;

use crate::common::detect::record;
use crate::common::native::ErrorCount;
use crate::common::server::{admin_of, get_requests, process_cpu_secs, shutdown, start_broker};
use crate::common::{create_topic, send_when_queued};
use crate::settings::Params;
use crate::{SHUTDOWN_LIMIT, UPLOAD_LIMIT};

/// The filled object store.
pub(crate) struct Filled {
    pub(crate) objects: PathBuf,
    pub(crate) topic: String,
    pub(crate) records: u64,
    /// Key + value bytes produced.
    pub(crate) bytes: u64,
    pub(crate) produce: Duration,
    /// Last ack → the broker had nothing left to upload.
    pub(crate) upload_wait: Duration,
    /// Bytes under the object store's directory after the shutdown.
    pub(crate) store_bytes: u64,
}

/// Produces `records` records to `topic` (in the store at `root/objects`)
/// as fast as librdkafka goes, waits until they are in the object store, and
/// shuts the broker down.
pub(crate) fn fill(
    rt: &Runtime,
    p: &Params,
    root: &Path,
    wasm: &[u8],
    topic: &str,
    records: u64,
) -> Result<Filled> {
    let objects = root.join("objects");
    let running = start_broker(rt, &root.join(format!("data-fill-{topic}")), &objects)?;
    let addr = running.kafka_addr.to_string();
    // Stored in the object store: every later broker finds it there.
    admin_of(&running)?
        .upload_module(wasm)
        .context("uploading the zscore module")?;
    create_topic(rt, &addr, topic, p.partitions)?;
    println!(
        "fill: {records} records into {topic} ({} partitions) …",
        p.partitions
    );
    // Throughput settings: big batches, a deep queue; keys pick the
    // partition (librdkafka's default partitioner), so a key's history is
    // in one partition, as zscore wants it.
    let producer: ThreadedProducer<ErrorCount> = ClientConfig::new()
        .set("bootstrap.servers", &addr)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("batch.size", "1000000")
        .set("compression.type", "none")
        .set("enable.idempotence", "false")
        .set("queue.buffering.max.messages", "500000")
        .set("message.timeout.ms", "300000")
        .create_with_context(ErrorCount::new())
        .context("cannot create the fill producer")?;
    let t = Instant::now();
    let mut bytes = 0u64;
    for i in 0..records {
        let r = record(i, p.keys, p.outlier_ppm());
        bytes += (r.key.len() + r.value.len()) as u64;
        let rec = BaseRecord::<str, str, ()>::to(topic)
            .key(r.key.as_str())
            .payload(r.value.as_str());
        send_when_queued(&producer, rec, Duration::from_millis(1), |back| back)
            .context("cannot hand a record to librdkafka")?;
    }
    ErrorCount::flush_checked(&producer, "fill", Duration::from_secs(300))?;
    let produce = t.elapsed();
    drop(producer);
    let t = Instant::now();
    while !running.broker.log.upload_lag().is_zero() {
        if t.elapsed() > UPLOAD_LIMIT {
            bail!(
                "the broker still had data to upload {} s after the fill",
                UPLOAD_LIMIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let upload_wait = t.elapsed();
    // Nothing is pending, so this uploads nothing more; it releases the
    // lease so the next broker starts at once.
    shutdown(rt, running, SHUTDOWN_LIMIT)?;
    // Whatever dirty pages the fill left, the kernel would write back (after
    // 30 s, or once over its background ratio) in the middle of the measured
    // runs, where the WAL's fdatasyncs would queue behind them: do it now.
    let t = Instant::now();
    syncfs(&objects)?;
    let sync = t.elapsed();
    let filled = Filled {
        store_bytes: dir_bytes(&objects),
        objects,
        topic: topic.to_string(),
        records,
        bytes,
        produce,
        upload_wait,
    };
    println!(
        "fill: {:.1} s ({:.0} records/s), all uploaded {:.2} s after the last ack; object store \
         {:.1} MB, synced to disk in {:.1} s\n",
        produce.as_secs_f64(),
        records as f64 / produce.as_secs_f64(),
        upload_wait.as_secs_f64(),
        filled.store_bytes as f64 / 1e6,
        sync.as_secs_f64()
    );
    Ok(filled)
}

/// Writes back the dirty pages of the filesystem holding `dir`.
fn syncfs(dir: &Path) -> Result<()> {
    use std::os::fd::AsRawFd as _;
    let f = std::fs::File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    // SAFETY: `f` is an open descriptor for the duration of the call.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        bail!(
            "syncfs {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// A broker on the filled store with a new, empty data dir: nothing of the
/// topic is on local disk or in its block cache.
pub(crate) struct Cold {
    pub(crate) running: Running,
    pub(crate) admin: AdminClient,
    /// The zscore module's hash.
    pub(crate) hash: String,
    /// `POST /v1/modules` on this broker: fetch-free, but it compiles.
    pub(crate) compile: Duration,
}

static COLD_BROKERS: AtomicUsize = AtomicUsize::new(0);

impl Cold {
    pub(crate) fn start(rt: &Runtime, root: &Path, filled: &Filled, wasm: &[u8]) -> Result<Cold> {
        let n = COLD_BROKERS.fetch_add(1, Ordering::SeqCst);
        let running = start_broker(rt, &root.join(format!("data-cold-{n}")), &filled.objects)?;
        let admin = admin_of(&running)?;
        // Compiling the module takes about a second: done before any clock
        // starts, so replay rows measure replaying.
        let t = Instant::now();
        let hash = admin
            .upload_module(wasm)
            .context("uploading the zscore module")?
            .hash;
        Ok(Cold {
            running,
            admin,
            hash,
            compile: t.elapsed(),
        })
    }

    pub(crate) fn addr(&self) -> String {
        self.running.kafka_addr.to_string()
    }

    pub(crate) fn counters(&self) -> Counters {
        Counters {
            cache: self.running.broker.log.block_cache_stats(),
            store: self.running.broker.store_metrics.stats(),
            cpu_secs: process_cpu_secs(),
        }
    }

    pub(crate) fn stop(self, rt: &Runtime) -> Result<()> {
        shutdown(rt, self.running, SHUTDOWN_LIMIT).map(|_| ())
    }
}

/// Broker and process counters at one moment.
pub(crate) struct Counters {
    pub(crate) cache: vigil_storage::cache::CacheStats,
    pub(crate) store: ObjectStoreStats,
    pub(crate) cpu_secs: Option<f64>,
}

/// What a run cost between two `Counters`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cost {
    pub(crate) gets: u64,
    pub(crate) fetched_bytes: u64,
    /// CPU seconds of this whole process (broker + clients).
    pub(crate) cpu_secs: Option<f64>,
}

impl Counters {
    pub(crate) fn since(&self, before: &Counters) -> Cost {
        Cost {
            gets: get_requests(&self.store) - get_requests(&before.store),
            fetched_bytes: self.cache.bytes_fetched - before.cache.bytes_fetched,
            cpu_secs: match (before.cpu_secs, self.cpu_secs) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            },
        }
    }
}
