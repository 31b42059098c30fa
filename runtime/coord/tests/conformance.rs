//! The same suite against every backend: etcd (a real etcd on loopback),
//! the object store on InMemory, on LocalFileSystem and on SeaweedFS (S3
//! with conditional PUT, on loopback).

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use vigil_coord::{
    CoordError, Expect, LeaderEvent, MetaEvent, NodeEvent, SessionSettings, TopicPartition, Watched,
};

const T: Duration = Duration::from_secs(10);

async fn membership(c: Dyn) {
    let mut watch = c.watch_members().await.expect("watch");
    match next(&mut watch, T).await {
        Watched::Resync(m) => assert!(m.is_empty(), "no members yet: {m:?}"),
        other => panic!("first item is a resync, got {other:?}"),
    }
    let a = c.join(node(1), quick()).await.expect("1 joins");
    let b = c.join(node(2), quick()).await.expect("2 joins");
    let ids = member_ids(c.as_ref()).await;
    assert_eq!(ids, vec![1, 2]);
    let member = c.members().await.expect("members").remove(0);
    assert_eq!(member.node, node(1));
    assert_eq!(member.session, a.id());

    let mut joined = BTreeSet::new();
    while joined.len() < 2 {
        if let Watched::Change(NodeEvent::Joined(m)) = next(&mut watch, T).await {
            joined.insert(m.node.node_id);
        }
    }
    // Node id 1 is taken by a live session: refused after waiting a TTL.
    match c.join(node(1), quick()).await {
        Err(CoordError::DuplicateNode { node, .. }) => assert_eq!(node, 1),
        other => panic!("expected DuplicateNode, got {other:?}"),
    }
    b.close().await.expect("2 leaves");
    loop {
        if let Watched::Change(NodeEvent::Left(id)) = next(&mut watch, T).await {
            assert_eq!(id, 2);
            break;
        }
    }
    let ids = member_ids(c.as_ref()).await;
    assert_eq!(ids, vec![1]);
    // Node 2 can come back at once after a clean leave.
    let b2 = c.join(node(2), quick()).await.expect("2 rejoins");
    assert_ne!(b2.id(), b.id());
}

async fn leadership(c: Dyn) {
    let tp = TopicPartition::new("orders", 3);
    let a = c.join(node(1), quick()).await.expect("join");
    let b = c.join(node(2), quick()).await.expect("join");
    let mut watch = c.watch_leaders().await.expect("watch");
    assert_eq!(next(&mut watch, T).await, Watched::Resync(vec![]));

    let l = c.acquire(&a, &tp).await.expect("a acquires");
    assert_eq!((l.node, l.epoch, l.fence_wait_ms), (1, 1, 0));
    a.check(&tp, 1).expect("a leads at epoch 1");
    assert!(matches!(a.check(&tp, 2), Err(CoordError::NotLeader { .. })));
    assert!(matches!(b.check(&tp, 1), Err(CoordError::NotLeader { .. })));
    assert_eq!(c.acquire(&a, &tp).await.expect("idempotent").epoch, 1);
    match c.acquire(&b, &tp).await {
        Err(CoordError::HeldElsewhere { leader, epoch, .. }) => assert_eq!((leader, epoch), (1, 1)),
        other => panic!("expected HeldElsewhere, got {other:?}"),
    }
    assert_eq!(c.leader(&tp).await.expect("leader"), Some(l.clone()));
    assert_eq!(c.leaders().await.expect("leaders"), vec![l.clone()]);
    loop {
        if let Watched::Change(LeaderEvent::Elected(e)) = next(&mut watch, T).await {
            assert_eq!(e, l);
            break;
        }
    }

    c.release(&a, &tp, 1).await.expect("release");
    assert!(matches!(a.check(&tp, 1), Err(CoordError::NotLeader { .. })));
    assert_eq!(c.leader(&tp).await.expect("leader"), None);
    loop {
        if let Watched::Change(LeaderEvent::Vacant(v)) = next(&mut watch, T).await {
            assert_eq!(v, tp);
            break;
        }
    }
    // The epoch survives the vacancy.
    let l2 = c.acquire(&b, &tp).await.expect("b acquires");
    assert_eq!((l2.node, l2.epoch), (2, 2));
    b.check(&tp, 2).expect("b leads");
    // a's later refresh must not bring back its old leadership.
    a.refresh().await.expect("refresh");
    assert!(a.check(&tp, 1).is_err());
    assert!(a.held().is_empty());
}

async fn handover_and_forced_takeover(c: Dyn) {
    let tp = TopicPartition::new("orders", 0);
    let settings = SessionSettings {
        ttl: Duration::from_secs(3),
        validity: Duration::from_millis(1500),
    };
    let a = c.join(node(1), settings).await.expect("join");
    let b = c.join(node(2), settings).await.expect("join");
    let cc = c.join(node(3), settings).await.expect("join");
    c.acquire(&a, &tp).await.expect("acquire");

    // Clean handover by the leader: a stops at once, b needs no wait.
    let l = c.transfer(&a, &tp, Some(1), 2).await.expect("handover");
    assert_eq!((l.node, l.epoch, l.fence_wait_ms), (2, 2, 0));
    assert!(
        a.check(&tp, 1).is_err(),
        "the old leader stops before the write"
    );
    b.refresh().await.expect("b learns");
    b.check(&tp, 2)
        .expect("b leads at once after a clean handover");
    // A stale expectation loses.
    assert!(matches!(
        c.transfer(&a, &tp, Some(1), 3).await,
        Err(CoordError::Conflict { .. })
    ));
    assert!(matches!(
        c.transfer(&a, &tp, None, 9).await,
        Err(CoordError::UnknownNode { node: 9 })
    ));

    // Forced takeover by node 3 while b lives: 3 waits out b's validity.
    let forced = c.transfer(&cc, &tp, Some(2), 3).await.expect("forced");
    assert_eq!(forced.epoch, 3);
    assert_eq!(forced.fence_wait_ms, 1500);
    assert!(matches!(
        cc.check(&tp, 3),
        Err(CoordError::Unconfirmed { .. })
    ));
    // Until b's view learns of it, b may still pass — but never once cc does.
    let t0 = std::time::Instant::now();
    cc.wait_usable(&tp, 3, Duration::from_secs(5))
        .await
        .expect("usable after the wait");
    assert!(
        t0.elapsed() >= Duration::from_millis(1400),
        "waited {:?}",
        t0.elapsed()
    );
    assert!(
        b.check(&tp, 2).is_err(),
        "b is fenced by the time 3 acknowledges"
    );
}

async fn concurrent_acquirers_get_growing_epochs(c: Dyn) {
    let tp = TopicPartition::new("race", 0);
    let mut sessions = Vec::new();
    for id in 1..=4 {
        sessions.push(c.join(node(id), quick()).await.expect("join"));
    }
    let mut epochs = Vec::new();
    for round in 0..5 {
        let mut tasks = Vec::new();
        for s in &sessions {
            let (c, s, tp) = (c.clone(), s.clone(), tp.clone());
            tasks.push(tokio::spawn(async move {
                c.acquire(&s, &tp).await.map(|l| (s, l))
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.expect("task") {
                Ok(w) => winners.push(w),
                Err(CoordError::HeldElsewhere { .. }) => {}
                Err(e) => panic!("round {round}: unexpected {e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one acquirer wins");
        let (s, l) = winners.remove(0);
        s.check(&tp, l.epoch).expect("the winner leads");
        for other in sessions.iter().filter(|o| o.id() != s.id()) {
            assert!(other.check(&tp, l.epoch).is_err());
        }
        epochs.push(l.epoch);
        c.release(&s, &tp, l.epoch).await.expect("release");
    }
    assert!(
        epochs.windows(2).all(|w| w[0] < w[1]),
        "epochs only grow: {epochs:?}"
    );

    // Racing transfers naming the same epoch: exactly one lands.
    let l = c.acquire(&sessions[0], &tp).await.expect("acquire");
    let mut tasks = Vec::new();
    for (i, s) in sessions.iter().enumerate() {
        let (c, s, tp) = (c.clone(), s.clone(), tp.clone());
        let to = (i as i32 % 4) + 1;
        let e = l.epoch;
        tasks.push(tokio::spawn(async move {
            c.transfer(&s, &tp, Some(e), to).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(n) => {
                assert_eq!(n.epoch, l.epoch + 1);
                ok += 1;
            }
            Err(CoordError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 1, "one transfer per epoch");
}

async fn session_expiry_frees_leadership(c: Dyn) {
    let tp = TopicPartition::new("orders", 7);
    let a = c.join(node(1), quick()).await.expect("join");
    let b = c.join(node(2), quick()).await.expect("join");
    let l = c.acquire(&a, &tp).await.expect("acquire");
    // a freezes: no more renewals (a crashed or SIGSTOPped process).
    a.abandon();
    let started = std::time::Instant::now();
    let got =
        take_over_from_frozen(c.as_ref(), &b, &a, &tp, l.epoch, Duration::from_secs(15)).await;
    assert_eq!(got.epoch, l.epoch + 1);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "not before the TTL: {:?}",
        started.elapsed()
    );
    let ids = member_ids(c.as_ref()).await;
    assert_eq!(ids, vec![2], "the expired node left the membership");
    // a's renewal finds its session gone and says so.
    match a.refresh().await {
        Err(CoordError::SessionLost { node, .. }) => assert_eq!(node, 1),
        other => panic!("expected SessionLost, got {other:?}"),
    }
    assert!(matches!(
        a.check(&tp, 1),
        Err(CoordError::SessionLost { .. })
    ));
    b.wait_usable(&tp, got.epoch, Duration::from_secs(5))
        .await
        .expect("b serves");
}

async fn metadata(c: Dyn) {
    let mut watch = c.watch_meta("topics/").await.expect("watch");
    assert_eq!(next(&mut watch, T).await, Watched::Resync(vec![]));
    let k = vigil_coord::keys::meta::topic("orders");
    let v1 = c
        .meta_put(&k, Bytes::from_static(b"id-1"), Expect::Absent)
        .await
        .expect("create");
    assert!(matches!(
        c.meta_put(&k, Bytes::from_static(b"id-2"), Expect::Absent)
            .await,
        Err(CoordError::Conflict { .. })
    ));
    let got = c.meta_get(&k).await.expect("get").expect("present");
    assert_eq!((got.value.as_ref(), got.version), (&b"id-1"[..], v1));
    let v2 = c
        .meta_put(&k, Bytes::from_static(b"id-2"), Expect::Version(v1))
        .await
        .expect("cas");
    assert!(v2 > v1);
    assert!(matches!(
        c.meta_put(&k, Bytes::from_static(b"stale"), Expect::Version(v1))
            .await,
        Err(CoordError::Conflict { .. })
    ));
    c.meta_put("topics/alerts", Bytes::from_static(b"a"), Expect::Any)
        .await
        .expect("put");
    c.meta_put("assignments/orders", Bytes::from_static(b"x"), Expect::Any)
        .await
        .expect("put");
    let keys: Vec<String> = c
        .meta_list("topics/")
        .await
        .expect("list")
        .into_iter()
        .map(|v| v.key)
        .collect();
    assert_eq!(keys, vec!["topics/alerts", "topics/orders"]);
    let keys: Vec<String> = c
        .meta_list("topics/or")
        .await
        .expect("list")
        .into_iter()
        .map(|v| v.key)
        .collect();
    assert_eq!(keys, vec!["topics/orders"]);
    assert!(matches!(
        c.meta_delete(&k, Expect::Version(v1)).await,
        Err(CoordError::Conflict { .. })
    ));
    c.meta_delete(&k, Expect::Version(v2))
        .await
        .expect("delete");
    assert_eq!(c.meta_get(&k).await.expect("get"), None);
    c.meta_delete(&k, Expect::Any)
        .await
        .expect("deleting nothing");
    assert!(matches!(
        c.meta_get("../x").await,
        Err(CoordError::Invalid { .. })
    ));

    // The watch converges on the same state. The store backend polls, so
    // changes between two polls may merge (orders' create, update and
    // delete can vanish entirely); etcd reports each one.
    c.meta_put("topics/zeta", Bytes::from_static(b"z"), Expect::Absent)
        .await
        .expect("put");
    let mut view = std::collections::BTreeMap::new();
    while !view.contains_key("topics/zeta") {
        match next(&mut watch, T).await {
            Watched::Change(MetaEvent::Put(v)) => {
                assert!(v.key.starts_with("topics/"), "outside the prefix: {v:?}");
                view.insert(v.key.clone(), v.value);
            }
            Watched::Change(MetaEvent::Deleted(key)) => {
                view.remove(&key);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let keys: Vec<&String> = view.keys().collect();
    assert_eq!(keys, vec!["topics/alerts", "topics/zeta"]);
    c.meta_delete("topics/alerts", Expect::Any)
        .await
        .expect("delete");
    loop {
        if let Watched::Change(MetaEvent::Deleted(key)) = next(&mut watch, T).await {
            assert_eq!(key, "topics/alerts");
            break;
        }
    }
}

macro_rules! suite {
    ($($name:ident),*) => {
        mod etcd {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let e = Etcd::start().await;
                    let c: Dyn = Arc::new(etcd_coord(&e).await);
                    super::$name(c).await;
                }
            )*
        }
        mod memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(Arc::new(memory_coord())).await;
                }
            )*
        }
        mod seaweedfs {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let s3 = Seaweed::start().await;
                    super::$name(Arc::new(s3.coord())).await;
                }
            )*
        }
        mod local_fs {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let (c, _dir) = local_coord();
                    super::$name(Arc::new(c)).await;
                }
            )*
        }
    };
}

suite!(
    membership,
    leadership,
    handover_and_forced_takeover,
    concurrent_acquirers_get_growing_epochs,
    session_expiry_frees_leadership,
    metadata
);
