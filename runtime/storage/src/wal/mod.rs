//! The write-ahead log, on local disk or in the object store.
//!
//! One writer owns the active log. Appends arrive over a channel; the writer
//! takes everything queued (up to a byte limit, or for the object backend up
//! to a batching window), writes it once and makes it durable once (group
//! commit), then runs each entry's completion in order. Completions advance
//! high watermarks, so by the time the writer handles its next command every
//! partition reflects what is durable — the uploader relies on this when it
//! seals the log.
//!
//! - `local`: segment files in the data dir, `fdatasync` per group; low ack
//!   latency, durable against process crashes and (with a real fsync) power
//!   loss, but only on this machine until uploaded.
//! - `object`: each group is one object under `wal/<epoch>/`; an ack means
//!   the data is in the object store, so a broker's local disk holds nothing
//!   needed for durability. Before acking, the writer checks it still owns
//!   the log (no newer manifest from another epoch), so a fenced broker never
//!   acknowledges a write the new owner will not replay.
//!
//! A failed write is retried with backoff: the WAL stalls but never drops or
//! reorders an entry. Producers waiting on a stalled WAL time out with a
//! retriable error; their batches land once the disk or store recovers.
//! While a local write keeps failing (disk full, I/O errors) the WAL reports
//! itself unhealthy ([`Wal::check_writable`]) so new appends are refused at
//! once instead of queuing behind the stuck group, and the writer still
//! answers rolls between retries, so the uploader can seal, upload and
//! delete segments, which is what frees the disk.

mod codec;
mod health;
mod hold;
mod local;
pub(crate) mod object;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::error::{Result, StorageError};
use crate::fence::Fence;
use crate::kv::{self, KvMap};

pub use health::WalHealth;
pub use hold::{GroupWake, Hold, WalStats};
pub use object::OBJECT_WAL_PREFIX;

/// Bytes queued but not yet durable before appenders wait (backpressure).
const MAX_INFLIGHT_BYTES: usize = 256 << 20;

/// One logical WAL record.
#[derive(Debug, Clone, PartialEq)]
pub enum WalEntry {
    /// A record batch of a partition, with its final offsets.
    Batch {
        /// Topic id (not name: a re-created topic must not inherit old data).
        topic_id: Uuid,
        /// Partition index.
        partition: i32,
        /// The batch bytes.
        batch: Bytes,
    },
    /// A key/value change.
    Kv {
        /// Key.
        key: String,
        /// New value, `None` to delete.
        value: Option<String>,
    },
}

/// Called once the entry is durable (or can never be).
pub type Completion = Box<dyn FnOnce(Result<()>) + Send>;

/// What a roll returns: everything sealed is durable, and `kv` is the
/// key/value state exactly as of that point.
#[derive(Debug)]
pub struct Sealed {
    /// Highest sealed segment (file) or object sequence, if any; everything
    /// up to it can be deleted once uploaded.
    pub sealed_through: Option<u64>,
    /// Key/value snapshot consistent with the sealed part.
    pub kv: KvMap,
}

/// Where the WAL lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalMode {
    /// Segment files in the data dir.
    Local,
    /// Objects in the object store, written at most every `window`.
    Object {
        /// How long the writer collects appends before one PUT.
        window: Duration,
    },
}

enum Command {
    Append(WalEntry, Completion, Option<Hold>),
    Roll(oneshot::Sender<Sealed>),
    Close,
}

enum Worker {
    Thread(std::thread::JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
}

/// Handle to the WAL writer.
pub struct Wal {
    // Unbounded so that appends can be queued under a partition's synchronous
    // lock (which is what keeps a partition's entries in offset order);
    // `inflight` bounds the memory instead.
    tx: mpsc::UnboundedSender<Command>,
    inflight: Arc<tokio::sync::Semaphore>,
    closing: Arc<AtomicBool>,
    /// Whether the local writer's last write failed (and why).
    health: Arc<WalHealth>,
    worker: parking_lot::Mutex<Option<Worker>>,
    /// The segment directory when the WAL is local.
    local: Option<local::Dir>,
    /// WAL objects: the log itself in object mode; in local mode only the
    /// leftovers of an earlier object-mode run, deleted once uploaded.
    objects: object::Objects,
    /// How gated readers wake the writer waiting on a group's holds.
    wake: Arc<GroupWake>,
    stats: Arc<WalStats>,
}

/// Settings for opening the WAL.
pub struct WalOptions {
    /// Which backend.
    pub mode: WalMode,
    /// Local segment directory (also read in object mode, for leftovers).
    pub dir: std::path::PathBuf,
    /// Local segment size after which the writer rolls.
    pub segment_bytes: u64,
    /// Most bytes one group writes.
    pub group_bytes: usize,
    /// Leave the WAL objects found at open in place (a cluster node: the
    /// partitions they hold may be recovered by other nodes, see
    /// `log/recover.rs`) instead of deleting them after the next upload.
    pub keep_found_objects: bool,
    /// Longest a local group waits for the holds of its entries (`hold.rs`);
    /// zero writes at once.
    pub group_hold: Duration,
}

/// Entries found at open, in write order.
pub struct Replay {
    /// The entries.
    pub entries: Vec<WalEntry>,
}

impl Wal {
    /// Opens the WAL: reads what an earlier run left (local segments, then
    /// WAL objects), and returns a starter that launches the writer from the
    /// key/value state the caller rebuilt.
    pub async fn open(
        opts: WalOptions,
        store: Arc<dyn object_store::ObjectStore>,
        fence: Arc<Fence>,
        objects_through: Option<(u64, u64)>,
    ) -> Result<(Replay, impl FnOnce(KvMap) -> Result<Wal>)> {
        let (mut entries, dir) = local::Dir::open(&opts.dir)?;
        let (object_entries, objects) = object::Objects::open(
            store,
            fence.clone(),
            objects_through,
            opts.keep_found_objects,
        )
        .await?;
        entries.extend(object_entries);
        let start = move |kv: KvMap| -> Result<Wal> {
            let (tx, rx) = mpsc::unbounded_channel();
            let closing = Arc::new(AtomicBool::new(false));
            let health = Arc::new(WalHealth::default());
            // The object WAL's batching window already collects most
            // outputs with their input; only the local writer holds.
            let wake = Arc::new(GroupWake::new(
                opts.mode == WalMode::Local && !opts.group_hold.is_zero(),
            ));
            let stats = Arc::new(WalStats::default());
            let (worker, local) = match opts.mode {
                WalMode::Local => {
                    let t = dir.start(
                        rx,
                        kv,
                        local::WriterOptions {
                            closing: closing.clone(),
                            health: health.clone(),
                            segment_bytes: opts.segment_bytes,
                            group_bytes: opts.group_bytes,
                            fence,
                            wake: wake.clone(),
                            stats: stats.clone(),
                            group_hold: opts.group_hold,
                        },
                    )?;
                    (Worker::Thread(t), Some(dir))
                }
                WalMode::Object { window } => {
                    // Local segments left by an earlier local-mode run were
                    // replayed above; the object writer's first delete
                    // removes them via `dir`.
                    let t = objects.start(rx, kv, closing.clone(), window, opts.group_bytes);
                    (Worker::Task(t), Some(dir).filter(|d| d.has_leftovers()))
                }
            };
            Ok(Wal {
                tx,
                inflight: Arc::new(tokio::sync::Semaphore::new(MAX_INFLIGHT_BYTES)),
                closing,
                health,
                worker: parking_lot::Mutex::new(Some(worker)),
                local,
                objects,
                wake,
                stats,
            })
        };
        Ok((Replay { entries }, start))
    }

    /// Waits until `bytes` more may be queued. Hold the permit until the
    /// entry's completion runs.
    pub async fn reserve(&self, bytes: usize) -> Result<tokio::sync::OwnedSemaphorePermit> {
        let n = bytes.clamp(1, MAX_INFLIGHT_BYTES) as u32;
        self.inflight
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|_| StorageError::WalClosed)
    }

    /// [`reserve`](Wal::reserve) without waiting: `None` while the WAL's
    /// in-flight bytes are at their bound.
    pub fn try_reserve(&self, bytes: usize) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let n = bytes.clamp(1, MAX_INFLIGHT_BYTES) as u32;
        self.inflight.clone().try_acquire_many_owned(n).ok()
    }

    /// Fails with a retriable [`StorageError::WalIo`] while the local writer
    /// cannot write (disk full, I/O errors): an append queued now would only
    /// wait behind the failing group. Clears by itself once a retry succeeds.
    pub fn check_writable(&self) -> Result<()> {
        self.health.check()
    }

    /// The writer's health (shared; for metrics and tests).
    pub fn health(&self) -> &Arc<WalHealth> {
        &self.health
    }

    /// Queues an entry; `done` runs once it is durable. Entries of one
    /// partition must be queued in offset order (the caller holds the
    /// partition lock), which is why this never waits.
    pub fn append(&self, entry: WalEntry, done: Completion) {
        self.append_held(entry, done, None);
    }

    /// Like [`append`](Wal::append), with a hold: the local writer waits
    /// (briefly) for it before writing the entry's group, so that outputs
    /// queued meanwhile share the group (`hold.rs`).
    pub fn append_held(&self, entry: WalEntry, done: Completion, hold: Option<Hold>) {
        if let Err(mpsc::error::SendError(Command::Append(_, done, _))) =
            self.tx.send(Command::Append(entry, done, hold))
        {
            done(Err(StorageError::WalClosed));
        }
    }

    /// What gated readers wake the writer with.
    pub fn group_wake(&self) -> &Arc<GroupWake> {
        &self.wake
    }

    /// The local writer's group counts (zero for the object WAL).
    pub fn stats(&self) -> &WalStats {
        &self.stats
    }

    /// Seals what was written so far (after everything queued before it is
    /// durable).
    pub async fn roll(&self) -> Result<Sealed> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Roll(tx))
            .map_err(|_| StorageError::WalClosed)?;
        rx.await.map_err(|_| StorageError::WalClosed)
    }

    /// Deletes sealed WAL data up to `through`, plus anything replayed at
    /// open (by now uploaded). Returns how many files/objects went.
    pub async fn delete_through(&self, through: Option<u64>) -> Result<usize> {
        // Unlinking a large segment file can take milliseconds of blocking
        // filesystem work; keep it off the runtime's workers.
        let local = match &self.local {
            Some(d) => {
                let d = d.clone();
                let active = d.is_active();
                tokio::task::spawn_blocking(move || {
                    if active {
                        d.delete_through(through)
                    } else {
                        d.delete_leftovers()
                    }
                })
                .await
                .map_err(|e| StorageError::Invalid(format!("WAL cleanup task failed: {e}")))??
            }
            None => 0,
        };
        let objects_through = match &self.local {
            Some(d) if d.is_active() => None,
            _ => through,
        };
        Ok(local + self.objects.delete_through(objects_through).await?)
    }

    /// Stops the writer after it has written everything queued.
    pub async fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Command::Close);
        let worker = self.worker.lock().take();
        let failed = match worker {
            Some(Worker::Thread(t)) => t.join().is_err(),
            Some(Worker::Task(t)) => t.await.is_err(),
            None => false,
        };
        if failed {
            tracing::error!("the WAL writer panicked");
        }
    }
}

/// One group commit being collected: appends up to a byte limit, cut short
/// by a roll or a close (which must see everything queued before them
/// written first).
#[derive(Default)]
struct Group {
    entries: Vec<(WalEntry, Completion)>,
    /// What the writer waits for before writing (`hold.rs`).
    holds: Vec<Hold>,
    bytes: usize,
    roll: Option<oneshot::Sender<Sealed>>,
    close: bool,
}

impl Group {
    /// Adds a command; false once the group is complete.
    fn push(&mut self, cmd: Command, limit: usize) -> bool {
        match cmd {
            Command::Append(e, done, hold) => {
                self.bytes += codec::entry_len(&e);
                self.entries.push((e, done));
                self.holds.extend(hold);
                self.open(limit)
            }
            Command::Roll(reply) => {
                self.roll = Some(reply);
                false
            }
            Command::Close => {
                self.close = true;
                false
            }
        }
    }

    /// Whether more commands may join.
    fn open(&self, limit: usize) -> bool {
        self.bytes < limit && self.roll.is_none() && !self.close
    }

    /// The entries in WAL format, ready for one write.
    fn encode(&self) -> Bytes {
        let mut buf = bytes::BytesMut::with_capacity(self.bytes);
        for (e, _) in &self.entries {
            codec::encode_entry(e, &mut buf);
        }
        buf.freeze()
    }
}

/// Runs a written group's completions in order. `written` says whether the
/// group reached the disk or store; `outcome` is what the completions are
/// told (a written group may still fail to be acknowledged when ownership
/// cannot be confirmed). Key/value entries that were written are applied
/// either way, as a replay would apply them.
fn complete_group(
    kv: &mut KvMap,
    group: Vec<(WalEntry, Completion)>,
    written: bool,
    outcome: &Result<()>,
) {
    for (e, done) in group {
        if written {
            if let WalEntry::Kv { key, value } = &e {
                kv::apply(kv, key, value.as_deref());
            }
        }
        done(match outcome {
            Ok(()) => Ok(()),
            Err(e) => Err(shared_error(e)),
        });
    }
}

/// A copy of a group's error for each of its completions: fencing and an
/// unconfirmed ownership keep their meaning, anything else stopped the writer.
fn shared_error(e: &StorageError) -> StorageError {
    match e {
        StorageError::Fenced { ours, theirs, by } => StorageError::Fenced {
            ours: *ours,
            theirs: *theirs,
            by: by.clone(),
        },
        StorageError::OwnershipUnconfirmed { epoch, reason } => {
            StorageError::OwnershipUnconfirmed {
                epoch: *epoch,
                reason: reason.clone(),
            }
        }
        _ => StorageError::WalClosed,
    }
}

/// Whether the writer must stop after a group's outcome: anything but a
/// success or an ownership that could not be confirmed *yet*.
fn stops_writer(outcome: &Result<()>) -> bool {
    !matches!(
        outcome,
        Ok(()) | Err(StorageError::OwnershipUnconfirmed { .. })
    )
}

/// Refuses everything still queued (shutdown, or the writer gave up).
fn refuse_queued(rx: &mut mpsc::UnboundedReceiver<Command>) {
    rx.close();
    while let Ok(cmd) = rx.try_recv() {
        if let Command::Append(_, done, _) = cmd {
            done(Err(StorageError::WalClosed));
        }
    }
}

/// Backoff between retries of a failed write. A real pause while the disk or
/// store is failing, not a stand-in for synchronization.
fn next_backoff(b: Duration) -> Duration {
    (b * 2).min(Duration::from_secs(1))
}

#[cfg(test)]
mod tests;
