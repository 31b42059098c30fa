//! Compression bombs in detector input: a batch that decompresses past the
//! cap is a typed error, and building never holds more than the cap in
//! memory (measured with a counting allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::Compression;
use vigil_host::{build_batch, RecordsError};
use vigil_protocol::batch::inflate::DEFAULT_DECOMPRESSED_LIMIT;
use vigil_protocol::batch::BatchBuilder;

/// Counts live heap bytes and their peak.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to `System` unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `alloc` above with this layout.
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static A: Counting = Counting;

const MIB: usize = 1 << 20;

/// One gzip batch whose single record carries `n` zero bytes.
fn bomb(n: usize) -> Bytes {
    BatchBuilder::new(Compression::Gzip)
        .record(1_700_000_000_000, None, Some(Bytes::from(vec![0u8; n])))
        .build()
        .expect("encodes")
}

/// Peak heap growth while `f` runs.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

#[test]
fn a_gzip_bomb_is_refused_at_the_cap() {
    let wire = bomb(256 * MIB);
    assert!(wire.len() < 2 * MIB, "bomb is {} bytes", wire.len());
    let (res, peak) = peak_during(|| build_batch(0, &wire, 0, None));
    match res {
        Err(RecordsError::TooLarge {
            base_offset, limit, ..
        }) => {
            assert_eq!(base_offset, 0);
            assert_eq!(limit, DEFAULT_DECOMPRESSED_LIMIT);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(
        peak < 4 * DEFAULT_DECOMPRESSED_LIMIT,
        "building held {} MiB at peak",
        peak / MIB
    );
}

#[test]
fn many_small_bombs_in_one_read_share_one_budget() {
    // 40 batches of 4 MiB each: every one is under the per-batch cap, but
    // together they would be 160 MiB from a read of well under 1 MiB.
    let one = bomb(4 * MIB);
    let mut wire = BytesMut::new();
    for i in 0..40i64 {
        let mut b = BytesMut::from(&one[..]);
        vigil_protocol::batch::set_base_offset(&mut b, i);
        wire.extend_from_slice(&b);
    }
    let wire = wire.freeze();
    assert!(wire.len() < MIB);
    let (res, peak) = peak_during(|| build_batch(0, &wire, 0, None));
    assert!(
        matches!(res, Err(RecordsError::TooLarge { .. })),
        "expected TooLarge, got {:?}",
        res.map(|b| b.records)
    );
    assert!(
        peak < 4 * DEFAULT_DECOMPRESSED_LIMIT,
        "peak {} MiB",
        peak / MIB
    );
}

#[test]
fn a_large_but_legitimate_compressed_batch_still_builds() {
    // 2 MiB of records compressed: well within the cap.
    let mut b = BatchBuilder::new(Compression::Zstd);
    for i in 0..2048i64 {
        b = b.record(
            i,
            None,
            Some(Bytes::from(vec![b'a' + (i % 26) as u8; 1024])),
        );
    }
    let wire = b.build().expect("encodes");
    let built = build_batch(0, &wire, 0, None).expect("builds");
    assert_eq!(built.records, 2048);
}
