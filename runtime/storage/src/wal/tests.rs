use super::*;
use std::fs::OpenOptions;
use std::io::Write as _;

use object_store::memory::InMemory;
use object_store::ObjectStore;

fn kv(key: &str, value: Option<&str>) -> WalEntry {
    WalEntry::Kv {
        key: key.into(),
        value: value.map(Into::into),
    }
}

struct Env {
    dir: tempfile::TempDir,
    store: Arc<dyn ObjectStore>,
}

impl Env {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            store: Arc::new(InMemory::new()),
        }
    }

    async fn open(
        &self,
        mode: WalMode,
        epoch: u64,
        through: Option<(u64, u64)>,
    ) -> (Vec<WalEntry>, Wal) {
        let (replay, start) = Wal::open(
            WalOptions {
                mode,
                dir: self.dir.path().to_path_buf(),
                segment_bytes: 1 << 20,
                group_bytes: 1 << 20,
                keep_found_objects: false,
                group_hold: Duration::ZERO,
            },
            self.store.clone(),
            Arc::new(Fence::unclaimed_for_tests(self.store.clone(), epoch)),
            through,
        )
        .await
        .expect("open");
        (replay.entries, start(KvMap::new()).expect("start"))
    }

    async fn wal_objects(&self) -> Vec<String> {
        use futures::TryStreamExt;
        let mut keys: Vec<String> = self
            .store
            .list(Some(&crate::paths::wal_prefix()))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .expect("list");
        keys.sort();
        keys
    }
}

const OBJECT: WalMode = WalMode::Object {
    window: Duration::from_millis(5),
};

async fn append_and_wait(wal: &Wal, entry: WalEntry) -> Result<()> {
    let (tx, rx) = oneshot::channel();
    wal.append(
        entry,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.await.expect("completion runs")
}

#[tokio::test]
async fn entries_survive_reopen_in_order_and_rolls_snapshot_kv() {
    for mode in [WalMode::Local, OBJECT] {
        let env = Env::new();
        let (replayed, wal) = env.open(mode.clone(), 1, None).await;
        assert!(replayed.is_empty());
        let batch = WalEntry::Batch {
            topic_id: Uuid::from_u128(7),
            partition: 3,
            batch: Bytes::from_static(b"batch-bytes"),
        };
        append_and_wait(&wal, kv("a", Some("1")))
            .await
            .expect("durable");
        append_and_wait(&wal, batch.clone()).await.expect("durable");
        let sealed = wal.roll().await.expect("roll");
        assert_eq!(
            sealed.kv.get("a").map(String::as_str),
            Some("1"),
            "{mode:?}"
        );
        append_and_wait(&wal, kv("a", None)).await.expect("durable");
        wal.close().await;

        let (replayed, _wal) = env.open(mode.clone(), 2, None).await;
        assert_eq!(
            replayed,
            vec![kv("a", Some("1")), batch, kv("a", None)],
            "{mode:?}"
        );
    }
}

#[tokio::test]
async fn a_torn_local_tail_is_truncated_and_earlier_entries_kept() {
    let env = Env::new();
    let (_, wal) = env.open(WalMode::Local, 1, None).await;
    append_and_wait(&wal, kv("k", Some("v")))
        .await
        .expect("durable");
    wal.close().await;
    // Simulate a crash in the middle of the next write.
    let seg = local::segment_path(env.dir.path(), 0);
    let before = std::fs::metadata(&seg).expect("segment").len();
    let mut f = OpenOptions::new()
        .append(true)
        .open(&seg)
        .expect("open segment");
    f.write_all(&[0, 0, 0, 50, 1, 2, 3]).expect("write garbage");
    drop(f);

    let (replayed, _wal) = env.open(WalMode::Local, 2, None).await;
    assert_eq!(replayed, vec![kv("k", Some("v"))]);
    assert_eq!(std::fs::metadata(&seg).expect("segment").len(), before);
}

/// A local WAL at `epoch` with `x` in a sealed segment and `y` in the
/// active one.
async fn sealed_and_active(env: &Env, epoch: u64) -> (Wal, Sealed) {
    let (_, wal) = env.open(WalMode::Local, epoch, None).await;
    append_and_wait(&wal, kv("x", Some("1")))
        .await
        .expect("durable");
    let sealed = wal.roll().await.expect("roll");
    append_and_wait(&wal, kv("y", Some("2")))
        .await
        .expect("durable");
    (wal, sealed)
}

#[tokio::test]
async fn deleting_sealed_segments_keeps_the_active_one() {
    let env = Env::new();
    let (wal, sealed) = sealed_and_active(&env, 1).await;
    assert_eq!(
        wal.delete_through(sealed.sealed_through)
            .await
            .expect("delete"),
        1
    );
    wal.close().await;
    let (replayed, _wal) = env.open(WalMode::Local, 2, None).await;
    assert_eq!(replayed, vec![kv("y", Some("2"))]);
}

/// A segment that a crash left renamed for deletion (and perhaps already
/// shrunk) is never replayed, and the next cleanup removes it.
#[tokio::test]
async fn a_segment_half_deleted_by_a_crash_is_not_replayed_and_goes_next_time() {
    let env = Env::new();
    let (wal, sealed) = sealed_and_active(&env, 1).await;
    wal.close().await;
    let id = sealed.sealed_through.expect("a sealed segment");
    let seg = local::segment_path(env.dir.path(), id);
    let half = env.dir.path().join(format!("{id:020}.wal.deleting"));
    std::fs::rename(&seg, &half).expect("rename as a crash left it");

    let (replayed, wal) = env.open(WalMode::Local, 2, None).await;
    assert_eq!(replayed, vec![kv("y", Some("2"))]);
    let sealed = wal.roll().await.expect("roll");
    wal.delete_through(sealed.sealed_through)
        .await
        .expect("delete");
    assert!(
        !half.exists(),
        "the leftover is removed by the next cleanup"
    );
    wal.close().await;
}

/// An uploaded segment is zeroed and reused by the roll after next (design
/// 0020, "Recycled WAL segments"): what was written into it before must
/// never replay as part of its new life, and what is written into it now
/// must.
#[tokio::test]
async fn a_recycled_segment_replays_only_what_was_written_into_it() {
    let env = Env::new();
    let (_, wal) = env.open(WalMode::Local, 1, None).await;
    // Old and new entries have the same size, so an old entry starts just
    // where the new ones end: only the zeroing keeps it from replaying.
    let entry = |tag: &str, i: usize| kv(&format!("{tag}-{i:02}"), Some(&"x".repeat(1000)));
    let old: Vec<WalEntry> = (0..50).map(|i| entry("old", i)).collect();
    for e in &old {
        append_and_wait(&wal, e.clone()).await.expect("durable");
    }
    let sealed = wal.roll().await.expect("roll");
    let size = std::fs::metadata(local::segment_path(env.dir.path(), 0))
        .expect("segment 0")
        .len();
    wal.delete_through(sealed.sealed_through)
        .await
        .expect("recycle");
    let spare = env.dir.path().join("spare.wal.zeroed");
    assert_eq!(std::fs::metadata(&spare).expect("a spare").len(), size);
    append_and_wait(&wal, kv("in-1", Some("a")))
        .await
        .expect("durable");
    // This roll takes the spare as segment 2.
    assert_eq!(wal.roll().await.expect("roll").sealed_through, Some(1));
    assert!(!spare.exists(), "the spare is in use");
    let new: Vec<WalEntry> = (0..3).map(|i| entry("new", i)).collect();
    for e in &new {
        append_and_wait(&wal, e.clone()).await.expect("durable");
    }
    let seg2 = local::segment_path(env.dir.path(), 2);
    assert_eq!(std::fs::metadata(&seg2).expect("segment 2").len(), size);
    wal.close().await;

    let (replayed, wal) = env.open(WalMode::Local, 2, None).await;
    let mut want = vec![kv("in-1", Some("a"))];
    want.extend(new);
    let keys = |v: &[WalEntry]| -> Vec<String> {
        v.iter()
            .map(|e| match e {
                WalEntry::Kv { key, .. } => key.clone(),
                WalEntry::Batch { .. } => "batch".to_string(),
            })
            .collect()
    };
    assert_eq!(keys(&replayed), keys(&want));
    assert!(replayed == want, "the replayed values differ");
    wal.close().await;
}

/// A spare left when the WAL moves to object mode would never be used:
/// object mode's cleanup removes it.
#[tokio::test]
async fn object_mode_removes_a_spare_left_by_local_mode() {
    let env = Env::new();
    let (wal, sealed) = sealed_and_active(&env, 1).await;
    wal.delete_through(sealed.sealed_through)
        .await
        .expect("recycle");
    wal.close().await;
    let spare = env.dir.path().join("spare.wal.zeroed");
    assert!(spare.exists());
    let (replayed, wal) = env.open(OBJECT, 2, None).await;
    assert_eq!(replayed, vec![kv("y", Some("2"))]);
    wal.delete_through(None).await.expect("cleanup");
    assert!(!spare.exists(), "the spare is removed");
    wal.close().await;
}

#[tokio::test]
async fn rolling_an_idle_wal_creates_no_files() {
    let env = Env::new();
    let (_, wal) = env.open(WalMode::Local, 1, None).await;
    assert_eq!(wal.roll().await.expect("roll").sealed_through, None);
    append_and_wait(&wal, kv("x", Some("1")))
        .await
        .expect("durable");
    assert_eq!(wal.roll().await.expect("roll").sealed_through, Some(0));
    for _ in 0..3 {
        assert_eq!(wal.roll().await.expect("roll").sealed_through, Some(0));
    }
    assert_eq!(local::segment_ids(env.dir.path()).expect("list").len(), 2);
    wal.close().await;
}

#[tokio::test]
async fn object_mode_groups_appends_into_one_object_per_window() {
    let env = Env::new();
    let (_, wal) = env.open(OBJECT, 4, None).await;
    let waits: Vec<_> = (0..20)
        .map(|i| {
            let (tx, rx) = oneshot::channel();
            wal.append(
                kv(&format!("k{i}"), Some("v")),
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            );
            rx
        })
        .collect();
    for rx in waits {
        rx.await.expect("completion").expect("durable");
    }
    let objects = env.wal_objects().await;
    assert!(!objects.is_empty() && objects.len() < 20, "{objects:?}");
    assert!(objects.iter().all(|k| k.starts_with("wal/0000000004/")));
    let sealed = wal.roll().await.expect("roll");
    assert_eq!(sealed.sealed_through, Some(objects.len() as u64 - 1));
    assert_eq!(sealed.kv.len(), 20);
    assert_eq!(
        wal.delete_through(sealed.sealed_through)
            .await
            .expect("delete"),
        objects.len()
    );
    assert!(env.wal_objects().await.is_empty());
    wal.close().await;
}

#[tokio::test]
async fn object_mode_replays_only_objects_after_the_manifest_watermark() {
    let env = Env::new();
    let (_, wal) = env.open(OBJECT, 4, None).await;
    append_and_wait(&wal, kv("old", Some("1")))
        .await
        .expect("durable");
    wal.roll().await.expect("roll"); // object 4/0 sealed
    append_and_wait(&wal, kv("new", Some("2")))
        .await
        .expect("durable");
    wal.close().await; // crash: 4/1 never uploaded

    // The manifest says 4/0 is already reflected: only 4/1 is replayed, and
    // both are deleted after the first upload.
    let (replayed, wal) = env.open(OBJECT, 5, Some((4, 0))).await;
    assert_eq!(replayed, vec![kv("new", Some("2"))]);
    assert_eq!(wal.delete_through(None).await.expect("delete"), 2);
    assert!(env.wal_objects().await.is_empty());
    wal.close().await;
}

#[tokio::test]
async fn a_fenced_object_wal_refuses_to_acknowledge() {
    let env = Env::new();
    // A confirmation lasts a millisecond: every group is checked again.
    let ours = Arc::new(
        Fence::claim(env.store.clone(), "a", 0, Duration::from_millis(1))
            .await
            .expect("claim"),
    );
    let (replay, start) = Wal::open(
        WalOptions {
            mode: OBJECT,
            dir: env.dir.path().to_path_buf(),
            segment_bytes: 1 << 20,
            group_bytes: 1 << 20,
            keep_found_objects: false,
            group_hold: Duration::ZERO,
        },
        env.store.clone(),
        ours.clone(),
        None,
    )
    .await
    .expect("open");
    assert!(replay.entries.is_empty());
    let wal = start(KvMap::new()).expect("start");
    append_and_wait(&wal, kv("a", Some("1")))
        .await
        .expect("owner writes");
    Fence::claim(env.store.clone(), "b", 0, Duration::from_secs(1))
        .await
        .expect("b takes over");
    match append_and_wait(&wal, kv("a", Some("2"))).await {
        Err(StorageError::Fenced {
            ours: o,
            theirs,
            by,
        }) => {
            assert_eq!(
                (o, theirs, by.as_str()),
                (ours.epoch(), ours.epoch() + 1, "b")
            );
        }
        other => panic!("expected fencing, got {other:?}"),
    }
    assert!(matches!(
        append_and_wait(&wal, kv("a", Some("3"))).await,
        Err(StorageError::WalClosed)
    ));
    wal.close().await;
}

/// Issue 11 item 7: cleanup deleted segments in `read_dir` order, so a
/// crash (here: a failure) part-way could leave an older segment behind a
/// deleted newer one, and its key/value entries would replay over newer
/// values. Oldest first leaves a contiguous suffix.
#[test]
fn cleanup_deletes_oldest_first_and_leaves_a_suffix_when_interrupted() {
    let dir = tempfile::tempdir().expect("tempdir");
    for id in 0..40u64 {
        std::fs::write(local::segment_path(dir.path(), id), b"").expect("segment");
    }
    let (_, d) = local::Dir::open(dir.path()).expect("open");
    // A segment that cannot be removed stands in for a crash at that point.
    let stuck = local::segment_path(dir.path(), 20);
    std::fs::remove_file(&stuck).expect("rm");
    std::fs::create_dir(&stuck).expect("dir");
    std::fs::write(stuck.join("pin"), b"x").expect("pin");
    assert!(d.delete_through(Some(39)).is_err());
    // Segment 20 was renamed out of the WAL before its removal failed, so
    // it can never replay; everything after it is still there.
    let left = local::segment_ids(dir.path()).expect("list");
    assert_eq!(left, (21..40).collect::<Vec<u64>>());
}
