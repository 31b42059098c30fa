//! A caller that stops waiting for a log operation (a client hung up, a
//! request handler was dropped) must not cut it in half. An object store PUT
//! that has left the client cannot be called back: if the operation's
//! manifest commit lands after its caller gave up, the log has to know, or
//! its next commit finds "its" version taken by itself and the broker
//! fences itself (seen once in a full run: "epoch 1 was superseded by
//! epoch 1").

use std::sync::Arc;
use std::time::Duration;

use object_store::memory::InMemory;
use object_store::ObjectStore;
use vigil_storage::store::{FaultControl, FaultKind, FaultyStore};
use vigil_storage::{paths, Log, LogConfig, TopicConfig};

use crate::common;

fn one_partition() -> TopicConfig {
    TopicConfig {
        partitions: 1,
        configs: Default::default(),
    }
}

/// A log over an in-memory store behind fault injection.
struct Faulty {
    /// The store without the faults (what a restart reads).
    memory: Arc<dyn ObjectStore>,
    faults: FaultControl,
    config: LogConfig,
    log: Arc<Log>,
    _data: tempfile::TempDir,
}

impl Faulty {
    async fn open() -> Self {
        let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let faulty = FaultyStore::new(memory.clone());
        let faults = faulty.control();
        let data = tempfile::tempdir().expect("tempdir");
        let mut config = LogConfig::new(data.path());
        config.lease_interval = Duration::from_millis(10);
        let log = Log::open(config.clone(), Arc::new(faulty))
            .await
            .expect("open");
        Faulty {
            memory,
            faults,
            config,
            log,
            _data: data,
        }
    }
}

/// `config`'s log reopened on `store` with a fresh data dir (a restart on
/// a new machine: only what was committed to the store survives).
async fn reopen(config: LogConfig, store: Arc<dyn ObjectStore>) -> (Arc<Log>, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("tempdir");
    let mut again = config;
    again.data_dir = data.path().to_path_buf();
    let log = Log::open(again, store).await.expect("reopen");
    (log, data)
}

#[tokio::test]
async fn a_create_abandoned_while_its_commit_is_in_flight_completes_and_the_log_keeps_writing() {
    let Faulty {
        memory,
        faults,
        config,
        log,
        _data,
    } = Faulty::open().await;

    // Only the root manifest's PUT hangs; it runs on whether or not its
    // caller still waits, as a request already sent to S3 does.
    faults.scope(Some(paths::manifest_prefix().as_ref()));
    faults.detach_puts(true);
    faults.hang(FaultKind::Write, true);
    {
        let create = log.create_topic("a", one_partition());
        tokio::pin!(create);
        tokio::select! {
            r = &mut create => panic!("the create finished while its commit hung: {r:?}"),
            () = common::wait_until("the manifest PUT to hang", || {
                faults.counts(FaultKind::Write).hung > 0
            }) => {}
        }
    } // The caller gives up here.
    faults.clear();

    // The abandoned create completes: its commit landed, so the topic is
    // there, and the next commit takes the next version.
    common::wait_until("the abandoned create to complete", || {
        log.topic("a").is_some()
    })
    .await;
    log.create_topic("b", one_partition())
        .await
        .expect("the next create commits: the log did not fence itself");
    assert!(!log.is_fenced(), "the log fenced itself");
    log.close().await;
    drop(log);

    let (reopened, _data) = reopen(config, memory).await;
    for topic in ["a", "b"] {
        assert!(
            reopened.topic(topic).is_some(),
            "topic {topic} was committed and survives a restart"
        );
    }
    reopened.close().await;
}

/// Two creates of one topic race (in a cluster: a node's own create and its
/// catalog follower applying the same registration). The one that finds
/// the topic already in the manifest answers TopicExists, and by then the
/// topic must be served: the cluster's create path turns that answer into
/// success by looking the topic up. Once commits ran in their own task, the
/// loser could answer before the winner had installed the topic, and
/// clients got TOPIC_ALREADY_EXISTS for a topic they had just created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_loses_a_race_finds_the_winners_topic_served() {
    let env = common::StoreDir::new();
    let (log, _data) = env.open_fresh().await;
    for round in 0..200 {
        let name = format!("t{round}");
        let id = uuid::Uuid::new_v4();
        // Either may win: each side also says whether the topic was
        // served when its answer came.
        let create = || async {
            let r = log.create_topic_with_id(&name, one_partition(), id).await;
            (r.map(|_| ()), log.topic(&name).is_some())
        };
        let (a, b) = tokio::join!(create(), create());
        let (lost, served) = match (a, b) {
            ((Ok(()), _), other) | (other, (Ok(()), _)) => other,
            both => panic!("round {round}: neither create won: {both:?}"),
        };
        assert!(
            matches!(lost, Err(vigil_storage::StorageError::TopicExists(_))),
            "{lost:?}"
        );
        assert!(
            served,
            "round {round}: the loser answered TopicExists before the topic was served"
        );
    }
}

/// A manifest PUT lands, its answer is lost, and the store cannot say for
/// longer than the commit keeps asking (it is unreadable meanwhile). The
/// operation fails, as its caller is told; the version it left in the store
/// is this broker's own. The next commit must not read that version as
/// another writer's and fence the broker ("epoch 1 was superseded by
/// epoch 1"): it supersedes it, so the log keeps what callers were told.
#[tokio::test]
async fn a_commit_whose_outcome_stayed_unknown_does_not_fence_the_broker() {
    let Faulty {
        memory,
        faults,
        config,
        log,
        _data,
    } = Faulty::open().await;

    faults.scope(Some(paths::manifest_prefix().as_ref()));
    faults.fail_after_write_next(1);
    faults.fail_all(FaultKind::Read, true);
    let unknown = log.create_topic("a", one_partition()).await;
    assert_eq!(
        faults.counts(FaultKind::Write).failed_after_write,
        1,
        "the PUT landed and its answer was lost"
    );
    assert!(
        unknown.is_err(),
        "the store could not say whether the commit landed, so the caller hears it failed: {unknown:?}"
    );
    faults.clear();

    log.create_topic("b", one_partition())
        .await
        .expect("the next commit goes past the broker's own unknown version");
    assert!(!log.is_fenced(), "the broker fenced itself");
    assert!(log.topic("a").is_none(), "a failed create is not served");
    log.close().await;
    drop(log);

    let (reopened, _data) = reopen(config, memory).await;
    assert!(reopened.topic("b").is_some(), "b was committed");
    assert!(
        reopened.topic("a").is_none(),
        "the create its caller heard fail stays undone after a restart"
    );
    reopened.close().await;
}
