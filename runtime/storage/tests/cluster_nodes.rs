//! Several cluster nodes on one object store: each keeps its own objects
//! under `nodes/<id>/`, a partition moves between them without copying
//! data (a clean handover, and a takeover from a node that died with
//! acknowledged batches not uploaded), a node that lost a partition stops
//! serving it instead of failing, and one node's collector never deletes
//! objects a partition another node leads still references.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;
use vigil_storage::{AppendError, Log, ManualClock, StorageError, TopicConfig};

use crate::common;

use common::{batch, StoreDir};

async fn topic_on(log: &Log, id: Uuid) {
    topic_with(log, id, 2).await
}

async fn topic_with(log: &Log, id: Uuid, partitions: i32) {
    log.create_topic_with_id(
        "t",
        TopicConfig {
            partitions,
            configs: Default::default(),
        },
        id,
    )
    .await
    .expect("create");
}

async fn append_n(log: &Log, index: i32, tag: &str, n: usize) {
    let p = log.partition("t", index).expect("partition");
    for i in 0..n {
        log.append(&p, batch(&format!("{tag}{i}"), None))
            .await
            .expect("append");
    }
}

async fn records(log: &Log, index: i32) -> usize {
    let p = log.partition("t", index).expect("partition");
    let mut offset = 0;
    let mut n = 0;
    while offset < p.high_watermark() {
        let read = log.read(&p, offset, 1 << 20).await.expect("read");
        let mut rest = &read.records[..];
        assert!(!rest.is_empty(), "nothing read at {offset}");
        while !rest.is_empty() {
            let h = vigil_protocol::batch::BatchHeader::parse(rest).expect("batch");
            if h.base_offset >= offset {
                n += h.offset_count() as usize;
            }
            offset = offset.max(h.last_offset() + 1);
            rest = &rest[h.total_len()..];
        }
    }
    n
}

/// Node 1 with topic `t` (id `id`), leading t-0 with 3 records appended.
async fn node_1_leading_t0(env: &StoreDir, id: Uuid) -> (Arc<Log>, tempfile::TempDir) {
    let (a, dir) = env.open_node(1).await;
    topic_on(&a, id).await;
    a.acquire_partition("t", 0, 1).await.expect("a leads t-0");
    append_n(&a, 0, "a", 3).await;
    (a, dir)
}

/// The collector's grace period of [`node_2_taking_t0_over_on_a_clock`].
const GRACE: Duration = Duration::from_secs(600);

/// Node 2, on a clock the test moves (starting at the store's "now") and
/// with a [`GRACE`] of ten minutes, leading t-0.
async fn node_2_taking_t0_over_on_a_clock(
    env: &StoreDir,
    id: Uuid,
) -> (Arc<Log>, tempfile::TempDir, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now().timestamp_millis()));
    let (b, dir) = env
        .open_node_timed(2, env.store(), clock.clone(), GRACE)
        .await;
    topic_on(&b, id).await;
    b.acquire_partition("t", 0, 2)
        .await
        .expect("b takes t-0 over");
    (b, dir, clock)
}

fn not_leader(e: &AppendError) -> bool {
    matches!(e, AppendError::Storage(StorageError::NotLeader { .. }))
}

#[tokio::test]
async fn partitions_move_between_nodes_through_the_store() {
    let env = StoreDir::new();
    let (a, _da) = env.open_node(1).await;
    let (b, _db) = env.open_node(2).await;
    let id = Uuid::new_v4();
    topic_on(&a, id).await;
    topic_on(&b, id).await;

    // Nothing is served before it is acquired.
    let p0 = a.partition("t", 0).expect("p0");
    assert!(not_leader(
        &a.append(&p0, batch("x", None))
            .await
            .expect_err("not acquired")
    ));

    // Clean handover: a leads t-0, uploads as it releases, b continues.
    a.acquire_partition("t", 0, 1)
        .await
        .expect("a acquires t-0");
    append_n(&a, 0, "a", 5).await;
    a.release_partition("t", 0).await.expect("release");
    b.acquire_partition("t", 0, 2)
        .await
        .expect("b acquires t-0");
    append_n(&b, 0, "b", 3).await;
    assert_eq!(records(&b, 0).await, 8);
    let stale = a.partition("t", 0).expect("p0");
    assert!(not_leader(
        &a.append(&stale, batch("late", None))
            .await
            .expect_err("released")
    ));

    // Takeover after a crash: b acknowledges t-1 and never uploads; a
    // recovers the batches from b's WAL objects.
    b.acquire_partition("t", 1, 1)
        .await
        .expect("b acquires t-1");
    append_n(&b, 1, "c", 4).await;
    a.acquire_partition("t", 1, 2)
        .await
        .expect("a takes t-1 over");
    assert_eq!(records(&a, 1).await, 4);
    append_n(&a, 1, "d", 1).await;
    a.upload_once().await.expect("a uploads");

    // b wakes up: its upload finds t-1 led at a newer epoch, gives it up
    // and still commits the rest (t-0, which it leads).
    append_n(&b, 0, "e", 1).await;
    b.upload_once().await.expect("b's commit lands without t-1");
    assert!(!b.partition("t", 1).expect("t-1").is_serving());
    assert!(b.partition("t", 0).expect("t-0").is_serving());

    // a's collector keeps the object b's t-0 chain references.
    a.collect_garbage().await.expect("gc");
    let (c, _dc) = env.open_node(3).await;
    topic_on(&c, id).await;
    b.release_partition("t", 0).await.expect("release t-0");
    c.acquire_partition("t", 0, 3)
        .await
        .expect("c acquires t-0");
    assert_eq!(records(&c, 0).await, 9);
    a.release_partition("t", 1).await.expect("release t-1");
    c.acquire_partition("t", 1, 3)
        .await
        .expect("c acquires t-1");
    assert_eq!(records(&c, 1).await, 5);

    // Every node's objects are under its own prefix.
    for key in env.list(&object_store::path::Path::from("")).await {
        let k = key.as_ref();
        assert!(
            k.starts_with("nodes/") || k.starts_with("parts/"),
            "{k} is outside the node and partition prefixes"
        );
    }
    let _: Vec<Arc<Log>> = vec![a, b, c];
}

#[tokio::test]
async fn a_node_that_still_serves_a_stale_partition_reloads_it_when_it_leads_again() {
    let env = StoreDir::new();
    let (a, _da) = env.open_node(1).await;
    let (b, _db) = env.open_node(2).await;
    let id = Uuid::new_v4();
    topic_on(&a, id).await;
    topic_on(&b, id).await;
    a.acquire_partition("t", 0, 1).await.expect("a leads");
    append_n(&a, 0, "a", 2).await;
    // a is paused: b takes over and writes more.
    b.acquire_partition("t", 0, 2).await.expect("b takes over");
    append_n(&b, 0, "b", 3).await;
    b.release_partition("t", 0).await.expect("b hands back");
    // a wakes up still serving its old view and is given the partition.
    assert!(a.partition("t", 0).expect("p").is_serving());
    a.acquire_partition("t", 0, 3).await.expect("a leads again");
    assert_eq!(records(&a, 0).await, 5);
    append_n(&a, 0, "c", 1).await;
    assert_eq!(records(&a, 0).await, 6);
}

/// A takeover of many partitions from a dead node reads each of its WAL
/// objects once, not once per partition (each object holds batches of many
/// partitions), and an object its owner deleted after listing (uploaded
/// meanwhile) does not fail the acquire.
#[tokio::test]
async fn a_takeover_of_many_partitions_reads_each_wal_object_once() {
    const PARTITIONS: i32 = 6;
    let env = StoreDir::new();
    let faulty = Arc::new(vigil_storage::store::faulty::FaultyStore::new(env.store()));
    let reads = faulty.control();
    let (a, _da) = env.open_node_on(1, faulty).await;
    let (b, _db) = env.open_node(2).await;
    let id = Uuid::new_v4();
    topic_with(&a, id, PARTITIONS).await;
    topic_with(&b, id, PARTITIONS).await;
    // b leads every partition, acknowledges batches and dies before
    // uploading them.
    for i in 0..PARTITIONS {
        b.acquire_partition("t", i, 1).await.expect("b leads");
    }
    for round in 0..3 {
        for i in 0..PARTITIONS {
            append_n(&b, i, &format!("r{round}p{i}-"), 1).await;
        }
    }
    b.abandon().await;
    for i in 0..PARTITIONS {
        a.acquire_partition("t", i, 2).await.expect("a takes over");
        assert_eq!(records(&a, i).await, 3, "partition {i} recovered");
    }
    let gets: Vec<_> = reads
        .gets_under("nodes/")
        .into_iter()
        .filter(|(k, _)| k.contains("/wal/"))
        .collect();
    assert!(
        !gets.is_empty(),
        "a read none of b's WAL objects; its GETs: {:?}",
        reads.gets_under("")
    );
    let repeated: Vec<_> = gets.iter().filter(|(_, n)| *n > 1).collect();
    assert!(
        repeated.is_empty(),
        "WAL objects read more than once across {PARTITIONS} takeovers: {repeated:?}"
    );
}

/// A node that died and never came back leaves WAL objects nobody else
/// deleted: they piled up for good, and every takeover read them again.
/// Once the partitions' new leaders have uploaded every batch in them, a
/// live node's collector deletes them; before, they stay, as they hold the
/// only copy. An object with key/value entries the dead node's manifest
/// does not reflect yet also stays: a node that comes back under the same
/// id replays those at open.
#[tokio::test]
async fn a_departed_nodes_wal_objects_go_once_their_batches_are_uploaded() {
    let env = StoreDir::new();
    let id = Uuid::new_v4();
    let (a, _da) = node_1_leading_t0(&env, id).await;
    a.kv_put(vec![("k".to_string(), Some("v".to_string()))])
        .await
        .expect("kv");
    append_n(&a, 0, "b", 2).await;
    a.abandon().await; // a crash: acknowledged, not uploaded; a never returns
    drop(a);
    let dir = object_store::path::Path::from("nodes/00001/wal");
    let left_by_a = env.list(&dir).await;
    assert!(
        left_by_a.len() >= 2,
        "the crash left WAL objects: {left_by_a:?}"
    );

    let (b, _db) = env.open_node(2).await;
    topic_on(&b, id).await;
    b.collect_garbage().await.expect("gc");
    assert_eq!(
        env.list(&dir).await,
        left_by_a,
        "nobody uploaded t-0's batches yet: a's objects hold the only copy"
    );
    b.acquire_partition("t", 0, 2)
        .await
        .expect("b takes t-0 over");
    assert_eq!(records(&b, 0).await, 5, "b recovered what a acknowledged");
    b.upload_once().await.expect("b uploads t-0");
    b.collect_garbage().await.expect("gc");
    let left = env.list(&dir).await;
    assert_eq!(
        left.len(),
        1,
        "only the object with a's uncommitted key/value entry stays: {left:?}"
    );
    // What stays is still readable by a node that takes t-0 over later.
    let (c, _dc) = env.open_node(3).await;
    topic_on(&c, id).await;
    b.release_partition("t", 0).await.expect("release");
    c.acquire_partition("t", 0, 3)
        .await
        .expect("c acquires t-0");
    assert_eq!(records(&c, 0).await, 5);
    let _: Vec<Arc<Log>> = vec![b, c];
}

/// Another node's WAL objects are read only once they are older than the
/// collector's grace period: a running node deletes its own within an
/// upload interval, and reading them from every other node too doubled
/// the cluster's WAL reads for nothing.
#[tokio::test]
async fn another_nodes_wal_objects_are_left_alone_while_young() {
    let env = StoreDir::new();
    let id = Uuid::new_v4();
    let (a, _da) = node_1_leading_t0(&env, id).await;
    a.abandon().await; // a crash: acknowledged, not uploaded
    drop(a);
    let dir = object_store::path::Path::from("nodes/00001/wal");
    let left_by_a = env.list(&dir).await;
    assert!(!left_by_a.is_empty(), "the crash left WAL objects");

    let (b, _db, clock) = node_2_taking_t0_over_on_a_clock(&env, id).await;
    b.upload_once().await.expect("b uploads t-0");
    b.collect_garbage().await.expect("gc");
    assert_eq!(
        env.list(&dir).await,
        left_by_a,
        "a's objects are younger than the grace period: left to a"
    );
    clock.advance(GRACE.as_millis() as i64 + 1_000);
    b.collect_garbage().await.expect("gc");
    assert_eq!(
        env.list(&dir).await,
        Vec::<object_store::path::Path>::new(),
        "older than the grace period and uploaded: collected"
    );
}

/// A departed node's uploaded objects go once no partition chain references
/// them and they are older than the grace period (before, nobody ever
/// deleted them). While a chain references them they stay, even the chain
/// of a topic the collecting node has not heard of.
#[tokio::test]
async fn a_departed_nodes_objects_go_once_no_chain_references_them() {
    let env = StoreDir::new();
    let id = Uuid::new_v4();
    let (a, _da) = node_1_leading_t0(&env, id).await;
    a.upload_once().await.expect("a uploads t-0");
    a.abandon().await; // a never returns
    drop(a);
    let objects = object_store::path::Path::from("nodes/00001/objects");
    let uploaded = env.list(&objects).await;
    assert!(!uploaded.is_empty(), "a uploaded t-0's batches");

    let (c, _dc) = env.open_node(3).await; // has not heard of t
    c.collect_garbage().await.expect("gc");
    assert_eq!(
        env.list(&objects).await,
        uploaded,
        "t-0's chain references them"
    );

    let (b, _db, clock) = node_2_taking_t0_over_on_a_clock(&env, id).await;
    let p = b.partition("t", 0).expect("partition");
    b.delete_records(&p, p.high_watermark())
        .await
        .expect("delete records");
    b.enforce_retention().await.expect("retention");
    assert_eq!(
        env.list(&objects).await,
        uploaded,
        "unreferenced now, but younger than the grace period"
    );
    clock.advance(GRACE.as_millis() as i64 + 1_000);
    b.collect_garbage().await.expect("gc");
    assert_eq!(
        env.list(&objects).await,
        Vec::<object_store::path::Path>::new(),
        "unreferenced and old: collected"
    );
    let _: Vec<Arc<Log>> = vec![b, c];
}

/// The WAL objects a node finds from its earlier run are kept while they
/// hold the only copy of acknowledged batches, and collected once the
/// partition's leader has uploaded those batches (before, they piled up
/// with every restart and every takeover read them again).
#[tokio::test]
async fn wal_objects_of_an_earlier_run_go_once_their_batches_are_uploaded() {
    let env = StoreDir::new();
    let id = Uuid::new_v4();
    let (a, _da) = node_1_leading_t0(&env, id).await;
    a.abandon().await; // a crash: acknowledged, not uploaded
    drop(a);
    let wal_objects = || async {
        env.list(&object_store::path::Path::from("nodes/00001/wal"))
            .await
    };
    let first_run = wal_objects().await;
    assert!(!first_run.is_empty(), "the crash left WAL objects");

    // Node 1 comes back and writes a little under its new epoch.
    let (a, _da2) = env.open_node(1).await;
    a.acquire_partition("t", 1, 1).await.expect("a leads t-1");
    append_n(&a, 1, "n", 1).await;
    a.upload_once().await.expect("a uploads t-1");
    a.collect_garbage().await.expect("gc");
    let kept = wal_objects().await;
    assert!(
        first_run.iter().all(|k| kept.contains(k)),
        "nobody uploaded t-0's batches yet: the objects holding them stay ({kept:?})"
    );

    // Another node takes t-0 over, recovers the batches and uploads them.
    let (b, _db) = env.open_node(2).await;
    topic_on(&b, id).await;
    b.acquire_partition("t", 0, 2)
        .await
        .expect("b takes t-0 over");
    assert_eq!(records(&b, 0).await, 3, "b recovered what a acknowledged");
    b.upload_once().await.expect("b uploads t-0");
    a.collect_garbage().await.expect("gc");
    let left = wal_objects().await;
    assert!(
        first_run.iter().all(|k| !left.contains(k)),
        "the earlier run's WAL objects are collected: {left:?}"
    );
    let _: Vec<Arc<Log>> = vec![a, b];
}
