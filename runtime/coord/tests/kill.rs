//! A leader process killed -9: its partition moves to another node after
//! the session TTL (not before), at the next epoch. The leader is a real
//! child process — this test binary re-run in "child" mode — so nothing of
//! it survives in the parent.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use vigil_coord::etcd::{EtcdCoordinator, EtcdSettings};
use vigil_coord::store::StoreCoordinator;
use vigil_coord::{Coordinator, SessionSettings, TopicPartition};

const TTL: Duration = Duration::from_secs(2);
const CHILD_ENV: &str = "VIGIL_COORD_KILL_CHILD";

fn tp() -> TopicPartition {
    TopicPartition::new("orders", 5)
}

/// The backend a child reaches: `etcd://...` or a LocalFileSystem dir.
async fn connect(target: &str) -> Arc<dyn Coordinator> {
    if target.starts_with("etcd://") {
        let s = EtcdSettings::from_url(target).expect("url");
        Arc::new(EtcdCoordinator::connect(&s).await.expect("connect"))
    } else {
        let fs = object_store::local::LocalFileSystem::new_with_prefix(target).expect("store");
        Arc::new(StoreCoordinator::new(Arc::new(fs), store_settings()))
    }
}

/// Child mode: lead the partition, say so, keep renewing until killed.
/// Run by the tests below only (ignored otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the kill tests"]
async fn child_leader() {
    let target = std::env::var(CHILD_ENV).expect("run by the kill tests");
    let c = connect(&target).await;
    let s = c
        .join(node(1), SessionSettings::with_ttl(TTL))
        .await
        .expect("join");
    let l = c.acquire(&s, &tp()).await.expect("acquire");
    println!("LEADING {}", l.epoch);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn leader_killed(target: String) {
    let c = connect(&target).await;
    let b = c
        .join(node(2), SessionSettings::with_ttl(TTL))
        .await
        .expect("join");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "child_leader",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, &target)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the child");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest prints "test child_leader ... " before it.
            if let Some((_, e)) = line.split_once("LEADING ") {
                let _ = tx.send(e.trim().parse::<i32>().ok());
            }
        }
    });
    let epoch = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the child leads within 30 s")
        .expect("an epoch");
    let l = c.leader(&tp()).await.expect("leader").expect("a leader");
    assert_eq!((l.node, l.epoch), (1, epoch));
    // Let the parent watch a few renewals (the store backend judges
    // liveness by observed heartbeats).
    assert_eq!(c.leaders().await.expect("leaders").len(), 1);

    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let killed = Instant::now();
    let deadline = killed + TTL * 5;
    let got = loop {
        match c.acquire(&b, &tp()).await {
            Ok(l) => break l,
            Err(vigil_coord::CoordError::HeldElsewhere { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "no takeover within {:?}",
            TTL * 5
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let took = killed.elapsed();
    eprintln!("takeover {took:?} after kill -9 (TTL {TTL:?})");
    assert_eq!((got.node, got.epoch), (2, epoch + 1));
    // The child's last renewal was at most a third of the TTL before the
    // kill; nothing may move before its session can have expired.
    assert!(took >= TTL / 2, "moved after {took:?}: before the TTL");
    assert_eq!(member_ids(c.as_ref()).await, vec![2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_leader_killed() {
    let etcd = Etcd::start().await;
    let root = format!("/kill/{}", uuid::Uuid::new_v4().simple());
    leader_killed(format!("etcd://{}{root}", etcd.endpoint())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_fs_leader_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    leader_killed(dir.path().to_str().expect("utf-8 path").to_string()).await;
}
