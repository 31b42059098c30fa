//! The batch region: Arrow column buffers laid out for one copy into guest
//! memory, and their zero-copy reconstruction inside the guest.

use std::sync::Arc;

use arrow_array::{make_array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer};
use arrow_data::ArrayData;
use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};

use crate::wire::{len32, put_str16, put_u32, Reader};
use crate::AbiError;

const MAGIC: u32 = 0x3142_4756; // "VGB1"
const HEADER: usize = 16;

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// A record batch planned for the ABI: the header and descriptor, plus
/// where each Arrow buffer goes. Planning copies nothing but the descriptor;
/// [`EncodedBatch::write_to`] does the single copy into guest memory.
pub struct EncodedBatch<'a> {
    head: Vec<u8>,
    data_start: usize,
    buffers: Vec<(usize, &'a [u8])>,
    total: usize,
}

impl<'a> EncodedBatch<'a> {
    /// Plans `batch`. Fails for types ABI v1 cannot carry and for sliced
    /// arrays (normalize those first).
    pub fn new(batch: &'a RecordBatch) -> Result<Self, AbiError> {
        let mut desc = Vec::with_capacity(64 * batch.num_columns().max(1));
        let mut buffers = Vec::new();
        let mut cursor = 0usize;
        for (field, col) in batch.schema_ref().fields().iter().zip(batch.columns()) {
            put_field(&mut desc, field)?;
            put_node(
                &mut desc,
                field.name(),
                &col.to_data(),
                &mut buffers,
                &mut cursor,
            )?;
        }
        let data_start = align8(HEADER + desc.len());
        let mut head = Vec::with_capacity(HEADER + desc.len());
        put_u32(&mut head, MAGIC);
        put_u32(&mut head, len32(desc.len(), "batch descriptor")?);
        put_u32(&mut head, len32(batch.num_rows(), "row count")?);
        put_u32(&mut head, len32(batch.num_columns(), "column count")?);
        head.extend_from_slice(&desc);
        let total = data_start + cursor;
        len32(total, "batch region")?;
        Ok(EncodedBatch {
            head,
            data_start,
            buffers,
            total,
        })
    }

    /// Bytes [`write_to`](Self::write_to) needs.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether the region is empty (never: it always has a header).
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Writes the region into `dst`, which must hold [`len`](Self::len)
    /// bytes. Padding bytes are left as they were.
    pub fn write_to(&self, dst: &mut [u8]) -> Result<(), AbiError> {
        if dst.len() < self.total {
            return Err(AbiError::Truncated {
                at: 0,
                needed: self.total,
                len: dst.len(),
            });
        }
        dst[..self.head.len()].copy_from_slice(&self.head);
        for (off, bytes) in &self.buffers {
            let at = self.data_start + off;
            dst[at..at + bytes.len()].copy_from_slice(bytes);
        }
        Ok(())
    }

    /// The region as a fresh vector (tests and native harnesses).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.total];
        // The vector was sized from `total`, so this cannot fail.
        let _ = self.write_to(&mut v);
        v
    }
}

fn type_tag(column: &str, dt: &DataType) -> Result<(u8, Option<u8>), AbiError> {
    Ok(match dt {
        DataType::Null => (0, None),
        DataType::Boolean => (1, None),
        DataType::Int8 => (2, None),
        DataType::Int16 => (3, None),
        DataType::Int32 => (4, None),
        DataType::Int64 => (5, None),
        DataType::UInt8 => (6, None),
        DataType::UInt16 => (7, None),
        DataType::UInt32 => (8, None),
        DataType::UInt64 => (9, None),
        DataType::Float32 => (10, None),
        DataType::Float64 => (11, None),
        DataType::Utf8 => (12, None),
        DataType::Binary => (13, None),
        DataType::Timestamp(unit, None) => (
            14,
            Some(match unit {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 1,
                TimeUnit::Microsecond => 2,
                TimeUnit::Nanosecond => 3,
            }),
        ),
        DataType::List(_) => (15, None),
        DataType::Struct(_) => (16, None),
        other => {
            return Err(AbiError::UnsupportedType {
                column: column.to_string(),
                data_type: other.to_string(),
            })
        }
    })
}

fn put_field(out: &mut Vec<u8>, f: &Field) -> Result<(), AbiError> {
    put_str16(out, f.name(), "column name")?;
    out.push(u8::from(f.is_nullable()));
    let (tag, unit) = type_tag(f.name(), f.data_type())?;
    out.push(tag);
    if let Some(u) = unit {
        out.push(u);
    }
    Ok(())
}

fn put_ref<'a>(
    out: &mut Vec<u8>,
    bytes: &'a [u8],
    buffers: &mut Vec<(usize, &'a [u8])>,
    cursor: &mut usize,
) -> Result<(), AbiError> {
    put_u32(out, len32(*cursor, "buffer offset")?);
    put_u32(out, len32(bytes.len(), "buffer")?);
    buffers.push((*cursor, bytes));
    *cursor = align8(*cursor + bytes.len());
    Ok(())
}

fn put_node(
    out: &mut Vec<u8>,
    column: &str,
    d: &ArrayData,
    buffers: &mut Vec<(usize, &[u8])>,
    cursor: &mut usize,
) -> Result<(), AbiError> {
    if d.offset() != 0 || d.nulls().is_some_and(|n| n.offset() != 0) {
        return Err(AbiError::Sliced(column.to_string()));
    }
    put_u32(out, len32(d.len(), "array length")?);
    put_u32(out, len32(d.null_count(), "null count")?);
    // SAFETY-free lifetime extension: the bytes live in Arrow buffers owned by
    // the RecordBatch the caller borrowed for 'a; `ArrayData` clones share them.
    match d.nulls() {
        Some(n) => {
            let bytes = &n.buffer().as_slice()[..d.len().div_ceil(8)];
            put_ref(out, extend(bytes), buffers, cursor)?
        }
        None => {
            put_u32(out, 0);
            put_u32(out, 0);
        }
    }
    out.push(u8::try_from(d.buffers().len()).map_err(|_| AbiError::TooLarge("buffer count"))?);
    for b in d.buffers() {
        put_ref(out, extend(b.as_slice()), buffers, cursor)?;
    }
    let child_fields: Vec<&Field> = match d.data_type() {
        DataType::List(f) => vec![f.as_ref()],
        DataType::Struct(fs) => fs.iter().map(|f| f.as_ref()).collect(),
        _ => Vec::new(),
    };
    out.push(u8::try_from(child_fields.len()).map_err(|_| AbiError::TooLarge("child count"))?);
    for (f, child) in child_fields.iter().zip(d.child_data()) {
        put_field(out, f)?;
        put_node(out, column, child, buffers, cursor)?;
    }
    Ok(())
}

/// Ties a buffer slice to the batch's lifetime.
fn extend<'a>(bytes: &[u8]) -> &'a [u8] {
    // SAFETY: every slice passed here points into an Arrow `Buffer` that is
    // reference-counted and owned (transitively) by the `RecordBatch` borrowed
    // for 'a in `EncodedBatch::new`; `to_data()` clones only bump those
    // counts, so the allocation outlives 'a and is never mutated (Arrow
    // buffers are immutable once shared).
    unsafe { std::slice::from_raw_parts(bytes.as_ptr(), bytes.len()) }
}

fn read_field(r: &mut Reader<'_>) -> Result<Field, AbiError> {
    let name = r.str16("column name")?.to_string();
    let nullable = r.u8()? != 0;
    let tag = r.u8()?;
    // List and Struct children are read with the node; their data types are
    // filled in from the child fields there.
    let dt = match tag {
        0 => DataType::Null,
        1 => DataType::Boolean,
        2 => DataType::Int8,
        3 => DataType::Int16,
        4 => DataType::Int32,
        5 => DataType::Int64,
        6 => DataType::UInt8,
        7 => DataType::UInt16,
        8 => DataType::UInt32,
        9 => DataType::UInt64,
        10 => DataType::Float32,
        11 => DataType::Float64,
        12 => DataType::Utf8,
        13 => DataType::Binary,
        14 => DataType::Timestamp(
            match r.u8()? {
                0 => TimeUnit::Second,
                1 => TimeUnit::Millisecond,
                2 => TimeUnit::Microsecond,
                3 => TimeUnit::Nanosecond,
                u => return Err(AbiError::Malformed(format!("time unit {u}"))),
            },
            None,
        ),
        15 => DataType::List(Arc::new(Field::new("item", DataType::Null, true))),
        16 => DataType::Struct(Fields::empty()),
        t => return Err(AbiError::UnknownType(t)),
    };
    Ok(Field::new(name, dt, nullable))
}

struct Region<'r> {
    buf: &'r Buffer,
    data_start: usize,
}

impl Region<'_> {
    fn slice(&self, r: &mut Reader<'_>) -> Result<Option<Buffer>, AbiError> {
        let off = r.u32()? as usize;
        let len = r.u32()? as usize;
        let start = self.data_start + off;
        // Arrow panics on misaligned typed buffers, so the 8-alignment the
        // format promises is checked, not assumed.
        if !off.is_multiple_of(8) || !(self.buf.as_ptr() as usize + start).is_multiple_of(8) {
            return Err(AbiError::Malformed(format!(
                "buffer offset {off} not 8-aligned"
            )));
        }
        if start + len > self.buf.len() {
            return Err(AbiError::Malformed(format!(
                "buffer {off}+{len} outside a {}-byte region",
                self.buf.len()
            )));
        }
        Ok((len > 0 || off > 0).then(|| self.buf.slice_with_length(start, len)))
    }
}

fn read_node(
    r: &mut Reader<'_>,
    region: &Region<'_>,
    field: Field,
) -> Result<(Field, ArrayData), AbiError> {
    let len = r.u32()? as usize;
    let null_count = r.u32()? as usize;
    let validity = region.slice(r)?;
    let nbuf = r.u8()?;
    let mut bufs = Vec::with_capacity(usize::from(nbuf));
    for _ in 0..nbuf {
        bufs.push(
            region
                .slice(r)?
                .unwrap_or_else(|| arrow_buffer::MutableBuffer::new(0).into()),
        );
    }
    let nchild = r.u8()?;
    let mut child_fields = Vec::with_capacity(usize::from(nchild));
    let mut children = Vec::with_capacity(usize::from(nchild));
    for _ in 0..nchild {
        let f = read_field(r)?;
        let (f, d) = read_node(r, region, f)?;
        child_fields.push(Arc::new(f));
        children.push(d);
    }
    let dt = match field.data_type() {
        DataType::List(_) => match child_fields.first() {
            Some(f) if nchild == 1 => DataType::List(f.clone()),
            _ => return Err(AbiError::Malformed("list without exactly one child".into())),
        },
        DataType::Struct(_) => DataType::Struct(Fields::from(child_fields)),
        other => other.clone(),
    };
    // Arrow asserts (panics) when a typed buffer's length is not a whole
    // number of elements; refuse such a descriptor instead.
    let width = match &dt {
        DataType::Utf8 | DataType::Binary | DataType::List(_) => Some(4),
        DataType::Boolean => None,
        other => other.primitive_width(),
    };
    if let (Some(w), Some(b)) = (width, bufs.first()) {
        if b.len() % w != 0 {
            return Err(AbiError::Malformed(format!(
                "column {:?}: buffer of {} bytes is not a whole number of {w}-byte values",
                field.name(),
                b.len()
            )));
        }
    }
    let field = field.with_data_type(dt.clone());
    if let Some(v) = &validity {
        if v.len() * 8 < len || null_count > len {
            return Err(AbiError::Malformed(format!(
                "validity of {:?} too short",
                field.name()
            )));
        }
    }
    let nulls = validity.map(|v| {
        // SAFETY: the host computed null_count from this very bitmap; a wrong
        // count could only mislead the guest's own null handling, never make
        // it read outside the buffer (bounds were checked above).
        unsafe { NullBuffer::new_unchecked(BooleanBuffer::new(v, 0, len), null_count) }
    });
    let builder = ArrayData::builder(dt)
        .len(len)
        .nulls(nulls)
        .buffers(bufs)
        .child_data(children);
    // SAFETY: the structure is validated right below (buffer sizes, offsets
    // in bounds for the declared lengths) before anything reads the array;
    // only the costly value-level checks (UTF-8) are skipped, and the host
    // builds Utf8 columns from `str` data.
    let data = unsafe { builder.build_unchecked() };
    data.validate()
        .map_err(|e| AbiError::Malformed(format!("column {:?}: {e}", field.name())))?;
    Ok((field, data))
}

/// Rebuilds the record batch the host encoded into `region`, zero-copy:
/// every column slices `region`. Never panics on a malformed region.
pub fn decode_batch(region: &Buffer) -> Result<RecordBatch, AbiError> {
    let bytes = region.as_slice();
    let mut r = Reader::new(bytes);
    let magic = r.u32()?;
    if magic != MAGIC {
        return Err(AbiError::BadMagic(magic));
    }
    let desc_len = r.u32()? as usize;
    let rows = r.u32()? as usize;
    let ncols = r.u32()? as usize;
    let desc = r.take(desc_len)?;
    let region = Region {
        buf: region,
        data_start: align8(HEADER + desc_len),
    };
    let mut r = Reader::new(desc);
    let mut fields = Vec::with_capacity(ncols.min(desc_len));
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(ncols.min(desc_len));
    for _ in 0..ncols {
        let f = read_field(&mut r)?;
        let (f, d) = read_node(&mut r, &region, f)?;
        fields.push(f);
        columns.push(make_array(d));
    }
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(|e| AbiError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{BinaryBuilder, ListBuilder, StringBuilder, StructBuilder};
    use arrow_array::{
        Array, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray,
        TimestampMillisecondArray,
    };

    fn sample() -> RecordBatch {
        let mut headers = ListBuilder::new(StructBuilder::new(
            vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Binary, true),
            ],
            vec![
                Box::new(StringBuilder::new()) as Box<dyn arrow_array::builder::ArrayBuilder>,
                Box::new(BinaryBuilder::new()),
            ],
        ));
        for i in 0..3 {
            for j in 0..i {
                let s = headers.values();
                s.field_builder::<StringBuilder>(0)
                    .unwrap()
                    .append_value(format!("h{j}"));
                s.field_builder::<BinaryBuilder>(1)
                    .unwrap()
                    .append_value(b"v");
                s.append(true);
            }
            headers.append(true);
        }
        let headers = headers.finish();
        let schema = Schema::new(vec![
            Field::new("_offset", DataType::Int64, false),
            Field::new(
                "_timestamp",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("_key", DataType::Binary, true),
            Field::new("_headers", headers.data_type().clone(), false),
            Field::new("card", DataType::Utf8, true),
            Field::new("amount", DataType::Float64, true),
            Field::new("flag", DataType::Boolean, true),
            Field::new("p", DataType::Int32, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(vec![10, 11, 12])),
                Arc::new(TimestampMillisecondArray::from(vec![1, 2, 3])),
                Arc::new(arrow_array::BinaryArray::from(vec![
                    Some(&b"k"[..]),
                    None,
                    Some(b""),
                ])),
                Arc::new(headers),
                Arc::new(StringArray::from(vec![Some("a"), None, Some("ccc")])),
                Arc::new(Float64Array::from(vec![Some(1.5), Some(-2.0), None])),
                Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
                Arc::new(Int32Array::from(vec![7, 7, 7])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn batch_round_trips_zero_copy() {
        let batch = sample();
        let enc = EncodedBatch::new(&batch).unwrap();
        let bytes = enc.to_vec();
        let region = Buffer::from_vec(bytes);
        let back = decode_batch(&region).unwrap();
        assert_eq!(back, batch);
        // The decoded columns point into the region, not into copies.
        let base = region.as_ptr() as usize;
        let col = back.column(5).to_data();
        let p = col.buffers()[0].as_ptr() as usize;
        assert!(p >= base && p < base + region.len());
        assert_eq!(p % 8, 0, "buffers are 8-aligned");
    }

    #[test]
    fn hostile_regions_are_errors_not_panics() {
        let batch = sample();
        let bytes = EncodedBatch::new(&batch).unwrap().to_vec();
        for cut in 0..bytes.len() {
            let _ = decode_batch(&Buffer::from_vec(bytes[..cut].to_vec()));
        }
        // Flip every descriptor byte: decoding may fail but must not panic.
        let desc_end = 16 + u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
        for i in 0..desc_end {
            let mut b = bytes.clone();
            b[i] ^= 0xA5;
            let _ = decode_batch(&Buffer::from_vec(b));
        }
        assert!(matches!(
            decode_batch(&Buffer::from_vec(vec![0u8; 32])),
            Err(AbiError::BadMagic(0))
        ));
    }

    #[test]
    fn empty_batches_round_trip() {
        let batch = sample().slice(0, 0);
        let empty = RecordBatch::try_new(
            batch.schema(),
            batch
                .columns()
                .iter()
                .map(|c| arrow_array::new_empty_array(c.data_type()))
                .collect(),
        )
        .unwrap();
        let region = Buffer::from_vec(EncodedBatch::new(&empty).unwrap().to_vec());
        assert_eq!(decode_batch(&region).unwrap(), empty);
    }

    #[test]
    fn sliced_and_unsupported_columns_are_refused() {
        let batch = sample().slice(1, 2);
        assert!(matches!(
            EncodedBatch::new(&batch),
            Err(AbiError::Sliced(_))
        ));
        let b = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("d", DataType::Date32, false)])),
            vec![Arc::new(arrow_array::Date32Array::from(vec![1]))],
        )
        .unwrap();
        assert!(matches!(
            EncodedBatch::new(&b),
            Err(AbiError::UnsupportedType { .. })
        ));
    }
}
