//! Shared setup of the storage integration tests: a real local-filesystem
//! object store in a temporary directory, logs opened on fresh data dirs
//! (so everything they know comes from the store), topics and batches.

// Each test crate uses a different subset.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use vigil_protocol::kafka_protocol::records::Compression;
use vigil_protocol::BatchBuilder;
use vigil_storage::manifest::ManifestStore;
use vigil_storage::{paths, Clock, Log, LogConfig, SystemClock, TopicConfig};

/// An object store in a temporary directory.
pub struct StoreDir {
    objects: tempfile::TempDir,
}

impl StoreDir {
    pub fn new() -> Self {
        Self {
            objects: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(LocalFileSystem::new_with_prefix(self.objects.path()).expect("store"))
    }

    /// Opens the log on a fresh data dir: everything must come from the
    /// object store. A crashed owner's lease is short; garbage is collected
    /// at once.
    pub async fn open_fresh(&self) -> (Arc<Log>, tempfile::TempDir) {
        let data = tempfile::tempdir().expect("tempdir");
        let mut c = LogConfig::new(data.path());
        c.lease_interval = Duration::from_millis(10);
        c.gc_grace = Duration::ZERO;
        let log = Log::open(c, self.store()).await.expect("open log");
        (log, data)
    }

    /// Opens cluster node `id`'s log (object WAL) on a fresh data dir.
    pub async fn open_node(&self, id: u32) -> (Arc<Log>, tempfile::TempDir) {
        self.open_node_on(id, self.store()).await
    }

    /// [`open_node`](Self::open_node) through `store` (e.g. a `FaultyStore`
    /// over [`store`](Self::store)).
    pub async fn open_node_on(
        &self,
        id: u32,
        store: Arc<dyn ObjectStore>,
    ) -> (Arc<Log>, tempfile::TempDir) {
        self.open_node_timed(id, store, Arc::new(SystemClock), Duration::ZERO)
            .await
    }

    /// [`open_node_on`](Self::open_node_on) on `clock`, with `gc_grace` as
    /// the collector's grace period.
    pub async fn open_node_timed(
        &self,
        id: u32,
        store: Arc<dyn ObjectStore>,
        clock: Arc<dyn Clock>,
        gc_grace: Duration,
    ) -> (Arc<Log>, tempfile::TempDir) {
        let data = tempfile::tempdir().expect("tempdir");
        let mut c = LogConfig::new(data.path());
        c.node = Some(id);
        c.broker_id = format!("node-{id}");
        c.wal_mode = vigil_storage::config::WalMode::Object {
            window: Duration::from_millis(1),
        };
        c.upload_interval = Duration::from_secs(3600);
        c.lease_interval = Duration::from_millis(10);
        c.gc_grace = gc_grace;
        let log = Log::open_with_clock(c, store, clock)
            .await
            .expect("open node log");
        (log, data)
    }

    /// Every key under `prefix`.
    pub async fn list(&self, prefix: &Path) -> Vec<Path> {
        let listed: Vec<_> = futures::TryStreamExt::try_collect(self.store().list(Some(prefix)))
            .await
            .expect("list");
        listed.into_iter().map(|m| m.location).collect()
    }

    /// The newest root manifest as stored.
    pub async fn root_bytes(&self) -> Bytes {
        let m = ManifestStore::new(self.store())
            .load_latest_bare()
            .await
            .expect("load")
            .expect("a manifest");
        self.store()
            .get(&paths::manifest(m.version))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("read")
    }
}

/// Creates topic `name` with `partitions` partitions.
pub async fn create_topic(log: &Log, name: &str, partitions: i32) {
    log.create_topic(
        name,
        TopicConfig {
            partitions,
            configs: Default::default(),
        },
    )
    .await
    .expect("create");
}

/// A one-record batch with value `tag`, idempotent if `producer` is
/// `(producer id, sequence)`.
pub fn batch(tag: &str, producer: Option<(i64, i32)>) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    if let Some((pid, seq)) = producer {
        b = b.producer(pid, 0, seq);
    }
    b.record(1, None, Some(Bytes::from(tag.to_string())))
        .build()
        .expect("encode")
}

/// Polls `cond` until it holds, failing the test after 10 s.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after 10 s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
