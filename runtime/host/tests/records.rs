//! Kafka record batches → Arrow: record columns, compression, offsets,
//! value schemas and bad records.

use crate::common;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch};
use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde_json::json;
use vigil_host::{build_batch, record_schema, RecordsError, ValueSchema};

/// A test record: timestamp, key, value, headers.
type Rec = (
    i64,
    Option<&'static str>,
    Option<&'static str>,
    Vec<(&'static str, Option<&'static str>)>,
);

fn encode(recs: &[Rec], codec: Compression, base_offset: i64, control: bool) -> Bytes {
    let records: Vec<Record> = recs
        .iter()
        .enumerate()
        .map(|(i, (ts, k, v, h))| Record {
            transactional: control,
            control,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: base_offset + i as i64,
            // The encoder starts a new batch whenever offset - sequence changes.
            sequence: i as i32,
            timestamp: *ts,
            key: k.map(|s| Bytes::from_static(s.as_bytes())),
            value: v.map(|s| Bytes::from_static(s.as_bytes())),
            headers: h
                .iter()
                .map(|(k, v)| {
                    (
                        StrBytes::from_static_str(k),
                        v.map(|s| Bytes::from_static(s.as_bytes())),
                    )
                })
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: codec,
        },
    )
    .unwrap();
    buf.freeze()
}

fn concat(parts: &[Bytes]) -> Bytes {
    let mut b = BytesMut::new();
    for p in parts {
        b.extend_from_slice(p);
    }
    b.freeze()
}

fn sample() -> Vec<Rec> {
    vec![
        (
            1_000,
            Some("k1"),
            Some(r#"{"amount":12.5,"card":"c1"}"#),
            vec![("trace", Some("t1")), ("empty", None)],
        ),
        (
            1_005,
            None,
            Some(r#"{"amount":-3,"card":"c2","extra":[1,2]}"#),
            vec![],
        ),
        (999, Some("k3"), None, vec![("a", Some("1"))]),
    ]
}

fn offsets(b: &RecordBatch) -> Vec<i64> {
    b.column_by_name("_offset")
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

#[test]
fn record_columns_have_the_abi_types_and_values() {
    let wire = encode(&sample(), Compression::None, 40, false);
    assert_eq!(
        vigil_protocol::batch::RecordBatches::new(wire.clone()).count(),
        1
    );
    let built = build_batch(7, &wire, 0, None).unwrap();
    let b = &built.batch;
    assert_eq!(b.schema(), record_schema(None));
    assert_eq!(b.num_rows(), 3);
    assert_eq!(
        (built.first_offset, built.last_offset, built.records),
        (40, 42, 3)
    );
    assert_eq!(built.max_timestamp, 1_005);
    assert!(built.bad_records.is_empty());

    let part = b.column(0).as_primitive::<Int32Type>();
    assert_eq!(part.values().to_vec(), vec![7, 7, 7]);
    assert_eq!(offsets(b), vec![40, 41, 42]);
    let ts = b.column(2).as_primitive::<TimestampMillisecondType>();
    assert_eq!(ts.values().to_vec(), vec![1_000, 1_005, 999]);
    let keys = b.column(3).as_binary::<i32>();
    assert_eq!(keys.value(0), b"k1");
    assert!(keys.is_null(1));
    let values = b.column(4).as_binary::<i32>();
    assert_eq!(
        values.value(1),
        br#"{"amount":-3,"card":"c2","extra":[1,2]}"#
    );
    assert!(values.is_null(2));

    let headers = b.column(5).as_list::<i32>();
    assert_eq!(headers.value_offsets(), &[0, 2, 2, 3]);
    let entries = headers.values().as_struct();
    let hk = entries.column(0).as_string::<i32>();
    let hv = entries.column(1).as_binary::<i32>();
    assert_eq!((hk.value(0), hv.value(0)), ("trace", &b"t1"[..]));
    assert_eq!(hk.value(1), "empty");
    assert!(hv.is_null(1));
    assert_eq!((hk.value(2), hv.value(2)), ("a", &b"1"[..]));

    // The ABI can carry it, unchanged.
    let enc = vigil_abi::EncodedBatch::new(b).unwrap();
    let back = vigil_abi::decode_batch(&arrow_buffer::Buffer::from_vec(enc.to_vec())).unwrap();
    assert_eq!(&back, b);
}

#[test]
fn compressed_batches_decode_the_same() {
    let plain = build_batch(0, &encode(&sample(), Compression::None, 0, false), 0, None).unwrap();
    for codec in [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Lz4,
        Compression::Snappy,
    ] {
        let wire = encode(&sample(), codec, 0, false);
        let built = build_batch(0, &wire, 0, None).unwrap();
        assert_eq!(built.batch, plain.batch, "{codec:?}");
    }
}

#[test]
fn records_below_from_offset_are_skipped() {
    let wire = concat(&[
        encode(&sample(), Compression::None, 0, false),
        encode(&sample(), Compression::Gzip, 3, false),
    ]);
    let built = build_batch(0, &wire, 4, None).unwrap();
    assert_eq!(offsets(&built.batch), vec![4, 5]);
    assert_eq!(
        (built.first_offset, built.last_offset, built.records),
        (4, 5, 2)
    );
    // The header rows of the skipped record are dropped with it.
    let headers = built.batch.column(5).as_list::<i32>();
    assert_eq!(headers.value_offsets(), &[0, 0, 1]);

    let built = build_batch(0, &wire, 10, None).unwrap();
    assert_eq!(built.batch.num_rows(), 0);
    assert_eq!(
        (built.first_offset, built.last_offset, built.records),
        (10, 9, 0)
    );
    assert_eq!(built.max_timestamp, -1);
}

#[test]
fn control_batches_are_skipped_but_advance_the_offset() {
    let wire = concat(&[
        encode(&sample()[..1], Compression::None, 0, false),
        encode(
            &[(5, Some("\0\0\0\0"), Some("\0\0\0\0\0\0"), vec![])],
            Compression::None,
            1,
            true,
        ),
    ]);
    let built = build_batch(0, &wire, 0, None).unwrap();
    assert_eq!(offsets(&built.batch), vec![0]);
    assert_eq!((built.last_offset, built.records), (1, 1));
}

#[test]
fn log_append_time_uses_the_batch_timestamp() {
    let mut wire = BytesMut::from(&encode(&sample(), Compression::None, 0, false)[..]);
    // attributes (offset 21) bit 3 = LogAppendTime; max_timestamp at 35.
    wire[22] |= 0x08;
    wire[35..43].copy_from_slice(&77_777i64.to_be_bytes());
    let crc = crc32c::crc32c(&wire[21..]);
    wire[17..21].copy_from_slice(&crc.to_be_bytes());
    let built = build_batch(0, &wire.freeze(), 0, None).unwrap();
    let ts = built
        .batch
        .column(2)
        .as_primitive::<TimestampMillisecondType>();
    assert_eq!(ts.values().to_vec(), vec![77_777; 3]);
}

#[test]
fn value_schema_adds_typed_columns() {
    let schema = ValueSchema::from_json(&json!({
        "amount": "float64", "card": "string", "ok": "bool", "n": "int64", "at": "timestamp_ms"
    }))
    .unwrap();
    let recs: Vec<Rec> = vec![
        (
            1,
            None,
            Some(r#"{"amount":12.5,"card":"c1","ok":true,"n":7,"at":1700000000000,"x":{"y":1}}"#),
            vec![],
        ),
        (2, None, Some(r#"{"card":"c2"}"#), vec![]),
        (3, None, None, vec![]),
        (
            4,
            None,
            Some("  {\"amount\": 3,\n \"ok\": false}\n"),
            vec![],
        ),
    ];
    let built = build_batch(
        0,
        &encode(&recs, Compression::None, 0, false),
        0,
        Some(&schema),
    )
    .unwrap();
    assert!(built.bad_records.is_empty(), "{:?}", built.bad_records);
    let b = &built.batch;
    assert_eq!(b.schema(), record_schema(Some(&schema)));
    assert_eq!(b.num_columns(), 6 + 5);
    let amount = b
        .column_by_name("amount")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert_eq!(
        amount.iter().collect::<Vec<_>>(),
        vec![Some(12.5), None, None, Some(3.0)]
    );
    let card = b.column_by_name("card").unwrap().as_string::<i32>();
    assert_eq!(
        card.iter().collect::<Vec<_>>(),
        vec![Some("c1"), Some("c2"), None, None]
    );
    let ok = b.column_by_name("ok").unwrap().as_boolean();
    assert_eq!(
        ok.iter().collect::<Vec<_>>(),
        vec![Some(true), None, None, Some(false)]
    );
    let n = b.column_by_name("n").unwrap().as_primitive::<Int64Type>();
    assert_eq!(
        n.iter().collect::<Vec<_>>(),
        vec![Some(7), None, None, None]
    );
    let at = b
        .column_by_name("at")
        .unwrap()
        .as_primitive::<TimestampMillisecondType>();
    assert_eq!(at.value(0), 1_700_000_000_000);
    assert!(vigil_abi::EncodedBatch::new(b).is_ok());
}

#[test]
fn bad_values_land_in_bad_records_and_the_rest_decode() {
    let schema = ValueSchema::from_json(&json!({"amount": "float64", "card": "string"})).unwrap();
    let recs: Vec<Rec> = vec![
        (1, Some("a"), Some(r#"{"amount":1}"#), vec![]),
        (2, Some("b"), Some("not json"), vec![("h", Some("v"))]),
        (3, None, Some(r#"{"amount":"abc"}"#), vec![]),
        (4, None, Some(r#"{"amount":2}{"amount":3}"#), vec![]),
        (5, None, Some(r#"{"card":5}"#), vec![]),
        (6, None, Some(r#"{"amount":"#), vec![]),
        (7, None, Some(""), vec![]),
        (8, None, Some("5"), vec![]),
        (9, None, Some("null"), vec![]),
        (10, None, Some("[1]"), vec![]),
        (11, None, Some(r#"{"amount":4,"card":"z"}"#), vec![]),
    ];
    let built = build_batch(
        0,
        &encode(&recs, Compression::None, 100, false),
        0,
        Some(&schema),
    )
    .unwrap();
    let good = offsets(&built.batch);
    let bad: Vec<i64> = built.bad_records.iter().map(|r| r.offset).collect();
    assert!(
        good.contains(&100) && good.contains(&110),
        "good {good:?} bad {bad:?}"
    );
    for o in [101, 102, 103, 104, 105, 106, 107, 108, 109] {
        assert!(bad.contains(&o), "offset {o} should be bad: good {good:?}");
    }
    assert_eq!(good.len() + bad.len(), recs.len());
    assert_eq!(built.records, recs.len());
    let amount = built
        .batch
        .column_by_name("amount")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert_eq!(amount.value(0), 1.0);
    assert_eq!(amount.value(good.len() - 1), 4.0);

    let r = &built.bad_records[0];
    assert_eq!((r.offset, r.timestamp), (101, 2));
    assert_eq!(r.key.as_deref(), Some(&b"b"[..]));
    assert_eq!(r.value.as_deref(), Some(&b"not json"[..]));
    assert_eq!(
        r.headers,
        vec![("h".to_string(), Some(Bytes::from_static(b"v")))]
    );
    assert!(
        r.error.contains("value does not match the value schema"),
        "{}",
        r.error
    );
}

#[test]
fn corrupt_input_is_an_error_not_a_panic() {
    let wire = encode(&sample(), Compression::None, 0, false);
    assert!(matches!(
        build_batch(0, &wire.slice(..wire.len() - 3), 0, None),
        Err(RecordsError::Framing(_))
    ));
    // Flip every byte of the record section: errors or odd data, never a panic.
    for i in 61..wire.len() {
        let mut b = BytesMut::from(&wire[..]);
        b[i] ^= 0xA5;
        let _ = build_batch(
            0,
            &b.freeze(),
            0,
            Some(&ValueSchema::from_json(&json!({"amount": "float64"})).unwrap()),
        );
    }
    let mut b = BytesMut::from(&wire[..]);
    b[61] = 0x7f; // first record's length: far past the end
    assert!(matches!(
        build_batch(0, &b.freeze(), 0, None),
        Err(RecordsError::Corrupt { .. })
    ));
    let gz = encode(&sample(), Compression::Gzip, 0, false);
    let mut b = BytesMut::from(&gz[..]);
    let n = b.len();
    b[n - 10] ^= 0xff;
    assert!(build_batch(0, &b.freeze(), 0, None).is_err());
}

#[test]
fn built_batches_run_through_a_detector() {
    let schema = ValueSchema::from_json(&json!({"amount": "float64"})).unwrap();
    let recs: Vec<Rec> = (0..3)
        .map(|i| (i, None, Some(r#"{"amount":1}"#), vec![("h", Some("v"))]))
        .collect();
    let built = build_batch(
        3,
        &encode(&recs, Compression::Zstd, 100, false),
        0,
        Some(&schema),
    )
    .unwrap();
    let m = common::host().load(&common::detector()).unwrap();
    let mut inst = m
        .instantiate(&Default::default(), &common::mode('n'), "test/records")
        .unwrap();
    let alerts = inst.process(&built.batch).unwrap();
    assert_eq!(alerts[0].source_offset, 101);
}
