//! Object store counters: what [`InstrumentedStore`](super::InstrumentedStore)
//! records, and their Prometheus text form.
//!
//! Metric names: `vigil_object_store_requests_total{op,outcome}`,
//! `vigil_object_store_bytes_uploaded_total`,
//! `vigil_object_store_bytes_downloaded_total` and
//! `vigil_object_store_request_seconds_total{op}` (summed latency).

use std::fmt::{self, Write as _};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{StreamExt, TryStreamExt};
use object_store::{GetOptions, GetResult, GetResultPayload, Result};

/// An object store operation, as counted. Multipart uploads count each step,
/// since each is a separate request to S3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreOp {
    /// GET of a whole object.
    Get,
    /// GET of a byte range (`get_range`, or `get_opts` with a range).
    GetRange,
    /// `get_ranges`: several ranges of one object in one call.
    GetRanges,
    /// HEAD (`get_opts` with `head: true`).
    Head,
    /// Single-request PUT, whatever its [`object_store::PutMode`].
    Put,
    /// Start of a multipart upload.
    PutMultipart,
    /// One part of a multipart upload.
    PutPart,
    /// Completion of a multipart upload.
    CompleteMultipart,
    /// Abort of a multipart upload.
    AbortMultipart,
    /// `list`, `list_with_offset` (one per stream) or `list_with_delimiter`.
    List,
    /// Deletion of one object (one per location of `delete_stream`).
    Delete,
    /// Server-side copy.
    Copy,
    /// Rename (copy then delete on most stores).
    Rename,
}

impl StoreOp {
    /// Number of operations.
    pub const COUNT: usize = 13;

    /// Every operation, in label order.
    pub const ALL: [StoreOp; StoreOp::COUNT] = [
        StoreOp::Get,
        StoreOp::GetRange,
        StoreOp::GetRanges,
        StoreOp::Head,
        StoreOp::Put,
        StoreOp::PutMultipart,
        StoreOp::PutPart,
        StoreOp::CompleteMultipart,
        StoreOp::AbortMultipart,
        StoreOp::List,
        StoreOp::Delete,
        StoreOp::Copy,
        StoreOp::Rename,
    ];

    /// The `op` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreOp::Get => "get",
            StoreOp::GetRange => "get_range",
            StoreOp::GetRanges => "get_ranges",
            StoreOp::Head => "head",
            StoreOp::Put => "put",
            StoreOp::PutMultipart => "put_multipart",
            StoreOp::PutPart => "put_part",
            StoreOp::CompleteMultipart => "complete_multipart",
            StoreOp::AbortMultipart => "abort_multipart",
            StoreOp::List => "list",
            StoreOp::Delete => "delete",
            StoreOp::Copy => "copy",
            StoreOp::Rename => "rename",
        }
    }

    pub(super) fn of_get(options: &GetOptions) -> StoreOp {
        if options.head {
            StoreOp::Head
        } else if options.range.is_some() {
            StoreOp::GetRange
        } else {
            StoreOp::Get
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Success.
    Ok,
    /// `Error::NotFound`.
    NotFound,
    /// `Error::AlreadyExists`: a `PutMode::Create` (CAS) conflict, or a
    /// create-mode copy onto an existing key.
    AlreadyExists,
    /// `Error::Precondition` (`PutMode::Update` conflict, failed `if_match`) or
    /// `Error::NotModified` (conditional GET answered by its condition).
    Precondition,
    /// Any other error.
    Error,
}

impl Outcome {
    /// Number of outcomes.
    pub const COUNT: usize = 5;

    /// Every outcome, in label order.
    pub const ALL: [Outcome; Outcome::COUNT] = [
        Outcome::Ok,
        Outcome::NotFound,
        Outcome::AlreadyExists,
        Outcome::Precondition,
        Outcome::Error,
    ];

    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::NotFound => "not_found",
            Outcome::AlreadyExists => "already_exists",
            Outcome::Precondition => "precondition",
            Outcome::Error => "error",
        }
    }

    /// Classifies an object store error.
    pub fn of_error(err: &object_store::Error) -> Outcome {
        match err {
            object_store::Error::NotFound { .. } => Outcome::NotFound,
            object_store::Error::AlreadyExists { .. } => Outcome::AlreadyExists,
            object_store::Error::Precondition { .. } | object_store::Error::NotModified { .. } => {
                Outcome::Precondition
            }
            _ => Outcome::Error,
        }
    }

    /// Classifies a result.
    pub fn of<T>(result: &Result<T>) -> Outcome {
        match result {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::of_error(e),
        }
    }
}

/// A snapshot of the counters of an [`InstrumentedStore`](super::InstrumentedStore).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectStoreStats {
    requests: [[u64; Outcome::COUNT]; StoreOp::COUNT],
    latency_nanos: [u64; StoreOp::COUNT],
    /// Bytes of successful PUTs and multipart parts.
    pub bytes_uploaded: u64,
    /// Bytes of GET payloads consumed (see the module docs for when).
    pub bytes_downloaded: u64,
}

impl ObjectStoreStats {
    /// Requests of `op` that ended with `outcome`.
    pub fn requests(&self, op: StoreOp, outcome: Outcome) -> u64 {
        self.requests[op as usize][outcome as usize]
    }

    /// Requests of `op`, whatever their outcome.
    pub fn total_requests(&self, op: StoreOp) -> u64 {
        self.requests[op as usize].iter().sum()
    }

    /// Summed latency of `op`.
    pub fn latency(&self, op: StoreOp) -> Duration {
        Duration::from_nanos(self.latency_nanos[op as usize])
    }
}

#[derive(Debug, Default)]
struct Counters {
    requests: [[AtomicU64; Outcome::COUNT]; StoreOp::COUNT],
    latency_nanos: [AtomicU64; StoreOp::COUNT],
    bytes_uploaded: AtomicU64,
    bytes_downloaded: AtomicU64,
}

/// A cloneable handle to the counters of an
/// [`InstrumentedStore`](super::InstrumentedStore), for the
/// metrics endpoint. Relaxed atomics: each counter is exact, a snapshot is not
/// a consistent cut across counters (nor does Prometheus need one).
#[derive(Debug, Clone, Default)]
pub struct ObjectStoreMetrics(Arc<Counters>);

impl ObjectStoreMetrics {
    pub(super) fn record(&self, op: StoreOp, outcome: Outcome, elapsed: Duration) {
        self.0.requests[op as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.0.latency_nanos[op as usize].fetch_add(nanos, Ordering::Relaxed);
    }

    pub(super) fn uploaded(&self, bytes: usize) {
        self.0
            .bytes_uploaded
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(super) fn downloaded(&self, bytes: u64) {
        self.0.bytes_downloaded.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Times `fut` and records it as one request of `op`.
    pub(super) async fn timed<T>(
        &self,
        op: StoreOp,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let start = Instant::now();
        let result = fut.await;
        self.record(op, Outcome::of(&result), start.elapsed());
        result
    }

    /// Makes the payload of a successful GET count its bytes.
    pub(super) fn count_download(&self, result: GetResult) -> GetResult {
        let payload = match result.payload {
            GetResultPayload::Stream(stream) => {
                let metrics = self.clone();
                GetResultPayload::Stream(
                    stream
                        .inspect_ok(move |chunk| metrics.downloaded(chunk.len() as u64))
                        .boxed(),
                )
            }
            // A local file is read by the caller directly; count its range now.
            GetResultPayload::File(file, path) => {
                self.downloaded(result.range.end.saturating_sub(result.range.start));
                GetResultPayload::File(file, path)
            }
        };
        GetResult { payload, ..result }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ObjectStoreStats {
        let mut stats = ObjectStoreStats {
            bytes_uploaded: self.0.bytes_uploaded.load(Ordering::Relaxed),
            bytes_downloaded: self.0.bytes_downloaded.load(Ordering::Relaxed),
            ..ObjectStoreStats::default()
        };
        for op in StoreOp::ALL {
            for outcome in Outcome::ALL {
                stats.requests[op as usize][outcome as usize] =
                    self.0.requests[op as usize][outcome as usize].load(Ordering::Relaxed);
            }
            stats.latency_nanos[op as usize] =
                self.0.latency_nanos[op as usize].load(Ordering::Relaxed);
        }
        stats
    }

    /// Appends the counters in the Prometheus text format. Every op/outcome
    /// pair is written, zeros included, so series exist before their first
    /// increment and `rate()` sees it.
    pub fn render_prometheus(&self, out: &mut String) {
        let stats = self.stats();
        // Writing to a String cannot fail.
        let _ = render(&stats, out);
    }
}

fn render(stats: &ObjectStoreStats, out: &mut String) -> fmt::Result {
    const REQUESTS: &str = "vigil_object_store_requests_total";
    const UP: &str = "vigil_object_store_bytes_uploaded_total";
    const DOWN: &str = "vigil_object_store_bytes_downloaded_total";
    const SECONDS: &str = "vigil_object_store_request_seconds_total";

    writeln!(
        out,
        "# HELP {REQUESTS} Object store requests by operation and outcome."
    )?;
    writeln!(out, "# TYPE {REQUESTS} counter")?;
    for op in StoreOp::ALL {
        for outcome in Outcome::ALL {
            writeln!(
                out,
                "{REQUESTS}{{op=\"{}\",outcome=\"{}\"}} {}",
                op.as_str(),
                outcome.as_str(),
                stats.requests(op, outcome)
            )?;
        }
    }
    writeln!(out, "# HELP {UP} Bytes of successful object store uploads.")?;
    writeln!(out, "# TYPE {UP} counter")?;
    writeln!(out, "{UP} {}", stats.bytes_uploaded)?;
    writeln!(
        out,
        "# HELP {DOWN} Bytes of object store downloads read by the broker."
    )?;
    writeln!(out, "# TYPE {DOWN} counter")?;
    writeln!(out, "{DOWN} {}", stats.bytes_downloaded)?;
    writeln!(
        out,
        "# HELP {SECONDS} Summed object store request latency by operation."
    )?;
    writeln!(out, "# TYPE {SECONDS} counter")?;
    for op in StoreOp::ALL {
        writeln!(
            out,
            "{SECONDS}{{op=\"{}\"}} {}",
            op.as_str(),
            stats.latency(op).as_secs_f64()
        )?;
    }
    Ok(())
}
