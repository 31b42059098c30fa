//! Test harness: a real etcd on loopback, backends to run the conformance
//! suite against, and bounded waits.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_coord::etcd::{EtcdCoordinator, EtcdSettings};
use vigil_coord::store::{StoreCoordinator, StoreSettings};
use vigil_coord::{Coordinator, NodeInfo, SessionSettings};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A single-member etcd on loopback (Debian `etcd-server`; installed by
/// scripts/install-test-deps.sh). Killed on drop.
pub struct Etcd {
    pub client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Etcd {
    /// Starts etcd and waits (at most 20 s) until it answers.
    pub async fn start() -> Etcd {
        let mut e = Etcd {
            client_port: free_port(),
            peer_port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        e.spawn().await;
        e
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    async fn spawn(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).expect("log file");
        let child = Command::new("etcd")
            .args(["--name", "n1", "--data-dir"])
            .arg(self.data_dir())
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("n1={peer}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd: is etcd-server installed (scripts/install-test-deps.sh)?");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = async {
                let mut c = etcd_client::Client::connect([client.as_str()], None)
                    .await
                    .ok()?;
                c.get("probe", None).await.ok()
            }
            .await
            .is_some();
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not answer within 20 s; log: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports and data.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A coordinator on a fresh etcd key root (tests share nothing).
pub async fn etcd_coord(etcd: &Etcd) -> EtcdCoordinator {
    let root = format!("/test/{}", uuid::Uuid::new_v4().simple());
    let s = EtcdSettings::from_url(&format!("etcd://{}{root}", etcd.endpoint())).expect("url");
    EtcdCoordinator::connect(&s).await.expect("connect")
}

/// The store backend's settings for tests: fast polls.
pub fn store_settings() -> StoreSettings {
    StoreSettings {
        root: "coord".to_string(),
        poll_interval: Duration::from_millis(100),
    }
}

/// The object store backend on an InMemory store.
pub fn memory_coord() -> StoreCoordinator {
    StoreCoordinator::new(
        Arc::new(object_store::memory::InMemory::new()),
        store_settings(),
    )
}

/// The object store backend on a LocalFileSystem store (the directory lives
/// as long as the returned guard).
pub fn local_coord() -> (StoreCoordinator, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs =
        object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("local store");
    (StoreCoordinator::new(Arc::new(fs), store_settings()), dir)
}

/// Node `id` with made-up addresses.
pub fn node(id: i32) -> NodeInfo {
    NodeInfo {
        node_id: id,
        kafka_listener: format!("127.0.0.1:{}", 19000 + id),
        admin_addr: format!("127.0.0.1:{}", 18000 + id),
    }
}

/// Short sessions so expiry tests finish quickly, with a second of slack
/// per renewal (every TTL/3) for a busy machine.
pub fn quick() -> SessionSettings {
    SessionSettings::with_ttl(Duration::from_secs(3))
}

/// Polls `f` until it returns `Some`, failing the test after `within`.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The next watch item, failing after `within`.
pub async fn next<T>(rx: &mut tokio::sync::mpsc::Receiver<T>, within: Duration) -> T {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("a watch item in time")
        .expect("the watch is open")
}

/// Node ids of the live members, ascending.
pub async fn member_ids(c: &dyn Coordinator) -> Vec<i32> {
    let members = c.members().await.expect("members");
    members.iter().map(|m| m.node.node_id).collect()
}

/// Keeps trying to acquire `tp` for `session` (at most `within`) while its
/// leader is `frozen` (a session that stopped renewing); whenever it
/// succeeds, `frozen` must already fail its check at `epoch`: never two
/// leaders that both pass.
pub async fn take_over_from_frozen(
    c: &dyn Coordinator,
    session: &vigil_coord::Session,
    frozen: &vigil_coord::Session,
    tp: &vigil_coord::TopicPartition,
    epoch: i32,
    within: Duration,
) -> vigil_coord::Leader {
    let deadline = Instant::now() + within;
    loop {
        match c.acquire(session, tp).await {
            Ok(l) => {
                assert!(
                    frozen.check(tp, epoch).is_err(),
                    "the frozen leader still passes its check"
                );
                return l;
            }
            Err(vigil_coord::CoordError::HeldElsewhere { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "no takeover of {tp} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Anything implementing the trait, boxed, for the shared suite.
pub type Dyn = Arc<dyn Coordinator>;

/// SeaweedFS on loopback, started by tests/seaweed.py with the real-client
/// suite's harness (target/test-venv from scripts/install-test-deps.sh).
/// Stopped when dropped (closing the launcher's stdin).
pub struct Seaweed {
    child: tokio::process::Child,
    /// The S3 store on its bucket.
    pub store: Arc<dyn object_store::ObjectStore>,
}

impl Seaweed {
    /// Starts it (at most 90 s, the harness retries on port clashes).
    pub async fn start() -> Seaweed {
        use tokio::io::AsyncBufReadExt;
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let repo = manifest.join("../..");
        let python = std::env::var_os("VIGIL_TEST_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("target/test-venv/bin/python"));
        let mut child = tokio::process::Command::new(&python)
            .arg(manifest.join("tests/seaweed.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {} (run scripts/install-test-deps.sh): {e}",
                    python.display()
                )
            });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(90), lines.next_line())
            .await
            .expect("SeaweedFS ready within 90 s")
            .expect("read the launcher's output")
            .expect("the launcher printed its settings (see its stderr)");
        let env: std::collections::HashMap<String, String> =
            serde_json::from_str(&line).expect("settings JSON");
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&env["AWS_ENDPOINT_URL"])
            .with_allow_http(true)
            .with_region(&env["AWS_REGION"])
            .with_access_key_id(&env["AWS_ACCESS_KEY_ID"])
            .with_secret_access_key(&env["AWS_SECRET_ACCESS_KEY"])
            .with_bucket_name(&env["BUCKET"])
            .build()
            .expect("S3 store");
        Seaweed {
            child,
            store: Arc::new(s3),
        }
    }

    /// A store backend on a fresh prefix of the bucket.
    pub fn coord(&self) -> StoreCoordinator {
        let prefix = object_store::path::Path::from(format!("t-{}", uuid::Uuid::new_v4().simple()));
        let store = object_store::prefix::PrefixStore::new(self.store.clone(), prefix);
        StoreCoordinator::new(Arc::new(store), store_settings())
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        // Closing stdin lets the launcher stop weed cleanly; kill_on_drop is
        // the fallback.
        drop(self.child.stdin.take());
    }
}
