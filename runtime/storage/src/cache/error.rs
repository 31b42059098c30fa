//! Fetch errors, shared by every reader waiting on one fetch.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::StorageError;

/// Outcome of a fetch, cloneable so every waiter on a shared fetch gets it.
pub(super) type FetchResult = Result<Bytes, FetchError>;

#[derive(Debug, Clone)]
pub(super) enum FetchError {
    Store(Arc<object_store::Error>),
    Short { range: Range<u64>, got: u64 },
    Task(Arc<str>),
}

impl FetchError {
    pub(super) fn into_storage(self, key: &str) -> StorageError {
        match self {
            FetchError::Store(e) => StorageError::ObjectStore {
                op: "get",
                key: key.to_string(),
                source: unshare(&e),
            },
            FetchError::Short { range, got } => StorageError::Corrupt {
                what: "object",
                key: key.to_string(),
                reason: format!(
                    "GET of bytes {}..{} returned {got} bytes; the object is shorter than the manifest says",
                    range.start, range.end
                ),
            },
            FetchError::Task(reason) => StorageError::ObjectStore {
                op: "get",
                key: key.to_string(),
                source: object_store::Error::Generic {
                    store: "block cache",
                    source: reason.to_string().into(),
                },
            },
        }
    }
}

pub(super) fn size_mismatch(key: &str, object_size: u64) -> StorageError {
    StorageError::Invalid(format!(
        "object {key} is not {object_size} bytes long: its cached blocks disagree with the size given"
    ))
}

/// An error shared by all waiters of a fetch, as the `source` of the error
/// each of them gets.
#[derive(Debug)]
struct SharedStoreError {
    inner: Arc<object_store::Error>,
    /// The outer error already says what the inner one says; show only its
    /// cause.
    cause_only: bool,
}

impl std::fmt::Display for SharedStoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::error::Error as _;
        match self.inner.source() {
            Some(cause) if self.cause_only => write!(f, "{cause}"),
            _ => write!(f, "{}", self.inner),
        }
    }
}

impl std::error::Error for SharedStoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let source = self.inner.source();
        if self.cause_only {
            source.and_then(|cause| cause.source())
        } else {
            source
        }
    }
}

/// An owned `object_store::Error` for one waiter, keeping the kinds callers
/// act on (not found: the object was deleted; denied) and wrapping the rest.
fn unshare(e: &Arc<object_store::Error>) -> object_store::Error {
    use object_store::Error as E;
    let source = |cause_only| -> Box<dyn std::error::Error + Send + Sync> {
        Box::new(SharedStoreError {
            inner: e.clone(),
            cause_only,
        })
    };
    match &**e {
        E::NotFound { path, .. } => E::NotFound {
            path: path.clone(),
            source: source(true),
        },
        E::PermissionDenied { path, .. } => E::PermissionDenied {
            path: path.clone(),
            source: source(true),
        },
        E::Unauthenticated { path, .. } => E::Unauthenticated {
            path: path.clone(),
            source: source(true),
        },
        _ => E::Generic {
            store: "block cache",
            source: source(false),
        },
    }
}
