use std::io::Write;

use bytes::Bytes;
use kafka_protocol::records::{Compression as Codec, RecordBatchDecoder};

use super::*;
use crate::batch::{wrap_records, BatchBuilder};

const MIB: usize = 1 << 20;

/// The uncompressed records section of `n` small records.
fn plain_records(n: i64) -> (i32, Bytes) {
    let batch = small_records(Codec::None, n).build().expect("encodes");
    (n as i32, batch.slice(HEADER_LEN..))
}

/// `n` small records with a repeated header name, to be built with `codec`.
fn small_records(codec: Codec, n: i64) -> BatchBuilder {
    let mut b = BatchBuilder::new(codec);
    for i in 0..n {
        b = b.record_with_headers(
            1_700_000_000_000 + i,
            Some(Bytes::from(format!("k{i}"))),
            Some(Bytes::from(format!("{{\"v\":{i}}}"))),
            vec![("h".into(), Some(Bytes::from("x"))), ("h".into(), None)],
        );
    }
    b
}

fn compress(codec: Compression, data: &[u8]) -> Vec<u8> {
    match codec {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).expect("gzip");
            e.finish().expect("gzip")
        }
        Compression::Snappy => {
            // The xerial framing Java clients write, in 32 KiB blocks.
            let mut out = XERIAL_MAGIC.to_vec();
            out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
            for chunk in data.chunks(32 << 10) {
                let c = snap::raw::Encoder::new()
                    .compress_vec(chunk)
                    .expect("snappy");
                out.extend_from_slice(&(c.len() as u32).to_be_bytes());
                out.extend_from_slice(&c);
            }
            out
        }
        Compression::Lz4 => {
            let mut e = lz4::EncoderBuilder::new().build(Vec::new()).expect("lz4");
            e.write_all(data).expect("lz4");
            let (out, r) = e.finish();
            r.expect("lz4");
            out
        }
        Compression::Zstd => zstd::encode_all(data, 3).expect("zstd"),
        Compression::Unknown(_) => unreachable!(),
    }
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

#[test]
fn every_codec_round_trips_within_the_cap() {
    let (n, plain) = plain_records(50);
    for codec in CODECS {
        let body = compress(codec, &plain);
        let out = decompress(codec, Bytes::from(body), plain.len()).expect("within the cap");
        assert_eq!(out, plain, "{codec:?}");
    }
    // Raw snappy (no xerial framing) is accepted too, as Java does.
    let raw = snap::raw::Encoder::new()
        .compress_vec(&plain)
        .expect("snappy");
    let out = decompress(Compression::Snappy, Bytes::from(raw), plain.len()).expect("raw snappy");
    assert_eq!(out, plain);
    // And the batch decodes to the same records as kafka-protocol's decoder.
    for codec in CODECS {
        let batch = wrap_records(codec, n, 1_700_000_000_000, &compress(codec, &plain)).unwrap();
        let ours = decode_records(&mut batch.clone(), DEFAULT_DECOMPRESSED_LIMIT).expect("decodes");
        let theirs = RecordBatchDecoder::decode(&mut batch.clone()).expect("decodes");
        assert_eq!(ours.records, theirs.records, "{codec:?}");
    }
}

#[test]
fn a_bomb_stops_at_the_cap_for_every_codec() {
    let zeros = vec![0u8; 16 * MIB];
    for codec in CODECS {
        if codec == Compression::None {
            continue;
        }
        let bomb = Bytes::from(compress(codec, &zeros));
        assert!(bomb.len() < MIB, "{codec:?} bomb is {} bytes", bomb.len());
        match decompress(codec, bomb.clone(), MIB) {
            Err(BatchError::TooLarge { limit, .. }) => assert_eq!(limit, MIB),
            other => panic!("{codec:?}: expected TooLarge, got {other:?}"),
        }
        // Exactly the cap still works: the limit is not off by one.
        let out = decompress(codec, bomb, zeros.len()).expect("at the cap");
        assert_eq!(out.len(), zeros.len());
    }
}

#[test]
fn raw_snappy_length_is_checked_before_allocating() {
    // A 5-byte raw snappy stream claiming 4 GiB of output.
    let lying = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(matches!(
        decompress(Compression::Snappy, lying, MIB),
        Err(BatchError::TooLarge { .. })
    ));
}

#[test]
fn check_batch_refuses_a_bomb_and_lying_counts() {
    let zeros = vec![0u8; 4 * MIB];
    let bomb = wrap_records(
        Compression::Gzip,
        1,
        0,
        &compress(Compression::Gzip, &zeros),
    )
    .unwrap();
    crate::batch::validate(&bomb).expect("header and CRC are fine");
    assert!(matches!(
        check_batch(&bomb, MIB),
        Err(BatchError::TooLarge { codec: "gzip", .. })
    ));

    let (n, plain) = plain_records(3);
    for declared in [n - 1, n + 1, 1_000_000, i32::MAX] {
        let b = wrap_records(
            Compression::Zstd,
            declared,
            0,
            &compress(Compression::Zstd, &plain),
        )
        .unwrap();
        let e = check_batch(&b, MIB).expect_err("count mismatch");
        assert!(matches!(e, BatchError::Inconsistent(_)), "{declared}: {e}");
        assert!(decode_records(&mut b.clone(), MIB).is_err());
    }
    let good = wrap_records(
        Compression::Zstd,
        n,
        0,
        &compress(Compression::Zstd, &plain),
    )
    .unwrap();
    assert_eq!(check_batch(&good, MIB).expect("valid"), plain);
}

#[test]
fn a_huge_header_count_is_refused_before_any_decoder_reserves_for_it() {
    // One record: attributes, ts delta 0, offset delta 0, null key, null
    // value, then a header count of a billion (zigzag varint).
    let mut rec = vec![0u8, 0, 0, 1, 1];
    let mut z: u64 = 2_000_000_000;
    while z >= 0x80 {
        rec.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    rec.push(z as u8);
    let mut body = vec![(rec.len() as u8) << 1];
    body.extend_from_slice(&rec);
    let b = wrap_records(Compression::None, 1, 0, &body).unwrap();
    let e = decode_records(&mut b.clone(), MIB).expect_err("refused");
    assert!(e.to_string().contains("header count"), "{e}");
}

#[test]
fn zstd_window_log_covers_the_cap() {
    assert_eq!(window_log_for(MIB), 23);
    assert_eq!(window_log_for(DEFAULT_DECOMPRESSED_LIMIT), 24);
    assert_eq!(window_log_for(usize::MAX), 27);
}

/// The broker's own LZ4 batches (alerts) hold exactly the records an
/// uncompressed batch would, repeated header names included (Kafka allows
/// them), and use LZ4's fast mode: the high-compression mode cost a replay
/// thread ~7 % of its time for batches that are mostly a few hundred bytes.
#[test]
fn lz4_batches_keep_every_record_byte_and_use_the_fast_mode() {
    let (count, plain) = plain_records(50);
    let batch = small_records(Codec::Lz4, 50).build().expect("encodes");
    let h = BatchHeader::parse(&batch).expect("header");
    assert_eq!(h.compression(), Compression::Lz4);
    assert_eq!(h.records_count, count);
    let records = check_batch(&batch, MIB).expect("valid batch");
    assert_eq!(
        records, plain,
        "the decompressed records differ from the plain encoding"
    );
    // An LZ4 frame descriptor: FLG then BD; BD's block-max-size bits and the
    // absence of HC are not visible in the frame, so compare with what the
    // fast mode produces for the same input.
    let mut fast = lz4::EncoderBuilder::new()
        .level(0)
        .block_mode(lz4::BlockMode::Independent)
        .build(Vec::new())
        .expect("lz4");
    fast.write_all(&plain).expect("lz4");
    let (fast, r) = fast.finish();
    r.expect("lz4");
    assert_eq!(&batch[HEADER_LEN..], &fast[..], "not LZ4's fast mode");
}
