//! Writes the seed corpus for the fuzz targets in fuzz/: one valid request
//! frame per served API version (default bodies, plus a produce carrying a
//! batch and a ListOffsets by timestamp), and record batches in every codec.
//! Seeds are named by content hash, so rerunning it is idempotent.
//!
//! cargo run --release -p vigil-protocol --example fuzz_corpus -- fuzz/corpus

use std::path::Path;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::Compression as Codec;
use vigil_protocol::batch::{wrap_records, BatchBuilder, Compression};
use vigil_protocol::SUPPORTED_APIS;

fn frame(api: ApiKey, version: i16, body: RequestKind) -> Bytes {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("seed")))
        .encode(&mut buf, api.request_header_version(version))
        .expect("header encodes");
    body.encode(&mut buf, version).expect("body encodes");
    buf.freeze()
}

fn batch(codec: Codec, n: i64) -> Bytes {
    let mut b = BatchBuilder::new(codec).producer(1000, 0, 0);
    for i in 0..n {
        b = b.record_with_headers(
            1_700_000_000_000 + i,
            Some(Bytes::from(format!("k{i}"))),
            Some(Bytes::from(format!("{{\"amount\":{i}.5}}"))),
            vec![("trace".into(), Some(Bytes::from("t")))],
        );
    }
    b.build().expect("encodes")
}

fn write(dir: &Path, data: &[u8]) {
    // FNV-1a: a stable name without another dependency.
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in data {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    std::fs::write(dir.join(format!("{h:016x}")), data).expect("write seed");
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus"));
    let (requests, batches) = (root.join("decode_request"), root.join("record_batch"));
    std::fs::create_dir_all(&requests).expect("mkdir");
    std::fs::create_dir_all(&batches).expect("mkdir");

    for &(api, min, max) in SUPPORTED_APIS {
        let Some(body) = vigil_protocol::empty_request(api) else {
            continue;
        };
        for v in min..=max {
            write(&requests, &frame(api, v, body.clone()));
        }
    }
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(Codec::Lz4, 3)))])]);
    for v in [3, 7, 9] {
        write(
            &requests,
            &frame(ApiKey::Produce, v, RequestKind::Produce(produce.clone())),
        );
    }
    let by_time = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(1_700_000_000_001)])]);
    for v in [1, 4, 7] {
        write(
            &requests,
            &frame(
                ApiKey::ListOffsets,
                v,
                RequestKind::ListOffsets(by_time.clone()),
            ),
        );
    }

    for codec in [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ] {
        write(&batches, &batch(codec, 4));
    }
    let mut two = BytesMut::from(&batch(Codec::None, 2)[..]);
    two.extend_from_slice(&batch(Codec::Zstd, 2));
    write(&batches, &two);
    // A small gzip bomb (2 MiB of zeros, over the target's 1 MiB cap).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &vec![0u8; 2 << 20]).expect("gzip");
    let bomb = gz.finish().expect("gzip");
    write(
        &batches,
        &wrap_records(Compression::Gzip, 1, 0, &bomb).expect("wraps"),
    );
    // Codec selector byte + raw compressed bytes, for the raw decompressor.
    let raw = batch(Codec::None, 3).slice(61..);
    write(&batches, &[&[1u8][..], &bomb[..]].concat());
    write(
        &batches,
        &[
            &[4u8][..],
            &zstd::encode_all(&raw[..], 3).expect("zstd")[..],
        ]
        .concat(),
    );
    println!("corpus written to {}", root.display());
}
