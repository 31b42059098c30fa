//! Taking over a partition from a node that died: what it acknowledged but
//! did not upload is in its WAL objects (`nodes/<id>/wal/`), which a cluster
//! node never deletes before the batches in them are uploaded by whoever
//! leads their partitions. The new leader reads them from the object store
//! and appends, after the partition's uploaded end, the batches that
//! continue it. So a cluster runs the object WAL: with the local WAL, what a
//! dead node acknowledged and did not upload would be on its disk only.
//!
//! Several nodes may have written the same offsets: a leader that was cut
//! off wrote (never acknowledged) batches after its successor took over. For
//! each offset the batch of the highest leader epoch wins, as in Kafka's
//! log truncation by leader epoch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Log;
use crate::error::{Result, StorageError};
use crate::partition::Partition;
use crate::paths::{self, Layout};
use crate::wal::WalEntry;
use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::Mutex;
use uuid::Uuid;

/// How long a decoded WAL object of another node is kept: about one round
/// of takeovers (a dead node's partitions are acquired one after another,
/// and each of its WAL objects holds batches of many of them).
const KEEP: Duration = Duration::from_secs(30);
/// At most this many batch bytes are kept; past it objects are read for the
/// one partition that needs them, as if not kept.
const KEEP_BYTES: usize = 256 << 20;

/// The batches of one WAL object, as (topic id, partition, batch).
type Batches = Arc<Vec<(Uuid, i32, Bytes)>>;

/// Other nodes' WAL objects read by recent takeovers. WAL objects are
/// immutable, so a copy stays right until the object is deleted, and a
/// deleted one is never needed again (see [`Log::recover_from_wal_objects`]).
#[derive(Default)]
pub(crate) struct WalReads {
    kept: Mutex<Kept>,
    /// What this node's WAL objects from earlier runs hold, by key, for
    /// their collector (`wal_gc.rs`): small, and bounded by those objects.
    coverage: Mutex<HashMap<String, super::wal_gc::Coverage>>,
}

#[derive(Default)]
struct Kept {
    objects: HashMap<String, (Instant, usize, Batches)>,
    /// Batch bytes in `objects`.
    bytes: usize,
}

impl WalReads {
    fn get(&self, key: &str) -> Option<Batches> {
        self.kept.lock().objects.get(key).map(|(_, _, b)| b.clone())
    }

    /// Drops what expired, and what node `dir` no longer lists.
    fn prune(&self, dir: &str, listed: &HashSet<String>) {
        let mut kept = self.kept.lock();
        let now = Instant::now();
        let mut freed = 0;
        kept.objects.retain(|k, (at, size, _)| {
            let keep =
                now.duration_since(*at) < KEEP && (!k.starts_with(dir) || listed.contains(k));
            if !keep {
                freed += *size;
            }
            keep
        });
        kept.bytes -= freed;
    }

    pub(super) fn coverage(&self, key: &str) -> Option<super::wal_gc::Coverage> {
        self.coverage.lock().get(key).cloned()
    }

    pub(super) fn keep_coverage(&self, key: String, coverage: super::wal_gc::Coverage) {
        self.coverage.lock().insert(key, coverage);
    }

    pub(super) fn forget_coverage(&self, key: &str) {
        self.coverage.lock().remove(key);
    }

    /// Keeps `batches` if the bound allows.
    fn keep(&self, key: String, batches: &Batches) {
        let size: usize = batches.iter().map(|(_, _, b)| b.len()).sum();
        let mut kept = self.kept.lock();
        if kept.bytes + size <= KEEP_BYTES {
            kept.bytes += size;
            if let Some((_, old, _)) = kept
                .objects
                .insert(key, (Instant::now(), size, batches.clone()))
            {
                kept.bytes -= old;
            }
        }
    }
}

impl Log {
    /// Appends to `p` (just loaded from its partition manifest, not yet
    /// serving) the batches of every node's WAL objects that continue its
    /// uploaded log. Returns how many were recovered.
    ///
    /// A WAL object listed here and gone when read was deleted by its node
    /// after every batch in it was uploaded by its partition's leader; for
    /// `p` that leader wrote before this node's epoch claim, so those
    /// batches are already in `p`'s manifest and the object is skipped.
    pub(super) async fn recover_from_wal_objects(&self, p: &Partition) -> Result<usize> {
        // base offset -> (leader epoch, last offset, bytes)
        let mut found: BTreeMap<i64, (i32, i64, Bytes)> = BTreeMap::new();
        for (dir, layout) in self.node_dirs().await? {
            let store = layout.private_store(self.store.clone());
            let keys = crate::wal::object::list_objects(store.as_ref()).await?;
            let dir = format!("{dir}/");
            let listed: Vec<String> = keys.iter().map(|l| format!("{dir}{}", l.key)).collect();
            self.wal_reads
                .prune(&dir, &listed.iter().cloned().collect::<HashSet<_>>());
            for (crate::wal::object::Listed { key, .. }, cache_key) in keys.iter().zip(&listed) {
                let batches = match self.wal_reads.get(cache_key) {
                    Some(b) => b,
                    None => match read_batches(store.as_ref(), key).await? {
                        Some((b, _)) => {
                            self.wal_reads.keep(cache_key.clone(), &b);
                            b
                        }
                        None => continue,
                    },
                };
                for (topic_id, partition, batch) in batches.iter() {
                    if *topic_id != p.topic_id || *partition != p.index {
                        continue;
                    }
                    let Ok(h) = vigil_protocol::batch::validate(batch) else {
                        tracing::warn!(topic = %p.topic, partition, node = ?layout.node_id(), "skipping a corrupt batch in a WAL object");
                        continue;
                    };
                    let newer = found
                        .get(&h.base_offset)
                        .is_none_or(|(epoch, _, _)| h.partition_leader_epoch > *epoch);
                    if newer {
                        found.insert(
                            h.base_offset,
                            (h.partition_leader_epoch, h.last_offset(), batch.clone()),
                        );
                    }
                }
            }
        }
        let mut next = p.next_offset();
        let mut recovered = 0;
        for (base, (_, last, batch)) in found.range(next..) {
            if *base != next {
                break;
            }
            p.replay(batch.clone()).map_err(|e| {
                StorageError::Invalid(format!(
                    "{}-{}: recovered batch at offset {base}: {e}",
                    p.topic, p.index
                ))
            })?;
            next = last + 1;
            recovered += 1;
        }
        Ok(recovered)
    }
}

impl Log {
    /// Every cluster node's directory under `nodes/`, with its layout.
    pub(super) async fn node_dirs(&self) -> Result<Vec<(object_store::path::Path, Layout)>> {
        let listing = self
            .store
            .list_with_delimiter(Some(&paths::nodes_prefix()))
            .await
            .map_err(|e| StorageError::store("list", &paths::nodes_prefix(), e))?;
        Ok(listing
            .common_prefixes
            .into_iter()
            .filter_map(|dir| Layout::parse_node_dir(&dir).map(|l| (dir, l)))
            .collect())
    }

    /// [`node_dirs`](Self::node_dirs) without this node's own.
    pub(crate) async fn other_node_dirs(&self) -> Result<Vec<(object_store::path::Path, Layout)>> {
        let mine = self.layout.node_id();
        let mut dirs = self.node_dirs().await?;
        dirs.retain(|(_, layout)| layout.node_id() != mine);
        Ok(dirs)
    }
}

/// The batches of WAL object `key`, and whether it also holds key/value
/// entries; `None` if it was deleted since listed.
pub(super) async fn read_batches(
    store: &dyn ObjectStore,
    key: &object_store::path::Path,
) -> Result<Option<(Batches, bool)>> {
    let data = match store.get(key).await {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    let data = match data {
        Ok(d) => d,
        Err(object_store::Error::NotFound { .. }) => {
            tracing::debug!(%key, "a WAL object was deleted after it was listed (its batches were uploaded)");
            return Ok(None);
        }
        Err(e) => return Err(StorageError::store("get", key, e)),
    };
    let entries = crate::wal::object::decode_object(key, &data)?;
    let mut holds_kv = false;
    let batches = entries
        .into_iter()
        .filter_map(|e| match e {
            WalEntry::Batch {
                topic_id,
                partition,
                batch,
            } => Some((topic_id, partition, batch)),
            WalEntry::Kv { .. } => {
                holds_kv = true;
                None
            }
        })
        .collect();
    Ok(Some((Arc::new(batches), holds_kv)))
}
