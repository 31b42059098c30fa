//! Building magic-v2 record batches: for records the broker writes itself
//! (alerts, dead letters) and for tests.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::Compression as Codec;

use super::{BatchError, Compression};

/// One record to encode.
#[derive(Debug, Clone)]
struct Rec {
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<(String, Option<Bytes>)>,
}

/// Builds a magic-v2 batch the way a producer would (offsets from 0, the
/// broker assigns real ones on append).
///
/// Uncompressed and LZ4 batches are encoded here, keeping repeated header
/// names (Kafka allows them; kafka-protocol's `Record` keeps headers in a
/// map and would drop all but the last). Other codecs go through
/// kafka-protocol's encoder, where repeated header names collapse.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    codec: Codec,
    producer: (i64, i16, i32),
    records: Vec<Rec>,
}

impl BatchBuilder {
    /// An empty batch compressed with `codec`.
    pub fn new(codec: Codec) -> Self {
        Self {
            codec,
            producer: (-1, -1, -1),
            records: Vec::new(),
        }
    }

    /// Marks the batch as written by an idempotent producer.
    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> Self {
        self.producer = (id, epoch, base_sequence);
        self
    }

    /// Appends a record.
    pub fn record(self, timestamp: i64, key: Option<Bytes>, value: Option<Bytes>) -> Self {
        self.record_with_headers(timestamp, key, value, Vec::new())
    }

    /// Appends a record with headers (name, value), in order.
    pub fn record_with_headers(
        mut self,
        timestamp: i64,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: Vec<(String, Option<Bytes>)>,
    ) -> Self {
        self.records.push(Rec {
            timestamp,
            key,
            value,
            headers,
        });
        self
    }

    /// Number of records added so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record was added.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Encodes the batch.
    pub fn build(self) -> Result<Bytes, BatchError> {
        match self.codec {
            Codec::None if !self.records.is_empty() => {
                return encode_own(&self.records, self.producer, Own::Plain)
            }
            Codec::Lz4 if !self.records.is_empty() => {
                return encode_own(&self.records, self.producer, Own::Lz4)
            }
            _ => {}
        }
        let (producer_id, producer_epoch, base_sequence) = self.producer;
        let records: Vec<kafka_protocol::records::Record> = self
            .records
            .into_iter()
            .enumerate()
            .map(|(i, r)| kafka_protocol::records::Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id,
                producer_epoch,
                timestamp_type: kafka_protocol::records::TimestampType::Creation,
                offset: i as i64,
                // The encoder starts a new batch whenever offset - sequence
                // changes, so an unsequenced batch counts up from -1 as well.
                sequence: base_sequence.wrapping_add(i as i32),
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (kafka_protocol::protocol::StrBytes::from_string(k), v))
                    .collect(),
            })
            .collect();
        let mut buf = BytesMut::new();
        kafka_protocol::records::RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &kafka_protocol::records::RecordEncodeOptions {
                version: 2,
                compression: self.codec,
            },
        )
        .map_err(|e| BatchError::Inconsistent(format!("cannot encode: {e:#}")))?;
        Ok(buf.freeze())
    }
}

fn put_varint(buf: &mut BytesMut, v: i64) {
    // Kafka's varints are zigzag-encoded base-128.
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.put_u8((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    buf.put_u8(z as u8);
}

fn put_bytes(buf: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, b.len() as i64);
            buf.put_slice(b);
        }
    }
}

/// Codecs encoded here rather than by kafka-protocol.
#[derive(Clone, Copy)]
enum Own {
    Plain,
    /// LZ4 frames in the fast mode with independent blocks (what Kafka's
    /// clients read). kafka-protocol writes level 4, LZ4's high-compression
    /// mode, several times slower for the broker's small alert batches.
    Lz4,
}

fn encode_own(records: &[Rec], producer: (i64, i16, i32), codec: Own) -> Result<Bytes, BatchError> {
    let base_ts = records.first().map_or(0, |r| r.timestamp);
    let max_ts = records.iter().map(|r| r.timestamp).max().unwrap_or(base_ts);
    let mut body = BytesMut::new();
    let mut rec = BytesMut::new();
    for (i, r) in records.iter().enumerate() {
        rec.clear();
        rec.put_i8(0); // record attributes
        put_varint(&mut rec, r.timestamp.wrapping_sub(base_ts));
        put_varint(&mut rec, i as i64);
        put_bytes(&mut rec, r.key.as_deref());
        put_bytes(&mut rec, r.value.as_deref());
        put_varint(&mut rec, r.headers.len() as i64);
        for (k, v) in &r.headers {
            put_bytes(&mut rec, Some(k.as_bytes()));
            put_bytes(&mut rec, v.as_deref());
        }
        put_varint(&mut body, rec.len() as i64);
        body.put_slice(&rec);
    }
    let count = i32::try_from(records.len())
        .map_err(|_| BatchError::Inconsistent("too many records for one batch".into()))?;
    match codec {
        Own::Plain => frame(0, count, (base_ts, max_ts), producer, &body),
        Own::Lz4 => frame(3, count, (base_ts, max_ts), producer, &lz4_fast(&body)?),
    }
}

fn lz4_fast(body: &[u8]) -> Result<Vec<u8>, BatchError> {
    use std::io::Write as _;
    let failed = |e: std::io::Error| BatchError::Inconsistent(format!("cannot compress lz4: {e}"));
    let mut e = lz4::EncoderBuilder::new()
        .level(0)
        .block_mode(lz4::BlockMode::Independent)
        .build(Vec::with_capacity(body.len() / 2 + 64))
        .map_err(failed)?;
    e.write_all(body).map_err(failed)?;
    let (out, r) = e.finish();
    r.map_err(failed)?;
    Ok(out)
}

/// Frames an already encoded (and possibly compressed) records section as a
/// batch with a valid CRC, declaring `records_count` records and `timestamp`
/// as both timestamps. The records are not checked: this is how tests and
/// tools build batches a producer could send but an encoder would not
/// (compression bombs, lying record counts).
pub fn wrap_records(
    codec: Compression,
    records_count: i32,
    timestamp: i64,
    body: &[u8],
) -> Result<Bytes, BatchError> {
    let bits = match codec {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
        Compression::Unknown(n) => i16::from(n & 0x7),
    };
    frame(
        bits,
        records_count,
        (timestamp, timestamp),
        (-1, -1, -1),
        body,
    )
}

/// Header and CRC around a records section.
fn frame(
    attributes: i16,
    count: i32,
    (base_ts, max_ts): (i64, i64),
    (producer_id, producer_epoch, base_sequence): (i64, i16, i32),
    body: &[u8],
) -> Result<Bytes, BatchError> {
    // Everything the CRC covers: attributes .. records.
    let mut tail = BytesMut::with_capacity(40 + body.len());
    tail.put_i16(attributes);
    tail.put_i32(count.saturating_sub(1)); // last offset delta
    tail.put_i64(base_ts);
    tail.put_i64(max_ts);
    tail.put_i64(producer_id);
    tail.put_i16(producer_epoch);
    tail.put_i32(base_sequence);
    tail.put_i32(count);
    tail.put_slice(body);
    let crc = crc32c::crc32c(&tail);
    let batch_len = i32::try_from(4 + 1 + 4 + tail.len())
        .map_err(|_| BatchError::Inconsistent("batch larger than 2 GiB".into()))?;
    let mut out = BytesMut::with_capacity(12 + batch_len as usize);
    out.put_i64(0); // base offset, assigned on append
    out.put_i32(batch_len);
    out.put_i32(0); // partition leader epoch
    out.put_i8(2); // magic
    out.put_u32(crc);
    out.put_slice(&tail);
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_batches_validate_decode_and_keep_repeated_headers() {
        let b = BatchBuilder::new(Codec::None)
            .record(1_000, Some(Bytes::from("k")), Some(Bytes::from("v1")))
            .record_with_headers(
                900,
                None,
                None,
                vec![
                    ("dup-name".into(), Some(Bytes::from("a"))),
                    ("dup-name".into(), Some(Bytes::from("b"))),
                    ("nil".into(), None),
                ],
            )
            .build()
            .unwrap();
        let h = super::super::validate(&b).unwrap();
        assert_eq!(h.offset_count(), 2);
        let mut buf = b.clone();
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).unwrap();
        assert_eq!(set.records.len(), 2);
        assert_eq!(set.records[0].timestamp, 1_000);
        assert_eq!(set.records[1].timestamp, 900);
        assert_eq!(set.records[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(set.records[1].value, None);
        // kafka-protocol's map keeps one of the repeated headers; the bytes
        // hold both.
        let hits = b.windows(8).filter(|w| *w == b"dup-name").count();
        assert_eq!(hits, 2);
    }

    #[test]
    fn plain_and_kafka_protocol_encodings_agree() {
        let mk = |c| {
            BatchBuilder::new(c)
                .producer(7, 1, 10)
                .record(5, Some(Bytes::from("a")), Some(Bytes::from("x")))
                .record(9, None, Some(Bytes::from("y")))
        };
        let ours = mk(Codec::None).build().unwrap();
        let mut recs = mk(Codec::None);
        recs.codec = Codec::Gzip; // force the kafka-protocol path
        let mut theirs = recs.build().unwrap();
        let mut ours_buf = ours.clone();
        let a = kafka_protocol::records::RecordBatchDecoder::decode(&mut ours_buf).unwrap();
        let b = kafka_protocol::records::RecordBatchDecoder::decode(&mut theirs).unwrap();
        assert_eq!(a.records, b.records);
    }
}
