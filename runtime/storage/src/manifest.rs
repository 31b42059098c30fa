//! The manifest: the one object that says what the log contains.
//!
//! Each version is a separate object, `manifest/<version>.json`, written with
//! `PutMode::Create`: two brokers racing for the same version cannot both
//! win, which works on LocalFileSystem, InMemory and real S3 alike. A broker
//! takes ownership by writing a version with the writer epoch it claimed
//! ([`crate::fence`]); a broker whose create fails re-reads, and if the
//! winner carries a different epoch it has been fenced and must stop writing.
//! Old versions are deleted, so a create can succeed on a version another
//! broker wrote long ago: that is why the log confirms its epoch with the
//! fence after each commit instead of trusting the create alone.
//!
//! State that grows with client behaviour (committed offsets, producers)
//! is not in the manifest but in state objects it references
//! ([`crate::state`]), and each partition's segments are in its own
//! partition manifest ([`crate::parts`]), so a commit PUTs small objects.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Result, StorageError};
use crate::kv::KvMap;
use crate::paths;
use crate::producer::ProducerSnapshot;

/// How many old manifest versions are kept for debugging before deletion.
const KEEP_OLD_VERSIONS: u64 = 5;

/// How many versions in a row a commit skips that hold this writer's own
/// earlier attempts before it gives up (each such attempt is a commit whose
/// outcome stayed unknown; more than a few in a row means a bug).
const MAX_OWN_VERSIONS: usize = 8;

/// The durable state of the whole log.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Version of this manifest (its key).
    pub version: u64,
    /// Epoch of the broker that owns writes.
    pub writer_epoch: u64,
    /// Name of that broker.
    pub writer: String,
    /// Producer ids below this have been handed out.
    pub next_producer_id: i64,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicManifest>,
    /// Key/value state as of the last upload. Persisted in state objects
    /// ([`crate::state`]), not in the manifest; manifests written before
    /// those existed held it here, hence it is still read.
    #[serde(default, skip_serializing)]
    pub(crate) kv: KvMap,
    /// For each key/value shard, the state object holding it (`None`:
    /// empty). Empty in manifests from before state objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kv_shards: Vec<Option<String>>,
    /// Shards changed since the state was loaded or persisted (bit = shard).
    #[serde(skip)]
    pub(crate) kv_dirty: u64,
    /// Highest WAL object `(epoch, seq)` whose contents this manifest
    /// reflects (object WAL mode); later ones are replayed at open, earlier
    /// ones are leftovers to delete and must never be replayed.
    #[serde(default)]
    pub wal_objects_through: Option<(u64, u64)>,
}

/// One topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicManifest {
    /// Stable id; object keys use it, so a re-created topic starts empty.
    pub id: Uuid,
    /// Topic configs (retention.ms, …) as given at creation.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    /// Partitions by index. Each one is stored in its own partition
    /// manifest ([`crate::parts`]); root manifests from before those held
    /// them here, hence they are still read.
    #[serde(default, skip_serializing)]
    pub partitions: Vec<PartitionManifest>,
    /// Number of partitions, as stored (`None`: a root from before
    /// partition manifests, with the partitions inline). Set by commit.
    #[serde(
        default,
        rename = "partition_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) stored_count: Option<usize>,
}

/// One partition's uploaded log.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PartitionManifest {
    /// First offset still readable.
    pub log_start_offset: i64,
    /// Every offset below this is in a segment object.
    pub uploaded_next: i64,
    /// Segment objects, ascending and contiguous.
    pub segments: Vec<SegmentMeta>,
    /// Idempotent producer state as of `uploaded_next`. Persisted in a state
    /// object ([`crate::state`]); manifests from before those held it here.
    #[serde(default, skip_serializing)]
    pub(crate) producers: Vec<ProducerSnapshot>,
    /// The state object holding `producers` (`None`: no producers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producers_in: Option<String>,
    /// `producers` changed since it was loaded or persisted.
    #[serde(skip)]
    pub(crate) producers_dirty: bool,
    /// Leader epochs and where each started, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leader_epochs: Vec<crate::epochs::EpochStart>,
    /// What is stored of this partition's manifest.
    #[serde(skip)]
    pub(crate) stored: crate::parts::Stored,
}

impl Manifest {
    /// The entry of partition `p`, if its topic (same name and id: not
    /// deleted and re-created meanwhile) and the partition are still there.
    pub(crate) fn partition_mut(
        &mut self,
        p: &crate::partition::Partition,
    ) -> Option<&mut PartitionManifest> {
        self.topics
            .get_mut(&p.topic)
            .filter(|t| t.id == p.topic_id)
            .and_then(|t| t.partitions.get_mut(p.index as usize))
    }

    /// The key/value state.
    pub fn kv(&self) -> &KvMap {
        &self.kv
    }

    /// Replaces the key/value state; the next commit persists the shards
    /// that changed.
    pub(crate) fn set_kv(&mut self, kv: KvMap) {
        self.kv_dirty |= crate::state::changed_shards(&self.kv, &kv);
        self.kv = kv;
    }

    /// Whether two manifests are the same commit: equal as stored (the
    /// in-memory state is compared through the references to it).
    pub fn same_commit(&self, other: &Manifest) -> bool {
        match (serde_json::to_vec(self), serde_json::to_vec(other)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

impl PartitionManifest {
    /// The idempotent producers' state as of `uploaded_next`.
    pub fn producers(&self) -> &[ProducerSnapshot] {
        &self.producers
    }

    /// Replaces the producers' state; the next commit persists it if it
    /// changed.
    pub(crate) fn set_producers(&mut self, producers: Vec<ProducerSnapshot>) {
        if producers != self.producers {
            self.producers = producers;
            self.producers_dirty = true;
        }
    }
}

/// A stretch of one partition's log stored in an object: a run inside a
/// multi-partition data object, or a whole compacted segment object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SegmentMeta {
    /// Object key.
    pub key: String,
    /// Byte position of the partition's batches in the object.
    #[serde(default)]
    pub start: u64,
    /// Size of the whole object (reads need it to clamp ranges; 0 = `size`).
    #[serde(default)]
    pub object_size: u64,
    /// First offset.
    pub base_offset: i64,
    /// One past the last offset.
    pub next_offset: i64,
    /// Size in bytes of the partition's batches.
    pub size: u64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
}

/// Reads and writes manifests with compare-and-swap.
#[derive(Clone)]
pub struct ManifestStore {
    /// Where root manifests live (the layout's private store).
    store: Arc<dyn ObjectStore>,
    /// Where partition manifests and state objects live.
    shared: Arc<dyn ObjectStore>,
    layout: paths::Layout,
}

impl ManifestStore {
    /// A single broker's manifests in `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self::with_layout(store, paths::Layout::SINGLE)
    }

    /// The manifests of `layout` (a single broker's or a cluster node's) in
    /// the shared `store`.
    pub fn with_layout(store: Arc<dyn ObjectStore>, layout: paths::Layout) -> Self {
        Self {
            store: layout.private_store(store.clone()),
            shared: store,
            layout,
        }
    }

    /// The newest manifest with its state (key/value shards, producers), or
    /// `None` for an empty store.
    pub async fn load_latest(&self) -> Result<Option<Manifest>> {
        let Some(mut m) = self.load_latest_bare().await? else {
            return Ok(None);
        };
        crate::parts::load(self.shared.as_ref(), &mut m).await?;
        crate::state::load(self.shared.as_ref(), &mut m).await?;
        Ok(Some(m))
    }

    /// The newest root manifest as stored, without loading its partition
    /// manifests and state objects.
    pub async fn load_latest_bare(&self) -> Result<Option<Manifest>> {
        let prefix = paths::manifest_prefix();
        let metas = crate::store::list_all(self.store.as_ref(), &prefix).await?;
        let Some(latest) = metas
            .iter()
            .filter_map(|m| paths::parse_manifest(&m.location))
            .max()
        else {
            return Ok(None);
        };
        self.load(latest).await.map(Some)
    }

    /// After a commit of `next` failed without an answer (timeout, 5xx): did
    /// it land? `Some(true)` if the stored version is exactly `next`,
    /// `Some(false)` if that version is absent or holds something else,
    /// `None` if the store cannot tell us now.
    pub async fn landed(&self, next: &Manifest) -> Option<bool> {
        match self.load_version(next.version).await {
            Ok(Some(stored)) => Some(stored.same_commit(next)),
            Ok(None) => Some(false),
            Err(_) => None,
        }
    }

    /// Manifest `version`, or `None` if it was not written (yet).
    pub async fn load_version(&self, version: u64) -> Result<Option<Manifest>> {
        match self.load(version).await {
            Ok(m) => Ok(Some(m)),
            Err(StorageError::ObjectStore {
                source: object_store::Error::NotFound { .. },
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn load(&self, version: u64) -> Result<Manifest> {
        let key = paths::manifest(version);
        let get_err = |source| StorageError::ObjectStore {
            op: "get",
            key: key.to_string(),
            source,
        };
        let bytes = self
            .store
            .get(&key)
            .await
            .map_err(get_err)?
            .bytes()
            .await
            .map_err(get_err)?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
            what: "manifest",
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        if m.version != version {
            return Err(StorageError::Corrupt {
                what: "manifest",
                key: key.to_string(),
                reason: format!("says version {} but is stored as {version}", m.version),
            });
        }
        Ok(m)
    }

    /// Writes `next` as version `next.version`, which must be one above the
    /// version it was derived from, after persisting its changed state into
    /// a state object and its changed partitions into their partition
    /// manifests (which updates `next`'s references). Fails with
    /// [`StorageError::Fenced`] when another broker got there first.
    /// Committing the same manifest twice succeeds: a PUT whose reply was
    /// lost can be retried. Returns the partitions (topic, index) a newer
    /// leader took over (a cluster node's only; their state in `next` is
    /// now that leader's).
    pub async fn commit(&self, next: &mut Manifest) -> Result<Vec<(String, i32)>> {
        crate::state::persist(self.shared.as_ref(), self.layout, next).await?;
        let fencing = match self.layout.node_id() {
            None => crate::parts::Fencing::WriterEpoch,
            Some(_) => crate::parts::Fencing::LeaderEpoch,
        };
        let lost = crate::parts::persist(self.shared.as_ref(), next, fencing).await?;
        for _ in 0..MAX_OWN_VERSIONS {
            let Some(theirs) = self.put_new(next).await? else {
                self.delete_history_below(next.version).await;
                return Ok(lost);
            };
            // Our own earlier attempt (its reply was lost, or the store's
            // client retried a PUT that had landed): done.
            if theirs.same_commit(next) {
                tracing::debug!(
                    version = next.version,
                    "manifest version already holds this commit"
                );
                return Ok(lost);
            }
            if theirs.writer_epoch != next.writer_epoch || theirs.writer != next.writer {
                return Err(StorageError::Fenced {
                    ours: next.writer_epoch,
                    theirs: theirs.writer_epoch,
                    by: theirs.writer,
                });
            }
            // This writer's own version, left by a commit whose outcome it
            // never learned: its caller heard that it failed, and the state
            // in memory does not include it. What we commit now supersedes
            // it (epochs are unique to one run of one broker, so nobody else
            // wrote it), as partition manifests do (parts.rs).
            tracing::warn!(
                version = next.version,
                "manifest version holds this broker's own commit whose outcome stayed unknown; superseding it"
            );
            next.version = self.past_latest(next).await?;
        }
        Err(StorageError::Invalid(format!(
            "root manifest: {MAX_OWN_VERSIONS} versions in a row were taken by this writer's own earlier attempts"
        )))
    }

    /// Writes `next` if its version is free; otherwise returns what holds it.
    async fn put_new(&self, next: &Manifest) -> Result<Option<Manifest>> {
        let key = paths::manifest(next.version);
        let body = serde_json::to_vec(next).map_err(|e| StorageError::Corrupt {
            what: "manifest",
            key: key.to_string(),
            reason: format!("cannot serialize: {e}"),
        })?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&key, PutPayload::from(body), opts)
            .await
        {
            Ok(_) => Ok(None),
            Err(object_store::Error::AlreadyExists { .. }) => {
                self.load(next.version).await.map(Some)
            }
            Err(source) => Err(StorageError::ObjectStore {
                op: "put",
                key: key.to_string(),
                source,
            }),
        }
    }

    /// The version after the newest stored one (and after `next`'s), or
    /// [`StorageError::Fenced`] if a newer writer wrote the newest.
    async fn past_latest(&self, next: &Manifest) -> Result<u64> {
        let latest = self.load_latest_bare().await?;
        match latest {
            Some(l) if l.writer_epoch > next.writer_epoch => Err(StorageError::Fenced {
                ours: next.writer_epoch,
                theirs: l.writer_epoch,
                by: l.writer,
            }),
            Some(l) => Ok(l.version.max(next.version) + 1),
            None => Ok(next.version + 1),
        }
    }

    /// Old versions are only history; failing to delete one is harmless (a
    /// later commit deletes it again).
    async fn delete_history_below(&self, version: u64) {
        if version <= KEEP_OLD_VERSIONS {
            return;
        }
        let old = paths::manifest(version - KEEP_OLD_VERSIONS - 1);
        if let Err(e) = self.store.delete(&old).await {
            if !matches!(e, object_store::Error::NotFound { .. }) {
                tracing::debug!(key = %old, error = %e, "could not delete an old manifest");
            }
        }
    }

    /// Takes ownership for `epoch` (claimed with [`crate::fence::Fence`]):
    /// writes a new version of the latest manifest (or a fresh one) carrying
    /// it. Retries when another broker commits concurrently; fails with
    /// `Fenced` if a newer epoch already committed.
    pub async fn acquire(&self, writer: &str, epoch: u64) -> Result<Manifest> {
        loop {
            let base = self.load_latest().await?;
            if let Some(b) = base.as_ref().filter(|b| b.writer_epoch > epoch) {
                return Err(StorageError::Fenced {
                    ours: epoch,
                    theirs: b.writer_epoch,
                    by: b.writer.clone(),
                });
            }
            let mut next = base.clone().unwrap_or_default();
            next.version = base.as_ref().map_or(1, |b| b.version + 1);
            next.writer_epoch = epoch;
            next.writer = writer.to_string();
            match self.commit(&mut next).await {
                Ok(_) => return Ok(next),
                Err(StorageError::Fenced { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Deletes manifest versions older than the ones kept for debugging
    /// below `latest`, including stray versions a fenced broker created
    /// after they had been deleted once. Returns how many went.
    pub async fn delete_old(&self, latest: u64) -> Result<usize> {
        let prefix = paths::manifest_prefix();
        let metas = crate::store::list_all(self.store.as_ref(), &prefix).await?;
        let mut n = 0;
        for m in metas {
            let Some(v) = paths::parse_manifest(&m.location) else {
                continue;
            };
            if v + KEEP_OLD_VERSIONS < latest {
                match self.store.delete(&m.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => n += 1,
                    Err(source) => {
                        return Err(StorageError::ObjectStore {
                            op: "delete",
                            key: m.location.to_string(),
                            source,
                        })
                    }
                }
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn a_second_owner_fences_the_first() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let ms = ManifestStore::new(store);
        let a = ms.acquire("a", 1).await.expect("a acquires");
        assert_eq!((a.version, a.writer_epoch), (1, 1));
        let b = ms.acquire("b", 2).await.expect("b acquires");
        assert_eq!((b.version, b.writer_epoch), (2, 2));

        let mut a_next = a.clone();
        a_next.version = 2;
        match ms.commit(&mut a_next).await {
            Err(StorageError::Fenced { ours, theirs, by }) => {
                assert_eq!((ours, theirs, by.as_str()), (1, 2, "b"));
            }
            other => panic!("expected fencing, got {other:?}"),
        }
        let latest = ms.load_latest().await.expect("load").expect("present");
        assert_eq!(latest, b);
    }

    #[tokio::test]
    async fn a_writers_own_unknown_version_is_superseded_and_a_newer_writer_still_fences() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let ms = ManifestStore::new(store);
        let a = ms.acquire("a", 1).await.expect("a acquires");

        // A commit of version 2 landed without this writer learning it.
        let mut lost = a.clone();
        lost.version = 2;
        lost.next_producer_id = 7;
        ms.commit(&mut lost).await.expect("lands");

        let mut next = a.clone();
        next.version = 2;
        ms.commit(&mut next)
            .await
            .expect("goes past its own version");
        assert_eq!(next.version, 3, "the commit took the next free version");
        let latest = ms.load_latest().await.expect("load").expect("present");
        assert_eq!(
            latest, next,
            "what the writer holds supersedes the lost commit"
        );

        // A newer writer's version still fences.
        ms.acquire("b", 2).await.expect("b acquires");
        let mut stale = next.clone();
        stale.version = 4;
        assert!(matches!(
            ms.commit(&mut stale).await,
            Err(StorageError::Fenced { theirs: 2, .. })
        ));
    }

    #[tokio::test]
    async fn works_on_the_local_filesystem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn ObjectStore> = Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("local fs"),
        );
        let ms = ManifestStore::new(store);
        let a = ms.acquire("a", 1).await.expect("acquire");
        let mut dup = a.clone();
        dup.writer = "impostor".into();
        assert!(matches!(
            ms.commit(&mut dup).await,
            Err(StorageError::Fenced { .. })
        ));
        for epoch in 2..10 {
            ms.acquire("a", epoch).await.expect("re-acquire");
        }
        // An older epoch cannot take the log back.
        assert!(matches!(
            ms.acquire("old", 3).await,
            Err(StorageError::Fenced { theirs: 9, .. })
        ));
        let latest = ms.load_latest().await.expect("load").expect("present");
        assert_eq!(latest.version, 9);
    }
}
