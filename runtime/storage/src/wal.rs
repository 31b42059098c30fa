//! The local write-ahead log.
//!
//! One writer thread owns the active segment file. Appends arrive over a
//! channel; the writer takes everything queued (up to a byte limit), writes it
//! with one `write` and one `fdatasync` (group commit), then runs each entry's
//! completion in order. Completions advance high watermarks, so by the time
//! the writer handles its next command every partition reflects what is on
//! disk — the uploader relies on this when it seals a segment.
//!
//! A failed write (full disk, I/O error) is retried with backoff after the
//! file is truncated back to its last good length: the WAL stalls but never
//! drops or reorders an entry. Producers waiting on a stalled WAL time out
//! with a retriable error; their batches land once the disk recovers.
//!
//! Entry layout: `len:u32 crc32c:u32 payload`, where payload is
//! `1 topic_id:[u8;16] partition:i32 batch…` or
//! `2 key_len:u16 key has_value:u8 value…`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::error::{Result, StorageError};
use crate::kv::{self, KvMap};

const KIND_BATCH: u8 = 1;
const KIND_KV: u8 = 2;
const ENTRY_HEADER: usize = 8;
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

/// What a roll returns: everything in segments up to `sealed_through` is
/// durable, and `kv` is the key/value state exactly as of that point.
#[derive(Debug)]
pub struct Sealed {
    /// Highest sealed segment id (none if nothing was ever sealed); files
    /// with ids ≤ this can be deleted once their contents are uploaded.
    pub sealed_through: Option<u64>,
    /// Key/value snapshot consistent with the sealed segments.
    pub kv: KvMap,
}

enum Command {
    Append(WalEntry, Completion),
    Roll(oneshot::Sender<Sealed>),
    Close,
}

/// Handle to the WAL writer thread.
pub struct Wal {
    // Unbounded so that appends can be queued under a partition's synchronous
    // lock (which is what keeps a partition's entries in offset order);
    // `inflight` bounds the memory instead.
    tx: mpsc::UnboundedSender<Command>,
    inflight: Arc<tokio::sync::Semaphore>,
    closing: Arc<AtomicBool>,
    thread: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    dir: PathBuf,
}

/// What [`Wal::open`] found on disk.
pub struct Replay {
    /// Entries of all existing segments, in write order.
    pub entries: Vec<WalEntry>,
}

impl Wal {
    /// Opens the WAL in `dir`: reads every existing segment (truncating a torn
    /// tail), then starts the writer on a fresh segment. `kv` is the key/value
    /// state the writer starts from (manifest snapshot plus replay).
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        group_bytes: usize,
    ) -> Result<(Replay, impl FnOnce(KvMap) -> Result<Wal>)> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let mut ids = segment_ids(dir)?;
        ids.sort_unstable();
        let mut entries = Vec::new();
        for id in &ids {
            read_segment(&segment_path(dir, *id), &mut entries)?;
        }
        let next_id = ids.last().map_or(0, |l| l + 1);
        let dir = dir.to_path_buf();
        let start = move |kv: KvMap| -> Result<Wal> {
            let file = create_segment(&dir, next_id)?;
            let (tx, rx) = mpsc::unbounded_channel();
            let closing = Arc::new(AtomicBool::new(false));
            let mut writer = Writer {
                dir: dir.clone(),
                id: next_id,
                file,
                len: 0,
                segment_bytes,
                group_bytes,
                kv,
                closing: closing.clone(),
            };
            let thread = std::thread::Builder::new()
                .name("vigil-wal".into())
                .spawn(move || writer.run(rx))
                .map_err(|e| io_err(&dir, e))?;
            Ok(Wal {
                tx,
                inflight: Arc::new(tokio::sync::Semaphore::new(MAX_INFLIGHT_BYTES)),
                closing,
                thread: parking_lot::Mutex::new(Some(thread)),
                dir,
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

    /// Queues an entry; `done` runs once it is fsync'd. Entries of one
    /// partition must be queued in offset order (the caller holds the
    /// partition lock), which is why this never waits.
    pub fn append(&self, entry: WalEntry, done: Completion) {
        if let Err(mpsc::error::SendError(Command::Append(_, done))) =
            self.tx.send(Command::Append(entry, done))
        {
            done(Err(StorageError::WalClosed));
        }
    }

    /// Seals the active segment (after everything queued before it is durable)
    /// and starts a new one.
    pub async fn roll(&self) -> Result<Sealed> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Roll(tx))
            .map_err(|_| StorageError::WalClosed)?;
        rx.await.map_err(|_| StorageError::WalClosed)
    }

    /// Deletes sealed segment files with ids ≤ `through`.
    pub fn delete_through(&self, through: Option<u64>) -> Result<usize> {
        let Some(through) = through else {
            return Ok(0);
        };
        let mut n = 0;
        for id in segment_ids(&self.dir)? {
            if id <= through {
                let p = segment_path(&self.dir, id);
                std::fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Stops the writer after it has written everything queued.
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Command::Close);
        if let Some(t) = self.thread.lock().take() {
            if t.join().is_err() {
                tracing::error!("the WAL writer thread panicked");
            }
        }
    }
}

struct Writer {
    dir: PathBuf,
    id: u64,
    file: File,
    len: u64,
    segment_bytes: u64,
    group_bytes: usize,
    kv: KvMap,
    closing: Arc<AtomicBool>,
}

impl Writer {
    fn run(&mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        loop {
            let Some(first) = rx.blocking_recv() else {
                return;
            };
            let mut close = false;
            let mut group: Vec<(WalEntry, Completion)> = Vec::new();
            let mut roll = None;
            let mut bytes = 0usize;
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Append(e, done) => {
                        bytes += entry_len(&e);
                        group.push((e, done));
                    }
                    Command::Roll(reply) => {
                        roll = Some(reply);
                        break;
                    }
                    Command::Close => {
                        close = true;
                        break;
                    }
                }
                if bytes >= self.group_bytes {
                    break;
                }
                next = rx.try_recv().ok();
            }
            if !group.is_empty() {
                let ok = self.write_group(&group);
                for (e, done) in group {
                    if ok {
                        if let WalEntry::Kv { key, value } = &e {
                            kv::apply(&mut self.kv, key, value.as_deref());
                        }
                        done(Ok(()));
                    } else {
                        done(Err(StorageError::WalClosed));
                    }
                }
                if !ok {
                    // Closing while the disk kept failing: fail whatever is
                    // still queued rather than leave producers waiting.
                    rx.close();
                    while let Ok(cmd) = rx.try_recv() {
                        if let Command::Append(_, done) = cmd {
                            done(Err(StorageError::WalClosed));
                        }
                    }
                    return;
                }
            }
            if let Some(reply) = roll {
                match self.roll() {
                    Ok(sealed_through) => {
                        let _ = reply.send(Sealed {
                            sealed_through,
                            kv: self.kv.clone(),
                        });
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot roll the WAL; will retry on the next upload")
                    }
                }
            } else if self.len >= self.segment_bytes {
                if let Err(e) = self.roll() {
                    tracing::error!(error = %e, "cannot roll the WAL");
                }
            }
            if close {
                // Everything queued before Close has been written; anything
                // queued after it was raced by shutdown and is refused.
                rx.close();
                while let Ok(cmd) = rx.try_recv() {
                    if let Command::Append(_, done) = cmd {
                        done(Err(StorageError::WalClosed));
                    }
                }
                return;
            }
        }
    }

    /// Writes and fsyncs the group, retrying with backoff on failure. Returns
    /// false only when the broker is closing and the disk still fails.
    fn write_group(&mut self, group: &[(WalEntry, Completion)]) -> bool {
        let mut buf = BytesMut::with_capacity(group.iter().map(|(e, _)| entry_len(e)).sum());
        for (e, _) in group {
            encode_entry(e, &mut buf);
        }
        let mut backoff = Duration::from_millis(10);
        loop {
            let res = self
                .file
                .write_all(&buf)
                .and_then(|()| self.file.sync_data());
            match res {
                Ok(()) => {
                    self.len += buf.len() as u64;
                    return true;
                }
                Err(e) => {
                    tracing::error!(
                        segment = %segment_path(&self.dir, self.id).display(),
                        error = %e,
                        "WAL write failed; truncating to the last good entry and retrying"
                    );
                    let _ = self.file.set_len(self.len);
                    if self.closing.load(Ordering::SeqCst) {
                        return false;
                    }
                    // A real backoff while the disk is failing, not a stand-in
                    // for synchronization.
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    if let Err(e) = self.reopen() {
                        tracing::error!(error = %e, "cannot reopen the WAL segment");
                    }
                }
            }
        }
    }

    fn reopen(&mut self) -> Result<()> {
        let path = segment_path(&self.dir, self.id);
        let mut f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        f.set_len(self.len).map_err(|e| io_err(&path, e))?;
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(self.len))
            .map_err(|e| io_err(&path, e))?;
        self.file = f;
        Ok(())
    }

    /// Seals the active segment and returns the highest sealed id. An empty
    /// active segment is kept (an idle broker would otherwise create and
    /// delete a file every upload interval); then only older ids are sealed.
    fn roll(&mut self) -> Result<Option<u64>> {
        if self.len == 0 {
            return Ok(self.id.checked_sub(1));
        }
        let sealed = self.id;
        let file = create_segment(&self.dir, sealed + 1)?;
        self.file = file;
        self.id = sealed + 1;
        self.len = 0;
        Ok(Some(sealed))
    }
}

fn entry_len(e: &WalEntry) -> usize {
    ENTRY_HEADER
        + match e {
            WalEntry::Batch { batch, .. } => 1 + 16 + 4 + batch.len(),
            WalEntry::Kv { key, value } => {
                1 + 2 + key.len() + 1 + value.as_ref().map_or(0, |v| v.len())
            }
        }
}

fn encode_entry(e: &WalEntry, buf: &mut BytesMut) {
    let start = buf.len();
    buf.put_u32(0);
    buf.put_u32(0);
    match e {
        WalEntry::Batch {
            topic_id,
            partition,
            batch,
        } => {
            buf.put_u8(KIND_BATCH);
            buf.put_slice(topic_id.as_bytes());
            buf.put_i32(*partition);
            buf.put_slice(batch);
        }
        WalEntry::Kv { key, value } => {
            buf.put_u8(KIND_KV);
            // Keys are short names built by the broker; longer ones are cut
            // rather than corrupting the framing.
            let key = &key.as_bytes()[..key.len().min(u16::MAX as usize)];
            buf.put_u16(key.len() as u16);
            buf.put_slice(key);
            match value {
                Some(v) => {
                    buf.put_u8(1);
                    buf.put_slice(v.as_bytes());
                }
                None => buf.put_u8(0),
            }
        }
    }
    let payload_len = (buf.len() - start - ENTRY_HEADER) as u32;
    let crc = crc32c::crc32c(&buf[start + ENTRY_HEADER..]);
    buf[start..start + 4].copy_from_slice(&payload_len.to_be_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// Decodes the entries of one segment; stops at (and truncates) a torn or
/// corrupt tail, which is what a crash in the middle of a write leaves.
fn read_segment(path: &Path, out: &mut Vec<WalEntry>) -> Result<()> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(|e| io_err(path, e))?;
    let mut pos = 0usize;
    while pos + ENTRY_HEADER <= data.len() {
        let len =
            u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let crc = u32::from_be_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
        let body_start = pos + ENTRY_HEADER;
        let Some(body) = data.get(body_start..body_start + len) else {
            break;
        };
        if crc32c::crc32c(body) != crc {
            break;
        }
        match decode_payload(body) {
            Some(e) => out.push(e),
            None => break,
        }
        pos = body_start + len;
    }
    if pos < data.len() {
        tracing::warn!(
            segment = %path.display(),
            valid_bytes = pos,
            dropped_bytes = data.len() - pos,
            "WAL segment has a torn tail (crash during a write); truncating it"
        );
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io_err(path, e))?;
        f.set_len(pos as u64).map_err(|e| io_err(path, e))?;
        f.sync_all().map_err(|e| io_err(path, e))?;
    }
    Ok(())
}

fn decode_payload(body: &[u8]) -> Option<WalEntry> {
    match *body.first()? {
        KIND_BATCH => {
            let id: [u8; 16] = body.get(1..17)?.try_into().ok()?;
            let p = body.get(17..21)?;
            Some(WalEntry::Batch {
                topic_id: Uuid::from_bytes(id),
                partition: i32::from_be_bytes([p[0], p[1], p[2], p[3]]),
                batch: Bytes::copy_from_slice(body.get(21..)?),
            })
        }
        KIND_KV => {
            let kl = body.get(1..3)?;
            let kl = u16::from_be_bytes([kl[0], kl[1]]) as usize;
            let key = std::str::from_utf8(body.get(3..3 + kl)?).ok()?.to_string();
            let value = match *body.get(3 + kl)? {
                0 => None,
                _ => Some(std::str::from_utf8(body.get(4 + kl..)?).ok()?.to_string()),
            };
            Some(WalEntry::Kv { key, value })
        }
        _ => None,
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.wal"))
}

fn segment_ids(dir: &Path) -> Result<Vec<u64>> {
    let rd = std::fs::read_dir(dir).map_err(|e| io_err(dir, e))?;
    let mut ids = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| io_err(dir, e))?;
        let name = ent.file_name();
        if let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse().ok())
        {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn create_segment(dir: &Path, id: u64) -> Result<File> {
    let path = segment_path(dir, id);
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| io_err(&path, e))?;
    // The new file's directory entry must be durable before entries written
    // to it are acknowledged.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))?;
    Ok(f)
}

fn io_err(path: &Path, source: std::io::Error) -> StorageError {
    StorageError::WalIo {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests;
