//! A leader process killed -9: its partition moves to another node after
//! the session TTL (not before), at the next epoch. A leader process
//! SIGSTOPped past its TTL and resumed never passes a check after another
//! node took over. The leader is a real
//! child process — this test binary re-run in "child" mode — so nothing of
//! it survives in the parent.

use crate::common;

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

/// Child mode: lead the partition, say so, then check the leadership every
/// 20 ms and print each answer with the wall-clock time it started at
/// (both processes run on one machine), until killed. Run by the tests below only.
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
        // The time is taken before the check: a SIGSTOP landing between
        // the two would otherwise stamp a check that passed before the
        // takeover with a time after it.
        let at = unix_ms();
        let ok = s.check(&tp(), l.epoch).is_ok();
        println!("CHECK {} {at}", if ok { "ok" } else { "err" });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// A leader child process and what it printed.
struct Leader {
    child: std::process::Child,
    epoch: i32,
    /// (passed, unix ms) of every check it printed.
    checks: std::sync::mpsc::Receiver<(bool, u128)>,
}

impl Leader {
    fn spawn(target: &str) -> Leader {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["kill::child_leader", "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CHILD_ENV, target)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the child");
        let stdout = child.stdout.take().expect("stdout");
        let (lead_tx, lead_rx) = std::sync::mpsc::channel();
        let (tx, checks) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest prints "test child_leader ... " before the first.
                if let Some((_, e)) = line.split_once("LEADING ") {
                    let _ = lead_tx.send(e.trim().parse::<i32>().ok());
                } else if let Some(rest) = line.strip_prefix("CHECK ") {
                    let mut f = rest.split(' ');
                    let ok = f.next() == Some("ok");
                    if let Some(t) = f.next().and_then(|t| t.parse().ok()) {
                        let _ = tx.send((ok, t));
                    }
                }
            }
        });
        let epoch = lead_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the child leads within 30 s")
            .expect("an epoch");
        Leader {
            child,
            epoch,
            checks,
        }
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig}");
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Node 2 acquires the partition once the child's session expired.
async fn take_over(
    c: &dyn Coordinator,
    b: &vigil_coord::Session,
    within: Duration,
) -> vigil_coord::Leader {
    let deadline = Instant::now() + within;
    loop {
        match c.acquire(b, &tp()).await {
            Ok(l) => return l,
            Err(vigil_coord::CoordError::HeldElsewhere { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert!(Instant::now() < deadline, "no takeover within {within:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn leader_killed(target: String) {
    let c = connect(&target).await;
    let b = c
        .join(node(2), SessionSettings::with_ttl(TTL))
        .await
        .expect("join");
    let mut leader = Leader::spawn(&target);
    let l = c.leader(&tp()).await.expect("leader").expect("a leader");
    assert_eq!((l.node, l.epoch), (1, leader.epoch));

    leader.child.kill().expect("kill -9");
    leader.child.wait().expect("reap");
    let killed = Instant::now();
    let got = take_over(c.as_ref(), &b, TTL * 5).await;
    let took = killed.elapsed();
    eprintln!("takeover {took:?} after kill -9 (TTL {TTL:?})");
    assert_eq!((got.node, got.epoch), (2, leader.epoch + 1));
    // The child's last renewal was at most a third of the TTL before the
    // kill; nothing may move before its session can have expired.
    assert!(took >= TTL / 2, "moved after {took:?}: before the TTL");
    assert_eq!(member_ids(c.as_ref()).await, vec![2]);
}

/// SIGSTOP the leader past its TTL, let another node take over, SIGCONT
/// it: the woken leader must never pass a check after the takeover.
async fn leader_paused(target: String) {
    let c = connect(&target).await;
    let b = c
        .join(node(2), SessionSettings::with_ttl(TTL))
        .await
        .expect("join");
    let leader = Leader::spawn(&target);
    leader.signal("-STOP");
    let got = take_over(c.as_ref(), &b, TTL * 5).await;
    let taken_at = unix_ms();
    assert_eq!(got.epoch, leader.epoch + 1);
    b.check(&tp(), got.epoch).expect("the new leader serves");
    leader.signal("-CONT");
    // Collect the woken child's checks for a while.
    let until = Instant::now() + TTL;
    let mut after = Vec::new();
    while Instant::now() < until {
        if let Ok(c) = leader.checks.recv_timeout(Duration::from_millis(100)) {
            if c.1 > taken_at {
                after.push(c.0);
            }
        }
    }
    assert!(!after.is_empty(), "the woken leader kept checking");
    assert!(
        after.iter().all(|ok| !ok),
        "a check passed on the paused leader after the takeover: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_leader_killed() {
    let etcd = Etcd::start().await;
    let root = format!("/kill/{}", uuid::Uuid::new_v4().simple());
    leader_killed(format!("etcd://{}{root}", etcd.endpoint())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_leader_paused() {
    let etcd = Etcd::start().await;
    let root = format!("/pause/{}", uuid::Uuid::new_v4().simple());
    leader_paused(format!("etcd://{}{root}", etcd.endpoint())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_fs_leader_paused() {
    let dir = tempfile::tempdir().expect("tempdir");
    leader_paused(dir.path().to_str().expect("utf-8 path").to_string()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_fs_leader_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    leader_killed(dir.path().to_str().expect("utf-8 path").to_string()).await;
}
