//! etcd itself failing: killed -9 and restarted under a leader. The leader
//! must stop passing checks once its confirmation expires (never a silent
//! stale leader) and either recover its session or report it lost.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use vigil_coord::{CoordError, Coordinator, SessionSettings, TopicPartition, Watched};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_restart_fails_checks_safely_then_recovers() {
    let mut etcd = Etcd::start().await;
    let c = Arc::new(etcd_coord(&etcd).await);
    let settings = SessionSettings::with_ttl(Duration::from_secs(3));
    let a = c.join(node(1), settings).await.expect("join");
    let tp = TopicPartition::new("orders", 0);
    let l = c.acquire(&a, &tp).await.expect("acquire");
    let mut watch = c.watch_leaders().await.expect("watch");
    assert!(
        matches!(next(&mut watch, Duration::from_secs(5)).await, Watched::Resync(v) if v.len() == 1)
    );
    a.check(&tp, l.epoch).expect("leads");

    etcd.kill();
    let killed = Instant::now();
    // Checks may pass for at most the validity after the last confirmation
    // (which started before the kill), then fail as retriable.
    let mut last_pass = None;
    loop {
        match a.check(&tp, l.epoch) {
            Ok(()) => last_pass = Some(killed.elapsed()),
            Err(CoordError::Unconfirmed { .. }) => break,
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert!(
            killed.elapsed() < settings.validity + Duration::from_secs(2),
            "still passing {:?} after etcd died",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        last_pass.is_none_or(|t| t <= settings.validity),
        "passed at {last_pass:?}"
    );
    // Stay down for longer than the TTL: the session may expire meanwhile.
    while killed.elapsed() < settings.ttl * 2 {
        assert!(a.check(&tp, l.epoch).is_err(), "passed while etcd was down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    etcd.restart().await;

    // The session recovers (etcd refreshes leases when it comes back) or
    // reports its loss; either way no other answer is allowed.
    let outcome = wait_for(
        "the leader to recover or report its loss",
        Duration::from_secs(20),
        || {
            let a = a.clone();
            let tp = tp.clone();
            async move {
                match a.check(&tp, l.epoch) {
                    Ok(()) => Some(true),
                    Err(CoordError::SessionLost { .. }) | Err(CoordError::NotLeader { .. }) => {
                        Some(false)
                    }
                    Err(CoordError::Unconfirmed { .. }) => None,
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
        },
    )
    .await;
    eprintln!(
        "after the outage the session {}",
        if outcome {
            "recovered"
        } else {
            "was reported lost"
        }
    );
    let leader = c.leader(&tp).await.expect("leader after restart");
    if outcome {
        assert_eq!(
            leader.map(|x| (x.node, x.epoch)),
            Some((1, l.epoch)),
            "recovered leader is the one etcd has"
        );
    } else {
        assert!(
            leader.is_none_or(|x| x.session != a.id()),
            "a lost session cannot still be the leader"
        );
    }
    // The watch came back with the current state.
    let resync = wait_for(
        "a resync after the restart",
        Duration::from_secs(20),
        || {
            let item = watch.try_recv().ok();
            async move {
                match item {
                    Some(Watched::Resync(v)) => Some(v),
                    _ => None,
                }
            }
        },
    )
    .await;
    assert_eq!(resync.len(), usize::from(outcome));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_etcd_outage_is_ridden_out() {
    let mut etcd = Etcd::start().await;
    let c = Arc::new(etcd_coord(&etcd).await);
    let settings = SessionSettings::with_ttl(Duration::from_secs(5));
    let a = c.join(node(1), settings).await.expect("join");
    let tp = TopicPartition::new("orders", 1);
    let l = c.acquire(&a, &tp).await.expect("acquire");
    etcd.restart().await;
    a.wait_usable(&tp, l.epoch, Duration::from_secs(15))
        .await
        .expect("still the leader after a quick restart");
    assert_eq!(c.members().await.expect("members").len(), 1);
    // New writes work on the restarted etcd.
    let b = c.join(node(2), settings).await.expect("join after restart");
    assert!(matches!(
        c.acquire(&b, &tp).await,
        Err(CoordError::HeldElsewhere { .. })
    ));
}
