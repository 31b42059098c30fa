//! Partition manifests: each partition's uploaded log (segments, offsets,
//! the reference to its producers' state) is its own chain of versioned
//! objects, `parts/<topic-id>/<partition>/<version>.json`, written with
//! `PutMode::Create` by the partition's writer.
//!
//! The root manifest ([`crate::manifest`]) keeps what is shared by the whole
//! log: topics and their partition counts, the key/value state, producer id
//! blocks, the object WAL's progress. So a commit PUTs one object per
//! partition that changed and the root, the root no longer grows with
//! segment lists, and (the reason for the split, docs/design/0016) brokers
//! of a cluster that lead different partitions write different chains
//! instead of serializing on one object.
//!
//! A partition whose content did not change since it was loaded or last
//! written is not rewritten; a partition that never had anything uploaded
//! has no object at all (its state is the default), so creating a topic with
//! many partitions costs no PUT per partition.
//!
//! Versions: the newest object of a chain is the partition's state. A write
//! goes to the version after the one the writer knows. If that version
//! exists, it is either our own earlier attempt (same writer epoch: its
//! reply was lost, or the root commit that followed it failed) and we move
//! past it, or a newer writer's, and we are fenced. Old versions are deleted
//! a few writes later; readers between a listing and a GET find the
//! previous one still there.

use std::hash::{Hash, Hasher};

use futures::{stream, StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Result, StorageError};
use crate::manifest::{Manifest, PartitionManifest};
use crate::paths;

/// Versions of a partition manifest kept behind the newest one.
const KEEP_OLD_VERSIONS: u64 = 3;
/// Concurrent requests when loading or writing partition manifests.
const CONCURRENCY: usize = 16;
/// How many times a write moves past versions its own epoch left behind
/// before giving up (each step is one LIST).
const MAX_SKIPS: usize = 8;

/// What is known about a partition's stored manifest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stored {
    /// No object: the partition's state is the default one.
    #[default]
    Nothing,
    /// The newest object is `version`; `hash` is its content's.
    Version {
        /// Version of the newest object.
        version: u64,
        /// Hash of the state it holds.
        hash: u64,
    },
    /// A root manifest from before partition manifests held the state
    /// inline: the next commit writes it out.
    Inline,
}

/// A partition manifest as stored.
#[derive(Debug, Serialize, Deserialize)]
struct PartObject {
    version: u64,
    /// Epoch of the writer (the log's writer epoch; in a cluster, the
    /// partition's leader epoch).
    writer_epoch: u64,
    writer: String,
    #[serde(flatten)]
    state: PartitionManifest,
}

fn corrupt(key: &object_store::path::Path, reason: String) -> StorageError {
    StorageError::Corrupt {
        what: "partition manifest",
        key: key.to_string(),
        reason,
    }
}

/// Hash of a partition's stored content (the fields that are serialized).
fn content_hash(p: &PartitionManifest) -> Result<u64> {
    let bytes = serde_json::to_vec(p).map_err(|e| StorageError::Corrupt {
        what: "partition manifest",
        key: String::new(),
        reason: format!("cannot serialize: {e}"),
    })?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Ok(h.finish())
}

/// The hash of `p`'s content if it differs from what is stored for it
/// (`empty`: the hash of a partition that has no object).
fn changed(p: &PartitionManifest, empty: u64) -> Result<Option<u64>> {
    let hash = content_hash(p)?;
    let stored = match p.stored {
        Stored::Inline => None,
        Stored::Nothing => Some(empty),
        Stored::Version { hash, .. } => Some(hash),
    };
    Ok((stored != Some(hash)).then_some(hash))
}

/// Which epoch fences the writes of a partition's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fencing {
    /// The log's writer epoch: a single broker owns every chain.
    WriterEpoch,
    /// The partition's leader epoch: in a cluster each partition has its
    /// own leader, and writer epochs of different nodes do not compare.
    LeaderEpoch,
}

/// Writes the manifest of every partition of `m` that changed, and records
/// the versions written in `m`. When a newer writer wrote one of them, fails
/// with [`StorageError::Fenced`] under [`Fencing::WriterEpoch`]; under
/// [`Fencing::LeaderEpoch`] that partition's state in `m` becomes the newer
/// leader's and it is returned among the partitions this writer lost.
pub(crate) async fn persist(
    store: &dyn ObjectStore,
    m: &mut Manifest,
    per: Fencing,
) -> Result<Vec<(String, i32)>> {
    let writer = m.writer.clone();
    let empty = content_hash(&PartitionManifest::default())?;
    let mut todo = Vec::new();
    for (name, t) in m.topics.iter_mut() {
        t.stored_count = Some(t.partitions.len());
        for (i, p) in t.partitions.iter().enumerate() {
            if let Some(hash) = changed(p, empty)? {
                let epoch = match per {
                    Fencing::WriterEpoch => m.writer_epoch,
                    Fencing::LeaderEpoch => p
                        .leader_epochs
                        .last()
                        .map_or(0, |e| u64::try_from(e.epoch).unwrap_or(0)),
                };
                todo.push((name.clone(), t.id, i, p.clone(), hash, epoch));
            }
        }
    }
    let written: Vec<(String, usize, Written)> =
        stream::iter(todo.into_iter().map(|(name, id, i, p, hash, epoch)| {
            let writer = writer.clone();
            async move {
                let res = write(store, id, i as i32, p, hash, epoch, writer).await;
                let done = match (res, per) {
                    (Ok(stored), _) => Written::Stored(stored),
                    // Another node leads the partition now: take its state
                    // and let the rest of the commit land.
                    (Err(StorageError::Fenced { .. }), Fencing::LeaderEpoch) => {
                        Written::Lost(load_partition(store, id, i as i32).await?)
                    }
                    (Err(e), _) => return Err(e),
                };
                Ok::<_, StorageError>((name, i, done))
            }
        }))
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut lost = Vec::new();
    for (name, i, done) in written {
        let Some(p) = m
            .topics
            .get_mut(&name)
            .and_then(|t| t.partitions.get_mut(i))
        else {
            continue;
        };
        match done {
            Written::Stored(stored) => p.stored = stored,
            Written::Lost(theirs) => {
                *p = theirs;
                lost.push((name, i as i32));
            }
        }
    }
    Ok(lost)
}

/// What became of one partition's write.
enum Written {
    Stored(Stored),
    /// Fenced by a newer leader epoch: the chain's newest state.
    Lost(PartitionManifest),
}

/// Writes one partition's state, whose content hashes to `hash`, as the
/// version after the one it knows.
async fn write(
    store: &dyn ObjectStore,
    topic_id: Uuid,
    partition: i32,
    state: PartitionManifest,
    hash: u64,
    epoch: u64,
    writer: String,
) -> Result<Stored> {
    let mut version = match state.stored {
        Stored::Version { version, .. } => version + 1,
        Stored::Nothing | Stored::Inline => 1,
    };
    let mut obj = PartObject {
        version,
        writer_epoch: epoch,
        writer,
        state,
    };
    for _ in 0..MAX_SKIPS {
        obj.version = version;
        let key = paths::part(topic_id, partition, version);
        let body = serde_json::to_vec(&obj).map_err(|e| corrupt(&key, e.to_string()))?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let put = store.put_opts(&key, PutPayload::from(body), opts).await;
        let taken = match put {
            Ok(_) => None,
            Err(object_store::Error::AlreadyExists { .. }) => Some(None),
            // Without an answer the PUT may have landed: look.
            Err(e) => Some(Some(e)),
        };
        let Some(unanswered) = taken else {
            delete_old(store, topic_id, partition, version).await;
            return Ok(Stored::Version { version, hash });
        };
        let Some(theirs) = load_version(store, topic_id, partition, version).await? else {
            if let Some(source) = unanswered {
                return Err(StorageError::store("put", &key, source));
            }
            // Created and pruned meanwhile: only a writer that wrote newer
            // versions prunes, so move past them (or be fenced by them).
            version = past_latest(store, topic_id, partition, version, epoch).await?;
            continue;
        };
        if theirs.writer_epoch == epoch && content_hash(&theirs.state)? == hash {
            return Ok(Stored::Version { version, hash });
        }
        if theirs.writer_epoch > epoch {
            return Err(StorageError::Fenced {
                ours: epoch,
                theirs: theirs.writer_epoch,
                by: theirs.writer,
            });
        }
        // Left by our own epoch (an attempt whose commit did not complete)
        // or by an older writer: what we hold supersedes it, unless a newer
        // writer has written since.
        version = past_latest(store, topic_id, partition, version, epoch).await?;
    }
    Err(StorageError::Invalid(format!(
        "partition manifest {topic_id}/{partition}: {MAX_SKIPS} versions in a row were taken by this writer's own earlier attempts"
    )))
}

/// The version after the newest stored one (and after `tried`), or
/// [`StorageError::Fenced`] if the newest was written by a newer writer.
async fn past_latest(
    store: &dyn ObjectStore,
    topic_id: Uuid,
    partition: i32,
    tried: u64,
    epoch: u64,
) -> Result<u64> {
    for _ in 0..MAX_SKIPS {
        let Some(latest) = latest_version(store, topic_id, partition).await? else {
            return Ok(tried + 1);
        };
        // Pruned between the listing and the GET: list again.
        let Some(obj) = load_version(store, topic_id, partition, latest).await? else {
            continue;
        };
        if obj.writer_epoch > epoch {
            return Err(StorageError::Fenced {
                ours: epoch,
                theirs: obj.writer_epoch,
                by: obj.writer,
            });
        }
        return Ok(latest.max(tried) + 1);
    }
    Err(StorageError::Invalid(format!(
        "partition manifest {topic_id}/{partition}: its newest version kept disappearing while being read"
    )))
}

/// Deletes the version that fell out of the kept window (best effort: the
/// next write tries the next one; stragglers are harmless, the newest
/// version wins).
async fn delete_old(store: &dyn ObjectStore, topic_id: Uuid, partition: i32, written: u64) {
    if written <= KEEP_OLD_VERSIONS {
        return;
    }
    let old = paths::part(topic_id, partition, written - KEEP_OLD_VERSIONS - 1);
    if let Err(e) = store.delete(&old).await {
        if !matches!(e, object_store::Error::NotFound { .. }) {
            tracing::debug!(key = %old, error = %e, "could not delete an old partition manifest");
        }
    }
}

/// The newest stored version of a partition's manifest, if any.
async fn latest_version(
    store: &dyn ObjectStore,
    topic_id: Uuid,
    partition: i32,
) -> Result<Option<u64>> {
    let prefix = paths::part_prefix(topic_id, partition);
    Ok(crate::store::list_all(store, &prefix)
        .await?
        .iter()
        .filter_map(|m| paths::parse_part(&m.location))
        .max())
}

async fn load_version(
    store: &dyn ObjectStore,
    topic_id: Uuid,
    partition: i32,
    version: u64,
) -> Result<Option<PartObject>> {
    let key = paths::part(topic_id, partition, version);
    let bytes = match store.get(&key).await {
        Ok(r) => r
            .bytes()
            .await
            .map_err(|source| StorageError::store("get", &key, source))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(source) => return Err(StorageError::store("get", &key, source)),
    };
    let obj: PartObject =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(&key, e.to_string()))?;
    if obj.version != version {
        return Err(corrupt(
            &key,
            format!("says version {} but is stored as {version}", obj.version),
        ));
    }
    Ok(Some(obj))
}

/// The newest manifest of one partition (the default state if it has none).
pub(crate) async fn load_partition(
    store: &dyn ObjectStore,
    topic_id: Uuid,
    partition: i32,
) -> Result<PartitionManifest> {
    // A version pruned between the listing and the GET: list again.
    for _ in 0..MAX_SKIPS {
        let Some(version) = latest_version(store, topic_id, partition).await? else {
            return Ok(PartitionManifest::default());
        };
        if let Some(obj) = load_version(store, topic_id, partition, version).await? {
            let mut state = obj.state;
            state.stored = Stored::Version {
                version,
                hash: content_hash(&state)?,
            };
            return Ok(state);
        }
    }
    Err(StorageError::Invalid(format!(
        "partition manifest {topic_id}/{partition}: its newest version kept disappearing while being read"
    )))
}

/// Fills the partitions of `m`'s topics from their partition manifests. A
/// root from before partition manifests keeps its inline partitions,
/// marked to be written out by the next commit.
pub(crate) async fn load(store: &dyn ObjectStore, m: &mut Manifest) -> Result<()> {
    let mut todo = Vec::new();
    for (name, t) in m.topics.iter_mut() {
        match t.stored_count {
            Some(n) => {
                t.partitions = vec![PartitionManifest::default(); n];
                todo.extend((0..n).map(|i| (name.clone(), t.id, i)));
            }
            None => t
                .partitions
                .iter_mut()
                .for_each(|p| p.stored = Stored::Inline),
        }
    }
    let loaded: Vec<(String, usize, PartitionManifest)> =
        stream::iter(todo.into_iter().map(|(name, id, i)| async move {
            let p = load_partition(store, id, i as i32).await?;
            Ok::<_, StorageError>((name, i, p))
        }))
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    for (name, i, p) in loaded {
        if let Some(slot) = m
            .topics
            .get_mut(&name)
            .and_then(|t| t.partitions.get_mut(i))
        {
            *slot = p;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn state(next: i64) -> PartitionManifest {
        PartitionManifest {
            uploaded_next: next,
            ..Default::default()
        }
    }

    async fn put(store: &InMemory, base: Stored, next: i64, epoch: u64) -> Result<Stored> {
        let mut p = state(next);
        p.stored = base;
        let hash = content_hash(&p).expect("hash");
        write(store, Uuid::nil(), 0, p, hash, epoch, format!("b{epoch}")).await
    }

    fn version(s: Stored) -> u64 {
        match s {
            Stored::Version { version, .. } => version,
            other => panic!("not written: {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_attempt_of_our_own_epoch_left_behind_is_moved_past() {
        let store = InMemory::new();
        let first = put(&store, Stored::Nothing, 10, 1).await.expect("write");
        assert_eq!(version(first), 1);
        // The commit that wrote version 1 failed later (the root PUT), so
        // the next attempt starts from the same base with other content.
        let second = put(&store, Stored::Nothing, 20, 1).await.expect("rewrite");
        assert_eq!(version(second), 2);
        let loaded = load_partition(&store, Uuid::nil(), 0).await.expect("load");
        assert_eq!(loaded.uploaded_next, 20);
        assert_eq!(loaded.stored, second);
    }

    #[tokio::test]
    async fn a_retry_of_a_write_that_landed_is_recognised() {
        let store = InMemory::new();
        let first = put(&store, Stored::Nothing, 10, 1).await.expect("write");
        let again = put(&store, Stored::Nothing, 10, 1).await.expect("retry");
        assert_eq!(first, again);
        assert_eq!(
            latest_version(&store, Uuid::nil(), 0).await.expect("list"),
            Some(1)
        );
    }

    #[tokio::test]
    async fn a_newer_writer_fences_an_older_one() {
        let store = InMemory::new();
        put(&store, Stored::Nothing, 10, 2)
            .await
            .expect("new writer");
        match put(&store, Stored::Nothing, 5, 1).await {
            Err(StorageError::Fenced { ours, theirs, by }) => {
                assert_eq!((ours, theirs, by.as_str()), (1, 2, "b2"));
            }
            other => panic!("expected fencing, got {other:?}"),
        }
        let loaded = load_partition(&store, Uuid::nil(), 0).await.expect("load");
        assert_eq!(loaded.uploaded_next, 10);
    }

    #[tokio::test]
    async fn moving_past_a_leftover_never_overwrites_a_newer_writer() {
        let store = InMemory::new();
        // v1 ours (epoch 2); v2 a leftover of an older writer (epoch 1);
        // v3 a newer writer's (epoch 3).
        let ours = put(&store, Stored::Nothing, 10, 2).await.expect("v1");
        let leftover = put(&store, ours, 11, 1).await.expect("v2");
        assert_eq!(version(leftover), 2);
        put(&store, leftover, 12, 3).await.expect("v3");
        match put(&store, ours, 13, 2).await {
            Err(StorageError::Fenced { ours, theirs, .. }) => assert_eq!((ours, theirs), (2, 3)),
            other => panic!("expected fencing, got {other:?}"),
        }
        let loaded = load_partition(&store, Uuid::nil(), 0).await.expect("load");
        assert_eq!(loaded.uploaded_next, 12);
    }

    #[tokio::test]
    async fn old_versions_are_pruned_and_a_missing_partition_is_empty() {
        let store = InMemory::new();
        let mut base = Stored::Nothing;
        for n in 1..=10 {
            base = put(&store, base, n, 1).await.expect("write");
        }
        let kept: Vec<u64> = crate::store::list_all(&store, &paths::part_prefix(Uuid::nil(), 0))
            .await
            .expect("list")
            .iter()
            .filter_map(|m| paths::parse_part(&m.location))
            .collect();
        assert_eq!(kept, vec![7, 8, 9, 10]);
        let empty = load_partition(&store, Uuid::nil(), 1).await.expect("load");
        assert_eq!(empty, PartitionManifest::default());
    }
}
