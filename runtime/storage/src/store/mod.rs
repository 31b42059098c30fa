//! The object store: building one from a URL, and wrappers around it.
//!
//! - [`object_store_from_url`] opens the store the broker is configured with.
//! - [`InstrumentedStore`] counts requests, bytes and latency for the metrics
//!   endpoint.
//! - [`LocalStore`] is the `file://` store: it writes large objects on a
//!   low-priority thread with stepped writeback, away from the WAL's fsyncs.
//! - [`FaultyStore`] injects failures, latency and hangs; it exists for tests
//!   and recovery drills only.

pub mod faulty;
pub mod instrumented;
pub mod local;
mod metrics;

#[cfg(test)]
mod faulty_tests;
#[cfg(test)]
mod instrumented_tests;
#[cfg(test)]
mod local_tests;
#[cfg(test)]
mod options_tests;

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, RetryConfig};

use crate::error::StorageError;

/// Every object under `prefix`, collected; a failure names the prefix (and
/// is retriable, as every object store error is).
pub(crate) async fn list_all(
    store: &dyn ObjectStore,
    prefix: &object_store::path::Path,
) -> Result<Vec<object_store::ObjectMeta>, StorageError> {
    use futures::TryStreamExt;
    store
        .list(Some(prefix))
        .try_collect()
        .await
        .map_err(|source| StorageError::ObjectStore {
            op: "list",
            key: prefix.to_string(),
            source,
        })
}

pub use faulty::{FaultControl, FaultCounts, FaultKind, FaultyStore, InjectedFault};
pub use instrumented::{InstrumentedStore, ObjectStoreMetrics, ObjectStoreStats, Outcome, StoreOp};
pub use local::LocalStore;

/// Timeouts and retries of the object store client. They apply to `s3://`
/// stores (the local and in-memory ones make no network calls). Defaults are
/// object_store's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Longest time one request may take, connect to last byte.
    pub timeout: Duration,
    /// Longest time to establish a connection.
    pub connect_timeout: Duration,
    /// Retries of a failed request (0: none).
    pub max_retries: usize,
    /// No retry starts later than this after the first attempt.
    pub retry_timeout: Duration,
    /// First backoff between retries (doubling each time).
    pub backoff_initial: Duration,
    /// Longest backoff between retries.
    pub backoff_max: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_retries: 10,
            retry_timeout: Duration::from_secs(180),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(15),
        }
    }
}

impl StoreOptions {
    fn retry(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: self.backoff_initial,
                max_backoff: self.backoff_max,
                base: 2.0,
            },
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        }
    }

    /// Applies the options to an S3 builder, keeping the client settings
    /// it already has (e.g. `AWS_ALLOW_HTTP` from the environment).
    fn apply(&self, b: AmazonS3Builder) -> AmazonS3Builder {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        b.with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
            ms(self.timeout),
        )
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
            ms(self.connect_timeout),
        )
        .with_retry(self.retry())
    }
}

/// Opens the object store named by `url` with default client options: see
/// [`object_store_from_url_with`].
pub fn object_store_from_url(url: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
    object_store_from_url_with(url, &StoreOptions::default())
}

/// Opens the object store named by `url`:
/// - `file:///abs/path` — a directory on local disk (created if missing);
/// - `s3://bucket[/prefix]` — S3 or an S3-compatible server, configured by the
///   usual `AWS_*` variables (`AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`,
///   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`);
/// - `memory://` — in-process, for tests.
pub fn object_store_from_url_with(
    url: &str,
    options: &StoreOptions,
) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let invalid = |why: String| StorageError::Invalid(format!("object store URL {url:?}: {why}"));
    let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    match parsed.scheme() {
        "file" => {
            let path = parsed
                .to_file_path()
                .map_err(|_| invalid("not an absolute file path".into()))?;
            std::fs::create_dir_all(&path).map_err(|e| invalid(format!("cannot create: {e}")))?;
            Ok(Arc::new(LocalStore::new(&path)?))
        }
        "s3" => {
            let bucket = parsed
                .host_str()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| invalid("missing bucket name".into()))?;
            let s3 = options
                .apply(AmazonS3Builder::from_env().with_bucket_name(bucket))
                .build()
                .map_err(|e| invalid(e.to_string()))?;
            let prefix = parsed.path().trim_matches('/');
            if prefix.is_empty() {
                Ok(Arc::new(s3))
            } else {
                Ok(Arc::new(PrefixStore::new(s3, prefix)))
            }
        }
        "memory" => Ok(Arc::new(InMemory::new())),
        other => Err(invalid(format!(
            "unsupported scheme {other:?} (use file://, s3:// or memory://)"
        ))),
    }
}
