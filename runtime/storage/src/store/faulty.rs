//! Fault injection around an object store — **for tests and recovery drills
//! only**; nothing in the normal broker path wraps its store in this.
//!
//! [`FaultyStore`] forwards to the store it wraps until its [`FaultControl`]
//! says otherwise. Faults are set per [`FaultKind`]: reads (get, head, list)
//! and writes (put, multipart, delete, copy, rename). Each call, in order:
//!
//! 1. waits while [`FaultControl::hang`] is on for its kind (it resumes as soon
//!    as the hang is lifted: a `watch` channel, not polling);
//! 2. sleeps for [`FaultControl::delay`] (simulated store latency);
//! 3. fails without reaching the inner store if [`FaultControl::fail_all`] is on
//!    or a [`FaultControl::fail_next`] budget remains;
//! 4. calls the inner store; a write that succeeded there is then reported as
//!    failed while a [`FaultControl::fail_after_write_next`] budget remains —
//!    the ambiguous outcome an S3 client sees when a response times out.
//!
//! Injected errors are `object_store::Error::Generic { store: "faulty", .. }`
//! whose source is an [`InjectedFault`]; [`InjectedFault::find`] recognises
//! them.
//!
//! Streams (`list`, `delete_stream`) apply the faults when first polled (list)
//! or per location (delete). A delete failed before the request reaches the
//! inner store as an error item in its input; `InMemory` and `LocalFileSystem`
//! report it in that location's place, while S3's bulk delete drops the rest of
//! that batch. A multipart part checks `fail_next`/`fail_all`
//! when `put_part` is called (it is synchronous) and hangs/delays when its
//! future is polled. Aborts are never faulted: they are cleanup.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};
use parking_lot::Mutex;
use tokio::sync::watch;

/// Which operations a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// get, get_range(s), head, list.
    Read,
    /// put, multipart (start, parts, completion), delete, copy, rename.
    Write,
}

/// How many faults were injected, per [`FaultKind`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Calls failed before reaching the inner store.
    pub failed: u64,
    /// Writes applied by the inner store but reported as failed.
    pub failed_after_write: u64,
    /// Calls delayed.
    pub delayed: u64,
    /// Calls that found a hang in place and waited for it to lift.
    pub hung: u64,
}

/// The error an injected fault carries, as the source of
/// `object_store::Error::Generic { store: "faulty", .. }`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectedFault {
    /// The call failed without reaching the inner store.
    #[error("injected fault: {op} of {path:?} failed before reaching the store")]
    BeforeRequest {
        /// Operation, e.g. `put`.
        op: &'static str,
        /// Object key (or list prefix).
        path: String,
    },
    /// The inner store applied the write, but the caller was told it failed.
    #[error("injected fault: {op} of {path:?} was applied by the store but its response was lost")]
    AfterWrite {
        /// Operation, e.g. `put`.
        op: &'static str,
        /// Object key.
        path: String,
    },
}

impl InjectedFault {
    /// The injected fault behind `err`, if it is one.
    pub fn find(err: &object_store::Error) -> Option<&InjectedFault> {
        match err {
            object_store::Error::Generic {
                store: "faulty",
                source,
            } => source.downcast_ref::<InjectedFault>(),
            _ => None,
        }
    }

    fn into_error(self) -> object_store::Error {
        object_store::Error::Generic {
            store: "faulty",
            source: Box::new(self),
        }
    }
}

#[derive(Debug, Default)]
struct KindFaults {
    fail_next: u64,
    fail_all: bool,
    delay: Duration,
}

#[derive(Debug, Default)]
struct State {
    kinds: [KindFaults; 2],
    /// Faults apply only to keys (or list prefixes) under this prefix.
    scope: Option<String>,
    /// Puts run in a task of their own, which the caller dropping its
    /// future does not stop.
    detach_puts: bool,
    fail_after_write_next: u64,
    counts: [FaultCounts; 2],
    /// Whole-object GETs per key, for tests that check what a read path
    /// fetches more than once.
    gets: std::collections::HashMap<String, u64>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Whether calls of each kind hang; a channel so waiters wake on release.
    hang: [watch::Sender<bool>; 2],
}

impl Shared {
    /// Whether the faults apply to a call on `path`.
    fn in_scope(&self, path: &str) -> bool {
        match &self.state.lock().scope {
            Some(prefix) => path.starts_with(prefix.as_str()),
            None => true,
        }
    }

    /// Hang and delay, as configured for `kind`.
    async fn stall(&self, kind: FaultKind) {
        let mut hang = self.hang[kind as usize].subscribe();
        let hung = *hang.borrow_and_update();
        if hung {
            self.state.lock().counts[kind as usize].hung += 1;
            // Errs only if the sender is dropped, and `self` owns it.
            let _ = hang.wait_for(|on| !*on).await;
        }
        let delay = self.state.lock().kinds[kind as usize].delay;
        if !delay.is_zero() {
            self.state.lock().counts[kind as usize].delayed += 1;
            tokio::time::sleep(delay).await;
        }
    }

    /// Consumes one injected failure of `kind`, if any is due.
    fn take_failure(&self, kind: FaultKind, op: &'static str, path: &str) -> Result<()> {
        let mut state = self.state.lock();
        let faults = &mut state.kinds[kind as usize];
        let fail = if faults.fail_all {
            true
        } else if faults.fail_next > 0 {
            faults.fail_next -= 1;
            true
        } else {
            false
        };
        if !fail {
            return Ok(());
        }
        state.counts[kind as usize].failed += 1;
        Err(InjectedFault::BeforeRequest {
            op,
            path: path.to_string(),
        }
        .into_error())
    }

    /// Everything that happens before a call reaches the inner store.
    async fn before(&self, kind: FaultKind, op: &'static str, path: &str) -> Result<()> {
        if !self.in_scope(path) {
            return Ok(());
        }
        self.stall(kind).await;
        self.take_failure(kind, op, path)
    }

    /// Turns a successful write into an error while the budget lasts.
    fn after_write<T>(&self, op: &'static str, path: &str, result: Result<T>) -> Result<T> {
        let value = result?;
        if !self.in_scope(path) {
            return Ok(value);
        }
        let mut state = self.state.lock();
        if state.fail_after_write_next == 0 {
            return Ok(value);
        }
        state.fail_after_write_next -= 1;
        state.counts[FaultKind::Write as usize].failed_after_write += 1;
        Err(InjectedFault::AfterWrite {
            op,
            path: path.to_string(),
        }
        .into_error())
    }
}

/// Switches the faults of a [`FaultyStore`] at runtime. Cheap to clone; every
/// clone controls the same store.
#[derive(Debug, Clone)]
pub struct FaultControl {
    shared: Arc<Shared>,
}

impl FaultControl {
    /// Fails the next `n` calls of `kind` (replacing any remaining budget).
    pub fn fail_next(&self, kind: FaultKind, n: u64) {
        self.shared.state.lock().kinds[kind as usize].fail_next = n;
    }

    /// Fails every call of `kind` while `on`.
    pub fn fail_all(&self, kind: FaultKind, on: bool) {
        self.shared.state.lock().kinds[kind as usize].fail_all = on;
    }

    /// Adds `delay` of latency to every call of `kind`; `Duration::ZERO` turns
    /// it off. Calls already sleeping keep their delay.
    pub fn delay(&self, kind: FaultKind, delay: Duration) {
        self.shared.state.lock().kinds[kind as usize].delay = delay;
    }

    /// While `on`, calls of `kind` block before reaching the inner store;
    /// turning it off resumes them at once.
    pub fn hang(&self, kind: FaultKind, on: bool) {
        // `send_replace` stores the value even when no call is waiting.
        self.shared.hang[kind as usize].send_replace(on);
    }

    /// The next `n` writes that succeed in the inner store are reported to
    /// the caller as failed (replacing any remaining budget).
    pub fn fail_after_write_next(&self, n: u64) {
        self.shared.state.lock().fail_after_write_next = n;
    }

    /// Limits every fault to calls on keys (or list prefixes) starting with
    /// `prefix`; `None` applies them everywhere again.
    pub fn scope(&self, prefix: Option<&str>) {
        self.shared.state.lock().scope = prefix.map(str::to_string);
    }

    /// While `on`, each put runs in a task of its own: a caller that stops
    /// waiting (drops its future) does not stop it, and it still lands once
    /// a hang lifts — as an S3 PUT that has left the client does.
    pub fn detach_puts(&self, on: bool) {
        self.shared.state.lock().detach_puts = on;
    }

    /// Turns every fault off and releases hung calls. Counts are kept.
    pub fn clear(&self) {
        {
            let mut state = self.shared.state.lock();
            state.kinds = Default::default();
            state.fail_after_write_next = 0;
            state.scope = None;
            state.detach_puts = false;
        }
        self.hang(FaultKind::Read, false);
        self.hang(FaultKind::Write, false);
    }

    /// Faults injected so far into calls of `kind`.
    pub fn counts(&self, kind: FaultKind) -> FaultCounts {
        self.shared.state.lock().counts[kind as usize]
    }

    /// GET calls so far per object key, for the keys starting with
    /// `prefix` (whether they succeeded or not).
    pub fn gets_under(&self, prefix: &str) -> Vec<(String, u64)> {
        let state = self.shared.state.lock();
        let mut out: Vec<_> = state
            .gets
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        out.sort();
        out
    }
}

/// An [`ObjectStore`] that injects the faults its [`FaultControl`] asks for
/// (see the module docs). For tests and recovery drills only.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    shared: Arc<Shared>,
}

impl FaultyStore {
    /// Wraps `inner`, with no fault switched on.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        let shared = Shared {
            state: Mutex::new(State::default()),
            hang: [watch::Sender::new(false), watch::Sender::new(false)],
        };
        Self {
            inner,
            shared: Arc::new(shared),
        }
    }

    /// A handle that switches this store's faults.
    pub fn control(&self) -> FaultControl {
        FaultControl {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

/// A put through the faults of `shared`.
async fn put_with_faults(
    shared: &Shared,
    inner: &dyn ObjectStore,
    location: &Path,
    payload: PutPayload,
    opts: PutOptions,
) -> Result<PutResult> {
    let path = location.as_ref();
    shared.before(FaultKind::Write, "put", path).await?;
    let result = inner.put_opts(location, payload, opts).await;
    shared.after_write("put", path, result)
}

fn get_op(options: &GetOptions) -> &'static str {
    if options.head {
        "head"
    } else if options.range.is_some() {
        "get_range"
    } else {
        "get"
    }
}

// `ObjectStore` is an `#[async_trait]` trait; without that crate as a
// dependency the methods are written the way the macro expands them.
impl ObjectStore for FaultyStore {
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
        let detach = self.shared.state.lock().detach_puts;
        if detach {
            let (inner, shared) = (Arc::clone(&self.inner), Arc::clone(&self.shared));
            let location = location.clone();
            let task = tokio::spawn(async move {
                put_with_faults(&shared, inner.as_ref(), &location, payload, opts).await
            });
            return Box::pin(async move {
                task.await.map_err(|e| object_store::Error::Generic {
                    store: "faulty",
                    source: Box::new(e),
                })?
            });
        }
        Box::pin(put_with_faults(
            &self.shared,
            self.inner.as_ref(),
            location,
            payload,
            opts,
        ))
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
        Box::pin(async move {
            let path = location.as_ref();
            self.shared
                .before(FaultKind::Write, "put_multipart", path)
                .await?;
            let upload = self.inner.put_multipart_opts(location, opts).await?;
            Ok(Box::new(FaultyUpload {
                inner: upload,
                shared: Arc::clone(&self.shared),
                path: path.to_string(),
            }) as Box<dyn MultipartUpload>)
        })
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
        Box::pin(async move {
            let op = get_op(&options);
            *self
                .shared
                .state
                .lock()
                .gets
                .entry(location.to_string())
                .or_default() += 1;
            self.shared
                .before(FaultKind::Read, op, location.as_ref())
                .await?;
            self.inner.get_opts(location, options).await
        })
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
        Box::pin(async move {
            // One fault decision for the call, then the inner store's own
            // implementation (which may coalesce ranges).
            self.shared
                .before(FaultKind::Read, "get_ranges", location.as_ref())
                .await?;
            self.inner.get_ranges(location, ranges).await
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let shared = Arc::clone(&self.shared);
        // Faults before the delete ride in the input stream as errors, which
        // stores pass through in place of that location's result.
        let gated = locations
            .then(move |location| {
                let shared = Arc::clone(&shared);
                async move {
                    let location = location?;
                    shared
                        .before(FaultKind::Write, "delete", location.as_ref())
                        .await?;
                    Ok(location)
                }
            })
            .boxed();
        let shared = Arc::clone(&self.shared);
        self.inner
            .delete_stream(gated)
            .map(move |deleted| {
                let location = deleted?;
                shared
                    .after_write("delete", location.as_ref(), Ok(()))
                    .map(|()| location)
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let listed = self.inner.list(prefix);
        gate_list(Arc::clone(&self.shared), prefix, listed)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let listed = self.inner.list_with_offset(prefix, offset);
        gate_list(Arc::clone(&self.shared), prefix, listed)
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
        Box::pin(async move {
            let path = prefix.map(|p| p.as_ref()).unwrap_or_default();
            self.shared.before(FaultKind::Read, "list", path).await?;
            self.inner.list_with_delimiter(prefix).await
        })
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
        Box::pin(async move {
            self.shared
                .before(FaultKind::Write, "copy", to.as_ref())
                .await?;
            let result = self.inner.copy_opts(from, to, options).await;
            self.shared.after_write("copy", to.as_ref(), result)
        })
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
        Box::pin(async move {
            self.shared
                .before(FaultKind::Write, "rename", to.as_ref())
                .await?;
            let result = self.inner.rename_opts(from, to, options).await;
            self.shared.after_write("rename", to.as_ref(), result)
        })
    }
}

/// Applies read faults to a listing when it is first polled. The inner
/// listing is created by the caller, at call time, as it would be unwrapped.
fn gate_list(
    shared: Arc<Shared>,
    prefix: Option<&Path>,
    listed: BoxStream<'static, Result<ObjectMeta>>,
) -> BoxStream<'static, Result<ObjectMeta>> {
    let path = prefix.map(|p| p.to_string()).unwrap_or_default();
    stream::once(async move {
        match shared.before(FaultKind::Read, "list", &path).await {
            Ok(()) => listed,
            Err(e) => stream::iter([Err(e)]).boxed(),
        }
    })
    .flatten()
    .boxed()
}

/// A multipart upload whose parts and completion are subject to write faults.
#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    shared: Arc<Shared>,
    path: String,
}

impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        // `put_part` is synchronous and may hand the data over at once, so an
        // injected failure has to be decided here, before calling through.
        let faulty = self.shared.in_scope(&self.path);
        if faulty {
            if let Err(e) = self
                .shared
                .take_failure(FaultKind::Write, "put_part", &self.path)
            {
                return Box::pin(futures::future::ready(Err(e)));
            }
        }
        let part = self.inner.put_part(data);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            if faulty {
                shared.stall(FaultKind::Write).await;
            }
            part.await
        })
    }

    fn complete<'a, 'f>(&'a mut self) -> BoxFuture<'f, Result<PutResult>>
    where
        'a: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            self.shared
                .before(FaultKind::Write, "complete_multipart", &self.path)
                .await?;
            let result = self.inner.complete().await;
            self.shared
                .after_write("complete_multipart", &self.path, result)
        })
    }

    fn abort<'a, 'f>(&'a mut self) -> BoxFuture<'f, Result<()>>
    where
        'a: 'f,
        Self: 'f,
    {
        self.inner.abort()
    }
}
