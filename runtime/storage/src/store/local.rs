//! The `file://` object store: object_store's [`LocalFileSystem`], except that
//! large whole-object PUTs (data objects, compacted segments) are written on
//! a low-priority thread with their writeback started in steps.
//!
//! Why: at 50 000 records/s an upload cycle writes a ~50 MB object and
//! `LocalFileSystem` fsyncs it in one call. That puts ~50 MB of writeback in
//! front of the disk the WAL fsyncs to, and every group commit queued behind
//! it waits: the broker bench's slow produce windows sat just before each
//! upload commit (design 0020). Here the object is written a step at a time;
//! after each step its writeback is started (`sync_file_range`), and the
//! step before it is waited for, so at most two steps are ever in the disk's
//! queue and a WAL fsync waits behind about 2 MiB instead of the whole object.
//! The final fsync finds almost nothing left to write. The copying runs on a
//! nice +10 thread so that it yields the CPU to the request path.
//!
//! What a PUT promises is unchanged: the object appears whole (written to a
//! staging file beside it, then renamed) and durable (file, rename and any
//! new directory fsync'd) when the PUT returns, as `with_fsync(true)` gives.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result,
};

use crate::pool::{Priority, ThreadPool};

/// Whole-object PUTs from this size on are written in steps; smaller ones
/// (manifests, small objects) go to `LocalFileSystem` as they are.
pub const STEPPED_PUT_MIN_BYTES: usize = 1 << 20;
/// Bytes written between writeback starts. Two steps at most are in the
/// disk's queue at once, which bounds what a WAL fsync waits behind.
const STEP_BYTES: u64 = 1 << 20;
/// The writer thread's niceness: below the request path, like detectors.
const WRITER_NICE: i32 = 10;

/// A local-directory object store that writes large objects gently (see the
/// module docs).
pub struct LocalStore {
    fs: LocalFileSystem,
    writer: ThreadPool,
    stepped_puts: AtomicU64,
}

impl LocalStore {
    /// Opens the directory `root` (it must exist) as an object store.
    pub fn new(root: &FsPath) -> Result<Self, crate::error::StorageError> {
        let invalid = |why: String| {
            crate::error::StorageError::Invalid(format!(
                "object store directory {}: {why}",
                root.display()
            ))
        };
        let fs = LocalFileSystem::new_with_prefix(root)
            .map_err(|e| invalid(e.to_string()))?
            .with_automatic_cleanup(true)
            // The WAL is deleted once its data is in objects and the
            // manifest, so those must survive a power loss, not only a
            // process crash.
            .with_fsync(true);
        let writer = ThreadPool::new(
            "vigil-obj-write",
            1,
            Priority {
                nice: WRITER_NICE,
                idle: false,
            },
        )
        .map_err(|e| invalid(format!("cannot start the writer thread: {e}")))?;
        Ok(LocalStore {
            fs,
            writer,
            stepped_puts: AtomicU64::new(0),
        })
    }

    /// PUTs written in steps on the writer thread so far.
    pub fn stepped_puts(&self) -> u64 {
        self.stepped_puts.load(Ordering::Relaxed)
    }

    async fn put_stepped(&self, location: &Path, payload: PutPayload) -> Result<PutResult> {
        let dest = self.fs.path_to_filesystem(location)?;
        let generic =
            |source: Box<dyn std::error::Error + Send + Sync>| object_store::Error::Generic {
                store: "LocalStore",
                source,
            };
        self.writer
            .run(move || write_stepped(&dest, &payload))
            .await
            .map_err(|e| generic(Box::new(e)))?
            .map_err(|e| generic(Box::new(e)))?;
        self.stepped_puts.fetch_add(1, Ordering::Relaxed);
        // The same e-tag `LocalFileSystem` would have returned (it is
        // derived from the file's metadata).
        let meta = self.fs.head(location).await?;
        Ok(PutResult {
            e_tag: meta.e_tag,
            version: meta.version,
            extensions: Default::default(),
        })
    }
}

/// Whether a PUT is a plain whole-object overwrite large enough to step.
/// Conditional PUTs keep `LocalFileSystem`'s own create/compare semantics.
fn stepped(payload: &PutPayload, opts: &PutOptions) -> bool {
    matches!(opts.mode, PutMode::Overwrite)
        && opts.attributes.is_empty()
        && opts.tags.encoded().is_empty()
        && payload.content_length() >= STEPPED_PUT_MIN_BYTES
}

/// Writes `payload` to `dest` durably, through a staging file beside it.
fn write_stepped(dest: &FsPath, payload: &PutPayload) -> io::Result<()> {
    let with_path =
        |p: &FsPath, e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", p.display()));
    let parent = dest.parent().ok_or_else(|| {
        io::Error::new(
            ErrorKind::InvalidInput,
            format!("{}: no parent directory", dest.display()),
        )
    })?;
    create_dirs_durably(parent).map_err(|e| with_path(parent, e))?;
    let (file, staging) = create_staging(dest)?;
    let written = (|| {
        let mut out = Stepped::new(file);
        for chunk in payload.iter() {
            out.write(chunk)?;
        }
        out.finish()?;
        std::fs::rename(&staging, dest)?;
        fsync_dir(parent)
    })();
    if let Err(e) = written {
        // The staging name is hidden from listings, but it holds disk space.
        let _ = std::fs::remove_file(&staging);
        return Err(with_path(dest, e));
    }
    Ok(())
}

/// A file being written whose writeback is started every [`STEP_BYTES`].
struct Stepped {
    file: File,
    written: u64,
    /// Writeback has been started for `..started`.
    started: u64,
    /// Writeback of `..waited` has completed.
    waited: u64,
}

impl Stepped {
    fn new(file: File) -> Self {
        Stepped {
            file,
            written: 0,
            started: 0,
            waited: 0,
        }
    }

    fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let room = (self.started + STEP_BYTES - self.written) as usize;
            let n = room.min(data.len());
            self.file.write_all(&data[..n])?;
            self.written += n as u64;
            data = &data[n..];
            if self.written - self.started >= STEP_BYTES {
                self.start_writeback(self.started..self.written)?;
                self.started = self.written;
                // Keep at most two steps in flight: wait for the older one.
                if self.started - self.waited > 2 * STEP_BYTES {
                    let older = self.waited..self.waited + STEP_BYTES;
                    self.wait_writeback(older)?;
                    self.waited += STEP_BYTES;
                }
            }
        }
        Ok(())
    }

    /// Makes the file durable (what is left of its data, and its size).
    fn finish(self) -> io::Result<()> {
        self.file.sync_all()
    }

    #[cfg(target_os = "linux")]
    fn start_writeback(&self, range: Range<u64>) -> io::Result<()> {
        self.sync_range(range, libc::SYNC_FILE_RANGE_WRITE)
    }

    #[cfg(target_os = "linux")]
    fn wait_writeback(&self, range: Range<u64>) -> io::Result<()> {
        self.sync_range(
            range,
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER,
        )
    }

    #[cfg(target_os = "linux")]
    fn sync_range(&self, range: Range<u64>, flags: libc::c_uint) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (
            libc::off64_t::try_from(range.start),
            libc::off64_t::try_from(range.end - range.start),
        ) else {
            return Ok(()); // beyond off64_t: the final fsync covers it
        };
        // SAFETY: the descriptor belongs to `self.file`, which is open for
        // the whole call; sync_file_range only schedules or waits for
        // writeback of that file's pages and reads no memory of ours.
        let rc = unsafe { libc::sync_file_range(self.file.as_raw_fd(), offset, len, flags) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    // Elsewhere the final fsync writes everything, as LocalFileSystem does.
    #[cfg(not(target_os = "linux"))]
    fn start_writeback(&self, _range: Range<u64>) -> io::Result<()> {
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn wait_writeback(&self, _range: Range<u64>) -> io::Result<()> {
        Ok(())
    }
}

/// Opens a new staging file `dest#N`: `LocalFileSystem` hides names with a
/// `#` and a number from listings, and cleans them up as its own.
fn create_staging(dest: &FsPath) -> io::Result<(File, PathBuf)> {
    for n in 1u32.. {
        let mut name = dest.as_os_str().to_owned();
        name.push(format!("#{n}"));
        let path = PathBuf::from(name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }
    Err(io::Error::other(format!(
        "{}: no free staging name",
        dest.display()
    )))
}

/// Creates `dir` and any missing parents, fsyncing each new directory's
/// parent so the entries survive a power loss.
fn create_dirs_durably(dir: &FsPath) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.exists() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    std::fs::create_dir_all(dir)?;
    for new in missing.iter().rev() {
        if let Some(parent) = new.parent() {
            fsync_dir(parent)?;
        }
    }
    Ok(())
}

fn fsync_dir(dir: &FsPath) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalStore").field("fs", &self.fs).finish()
    }
}

impl fmt::Display for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalStore({})", self.fs)
    }
}

impl ObjectStore for LocalStore {
    fn put_opts<'a, 'b, 'f>(
        &'a self,
        location: &'b Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> BoxFuture<'f, Result<PutResult>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        if stepped(&payload, &opts) {
            Box::pin(self.put_stepped(location, payload))
        } else {
            self.fs.put_opts(location, payload, opts)
        }
    }

    fn put_multipart_opts<'a, 'b, 'f>(
        &'a self,
        location: &'b Path,
        opts: PutMultipartOptions,
    ) -> BoxFuture<'f, Result<Box<dyn MultipartUpload>>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        self.fs.put_multipart_opts(location, opts)
    }

    fn get_opts<'a, 'b, 'f>(
        &'a self,
        location: &'b Path,
        options: GetOptions,
    ) -> BoxFuture<'f, Result<GetResult>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        self.fs.get_opts(location, options)
    }

    fn get_ranges<'a, 'b, 'c, 'f>(
        &'a self,
        location: &'b Path,
        ranges: &'c [Range<u64>],
    ) -> BoxFuture<'f, Result<Vec<Bytes>>>
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        Self: 'f,
    {
        self.fs.get_ranges(location, ranges)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.fs.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.fs.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.fs.list_with_offset(prefix, offset)
    }

    fn list_with_delimiter<'a, 'b, 'f>(
        &'a self,
        prefix: Option<&'b Path>,
    ) -> BoxFuture<'f, Result<ListResult>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        self.fs.list_with_delimiter(prefix)
    }

    fn copy_opts<'a, 'b, 'c, 'f>(
        &'a self,
        from: &'b Path,
        to: &'c Path,
        options: CopyOptions,
    ) -> BoxFuture<'f, Result<()>>
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        Self: 'f,
    {
        self.fs.copy_opts(from, to, options)
    }

    fn rename_opts<'a, 'b, 'c, 'f>(
        &'a self,
        from: &'b Path,
        to: &'c Path,
        options: RenameOptions,
    ) -> BoxFuture<'f, Result<()>>
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        Self: 'f,
    {
        self.fs.rename_opts(from, to, options)
    }
}
