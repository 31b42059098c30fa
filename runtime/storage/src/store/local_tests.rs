//! [`LocalStore`] writes large objects itself, so it must keep what
//! `LocalFileSystem` promises: whole objects, durable on return, nothing
//! half-written visible, conditional PUTs untouched.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use super::local::{LocalStore, STEPPED_PUT_MIN_BYTES};

/// A payload of several chunks, `len` bytes in all, with a pattern that a
/// misplaced chunk would break.
fn payload(len: usize) -> (PutPayload, Vec<u8>) {
    let all: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let chunks = all
        .chunks(300_001)
        .map(Bytes::copy_from_slice)
        .collect::<PutPayload>();
    (chunks, all)
}

/// Every file name under `dir`, recursively.
fn files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[tokio::test]
async fn large_objects_are_written_whole_on_a_low_priority_thread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::new(dir.path()).expect("store");
    let len = 3 * STEPPED_PUT_MIN_BYTES + 12_345;
    let (body, want) = payload(len);
    let key = Path::from("objects/0000000001/00000000000000000007.dat");
    let put = store.put(&key, body).await.expect("put");

    assert_eq!(store.stepped_puts(), 1, "a large PUT is written in steps");
    let got = store
        .get(&key)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(got.as_ref(), want.as_slice());
    let head = store.head(&key).await.expect("head");
    assert_eq!(head.size, len as u64);
    assert_eq!(
        put.e_tag, head.e_tag,
        "the e-tag LocalFileSystem would give"
    );
    let listed: Vec<_> = store.list(None).try_collect().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].location, key);
    // No staging file is left beside the object.
    assert_eq!(files(dir.path()).len(), 1, "{:?}", files(dir.path()));
    assert_eq!(writer_nice(), Some(10));
}

#[tokio::test]
async fn small_and_conditional_puts_keep_local_file_system_semantics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::new(dir.path()).expect("store");
    store
        .put(&Path::from("manifest"), PutPayload::from_static(b"{}"))
        .await
        .expect("small put");
    let (body, _) = payload(2 * STEPPED_PUT_MIN_BYTES);
    let key = Path::from("big");
    let create = |body: PutPayload| {
        let key = key.clone();
        let store = &store;
        async move { store.put_opts(&key, body, PutMode::Create.into()).await }
    };
    create(body.clone()).await.expect("first create");
    let again = create(body).await.expect_err("second create must fail");
    assert!(
        matches!(again, object_store::Error::AlreadyExists { .. }),
        "{again:?}"
    );
    assert_eq!(store.stepped_puts(), 0, "only plain overwrites are stepped");
}

#[tokio::test]
async fn a_failed_large_put_leaves_nothing_behind_and_names_the_object() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::new(dir.path()).expect("store");
    // A directory where the object should go: the staging file is written,
    // then the rename onto the directory fails.
    std::fs::create_dir_all(dir.path().join("x/obj.dat/inner")).expect("mkdir");
    let (body, _) = payload(STEPPED_PUT_MIN_BYTES + 1);
    let e = store
        .put(&Path::from("x/obj.dat"), body)
        .await
        .expect_err("rename onto a directory fails");
    assert!(e.to_string().contains("obj.dat"), "{e}");
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
    assert_eq!(store.stepped_puts(), 0);
}

/// The niceness of this process's object writer thread, if it has one.
fn writer_nice() -> Option<i64> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != "vigil-obj-write" {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        // Fields after the parenthesised name: state is field 3, nice 19.
        let after = stat.rsplit_once(')')?.1;
        return after.split_whitespace().nth(16)?.parse().ok();
    }
    None
}
