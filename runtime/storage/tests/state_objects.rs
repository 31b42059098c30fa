//! Issue 11 item 11: state that grows with client behaviour (producers,
//! key/value entries) lives in state objects the manifest references, so the
//! manifest each commit PUTs stays small; the state still survives restarts
//! with a wiped data dir, manifests from before state objects are migrated,
//! and superseded state objects are collected.

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use vigil_storage::manifest::ManifestStore;
use vigil_storage::{paths, AppendOutcome, Log};

use crate::common;

use common::StoreDir as Env;

impl Env {
    /// The newest manifest object's stored size.
    async fn manifest_bytes(&self) -> usize {
        self.root_bytes().await.len()
    }

    async fn state_objects(&self) -> Vec<String> {
        let mut keys: Vec<_> = self
            .list(&paths::state_prefix())
            .await
            .iter()
            .map(|k| k.to_string())
            .collect();
        keys.sort();
        keys
    }
}

fn idempotent(pid: i64, seq: i32) -> Bytes {
    common::batch("v", Some((pid, seq)))
}

async fn topic(log: &Log, name: &str, partitions: i32) {
    common::create_topic(log, name, partitions).await
}

#[tokio::test]
async fn thousands_of_producers_do_not_grow_the_manifest_and_survive_a_wiped_data_dir() {
    const PRODUCERS: usize = 2_000;
    let env = Env::new();
    let (log, _data) = env.open_fresh().await;
    topic(&log, "t", 2).await;
    log.upload_once().await.expect("upload");
    let empty = env.manifest_bytes().await;

    let p0 = log.partition("t", 0).expect("p0");
    let mut pids = Vec::new();
    for _ in 0..PRODUCERS {
        let pid = log.allocate_producer_id().await.expect("pid");
        log.append(&p0, idempotent(pid, 0)).await.expect("append");
        pids.push(pid);
    }
    let p1 = log.partition("t", 1).expect("p1");
    log.append(&p1, idempotent(pids[0], 0))
        .await
        .expect("append");
    log.upload_once().await.expect("upload");
    let flooded = env.manifest_bytes().await;
    println!("manifest: {empty} bytes, {flooded} bytes with {PRODUCERS} producers");
    assert!(
        flooded <= empty + 4096,
        "{empty} -> {flooded} bytes with {PRODUCERS} producers"
    );

    // Only partition 1's producers change: its state moves to a new object,
    // partition 0's reference (and object) stays.
    let refs = |m: &vigil_storage::manifest::Manifest| -> Vec<Option<String>> {
        m.topics["t"]
            .partitions
            .iter()
            .map(|p| p.producers_in.clone())
            .collect()
    };
    let ms = ManifestStore::new(env.store());
    let before = refs(&ms.load_latest().await.expect("load").expect("m"));
    log.append(&p1, idempotent(pids[0], 1))
        .await
        .expect("append");
    log.upload_once().await.expect("upload");
    let after = refs(&ms.load_latest().await.expect("load").expect("m"));
    assert_eq!(before[0], after[0], "partition 0's state was rewritten");
    assert_ne!(before[1], after[1], "partition 1's state was not persisted");
    log.abandon().await;
    drop(log);

    // A retry of the first producer's batch is still a duplicate after a
    // restart that has only the object store.
    let (log, _data2) = env.open_fresh().await;
    let p0 = log.partition("t", 0).expect("p0");
    assert_eq!(
        log.append(&p0, idempotent(pids[0], 0))
            .await
            .expect("retry"),
        AppendOutcome::Duplicate { base_offset: 0 }
    );
    assert_eq!(
        log.append(&p0, idempotent(pids[PRODUCERS - 1], 0))
            .await
            .expect("retry"),
        AppendOutcome::Duplicate {
            base_offset: PRODUCERS as i64 - 1
        }
    );
}

#[tokio::test]
async fn superseded_state_objects_are_collected_and_the_state_stays_whole() {
    let env = Env::new();
    let (log, _data) = env.open_fresh().await;
    for round in 0..5 {
        let puts = (0..50)
            .map(|i| (format!("key-{i}"), Some(format!("round-{round}"))))
            .collect();
        log.kv_put(puts).await.expect("put");
        log.upload_once().await.expect("upload");
    }
    let written = env.state_objects().await.len();
    log.collect_garbage().await.expect("gc");
    let kept = env.state_objects().await;
    let m = ManifestStore::new(env.store())
        .load_latest_bare()
        .await
        .expect("load")
        .expect("m");
    let referenced: std::collections::BTreeSet<_> = m.kv_shards.iter().flatten().collect();
    assert!(
        written > kept.len(),
        "{written} state objects, none collected"
    );
    assert_eq!(
        kept.iter().collect::<std::collections::BTreeSet<_>>(),
        referenced,
        "the collector keeps exactly the referenced state objects"
    );
    log.abandon().await;
    drop(log);
    let (log, _data2) = env.open_fresh().await;
    assert_eq!(log.kv_at_open().len(), 50);
    assert!(log.kv_at_open().values().all(|v| v == "round-4"));
}

#[tokio::test]
async fn a_manifest_with_inline_state_is_read_and_migrated() {
    let env = Env::new();
    // What a broker before state objects wrote: state inline.
    let legacy = serde_json::json!({
        "version": 3,
        "writer_epoch": 0,
        "writer": "old",
        "next_producer_id": 1000,
        "topics": {},
        "kv": {"offsets/g/t/0": "{\"offset\":7}", "cluster-id": "abc"},
    });
    env.store()
        .put(
            &paths::manifest(3),
            PutPayload::from(serde_json::to_vec(&legacy).expect("json")),
        )
        .await
        .expect("put legacy manifest");
    let (log, _data) = env.open_fresh().await;
    assert_eq!(log.kv_at_open().len(), 2);
    log.abandon().await;
    drop(log);
    // Opening committed a new version: the state moved into a state object.
    let m = ManifestStore::new(env.store())
        .load_latest_bare()
        .await
        .expect("load")
        .expect("m");
    assert!(m.version > 3);
    assert!(m.kv_shards.iter().flatten().count() >= 1);
    let body = env
        .store()
        .get(&paths::manifest(m.version))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("read");
    assert!(
        !String::from_utf8_lossy(&body).contains("cluster-id"),
        "state still inline"
    );
    // Even after the legacy version is gone, the state is whole.
    env.store()
        .delete(&Path::from(paths::manifest(3).to_string()))
        .await
        .expect("delete");
    let (log, _data2) = env.open_fresh().await;
    assert_eq!(
        log.kv_at_open().get("cluster-id").map(String::as_str),
        Some("abc")
    );
}
