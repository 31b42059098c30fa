//! Partition manifests: each partition's segments live in its own chain of
//! objects, the root manifest holds none, a commit rewrites only the
//! partitions that changed, and roots from before the split still open.

use object_store::{ObjectStoreExt, PutPayload};
use vigil_protocol::kafka_protocol::records::RecordBatchDecoder;
use vigil_storage::manifest::ManifestStore;
use vigil_storage::{paths, Log};

use crate::common;

use common::StoreDir as Env;

impl Env {
    /// Versions of partition `p`'s manifest in the store.
    async fn part_versions(&self, log: &Log, topic: &str, p: i32) -> Vec<u64> {
        let id = log.topic(topic).expect("topic").id;
        let mut v: Vec<u64> = self
            .list(&paths::part_prefix(id, p))
            .await
            .iter()
            .filter_map(paths::parse_part)
            .collect();
        v.sort();
        v
    }

    /// The newest root manifest, as JSON.
    async fn root_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.root_bytes().await).expect("json")
    }
}

fn batch(tag: &str) -> bytes::Bytes {
    common::batch(tag, None)
}

async fn values(log: &Log, topic: &str, p: i32) -> Vec<String> {
    let part = log.partition(topic, p).expect("partition");
    let mut bytes = log.read(&part, 0, 1 << 20).await.expect("read").records;
    RecordBatchDecoder::decode_all(&mut bytes)
        .expect("decode")
        .into_iter()
        .flat_map(|s| s.records)
        .map(|r| String::from_utf8_lossy(&r.value.unwrap_or_default()).into_owned())
        .collect()
}

#[tokio::test]
async fn each_partition_has_its_own_manifest_and_only_changed_ones_are_rewritten() {
    let env = Env::new();
    let (log, _data) = env.open_fresh().await;
    common::create_topic(&log, "t", 3).await;
    // Creating a topic writes no partition manifest.
    for p in 0..3 {
        assert!(env.part_versions(&log, "t", p).await.is_empty());
    }

    let p0 = log.partition("t", 0).expect("p0");
    log.append(&p0, batch("a")).await.expect("append");
    log.upload_once().await.expect("upload");
    assert_eq!(env.part_versions(&log, "t", 0).await, vec![1]);
    assert!(env.part_versions(&log, "t", 1).await.is_empty());

    let p1 = log.partition("t", 1).expect("p1");
    log.append(&p1, batch("b")).await.expect("append");
    log.upload_once().await.expect("upload");
    assert_eq!(
        env.part_versions(&log, "t", 0).await,
        vec![1],
        "p0 rewritten"
    );
    assert_eq!(env.part_versions(&log, "t", 1).await, vec![1]);

    let root = env.root_json().await;
    assert!(
        !root.to_string().contains("segments"),
        "the root manifest holds segment lists: {root}"
    );
    assert_eq!(root["topics"]["t"]["partition_count"], 3);
    log.abandon().await;
    drop(log);

    let (log, _data2) = env.open_fresh().await;
    assert_eq!(values(&log, "t", 0).await, vec!["a"]);
    assert_eq!(values(&log, "t", 1).await, vec!["b"]);
    assert!(values(&log, "t", 2).await.is_empty());
}

#[tokio::test]
async fn a_root_from_before_partition_manifests_opens_and_is_written_out() {
    let env = Env::new();
    let (log, _data) = env.open_fresh().await;
    common::create_topic(&log, "t", 2).await;
    let p1 = log.partition("t", 1).expect("p1");
    log.append(&p1, batch("old")).await.expect("append");
    log.upload_once().await.expect("upload");
    let full = ManifestStore::new(env.store())
        .load_latest()
        .await
        .expect("load")
        .expect("manifest");
    log.abandon().await;
    drop(log);

    // Rewrite the newest root the old way: partitions inline, no
    // partition manifests.
    let mut root = env.root_json().await;
    let version = root["version"].as_u64().expect("version") + 1;
    root["version"] = version.into();
    let t = root["topics"]["t"].as_object_mut().expect("topic");
    t.remove("partition_count");
    t.insert(
        "partitions".into(),
        serde_json::to_value(&full.topics["t"].partitions).expect("partitions"),
    );
    let store = env.store();
    for key in env.list(&object_store::path::Path::from("parts")).await {
        store.delete(&key).await.expect("delete");
    }
    store
        .put(
            &paths::manifest(version),
            PutPayload::from(serde_json::to_vec(&root).expect("json")),
        )
        .await
        .expect("put");

    let (log, _data2) = env.open_fresh().await;
    assert_eq!(values(&log, "t", 1).await, vec!["old"]);
    // Opening commits a root with the new epoch, which writes the inline
    // partitions out.
    assert_eq!(env.part_versions(&log, "t", 0).await, vec![1]);
    assert_eq!(env.part_versions(&log, "t", 1).await, vec![1]);
    assert_eq!(env.root_json().await["topics"]["t"]["partition_count"], 2);
    let p0 = log.partition("t", 0).expect("p0");
    log.append(&p0, batch("new")).await.expect("append");
    log.upload_once().await.expect("upload");
    assert_eq!(env.part_versions(&log, "t", 0).await, vec![1, 2]);
    assert_eq!(env.part_versions(&log, "t", 1).await, vec![1]);
    log.abandon().await;
    drop(log);
    let (log, _data3) = env.open_fresh().await;
    assert_eq!(values(&log, "t", 0).await, vec!["new"]);
    assert_eq!(values(&log, "t", 1).await, vec!["old"]);
}

/// Leader epochs of the batches in fetched bytes.
async fn batch_epochs(log: &Log, topic: &str, p: i32) -> Vec<i32> {
    let part = log.partition(topic, p).expect("partition");
    let mut epochs = Vec::new();
    let mut offset = 0;
    while offset < part.high_watermark() {
        let mut bytes = log
            .read(&part, offset, 1 << 20)
            .await
            .expect("read")
            .records;
        while bytes.len() >= 61 {
            let h = vigil_protocol::BatchHeader::parse(&bytes).expect("header");
            epochs.push(h.partition_leader_epoch);
            offset = h.last_offset() + 1;
            let _ = bytes.split_to(h.batch_length as usize + 12);
        }
    }
    epochs
}

#[tokio::test]
async fn each_open_starts_a_leader_epoch_that_batches_carry_and_the_manifest_keeps() {
    let env = Env::new();
    let (log, _data) = env.open_fresh().await;
    common::create_topic(&log, "t", 1).await;
    let p = log.partition("t", 0).expect("p");
    let first = p.leader_epoch();
    assert!(first > 0, "no leader epoch: {first}");
    log.append(&p, batch("a")).await.expect("append");
    log.append(&p, batch("b")).await.expect("append");
    log.upload_once().await.expect("upload");
    log.abandon().await;
    drop(log);

    // A wiped data dir: the history comes from the partition manifest.
    let (log, _data2) = env.open_fresh().await;
    let p = log.partition("t", 0).expect("p");
    let second = p.leader_epoch();
    assert!(second > first, "{second} after {first}");
    log.append(&p, batch("c")).await.expect("append");
    assert_eq!(batch_epochs(&log, "t", 0).await, vec![first, first, second]);
    assert_eq!(p.end_offset_for_epoch(first), (first, 2));
    assert_eq!(p.end_offset_for_epoch(second), (second, 3));
    assert_eq!(p.end_offset_for_epoch(second + 1), (-1, -1));
    log.upload_once().await.expect("upload");
    log.abandon().await;
    drop(log);

    let (log, _data3) = env.open_fresh().await;
    let p = log.partition("t", 0).expect("p");
    assert_eq!(p.end_offset_for_epoch(first), (first, 2));
    assert_eq!(p.end_offset_for_epoch(second), (second, 3));
}
