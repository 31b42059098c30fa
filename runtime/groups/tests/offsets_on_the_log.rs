//! Committed offsets on a real log: how much manifest each costs, and that expiry deletes
//! them durably (a restart does not bring them back).

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt};
use vigil_groups::{GroupConfig, GroupCoordinator, LogGroupStore};
use vigil_storage::manifest::ManifestStore;
use vigil_storage::{Log, LogConfig, ManualClock, TopicConfig};

const GROUPS: usize = 1_000;
const RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

struct Env {
    objects: tempfile::TempDir,
    data: tempfile::TempDir,
    clock: Arc<ManualClock>,
}

impl Env {
    fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(LocalFileSystem::new_with_prefix(self.objects.path()).expect("store"))
    }

    async fn open(&self) -> (Arc<Log>, Arc<GroupCoordinator>, Arc<LogGroupStore>) {
        let mut c = LogConfig::new(self.data.path());
        c.lease_interval = Duration::from_millis(10);
        let log = Log::open_with_clock(c, self.store(), self.clock.clone())
            .await
            .expect("open log");
        let store = Arc::new(LogGroupStore::new(log.clone()));
        let coord = GroupCoordinator::new(GroupConfig::default(), store.clone());
        store.restore_into(&coord);
        (log, coord, store)
    }

    /// Size of the newest manifest object as stored (not re-encoded: what
    /// each commit PUTs).
    async fn manifest_bytes(&self) -> usize {
        let m = ManifestStore::new(self.store())
            .load_latest()
            .await
            .expect("load")
            .expect("a manifest");
        let key = vigil_storage::paths::manifest(m.version);
        let body = self.store().get(&key).await.expect("get manifest");
        body.bytes().await.expect("read manifest").len()
    }
}

async fn commit(coord: &Arc<GroupCoordinator>, group: &str, offset: i64) {
    let resp = coord
        .offset_commit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset)])]),
            7,
        )
        .await;
    assert_eq!(
        resp.topics[0].partitions[0].error_code, 0,
        "commit of {group}"
    );
}

#[tokio::test]
async fn a_thousand_groups_cost_manifest_bytes_until_their_offsets_expire_durably() {
    let env = Env {
        objects: tempfile::tempdir().expect("tempdir"),
        data: tempfile::tempdir().expect("tempdir"),
        clock: Arc::new(ManualClock::new(1_700_000_000_000)),
    };
    let (log, coord, _store) = env.open().await;
    log.create_topic(
        "t",
        TopicConfig {
            partitions: 1,
            configs: Default::default(),
        },
    )
    .await
    .expect("create");
    log.upload_once().await.expect("upload");
    let empty = env.manifest_bytes().await;

    for i in 0..GROUPS {
        commit(&coord, &format!("group-{i:05}"), i as i64).await;
    }
    log.upload_once().await.expect("upload");
    let flooded = env.manifest_bytes().await;
    println!("manifest: {empty} bytes, {flooded} bytes with {GROUPS} committed offsets");
    // The key/value state lives in state objects the manifest references by
    // key: the manifest grows by those references, not with the offsets.
    assert!(
        flooded <= empty + 4096,
        "{empty} bytes -> {flooded} bytes after {GROUPS} committed offsets"
    );
    log.close().await;
    drop((log, coord));

    // The offsets come back from the state objects after a restart (the WAL
    // segments that held them were deleted by the upload).
    let (log, coord, _store) = env.open().await;
    assert_eq!(coord.snapshot_offsets().len(), GROUPS);

    env.clock.advance(RETENTION_MS);
    assert_eq!(coord.expire_offsets().await, GROUPS);
    log.upload_once().await.expect("upload");
    let expired = env.manifest_bytes().await;
    println!("manifest after expiry: {expired} bytes");
    // The shard references are gone again (a few bytes of empty slots stay).
    assert!(
        expired < flooded && expired <= empty + 256,
        "{empty} -> {flooded} -> {expired}"
    );
    log.close().await;
    drop((log, coord));

    // After a restart the expired offsets stay gone.
    let (_log, coord, _store) = env.open().await;
    assert!(coord.snapshot_offsets().is_empty());
}

#[tokio::test]
async fn expiry_tombstones_in_the_wal_survive_a_crash_before_upload() {
    let env = Env {
        objects: tempfile::tempdir().expect("tempdir"),
        data: tempfile::tempdir().expect("tempdir"),
        clock: Arc::new(ManualClock::new(1_700_000_000_000)),
    };
    let (log, coord, _store) = env.open().await;
    log.create_topic(
        "t",
        TopicConfig {
            partitions: 1,
            configs: Default::default(),
        },
    )
    .await
    .expect("create");
    commit(&coord, "old", 1).await;
    log.upload_once().await.expect("upload");
    env.clock.advance(RETENTION_MS / 2);
    commit(&coord, "new", 2).await;
    env.clock.advance(RETENTION_MS / 2);
    assert_eq!(coord.expire_offsets().await, 1);
    // Crash: the tombstone is only in the WAL.
    log.abandon().await;
    drop((log, coord));

    let (_log, coord, _store) = env.open().await;
    let groups: Vec<String> = coord
        .snapshot_offsets()
        .into_iter()
        .map(|(k, _)| k.group)
        .collect();
    assert_eq!(groups, vec!["new".to_string()]);
}
