//! JSON record values → typed Arrow columns, with arrow-json's decoder.
//!
//! All values are decoded in one go; only if that fails is each value tried
//! alone to find the bad ones, and the good ones are then decoded together
//! again. A value must be exactly one JSON object; a null value (tombstone)
//! gives nulls in every typed column.

use arrow_array::ArrayRef;
use arrow_json::reader::{Decoder, ReaderBuilder};
use arrow_schema::ArrowError;

use crate::records::Raw;
use crate::schema::ValueSchema;

/// Typed columns for the good rows, the good record indexes, and the bad
/// ones with their error.
pub(crate) type Decoded = (Vec<ArrayRef>, Vec<usize>, Vec<(usize, String)>);

/// What a tombstone decodes as.
const EMPTY: &[u8] = b"{}";

fn decoder(schema: &ValueSchema, rows: usize) -> Result<Decoder, ArrowError> {
    ReaderBuilder::new(schema.arrow_schema())
        // One flush for everything: `decode` stops consuming at batch_size.
        .with_batch_size(rows.max(1) + 1)
        .build_decoder()
}

fn value_of(r: &Raw) -> &[u8] {
    r.value.as_deref().unwrap_or(EMPTY)
}

/// Feeds one value; it must be exactly one complete JSON value.
fn feed(d: &mut Decoder, value: &[u8]) -> Result<(), String> {
    let before = d.len();
    let mut rest = value;
    while !rest.is_empty() {
        let n = d.decode(rest).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("decoder made no progress".into());
        }
        rest = &rest[n..];
    }
    // A separator, so `1` `2` are not read as `12`.
    d.decode(b"\n").map_err(|e| e.to_string())?;
    if d.has_partial_record() {
        return Err("value is incomplete JSON".into());
    }
    match d.len().saturating_sub(before) {
        1 => Ok(()),
        0 => Err("value is empty".into()),
        n => Err(format!("value holds {n} JSON values, expected one object")),
    }
}

/// Decodes `values` into columns, or says why not.
fn decode_all<'a>(
    schema: &ValueSchema,
    values: impl ExactSizeIterator<Item = &'a [u8]>,
) -> Result<Vec<ArrayRef>, String> {
    let rows = values.len();
    let mut d = decoder(schema, rows).map_err(|e| e.to_string())?;
    for v in values {
        feed(&mut d, v)?;
    }
    match d.flush().map_err(|e| e.to_string())? {
        Some(b) => Ok(b.columns().to_vec()),
        None => Ok(schema
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| arrow_array::new_empty_array(f.data_type()))
            .collect()),
    }
}

pub(crate) fn decode_values(schema: &ValueSchema, records: &[Raw]) -> Decoded {
    let all: Vec<usize> = (0..records.len()).collect();
    if let Ok(cols) = decode_all(schema, records.iter().map(value_of)) {
        return (cols, all, Vec::new());
    }
    let mut good = Vec::with_capacity(records.len());
    let mut bad = Vec::new();
    for (i, r) in records.iter().enumerate() {
        match decode_all(schema, std::iter::once(value_of(r))) {
            Ok(_) => good.push(i),
            Err(e) => bad.push((i, format!("value does not match the value schema: {e}"))),
        }
    }
    match decode_all(schema, good.iter().map(|&i| value_of(&records[i]))) {
        Ok(cols) => (cols, good, bad),
        // Values that decode alone but not together: should not happen; do
        // not guess, refuse them all with the reason.
        Err(e) => {
            let bad = all
                .into_iter()
                .map(|i| (i, format!("value batch failed to decode: {e}")))
                .collect();
            let cols = decode_all(schema, std::iter::empty()).unwrap_or_default();
            (cols, Vec::new(), bad)
        }
    }
}
