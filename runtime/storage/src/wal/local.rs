//! The file backend: numbered segment files in the data dir.
//!
//! A sealed segment whose contents are uploaded is recycled rather than
//! deleted: zeroed in place, made durable, and kept as the spare that the
//! next roll renames into place (docs/design/0020, "Recycled WAL
//! segments"). Writes into a file whose blocks exist need no block
//! allocation, so their `fdatasync` is a data flush without an ext4
//! journal commit, and no blocks are freed (and discarded) under the
//! writer's feet. The zeros make recycling safe: an entry header of zeros
//! ends replay (no entry has an empty payload), so nothing of the
//! segment's earlier life can ever replay as part of the new one.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::codec::read_entries;
use super::{
    complete_group, next_backoff, refuse_queued, stops_writer, Command, Group, Sealed, WalEntry,
    WalHealth,
};
use crate::error::{Result, StorageError};
use crate::fence::Fence;
use crate::kv::KvMap;

/// The WAL directory. Cheap to clone: clones share the `active` flag.
#[derive(Clone)]
pub(super) struct Dir {
    dir: PathBuf,
    next_id: u64,
    /// Whether a writer runs here (local mode) or the directory only holds
    /// leftovers to delete (object mode).
    active: Arc<AtomicBool>,
}

impl Dir {
    /// Reads every existing segment (truncating a torn tail).
    pub(super) fn open(dir: &Path) -> Result<(Vec<WalEntry>, Dir)> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let ids = segment_ids(dir)?;
        let mut entries = Vec::new();
        for id in &ids {
            read_segment(&segment_path(dir, *id), &mut entries)?;
        }
        let next_id = ids.last().map_or(0, |l| l + 1);
        Ok((
            entries,
            Dir {
                dir: dir.to_path_buf(),
                next_id,
                active: Arc::new(AtomicBool::new(false)),
            },
        ))
    }

    /// Starts the writer thread on a fresh segment.
    pub(super) fn start(
        &self,
        rx: mpsc::UnboundedReceiver<Command>,
        kv: KvMap,
        opts: WriterOptions,
    ) -> Result<std::thread::JoinHandle<()>> {
        self.active.store(true, Ordering::SeqCst);
        let file = new_segment(&self.dir, self.next_id)?;
        let mut writer = Writer {
            dir: self.dir.clone(),
            id: self.next_id,
            file,
            len: 0,
            segment_bytes: opts.segment_bytes,
            group_bytes: opts.group_bytes,
            kv,
            closing: opts.closing,
            health: opts.health,
            backlog: VecDeque::new(),
            fence: opts.fence,
            wake: opts.wake,
            stats: opts.stats,
            group_hold: opts.group_hold,
        };
        std::thread::Builder::new()
            .name("vigil-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| io_err(&self.dir, e))
    }

    /// Whether the local writer runs here.
    pub(super) fn is_active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    /// Whether segments from an earlier run exist.
    pub(super) fn has_leftovers(&self) -> bool {
        self.next_id > 0
    }

    /// Deletes every segment (object mode: they were replayed and uploaded).
    pub(super) fn delete_leftovers(&self) -> Result<usize> {
        self.delete_through(self.next_id.checked_sub(1))
    }

    /// Deletes sealed segment files with ids ≤ `through`, oldest first: a
    /// crash part-way leaves a suffix of the WAL, never an older segment
    /// whose key/value entries would replay over newer ones. Each is renamed
    /// out of the WAL before it is shrunk and removed (`gentle`), so a crash
    /// never leaves a shortened segment to replay either; names left by such
    /// a crash are removed here too.
    pub(super) fn delete_through(&self, through: Option<u64>) -> Result<usize> {
        let remove = |d: &Path| crate::gentle::remove_file(d).map_err(|e| io_err(d, e));
        let spare = self.dir.join(SPARE);
        // Without a writer here (object mode) a spare would never be used.
        if !self.is_active() {
            remove(&spare)?;
        }
        let Some(through) = through else {
            return Ok(0);
        };
        let listing = list(&self.dir)?;
        for d in &listing.deleting {
            remove(d)?;
        }
        let mut recycle = self.is_active() && !spare.exists();
        let newest = listing
            .ids
            .iter()
            .copied()
            .filter(|id| *id <= through)
            .max();
        let mut n = 0;
        for id in listing.ids {
            if id <= through {
                let (p, d) = (segment_path(&self.dir, id), deleting_path(&self.dir, id));
                std::fs::rename(&p, &d).map_err(|e| io_err(&p, e))?;
                if recycle && Some(id) == newest {
                    recycle = false;
                    match make_spare(&d, &spare) {
                        Ok(true) => {
                            n += 1;
                            continue;
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(segment = %d.display(), error = %e, "cannot recycle a WAL segment; deleting it");
                        }
                    }
                }
                remove(&d)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// What the writer thread is started with.
pub(super) struct WriterOptions {
    /// Set when the broker shuts down: a failing write then gives up.
    pub closing: Arc<AtomicBool>,
    /// Where the writer reports failing and recovered writes.
    pub health: Arc<WalHealth>,
    /// Segment size after which the writer rolls.
    pub segment_bytes: u64,
    /// Most bytes one group writes.
    pub group_bytes: usize,
    /// Asked before acknowledging (see [`crate::fence`]).
    pub fence: Arc<Fence>,
    /// What wakes the writer waiting on a group's holds.
    pub wake: Arc<super::GroupWake>,
    /// Where the writer counts its groups.
    pub stats: Arc<super::WalStats>,
    /// Longest a group waits for its holds.
    pub group_hold: std::time::Duration,
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
    /// Asked before acknowledging: a paused broker must not ack after
    /// another one claimed the log.
    fence: Arc<Fence>,
    health: Arc<WalHealth>,
    /// Commands taken off the channel while a write was failing (so that
    /// rolls behind them could be answered); handled before the channel.
    backlog: VecDeque<Command>,
    wake: Arc<super::GroupWake>,
    stats: Arc<super::WalStats>,
    group_hold: std::time::Duration,
}

impl Writer {
    fn run(&mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        loop {
            let Some(first) = self.next(&mut rx, true) else {
                return;
            };
            let mut group = Group::default();
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                if !group.push(cmd, self.group_bytes) {
                    break;
                }
                next = self.next(&mut rx, false);
            }
            if !group.holds.is_empty() {
                // Cloned only for held groups: the closure below borrows
                // the writer.
                let (wake, stats) = (self.wake.clone(), self.stats.clone());
                super::hold::wait_for_holds(
                    &mut group,
                    &wake,
                    &stats,
                    self.group_hold,
                    self.group_bytes,
                    &mut rx,
                    |rx| self.next(rx, false),
                );
            }
            let body = group.encode();
            let Group {
                entries,
                roll,
                close,
                ..
            } = group;
            if !entries.is_empty() {
                self.stats
                    .groups
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let written = self.write_group(&body, &mut rx);
                let ok = written.is_ok();
                let outcome = written.and_then(|()| self.fence.confirm_blocking());
                complete_group(&mut self.kv, entries, ok, &outcome);
                if stops_writer(&outcome) {
                    // Closing while the disk kept failing: refuse whatever is
                    // still queued rather than leave producers waiting.
                    self.refuse_all(&mut rx);
                    return;
                }
            }
            if let Some(reply) = roll {
                self.answer_roll(reply);
            } else if self.len >= self.segment_bytes {
                if let Err(e) = self.roll() {
                    tracing::error!(error = %e, "cannot roll the WAL");
                }
            }
            if close {
                // Everything queued before Close has been written; anything
                // queued after it was raced by shutdown and is refused.
                self.refuse_all(&mut rx);
                return;
            }
        }
    }

    /// The next command: the backlog first, then the channel.
    fn next(&mut self, rx: &mut mpsc::UnboundedReceiver<Command>, block: bool) -> Option<Command> {
        if let Some(cmd) = self.backlog.pop_front() {
            return Some(cmd);
        }
        if block {
            rx.blocking_recv()
        } else {
            rx.try_recv().ok()
        }
    }

    fn refuse_all(&mut self, rx: &mut mpsc::UnboundedReceiver<Command>) {
        for cmd in self.backlog.drain(..) {
            if let Command::Append(_, done, _) = cmd {
                done(Err(StorageError::WalClosed));
            }
        }
        refuse_queued(rx);
    }

    fn answer_roll(&mut self, reply: oneshot::Sender<Sealed>) {
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
    }

    /// While a write is failing: takes everything queued off the channel
    /// (appends wait in the backlog, in order) and answers the rolls among
    /// them at once. Sealing here is safe: the sealed segments hold exactly
    /// the groups already written, whose completions (high watermarks,
    /// key/value state) have run, which is all an upload takes. Without this
    /// the uploader, the one thing that can free WAL space, would wait
    /// behind the failing group for good.
    fn serve_rolls(&mut self, rx: &mut mpsc::UnboundedReceiver<Command>) {
        while let Ok(cmd) = rx.try_recv() {
            match cmd {
                Command::Roll(reply) => self.answer_roll(reply),
                other => self.backlog.push_back(other),
            }
        }
    }

    /// Writes and fsyncs the group, retrying with backoff on failure (the
    /// retry is the probe that notices space came back). Fails only when
    /// the broker is closing and the disk still fails.
    fn write_group(&mut self, buf: &[u8], rx: &mut mpsc::UnboundedReceiver<Command>) -> Result<()> {
        let mut backoff = Duration::from_millis(10);
        loop {
            // At the segment's logical end: a recycled file is longer.
            let res = std::os::unix::fs::FileExt::write_all_at(&self.file, buf, self.len)
                .and_then(|()| self.file.sync_data());
            match res {
                Ok(()) => {
                    self.len += buf.len() as u64;
                    if self.health.ok() {
                        tracing::info!(segment = %segment_path(&self.dir, self.id).display(), "WAL writes recovered");
                    }
                    return Ok(());
                }
                Err(e) => {
                    let path = segment_path(&self.dir, self.id);
                    if !self.health.is_failing() {
                        tracing::error!(
                            segment = %path.display(),
                            error = %e,
                            "WAL write failed; refusing new appends, truncating to the last good entry and retrying"
                        );
                    }
                    self.health.failed(&path, &e);
                    let _ = self.file.set_len(self.len);
                    if self.closing.load(Ordering::SeqCst) {
                        return Err(io_err(&path, e));
                    }
                    self.serve_rolls(rx);
                    std::thread::sleep(backoff);
                    backoff = next_backoff(backoff);
                    self.serve_rolls(rx);
                    if let Err(e) = self.reopen() {
                        tracing::warn!(error = %e, "cannot reopen the WAL segment");
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
        let file = new_segment(&self.dir, sealed + 1)?;
        self.file = file;
        self.id = sealed + 1;
        self.len = 0;
        Ok(Some(sealed))
    }
}

/// Decodes the entries of one segment, streaming; stops at (and truncates)
/// a torn or corrupt tail, which is what a crash in the middle of a write
/// leaves.
fn read_segment(path: &Path, out: &mut Vec<WalEntry>) -> Result<()> {
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    let size = f.metadata().map_err(|e| io_err(path, e))?.len();
    let mut r = std::io::BufReader::with_capacity(1 << 20, f);
    let valid = read_entries(&mut r, size, out).map_err(|e| io_err(path, e))?;
    if valid < size {
        if zeroed_from(path, valid).map_err(|e| io_err(path, e))? {
            tracing::debug!(segment = %path.display(), valid_bytes = valid, "dropping a recycled WAL segment's unused tail");
        } else {
            tracing::warn!(
                segment = %path.display(),
                valid_bytes = valid,
                dropped_bytes = size - valid,
                "WAL segment has a torn tail (crash during a write); truncating it"
            );
        }
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io_err(path, e))?;
        f.set_len(valid).map_err(|e| io_err(path, e))?;
        f.sync_all().map_err(|e| io_err(path, e))?;
    }
    Ok(())
}

pub(super) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.wal"))
}

/// Where a segment goes while it is being deleted (never replayed).
fn deleting_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.wal.deleting"))
}

/// What a WAL directory holds: segment ids, oldest first (`read_dir` has
/// no order), and segments a crash left half-deleted.
struct Listing {
    ids: Vec<u64>,
    deleting: Vec<PathBuf>,
}

fn list(dir: &Path) -> Result<Listing> {
    let rd = std::fs::read_dir(dir).map_err(|e| io_err(dir, e))?;
    let mut out = Listing {
        ids: Vec::new(),
        deleting: Vec::new(),
    };
    for ent in rd {
        let ent = ent.map_err(|e| io_err(dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.ends_with(".wal.deleting") {
            out.deleting.push(ent.path());
        } else if let Some(id) = name.strip_suffix(".wal").and_then(|n| n.parse().ok()) {
            out.ids.push(id);
        }
    }
    out.ids.sort_unstable();
    Ok(out)
}

/// Ids of the segment files in `dir`, oldest first.
pub(super) fn segment_ids(dir: &Path) -> Result<Vec<u64>> {
    Ok(list(dir)?.ids)
}

/// The zeroed segment kept for the next roll. Not named `*.wal`, so it is
/// never replayed.
const SPARE: &str = "spare.wal.zeroed";

/// Sealed segments up to this size are recycled; zeroing a larger one
/// would cost more writes than its delete saves.
const RECYCLE_MAX_BYTES: u64 = 64 << 20;

/// Bytes zeroed per step, each made durable before the next, so the disk
/// queue never holds more than one step ahead of the WAL's own writes.
const ZERO_STEP: usize = 1 << 20;

/// Zeroes `deleting` (a segment renamed out of the WAL) in place, makes
/// the zeros durable, then renames it to `spare`. Returns `false` (nothing
/// done) for a segment too large to recycle. A crash before the rename
/// leaves the `.deleting` name, which the next cleanup removes; after it,
/// a spare that holds zeros only.
fn make_spare(deleting: &Path, spare: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let f = OpenOptions::new().write(true).open(deleting)?;
    let len = f.metadata()?.len();
    if len == 0 || len > RECYCLE_MAX_BYTES {
        return Ok(false);
    }
    let zeros = vec![0u8; ZERO_STEP];
    let mut at = 0u64;
    while at < len {
        let n = usize::try_from(len - at).map_or(ZERO_STEP, |left| left.min(ZERO_STEP));
        f.write_all_at(&zeros[..n], at)?;
        f.sync_data()?;
        at += n as u64;
    }
    std::fs::rename(deleting, spare)?;
    Ok(true)
}

/// Whether everything in `path` from `at` on is zero bytes (the unused
/// tail of a recycled segment, as opposed to a torn write).
fn zeroed_from(path: &Path, at: u64) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(at))?;
    let mut r = std::io::BufReader::with_capacity(1 << 20, f);
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(true);
        }
        if buf[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
    }
}

/// Segment `id`: the spare renamed into place if there is one (its blocks
/// exist, see the module docs), else a new file.
fn new_segment(dir: &Path, id: u64) -> Result<File> {
    let path = segment_path(dir, id);
    let fresh = match std::fs::rename(dir.join(SPARE), &path) {
        Ok(()) => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot take the spare WAL segment; creating a new one");
            true
        }
    };
    open_segment(dir, &path, fresh)
}

/// Opens segment `path` for writing, creating it if `fresh`.
fn open_segment(dir: &Path, path: &Path, fresh: bool) -> Result<File> {
    let f = OpenOptions::new()
        .create(fresh)
        .append(fresh)
        .write(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    // The segment's directory entry (a new file, or the spare's new name)
    // must be durable before entries written to it are acknowledged.
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
