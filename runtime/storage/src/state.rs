//! State objects: the key/value state (committed offsets, deployments, …)
//! and the idempotent producers' snapshots live outside the manifest, so the
//! manifest's size (and the bytes each commit PUTs) does not grow with the
//! number of groups or producers clients create.
//!
//! The key/value map is split into [`KV_SHARDS`] shards by a hash of the key;
//! every partition's producer snapshot is its own part. A commit writes one
//! state object holding only the parts that changed since the last commit,
//! under a key unique to that attempt ([`paths::state_object`]), and the
//! manifest references, for each shard and each partition, the object that
//! holds its current contents. So a commit costs at most two PUTs (state,
//! then manifest) however many parts changed, the manifest holds a fixed
//! number of references per shard and partition, and state that did not
//! change is never rewritten. Objects no manifest references any more are
//! collected by the garbage collector like unreferenced data objects.
//!
//! Manifests written before state objects existed carry the state inline;
//! they are read as before and their first commit moves the state out.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::{stream, StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Result, StorageError};
use crate::kv::KvMap;
use crate::manifest::Manifest;
use crate::paths;
use crate::producer::ProducerSnapshot;

/// Number of key/value shards. A shard is rewritten whole when one of its
/// keys changes, so more shards mean smaller rewrites and more references
/// in the manifest. Stored manifests record one reference per shard; a
/// different count in a stored manifest is read correctly and rewritten.
pub const KV_SHARDS: usize = 16;

/// Concurrent GETs when loading a manifest's state objects.
const LOAD_CONCURRENCY: usize = 8;

/// The shard a key/value key belongs to.
pub fn kv_shard(key: &str) -> usize {
    crc32c::crc32c(key.as_bytes()) as usize % KV_SHARDS
}

/// Bit mask with every shard set.
pub(crate) const ALL_SHARDS: u64 = (1u64 << KV_SHARDS) - 1;

/// Which shards differ between two maps (bit `i` = shard `i`).
pub(crate) fn changed_shards(old: &KvMap, new: &KvMap) -> u64 {
    let bit = |k: &str| 1u64 << kv_shard(k);
    let mut mask = 0;
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => return mask,
            (Some((k, _)), None) => {
                mask |= bit(k);
                a.next();
            }
            (None, Some((k, _))) => {
                mask |= bit(k);
                b.next();
            }
            (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    mask |= bit(ka);
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    mask |= bit(kb);
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if va != vb {
                        mask |= bit(ka);
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
}

/// The parts of the state that changed in one commit.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StateObject {
    /// Key/value shards by index, each complete.
    #[serde(default)]
    kv: BTreeMap<usize, KvMap>,
    /// Producer snapshots of partitions, each complete.
    #[serde(default)]
    producers: Vec<PartitionProducers>,
}

/// One partition's producer snapshot.
#[derive(Debug, Serialize, Deserialize)]
struct PartitionProducers {
    topic_id: Uuid,
    partition: i32,
    producers: Vec<ProducerSnapshot>,
}

fn corrupt(key: &str, reason: String) -> StorageError {
    StorageError::Corrupt {
        what: "state object",
        key: key.to_string(),
        reason,
    }
}

/// Writes the parts of `m`'s state changed since it was loaded or last
/// persisted into one new state object and points `m`'s references at it.
/// Called right before `m` is committed; if the commit fails, `m` is
/// dropped and the object becomes garbage.
pub(crate) async fn persist(
    store: &dyn ObjectStore,
    layout: paths::Layout,
    m: &mut Manifest,
) -> Result<()> {
    let kv_dirty = m.kv_dirty;
    let producers_dirty = m
        .topics
        .values()
        .flat_map(|t| t.partitions.iter())
        .any(|p| p.producers_dirty);
    if kv_dirty == 0 && !producers_dirty {
        return Ok(());
    }
    let mut obj = StateObject::default();
    for (k, v) in &m.kv {
        let shard = kv_shard(k);
        if kv_dirty & (1 << shard) != 0 {
            obj.kv
                .entry(shard)
                .or_default()
                .insert(k.clone(), v.clone());
        }
    }
    for t in m.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.producers_dirty && !p.producers.is_empty() {
                obj.producers.push(PartitionProducers {
                    topic_id: t.id,
                    partition: i as i32,
                    producers: p.producers.clone(),
                });
            }
        }
    }
    let key = layout.state_object(m.version, Uuid::new_v4());
    let key_str = key.to_string();
    if !obj.kv.is_empty() || !obj.producers.is_empty() {
        let body = serde_json::to_vec(&obj)
            .map_err(|e| corrupt(&key_str, format!("cannot serialize: {e}")))?;
        store
            .put(&key, PutPayload::from(body))
            .await
            .map_err(|source| StorageError::store("put", &key, source))?;
    }
    if m.kv_shards.len() != KV_SHARDS {
        m.kv_shards = vec![None; KV_SHARDS];
    }
    for (shard, r) in m.kv_shards.iter_mut().enumerate() {
        if kv_dirty & (1 << shard) != 0 {
            *r = obj.kv.contains_key(&shard).then(|| key_str.clone());
        }
    }
    m.kv_dirty = 0;
    for p in m.topics.values_mut().flat_map(|t| t.partitions.iter_mut()) {
        if p.producers_dirty {
            p.producers_in = (!p.producers.is_empty()).then(|| key_str.clone());
            p.producers_dirty = false;
        }
    }
    Ok(())
}

/// Fills `m`'s in-memory state from the state objects it references. A
/// manifest from before state objects keeps its inline state, marked to be
/// moved out by the next commit.
pub(crate) async fn load(store: &dyn ObjectStore, m: &mut Manifest) -> Result<()> {
    let keys: BTreeSet<String> = referenced(m).cloned().collect();
    let objects: HashMap<String, StateObject> = stream::iter(keys.into_iter().map(|key| async {
        let obj = get(store, &key).await?;
        Ok::<_, StorageError>((key, obj))
    }))
    .buffer_unordered(LOAD_CONCURRENCY)
    .try_collect()
    .await?;

    let version = m.version;
    let missing = |key: &str, what: String| {
        corrupt(
            key,
            format!("manifest {version} says it holds {what}, but it does not"),
        )
    };
    if m.kv_shards.is_empty() {
        // Inline state of an older manifest (or none at all).
        m.kv_dirty = if m.kv.is_empty() { 0 } else { ALL_SHARDS };
    } else {
        let mut kv = KvMap::new();
        for (shard, r) in m.kv_shards.iter().enumerate() {
            let Some(key) = r else { continue };
            let part = objects
                .get(key)
                .and_then(|o| o.kv.get(&shard))
                .ok_or_else(|| missing(key, format!("key/value shard {shard}")))?;
            kv.extend(part.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        m.kv = kv;
        m.kv_dirty = if m.kv_shards.len() == KV_SHARDS {
            0
        } else {
            ALL_SHARDS
        };
    }
    for t in m.topics.values_mut() {
        for (i, p) in t.partitions.iter_mut().enumerate() {
            match &p.producers_in {
                Some(key) => {
                    let found = objects
                        .get(key)
                        .and_then(|o| {
                            o.producers
                                .iter()
                                .find(|pp| pp.topic_id == t.id && pp.partition == i as i32)
                        })
                        .ok_or_else(|| missing(key, format!("producers of {} {i}", t.id)))?;
                    p.producers = found.producers.clone();
                    p.producers_dirty = false;
                }
                None => p.producers_dirty = !p.producers.is_empty(),
            }
        }
    }
    Ok(())
}

async fn get(store: &dyn ObjectStore, key: &str) -> Result<StateObject> {
    let path = object_store::path::Path::from(key);
    let bytes = store
        .get(&path)
        .await
        .map_err(|source| StorageError::store("get", &path, source))?
        .bytes()
        .await
        .map_err(|source| StorageError::store("get", &path, source))?;
    serde_json::from_slice(&bytes).map_err(|e| corrupt(key, e.to_string()))
}

/// Fills one partition's producer state from the state object its manifest
/// references (a partition taken over from another broker).
pub(crate) async fn load_producers(
    store: &dyn ObjectStore,
    topic_id: Uuid,
    partition: i32,
    p: &mut crate::manifest::PartitionManifest,
) -> Result<()> {
    let Some(key) = p.producers_in.clone() else {
        p.producers_dirty = !p.producers.is_empty();
        return Ok(());
    };
    let found = get(store, &key)
        .await?
        .producers
        .into_iter()
        .find(|pp| pp.topic_id == topic_id && pp.partition == partition)
        .ok_or_else(|| {
            corrupt(
                &key,
                format!("a partition manifest says it holds producers of {topic_id} {partition}, but it does not"),
            )
        })?;
    p.producers = found.producers;
    p.producers_dirty = false;
    Ok(())
}

/// Every state object `m` references.
pub(crate) fn referenced(m: &Manifest) -> impl Iterator<Item = &String> {
    m.kv_shards.iter().flatten().chain(
        m.topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| p.producers_in.as_ref()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> KvMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn changed_shards_marks_exactly_the_shards_of_changed_keys() {
        let old = map(&[("a", "1"), ("b", "2"), ("c", "3")]);
        assert_eq!(changed_shards(&old, &old), 0);
        let new = map(&[("a", "1"), ("b", "20"), ("d", "4")]);
        let expect = (1 << kv_shard("b")) | (1 << kv_shard("c")) | (1 << kv_shard("d"));
        assert_eq!(changed_shards(&old, &new), expect);
        assert_eq!(changed_shards(&new, &old), expect);
        assert_eq!(changed_shards(&KvMap::new(), &old).count_ones() as usize, {
            let s: BTreeSet<_> = ["a", "b", "c"].iter().map(|k| kv_shard(k)).collect();
            s.len()
        });
    }
}
