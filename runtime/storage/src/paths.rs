//! Every object key vigil writes is built here, so the layout is visible in
//! one place. Numbers are zero-padded so that lexicographic listings sort
//! numerically.
//!
//! ```text
//! epochs/00000000000000000007.json            writer epoch 7 was claimed (never deleted)
//! manifest/00000000000000000042.json          manifest version 42
//! state/00000000000000000042-<uuid>.json       key/value shards and producer
//!                                              snapshots changed by manifest 42
//! parts/<topic-id>/00002/00000000000000000009.json
//!                                              version 9 of partition 2's manifest
//!                                              (segments, offsets, producers' state)
//! objects/0000000007/00000000000000000012.dat  data object 12 of writer epoch 7
//!                                              (runs of many partitions)
//! data/<topic-id>/00002/00000000000000001000-0000000007.seg
//!                                              partition 2, base offset 1000, writer epoch 7
//! modules/<sha256>.wasm                        an uploaded detector module
//! modules/<sha256>.json                        its registry metadata
//! deployments/<name>/<topic-id>/00002/00000000000000001000.state
//!                                              detector state of partition 2 at input offset 1000
//! nodes/00003/epochs/..., nodes/00003/manifest/..., nodes/00003/objects/...
//!                                              cluster node 3's own objects (see [`Layout`])
//! ```

use object_store::path::Path;
use uuid::Uuid;

const EPOCHS_DIR: &str = "epochs";
const MANIFEST_DIR: &str = "manifest";
const DATA_DIR: &str = "data";
const OBJECTS_DIR: &str = "objects";
const WAL_DIR: &str = "wal";
const STATE_DIR: &str = "state";
const PARTS_DIR: &str = "parts";

/// Key of the owner lease.
pub fn lease() -> Path {
    Path::from("owner/lease.json")
}

/// Prefix under which epoch claims are listed.
pub fn epochs_prefix() -> Path {
    Path::from(EPOCHS_DIR)
}

/// Key of the claim of writer `epoch`. Zero-padded so that a listing that
/// starts after one epoch's key returns exactly the higher epochs.
pub fn epoch_claim(epoch: u64) -> Path {
    Path::from(format!("{EPOCHS_DIR}/{epoch:020}.json"))
}

/// Parses an epoch claim key back into its epoch.
pub fn parse_epoch_claim(key: &Path) -> Option<u64> {
    let mut parts = key.parts();
    if parts.next()?.as_ref() != EPOCHS_DIR {
        return None;
    }
    let epoch = parts.next()?.as_ref().strip_suffix(".json")?.parse().ok()?;
    parts.next().is_none().then_some(epoch)
}

/// Prefix under which manifests are listed.
pub fn manifest_prefix() -> Path {
    Path::from(MANIFEST_DIR)
}

/// Key of manifest `version`.
pub fn manifest(version: u64) -> Path {
    Path::from(format!("{MANIFEST_DIR}/{version:020}.json"))
}

/// Parses a manifest key back into its version.
pub fn parse_manifest(key: &Path) -> Option<u64> {
    let mut parts = key.parts();
    if parts.next()?.as_ref() != MANIFEST_DIR {
        return None;
    }
    let version = parts.next()?.as_ref().strip_suffix(".json")?.parse().ok()?;
    parts.next().is_none().then_some(version)
}

/// Prefix under which state objects are listed.
pub fn state_prefix() -> Path {
    Path::from(STATE_DIR)
}

/// Key of a state object written for manifest `version`. The nonce keeps
/// two attempts at the same version (a retry after an unanswered PUT, or
/// two brokers racing) from ever overwriting each other's object.
pub fn state_object(version: u64, nonce: Uuid) -> Path {
    Path::from(format!("{STATE_DIR}/{version:020}-{nonce}.json"))
}

/// Parses a state object key back into the manifest version it was
/// written for.
pub fn parse_state_object(key: &Path) -> Option<u64> {
    let mut parts = key.parts();
    if parts.next()?.as_ref() != STATE_DIR {
        return None;
    }
    let name = parts.next()?;
    let (version, rest) = name.as_ref().split_once('-')?;
    let nonce = rest.strip_suffix(".json")?;
    Uuid::parse_str(nonce).ok()?;
    if parts.next().is_some() {
        return None;
    }
    version.parse().ok()
}

/// Prefix under which the versions of one partition's manifest are listed.
pub fn part_prefix(topic_id: Uuid, partition: i32) -> Path {
    Path::from(format!("{PARTS_DIR}/{topic_id}/{partition:05}"))
}

/// Key of version `version` of a partition's manifest. Zero-padded so that
/// a listing sorts by version.
pub fn part(topic_id: Uuid, partition: i32, version: u64) -> Path {
    Path::from(format!(
        "{PARTS_DIR}/{topic_id}/{partition:05}/{version:020}.json"
    ))
}

/// Parses a partition manifest key back into its version.
pub fn parse_part(key: &Path) -> Option<u64> {
    parse_part_key(key).map(|(_, _, version)| version)
}

/// Parses a partition manifest key back into its topic id, partition and
/// version.
pub fn parse_part_key(key: &Path) -> Option<(Uuid, i32, u64)> {
    let mut parts = key.parts();
    if parts.next()?.as_ref() != PARTS_DIR {
        return None;
    }
    let topic = Uuid::parse_str(parts.next()?.as_ref()).ok()?;
    let partition = i32::try_from(parts.next()?.as_ref().parse::<u32>().ok()?).ok()?;
    let version = parts.next()?.as_ref().strip_suffix(".json")?.parse().ok()?;
    parts
        .next()
        .is_none()
        .then_some((topic, partition, version))
}

/// Prefix of every partition manifest of every topic.
pub fn parts_prefix() -> Path {
    Path::from(PARTS_DIR)
}

/// Prefix of every partition manifest of a topic (for deletion).
pub fn topic_parts_prefix(topic_id: Uuid) -> Path {
    Path::from(format!("{PARTS_DIR}/{topic_id}"))
}

/// Key of a multi-partition data object. Epoch and sequence make it unique
/// per writer, so a fenced broker can never overwrite the new owner's
/// objects, and a re-upload after a crash within one epoch never happens (the
/// restart bumps the epoch).
pub fn data_object(epoch: u64, seq: u64) -> Path {
    Path::from(format!("{OBJECTS_DIR}/{epoch:010}/{seq:020}.dat"))
}

/// Prefix under which data objects are listed (garbage collection).
pub fn data_objects_prefix() -> Path {
    Path::from(OBJECTS_DIR)
}

/// Prefix under which compacted segment objects are listed.
pub fn segments_prefix() -> Path {
    Path::from(DATA_DIR)
}

/// Prefix of WAL objects (object WAL mode).
pub fn wal_prefix() -> Path {
    Path::from(WAL_DIR)
}

/// Key of WAL object `seq` of writer `epoch`.
pub fn wal_object(epoch: u64, seq: u64) -> Path {
    Path::from(format!("{WAL_DIR}/{epoch:010}/{seq:020}.wal"))
}

/// Parses a WAL object key back into `(epoch, seq)`.
pub fn parse_wal_object(key: &Path) -> Option<(u64, u64)> {
    let mut parts = key.parts();
    if parts.next()?.as_ref() != WAL_DIR {
        return None;
    }
    let epoch = parts.next()?.as_ref().parse().ok()?;
    let seq = parts.next()?.as_ref().strip_suffix(".wal")?.parse().ok()?;
    parts.next().is_none().then_some((epoch, seq))
}

/// Key of a segment object. The writer epoch is part of the name so that a
/// fenced broker's late upload can never overwrite an object the new owner
/// committed.
pub fn segment(topic_id: Uuid, partition: i32, base_offset: i64, epoch: u64) -> Path {
    Path::from(format!(
        "{DATA_DIR}/{topic_id}/{partition:05}/{base_offset:020}-{epoch:010}.seg"
    ))
}

/// Key of a segment written by compaction by key (see
/// [`crate::keycompact`]): beside the writer epoch, a sequence number of
/// the epoch, since one partition can be compacted again from the same base
/// offset in the same epoch.
pub fn keyed_segment(
    topic_id: Uuid,
    partition: i32,
    base_offset: i64,
    epoch: u64,
    seq: u64,
) -> Path {
    Path::from(format!(
        "{DATA_DIR}/{topic_id}/{partition:05}/{base_offset:020}-{epoch:010}-{seq:010}{KEYED_SUFFIX}"
    ))
}

const KEYED_SUFFIX: &str = ".keyed.seg";

/// Whether `key` names a segment written by compaction by key.
pub fn is_keyed_segment(key: &str) -> bool {
    let in_data = key.starts_with(&format!("{DATA_DIR}/"))
        || (key.starts_with(&format!("{NODES_DIR}/")) && key.contains(&format!("/{DATA_DIR}/")));
    in_data && key.ends_with(KEYED_SUFFIX)
}

/// Prefix of all data of a topic (for deletion).
pub fn topic_data_prefix(topic_id: Uuid) -> Path {
    Path::from(format!("{DATA_DIR}/{topic_id}"))
}

const NODES_DIR: &str = "nodes";

/// Where one writer's own objects live. A single broker keeps them at the
/// root (the layout above, unchanged since before clusters). A cluster node
/// keeps them under `nodes/<id>/`: its epoch claims, lease, root manifest
/// and state objects are then its own (nodes do not fence each other), and
/// its data objects, segments, state objects and WAL objects have keys no
/// other node can produce, so they stay readable by whichever node leads a
/// partition next.
/// Partition manifests (`parts/`), modules and detector state are shared
/// and stay at the root.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Layout {
    node: Option<u32>,
}

/// Prefix under which cluster nodes keep their own objects.
pub fn nodes_prefix() -> Path {
    Path::from(NODES_DIR)
}

impl Layout {
    /// The layout of the node whose directory is `dir` (an entry of
    /// [`nodes_prefix`]), if it names one.
    pub fn parse_node_dir(dir: &Path) -> Option<Layout> {
        let mut parts = dir.parts();
        if parts.next()?.as_ref() != NODES_DIR {
            return None;
        }
        let id = parts.next()?.as_ref().parse().ok()?;
        parts.next().is_none().then_some(Layout::node(id))
    }

    /// A single broker's layout: everything at the root.
    pub const SINGLE: Layout = Layout { node: None };

    /// Cluster node `id`'s layout: its own objects under `nodes/<id>/`.
    pub fn node(id: u32) -> Layout {
        Layout { node: Some(id) }
    }

    /// The cluster node this layout belongs to, if any.
    pub fn node_id(&self) -> Option<u32> {
        self.node
    }

    fn scoped(&self, key: Path) -> Path {
        match self.node {
            None => key,
            Some(n) => Path::from(format!("{NODES_DIR}/{n:05}/{key}")),
        }
    }

    /// The store this layout's private objects (epoch claims, lease,
    /// root manifests, WAL objects) are read and written through: `shared`
    /// itself for a single broker, `shared` under `nodes/<id>/` for a
    /// node. Objects another node must read (data, segments, state) are
    /// written through `shared` with this layout's keys instead, so that
    /// the keys partition manifests record are the same for every reader.
    pub fn private_store(
        &self,
        shared: std::sync::Arc<dyn object_store::ObjectStore>,
    ) -> std::sync::Arc<dyn object_store::ObjectStore> {
        match self.node {
            None => shared,
            Some(n) => std::sync::Arc::new(object_store::prefix::PrefixStore::new(
                shared,
                format!("{NODES_DIR}/{n:05}"),
            )),
        }
    }

    /// Prefix of the state objects.
    pub fn state_prefix(&self) -> Path {
        self.scoped(state_prefix())
    }
    /// Key of a state object written for manifest `version`.
    pub fn state_object(&self, version: u64, nonce: Uuid) -> Path {
        self.scoped(state_object(version, nonce))
    }
    /// Prefix of the data objects.
    pub fn data_objects_prefix(&self) -> Path {
        self.scoped(data_objects_prefix())
    }
    /// Key of data object `seq` of writer `epoch`.
    pub fn data_object(&self, epoch: u64, seq: u64) -> Path {
        self.scoped(data_object(epoch, seq))
    }
    /// Prefix of the compacted segments.
    pub fn segments_prefix(&self) -> Path {
        self.scoped(segments_prefix())
    }
    /// Key of a compacted segment.
    pub fn segment(&self, topic_id: Uuid, partition: i32, base_offset: i64, epoch: u64) -> Path {
        self.scoped(segment(topic_id, partition, base_offset, epoch))
    }
    /// Key of a segment compacted by key.
    pub fn keyed_segment(
        &self,
        topic_id: Uuid,
        partition: i32,
        base_offset: i64,
        epoch: u64,
        seq: u64,
    ) -> Path {
        self.scoped(keyed_segment(topic_id, partition, base_offset, epoch, seq))
    }
    /// Prefix of this layout's segments of a topic (for deletion).
    pub fn topic_data_prefix(&self, topic_id: Uuid) -> Path {
        self.scoped(topic_data_prefix(topic_id))
    }
}

const MODULES_DIR: &str = "modules";
const DEPLOYMENTS_DIR: &str = "deployments";

/// Prefix under which uploaded modules and their metadata are listed.
pub fn modules_prefix() -> Path {
    Path::from(MODULES_DIR)
}

/// Key of an uploaded module's bytes; `hash` is its lowercase hex sha256.
pub fn module_wasm(hash: &str) -> Path {
    Path::from(format!("{MODULES_DIR}/{hash}.wasm"))
}

/// Key of an uploaded module's registry metadata.
pub fn module_meta(hash: &str) -> Path {
    Path::from(format!("{MODULES_DIR}/{hash}.json"))
}

/// Parses a module metadata key back into the module hash.
pub fn parse_module_meta(key: &Path) -> Option<String> {
    let name = key.filename()?;
    name.strip_suffix(".json").map(str::to_string)
}

/// Key of a detector state snapshot: deployment `name`, input partition, and
/// the input offset the state has consumed up to (exclusive).
pub fn deployment_state(name: &str, topic_id: Uuid, partition: i32, offset: i64) -> Path {
    Path::from(format!(
        "{DEPLOYMENTS_DIR}/{name}/{topic_id}/{partition:05}/{offset:020}.state"
    ))
}

/// Prefix of all state snapshots of a deployment (for cleanup on undeploy).
pub fn deployment_prefix(name: &str) -> Path {
    Path::from(format!("{DEPLOYMENTS_DIR}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_keys_round_trip_and_sort() {
        assert_eq!(parse_manifest(&manifest(42)), Some(42));
        assert!(manifest(9).as_ref() < manifest(10).as_ref());
        assert_eq!(parse_manifest(&Path::from("manifest/x.json")), None);
    }

    #[test]
    fn state_object_keys_round_trip_and_sort() {
        let a = state_object(9, Uuid::new_v4());
        assert_eq!(parse_state_object(&a), Some(9));
        assert!(a.as_ref() < state_object(10, Uuid::nil()).as_ref());
        assert_eq!(parse_state_object(&manifest(9)), None);
        assert_eq!(parse_state_object(&Path::from("state/9-x.json")), None);
    }

    #[test]
    fn part_keys_round_trip_sort_and_stay_under_their_prefixes() {
        let id = Uuid::new_v4();
        assert_eq!(parse_part(&part(id, 3, 9)), Some(9));
        assert_eq!(parse_part_key(&part(id, 3, 9)), Some((id, 3, 9)));
        assert!(part(id, 3, 9)
            .as_ref()
            .starts_with(&format!("{}/", parts_prefix())));
        assert!(part(id, 3, 9).as_ref() < part(id, 3, 10).as_ref());
        assert!(part(id, 3, 9)
            .as_ref()
            .starts_with(&format!("{}/", part_prefix(id, 3))));
        assert!(part_prefix(id, 3)
            .as_ref()
            .starts_with(topic_parts_prefix(id).as_ref()));
        assert_eq!(parse_part(&manifest(9)), None);
        assert_eq!(parse_part(&Path::from("parts/x/00003/1.json")), None);
    }

    #[test]
    fn epoch_claim_keys_round_trip_and_sort() {
        assert_eq!(parse_epoch_claim(&epoch_claim(7)), Some(7));
        assert!(epoch_claim(9).as_ref() < epoch_claim(10).as_ref());
        assert_eq!(parse_epoch_claim(&manifest(7)), None);
    }

    #[test]
    fn wal_object_keys_round_trip_and_sort() {
        assert_eq!(parse_wal_object(&wal_object(3, 17)), Some((3, 17)));
        assert!(wal_object(3, 99).as_ref() < wal_object(4, 0).as_ref());
        assert_eq!(parse_wal_object(&data_object(3, 17)), None);
    }

    #[test]
    fn data_object_keys_sort_by_epoch_then_sequence() {
        assert!(data_object(7, 99).as_ref() < data_object(7, 100).as_ref());
        assert!(data_object(7, 100).as_ref() < data_object(8, 0).as_ref());
    }

    #[test]
    fn node_layouts_scope_their_own_keys() {
        let (a, b) = (Layout::node(1), Layout::node(2));
        assert_eq!(
            a.data_object(4, 5).as_ref(),
            "nodes/00001/objects/0000000004/00000000000000000005.dat"
        );
        assert!(a
            .data_object(4, 5)
            .as_ref()
            .starts_with(a.data_objects_prefix().as_ref()));
        assert!(!b
            .data_object(4, 5)
            .as_ref()
            .starts_with(a.data_objects_prefix().as_ref()));
        assert_eq!(
            parse_manifest(&Path::from("nodes/00001/manifest/1.json")),
            None
        );
        assert_eq!(
            Layout::parse_node_dir(&Path::from("nodes/00007")),
            Some(Layout::node(7))
        );
        assert_eq!(Layout::parse_node_dir(&Path::from("nodes/x")), None);
        assert_ne!(a.data_object(1, 1), b.data_object(1, 1));
        assert_eq!(Layout::SINGLE.data_object(1, 1), data_object(1, 1));
        let k = a.keyed_segment(Uuid::nil(), 0, 0, 1, 1);
        assert!(is_keyed_segment(k.as_ref()));
        assert!(!is_keyed_segment(a.segment(Uuid::nil(), 0, 0, 1).as_ref()));
    }

    #[test]
    fn segment_keys_sort_by_offset() {
        let id = Uuid::nil();
        assert!(segment(id, 1, 999, 3).as_ref() < segment(id, 1, 1000, 1).as_ref());
        assert!(segment(id, 1, 5, 1)
            .as_ref()
            .starts_with(topic_data_prefix(id).as_ref()));
    }
}
