use super::*;
use bytes::BytesMut;
use kafka_protocol::records::Compression as Codec;

/// `n` records encoded as a real producer would send them.
pub(crate) fn encoded_batch(n: i64, codec: Codec, producer_id: i64, base_sequence: i32) -> Bytes {
    let mut b = BatchBuilder::new(codec);
    if producer_id >= 0 {
        b = b.producer(producer_id, 0, base_sequence);
    }
    for i in 0..n {
        b = b.record(
            1_700_000_000_000 + i,
            Some(Bytes::from(format!("key-{i}"))),
            Some(Bytes::from(vec![i as u8; 100])),
        );
    }
    b.build().expect("encoding a well-formed batch")
}

#[test]
fn parses_and_validates_every_codec() {
    for (codec, expect) in [
        (Codec::None, Compression::None),
        (Codec::Gzip, Compression::Gzip),
        (Codec::Snappy, Compression::Snappy),
        (Codec::Lz4, Compression::Lz4),
        (Codec::Zstd, Compression::Zstd),
    ] {
        let b = encoded_batch(10, codec, 42, 7);
        let h = validate(&b).expect("valid batch");
        assert_eq!(h.compression(), expect);
        assert_eq!(h.records_count, 10);
        assert_eq!(h.last_offset_delta, 9);
        assert_eq!(h.producer_id, 42);
        assert_eq!(h.base_sequence, 7);
        assert_eq!(h.last_sequence(), 16);
        assert_eq!(h.base_timestamp, 1_700_000_000_000);
        assert_eq!(h.max_timestamp, 1_700_000_000_009);
        assert_eq!(h.total_len(), b.len());
    }
}

#[test]
fn detects_corruption_truncation_and_old_magic() {
    let b = encoded_batch(3, Codec::None, -1, -1);
    let mut bad = b.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert!(matches!(
        validate(&bad),
        Err(BatchError::CrcMismatch { .. })
    ));

    assert!(matches!(
        validate(&b[..b.len() - 1]),
        Err(BatchError::Truncated { .. })
    ));
    assert!(matches!(
        validate(&b[..30]),
        Err(BatchError::Truncated { .. })
    ));

    let mut v1 = b.to_vec();
    v1[16] = 1;
    assert_eq!(validate(&v1), Err(BatchError::UnsupportedMagic(1)));
}

#[test]
fn rewriting_offsets_keeps_the_crc_valid() {
    let b = encoded_batch(5, Codec::Lz4, -1, -1);
    let mut m = b.to_vec();
    set_base_offset(&mut m, 1234);
    set_partition_leader_epoch(&mut m, 9);
    let h = validate(&m).expect("still valid");
    assert_eq!(h.base_offset, 1234);
    assert_eq!(h.last_offset(), 1238);
    assert_eq!(h.partition_leader_epoch, 9);
}

#[test]
fn splits_concatenated_batches_and_reports_a_torn_tail() {
    let a = encoded_batch(2, Codec::None, -1, -1);
    let b = encoded_batch(3, Codec::Gzip, -1, -1);
    let mut all = BytesMut::new();
    all.extend_from_slice(&a);
    all.extend_from_slice(&b);
    all.extend_from_slice(&a[..20]);
    let parts: Vec<_> = RecordBatches::new(all.freeze()).collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0].as_ref().map(|(h, _)| h.records_count), Ok(2));
    assert_eq!(parts[1].as_ref().map(|(_, bytes)| bytes.clone()), Ok(b));
    assert!(matches!(parts[2], Err(BatchError::Truncated { .. })));
}

/// Found by the record_batch fuzz target: the base offset is outside the
/// CRC, so a stored batch with a damaged one (or any bytes fuzzed as a
/// batch) must not overflow when its last offset is computed.
#[test]
fn last_offset_saturates_on_a_base_offset_near_the_end_of_the_range() {
    let mut b = BytesMut::from(&encoded_batch(3, Codec::None, -1, 0)[..]);
    b[0..8].copy_from_slice(&(i64::MAX - 1).to_be_bytes());
    let h = BatchHeader::parse(&b).expect("header");
    assert_eq!(h.last_offset_delta, 2);
    assert_eq!(h.last_offset(), i64::MAX);
    // And the greatest delta a header can carry is checked without overflow.
    b[23..27].copy_from_slice(&i32::MAX.to_be_bytes());
    let crc = crc32c::crc32c(&b[CRC_COVERS_FROM..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    let h = validate(&b).expect("a sparse batch is consistent");
    assert_eq!(h.offset_count(), 1 << 31);
}
