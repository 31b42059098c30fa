//! Several brokers on one object store, each with its own coordinator
//! instance (nothing shared in memory, as with separate processes): racing
//! for partitions gives each exactly one leader, all brokers agree on it,
//! and a frozen broker's partitions go to another only after its session
//! expired and its checks stopped passing.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use vigil_coord::store::StoreCoordinator;
use vigil_coord::{CoordError, Coordinator, TopicPartition};

async fn brokers_share_one_store(coords: Vec<StoreCoordinator>) {
    let parts: Vec<TopicPartition> = (0..8).map(|p| TopicPartition::new("orders", p)).collect();
    let mut sessions = Vec::new();
    for (i, c) in coords.iter().enumerate() {
        sessions.push(c.join(node(i as i32 + 1), quick()).await.expect("join"));
    }
    // Every broker tries to take every partition at once.
    let mut tasks = Vec::new();
    for (c, s) in coords.iter().zip(&sessions) {
        for tp in &parts {
            let (c, s, tp) = (c.clone(), s.clone(), tp.clone());
            tasks.push(tokio::spawn(async move { c.acquire(&s, &tp).await }));
        }
    }
    let mut won = Vec::new();
    for t in tasks {
        match t.await.expect("task") {
            Ok(l) => won.push(l),
            Err(CoordError::HeldElsewhere { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    won.sort_by(|a, b| a.tp.cmp(&b.tp));
    assert_eq!(
        won.len(),
        parts.len(),
        "each partition won exactly once: {won:?}"
    );
    for c in &coords {
        assert_eq!(
            c.leaders().await.expect("leaders"),
            won,
            "every broker sees the same leaders"
        );
    }
    for l in &won {
        let holder = &sessions[(l.node - 1) as usize];
        holder.check(&l.tp, l.epoch).expect("the winner leads");
    }

    // The leader of the first partition freezes (so it has partitions to
    // lose: the race may leave a broker with none); the next broker, which
    // has never seen it stop, takes them once its session expired.
    let f = (won[0].node - 1) as usize;
    let (taker, other) = ((f + 1) % 3, (f + 2) % 3);
    let frozen = &sessions[f];
    let mine: Vec<_> = won
        .iter()
        .filter(|l| l.node == won[0].node)
        .cloned()
        .collect();
    frozen.abandon();
    for l in &mine {
        let got = take_over_from_frozen(
            &coords[taker],
            &sessions[taker],
            frozen,
            &l.tp,
            l.epoch,
            Duration::from_secs(20),
        )
        .await;
        assert_eq!((got.node, got.epoch), (taker as i32 + 1, l.epoch + 1));
    }
    // The third broker drops the frozen one from the members once it sees
    // the reaped heartbeat or has itself seen it unrenewed for its TTL
    // (liveness is observed per process, from its own first sight).
    let mut rest = vec![taker as i32 + 1, other as i32 + 1];
    rest.sort();
    wait_for(
        "the frozen broker to leave the members",
        Duration::from_secs(20),
        || {
            let (c, rest) = (&coords[other], rest.clone());
            async move { (member_ids(c).await == rest).then_some(()) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_fs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coords = (0..3)
        .map(|_| {
            let fs =
                object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("store");
            StoreCoordinator::new(Arc::new(fs), store_settings())
        })
        .collect();
    brokers_share_one_store(coords).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seaweedfs() {
    let s3 = Seaweed::start().await;
    let prefix = object_store::path::Path::from(format!("t-{}", uuid::Uuid::new_v4().simple()));
    let coords = (0..3)
        .map(|_| {
            let store = object_store::prefix::PrefixStore::new(s3.store.clone(), prefix.clone());
            StoreCoordinator::new(Arc::new(store), store_settings())
        })
        .collect();
    brokers_share_one_store(coords).await;
}
