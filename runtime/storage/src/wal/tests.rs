use super::*;

fn kv(key: &str, value: Option<&str>) -> WalEntry {
    WalEntry::Kv {
        key: key.into(),
        value: value.map(Into::into),
    }
}

async fn append_and_wait(wal: &Wal, entry: WalEntry) {
    let (tx, rx) = oneshot::channel();
    wal.append(
        entry,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.await.expect("completion runs").expect("durable");
}

#[tokio::test]
async fn entries_survive_reopen_in_order_and_rolls_snapshot_kv() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (replay, start) = Wal::open(dir.path(), 1 << 20, 1 << 20).expect("open");
    assert!(replay.entries.is_empty());
    let wal = start(KvMap::new()).expect("start");
    let batch = WalEntry::Batch {
        topic_id: Uuid::from_u128(7),
        partition: 3,
        batch: Bytes::from_static(b"batch-bytes"),
    };
    append_and_wait(&wal, kv("a", Some("1"))).await;
    append_and_wait(&wal, batch.clone()).await;
    let sealed = wal.roll().await.expect("roll");
    assert_eq!(sealed.kv.get("a").map(String::as_str), Some("1"));
    append_and_wait(&wal, kv("a", None)).await;
    wal.close();

    let (replay, _start) = Wal::open(dir.path(), 1 << 20, 1 << 20).expect("reopen");
    assert_eq!(
        replay.entries,
        vec![kv("a", Some("1")), batch, kv("a", None)]
    );
}

#[tokio::test]
async fn a_torn_tail_is_truncated_and_earlier_entries_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, start) = Wal::open(dir.path(), 1 << 20, 1 << 20).expect("open");
    let wal = start(KvMap::new()).expect("start");
    append_and_wait(&wal, kv("k", Some("v"))).await;
    wal.close();
    // Simulate a crash in the middle of the next write.
    let seg = segment_path(dir.path(), 0);
    let before = std::fs::metadata(&seg).expect("segment").len();
    let mut f = OpenOptions::new()
        .append(true)
        .open(&seg)
        .expect("open segment");
    f.write_all(&[0, 0, 0, 50, 1, 2, 3]).expect("write garbage");
    drop(f);

    let (replay, _) = Wal::open(dir.path(), 1 << 20, 1 << 20).expect("reopen");
    assert_eq!(replay.entries, vec![kv("k", Some("v"))]);
    assert_eq!(std::fs::metadata(&seg).expect("segment").len(), before);
}

#[tokio::test]
async fn deleting_sealed_segments_keeps_the_active_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, start) = Wal::open(dir.path(), 1 << 20, 1 << 20).expect("open");
    let wal = start(KvMap::new()).expect("start");
    append_and_wait(&wal, kv("x", Some("1"))).await;
    let sealed = wal.roll().await.expect("roll");
    append_and_wait(&wal, kv("y", Some("2"))).await;
    assert_eq!(
        wal.delete_through(sealed.sealed_through).expect("delete"),
        1
    );
    wal.close();
    let (replay, _) = Wal::open(dir.path(), 1 << 20, 1 << 20).expect("reopen");
    assert_eq!(replay.entries, vec![kv("y", Some("2"))]);
}

#[tokio::test]
async fn rolling_an_idle_wal_creates_no_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, start) = Wal::open(dir.path(), 1 << 20, 1 << 20).expect("open");
    let wal = start(KvMap::new()).expect("start");
    assert_eq!(wal.roll().await.expect("roll").sealed_through, None);
    append_and_wait(&wal, kv("x", Some("1"))).await;
    assert_eq!(wal.roll().await.expect("roll").sealed_through, Some(0));
    for _ in 0..3 {
        assert_eq!(wal.roll().await.expect("roll").sealed_through, Some(0));
    }
    assert_eq!(segment_ids(dir.path()).expect("list").len(), 2);
    wal.close();
}
