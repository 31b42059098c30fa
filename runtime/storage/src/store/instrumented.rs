//! Request, byte and latency counters around an object store.
//!
//! [`InstrumentedStore`] delegates every [`ObjectStore`] method to the store it
//! wraps, unchanged (conditional PUTs, errors and all), and counts on the way:
//!
//! - requests by [`StoreOp`] and [`Outcome`];
//! - bytes uploaded: payloads of *successful* PUTs and multipart parts;
//! - bytes downloaded: GET payload bytes as the caller consumes them. Streamed
//!   payloads (S3, memory) are counted chunk by chunk as they flow, so a body
//!   that is dropped half-read counts only what was read. A local-file payload
//!   (`GetResultPayload::File`, `LocalFileSystem` only) cannot be wrapped, so
//!   its whole range is counted when the GET returns. HEAD requests count no
//!   bytes;
//! - latency per operation, summed. For GET it is the time to the response
//!   (headers), not to the end of the body. For `list` and `delete_stream`,
//!   which are streams, it is the time the caller spent waiting for items, not
//!   the time it spent between polls.
//!
//! The counters are plain atomics; [`ObjectStoreMetrics`] is a cloneable
//! handle to them that outlives the store's erasure into `Arc<dyn ObjectStore>`.

use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, Stream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};

pub use super::metrics::{ObjectStoreMetrics, ObjectStoreStats, Outcome, StoreOp};

/// An [`ObjectStore`] that counts what goes through it (see the module docs).
#[derive(Debug)]
pub struct InstrumentedStore {
    inner: Arc<dyn ObjectStore>,
    metrics: ObjectStoreMetrics,
}

impl InstrumentedStore {
    /// Wraps `inner` with fresh counters.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            metrics: ObjectStoreMetrics::default(),
        }
    }

    /// A handle to the counters; keep it to read them after the store has been
    /// handed out as an `Arc<dyn ObjectStore>`.
    pub fn metrics(&self) -> ObjectStoreMetrics {
        self.metrics.clone()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ObjectStoreStats {
        self.metrics.stats()
    }

    /// Appends the counters in the Prometheus text format.
    pub fn render_prometheus(&self, out: &mut String) {
        self.metrics.render_prometheus(out)
    }
}

impl fmt::Display for InstrumentedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instrumented({})", self.inner)
    }
}

// `ObjectStore` is an `#[async_trait]` trait. This crate does not depend on
// `async-trait`, so the methods below are written in the form that macro
// expands to: explicit lifetimes and a boxed future.
impl ObjectStore for InstrumentedStore {
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
        Box::pin(async move {
            let len = payload.content_length();
            let put = self.inner.put_opts(location, payload, opts);
            let result = self.metrics.timed(StoreOp::Put, put).await;
            if result.is_ok() {
                self.metrics.uploaded(len);
            }
            result
        })
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
            let start = self.inner.put_multipart_opts(location, opts);
            let upload = self.metrics.timed(StoreOp::PutMultipart, start).await?;
            Ok(Box::new(InstrumentedUpload {
                inner: upload,
                metrics: self.metrics.clone(),
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
            let op = StoreOp::of_get(&options);
            let get = self.inner.get_opts(location, options);
            let result = self.metrics.timed(op, get).await?;
            Ok(if op == StoreOp::Head {
                result
            } else {
                self.metrics.count_download(result)
            })
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
            // Delegated whole: the inner store may coalesce ranges, and going
            // through our `get_opts` instead would change its request pattern.
            let get = self.inner.get_ranges(location, ranges);
            let parts = self.metrics.timed(StoreOp::GetRanges, get).await?;
            self.metrics
                .downloaded(parts.iter().map(|b| b.len() as u64).sum());
            Ok(parts)
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let deleted = self.inner.delete_stream(locations);
        Timed::new(deleted, self.metrics.clone(), StoreOp::Delete, true).boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let listed = self.inner.list(prefix);
        Timed::new(listed, self.metrics.clone(), StoreOp::List, false).boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let listed = self.inner.list_with_offset(prefix, offset);
        Timed::new(listed, self.metrics.clone(), StoreOp::List, false).boxed()
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
        let list = self.inner.list_with_delimiter(prefix);
        Box::pin(self.metrics.timed(StoreOp::List, list))
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
        let copy = self.inner.copy_opts(from, to, options);
        Box::pin(self.metrics.timed(StoreOp::Copy, copy))
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
        // Delegated whole: `LocalFileSystem` renames atomically, while the
        // default (copy + delete through us) would not.
        let rename = self.inner.rename_opts(from, to, options);
        Box::pin(self.metrics.timed(StoreOp::Rename, rename))
    }
}

/// A multipart upload that counts its parts, completion and abort.
#[derive(Debug)]
struct InstrumentedUpload {
    inner: Box<dyn MultipartUpload>,
    metrics: ObjectStoreMetrics,
}

impl MultipartUpload for InstrumentedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let len = data.content_length();
        let part = self.inner.put_part(data);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let result = metrics.timed(StoreOp::PutPart, part).await;
            if result.is_ok() {
                metrics.uploaded(len);
            }
            result
        })
    }

    fn complete<'a, 'f>(&'a mut self) -> BoxFuture<'f, Result<PutResult>>
    where
        'a: 'f,
        Self: 'f,
    {
        let complete = self.inner.complete();
        Box::pin(self.metrics.timed(StoreOp::CompleteMultipart, complete))
    }

    fn abort<'a, 'f>(&'a mut self) -> BoxFuture<'f, Result<()>>
    where
        'a: 'f,
        Self: 'f,
    {
        let abort = self.inner.abort();
        Box::pin(self.metrics.timed(StoreOp::AbortMultipart, abort))
    }
}

/// Times a store stream. With `per_item`, every item is one request (delete);
/// otherwise the whole stream is one request (list), recorded at its end, at
/// its first error, or when it is dropped after being polled.
struct Timed<T> {
    inner: BoxStream<'static, Result<T>>,
    metrics: ObjectStoreMetrics,
    op: StoreOp,
    per_item: bool,
    /// When the caller started waiting for the next item.
    waiting_since: Option<Instant>,
    /// Waiting time not yet recorded (whole-stream mode).
    waited: Duration,
    started: bool,
    recorded: bool,
}

impl<T> Timed<T> {
    fn new(
        inner: BoxStream<'static, Result<T>>,
        metrics: ObjectStoreMetrics,
        op: StoreOp,
        per_item: bool,
    ) -> Self {
        Self {
            inner,
            metrics,
            op,
            per_item,
            waiting_since: None,
            waited: Duration::ZERO,
            started: false,
            recorded: false,
        }
    }

    fn record_whole(&mut self, outcome: Outcome) {
        if !self.recorded {
            self.recorded = true;
            self.metrics.record(self.op, outcome, self.waited);
        }
    }
}

impl<T> Stream for Timed<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Every field is `Unpin` (the inner stream is boxed), so no projection.
        let this = self.get_mut();
        this.started = true;
        let since = *this.waiting_since.get_or_insert_with(Instant::now);
        let poll = this.inner.as_mut().poll_next(cx);
        if let Poll::Ready(item) = &poll {
            this.waiting_since = None;
            let waited = since.elapsed();
            if this.per_item {
                if let Some(result) = item {
                    this.metrics.record(this.op, Outcome::of(result), waited);
                }
            } else {
                this.waited += waited;
                match item {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => this.record_whole(Outcome::of_error(e)),
                    None => this.record_whole(Outcome::Ok),
                }
            }
        }
        poll
    }
}

impl<T> Drop for Timed<T> {
    fn drop(&mut self) {
        // A listing abandoned early still made its requests; an unpolled one
        // made none.
        if !self.per_item && self.started {
            self.record_whole(Outcome::Ok);
        }
    }
}
