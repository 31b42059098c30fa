//! `Batch` accessors and validation, on batches built by the testing
//! harness and sent through the ABI encoding.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::json;
use vigil_sdk::arrow_array::{Array, Float32Array, Int32Array, RecordBatch};
use vigil_sdk::arrow_schema::{DataType, Field, Schema};
use vigil_sdk::testing::{through_abi, FieldType, Rows};
use vigil_sdk::Batch;

fn sample() -> Batch {
    Rows::new(7, 40)
        .schema(&[
            ("amount", FieldType::F64),
            ("count", FieldType::I64),
            ("card", FieldType::Str),
            ("flag", FieldType::Bool),
            ("at", FieldType::TimestampMs),
        ])
        .row(
            1_000,
            Some(b"c1".as_slice()),
            json!({"amount": 1.5, "count": 3, "card": "c1", "flag": true, "at": 5}),
        )
        .header("trace", Some(b"t-1"))
        .header("empty", None)
        .header("trace", Some(b"t-2"))
        .row(2_000, None, json!({"amount": "oops", "count": 4.5}))
        .keyed_row(3_000, [0xff, 0xfe], json!({"amount": -2, "count": -7}))
        .null_row(4_000, Some(b"gone".as_slice()))
        .build()
}

#[test]
fn record_accessors() {
    let b = through_abi(&sample()).unwrap();
    assert_eq!(b.num_rows(), 4);
    assert_eq!(b.partition(), 7);
    assert_eq!(b.offsets(), &[40, 41, 42, 43]);
    assert_eq!(b.timestamps(), &[1_000, 2_000, 3_000, 4_000]);
    assert_eq!(b.key(0), Some(&b"c1"[..]));
    assert_eq!(b.key_str(0), Some("c1"));
    assert_eq!(b.key(1), None);
    assert_eq!(b.key(2), Some(&[0xff, 0xfe][..]));
    assert_eq!(b.key_str(2), None, "not UTF-8");
    assert_eq!(b.key(99), None, "out of range");
    let v: serde_json::Value = serde_json::from_slice(b.value(0).unwrap()).unwrap();
    assert_eq!(v["card"], "c1");
    assert_eq!(b.value(3), None, "tombstone");
    assert_eq!(b.header(0, "trace"), Some(&b"t-1"[..]), "first match wins");
    assert_eq!(b.header(0, "empty"), None);
    assert_eq!(b.header(0, "missing"), None);
    assert_eq!(b.header(1, "trace"), None);
    assert_eq!(b.header(99, "trace"), None);
    assert_eq!(b.record_batch().num_columns(), 11);
}

#[test]
fn typed_columns() {
    let b = through_abi(&sample()).unwrap();
    let amount = b.f64("amount").unwrap();
    assert_eq!(amount.value(0), 1.5);
    assert!(amount.is_null(1), "a string is not a number");
    assert_eq!(amount.value(2), -2.0);
    let count = b.i64("count").unwrap();
    assert_eq!((count.value(0), count.is_null(1)), (3, true));
    assert_eq!(b.str("card").unwrap().value(0), "c1");
    assert!(b.bool("flag").unwrap().value(0));
    let at = b.column_f64("at").unwrap();
    assert_eq!(at[0], 5.0);
    assert!(at[1].is_nan());
    let counts = b.column_f64("count").unwrap();
    assert_eq!(counts[2], -7.0);
    assert!(matches!(counts, Cow::Owned(_)));
}

#[test]
fn column_errors_name_the_column_and_types() {
    let b = sample();
    let e = b.f64("amt").unwrap_err().to_string();
    assert!(e.contains("`amt`") && e.contains("value_schema"), "{e}");
    assert!(e.contains("amount, count, card, flag, at"), "{e}");
    let e = b.f64("card").unwrap_err().to_string();
    assert!(e.contains("`card` has type Utf8, not Float64"), "{e}");
    assert!(b.i64("amount").is_err());
    assert!(b.str("flag").is_err());
    assert!(b.bool("amount").is_err());
    let e = b.column_f64("card").unwrap_err().to_string();
    assert!(e.contains("not a numeric type"), "{e}");
}

#[test]
fn column_f64_borrows_when_it_can() {
    let b = Rows::new(0, 0)
        .schema(&[("x", FieldType::F64)])
        .row(0, None, json!({"x": 1.0}))
        .row(0, None, json!({"x": 2.0}))
        .build();
    let x = b.column_f64("x").unwrap();
    assert!(matches!(x, Cow::Borrowed(_)));
    assert_eq!(&*x, &[1.0, 2.0]);
    // Float32 and Int32 columns, as a host may declare them, convert.
    let rb = b.record_batch();
    let mut fields: Vec<Field> = rb.schema().fields().iter().map(|f| (**f).clone()).collect();
    let mut cols = rb.columns().to_vec();
    fields.push(Field::new("f32", DataType::Float32, true));
    cols.push(Arc::new(Float32Array::from(vec![Some(0.5), None])));
    fields.push(Field::new("i32", DataType::Int32, false));
    cols.push(Arc::new(Int32Array::from(vec![-1, 9])));
    let b = Batch::new(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()).unwrap();
    let f = b.column_f64("f32").unwrap();
    assert_eq!(f[0], 0.5);
    assert!(f[1].is_nan());
    assert_eq!(&*b.column_f64("i32").unwrap(), &[-1.0, 9.0]);
}

#[test]
fn new_checks_record_columns() {
    let rb = sample().record_batch().clone();
    for (i, name) in [
        "_partition",
        "_offset",
        "_timestamp",
        "_key",
        "_value",
        "_headers",
    ]
    .iter()
    .enumerate()
    {
        let mut without = rb.clone();
        without.remove_column(i);
        let e = Batch::new(without).unwrap_err().to_string();
        assert!(e.contains(&format!("`{name}`")), "{e}");
    }
    // A record column of the wrong type is named with both types.
    let schema = rb.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| (**f).clone()).collect();
    let mut cols = rb.columns().to_vec();
    fields[1] = Field::new("_offset", DataType::Int32, false);
    cols[1] = Arc::new(Int32Array::from(vec![1, 2, 3, 4]));
    let bad = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
    let e = Batch::new(bad).unwrap_err().to_string();
    assert!(
        e.contains("`_offset` has type Int32, expected Int64"),
        "{e}"
    );
}

#[test]
fn reserved_and_empty() {
    let r = Rows::new(0, 0)
        .schema(&[("_x", FieldType::F64)])
        .try_build();
    assert!(r.unwrap_err().to_string().contains("reserved"));
    let empty = Rows::new(3, 0).build();
    assert_eq!((empty.num_rows(), empty.partition()), (0, -1));
    assert!(empty.offsets().is_empty());
}
