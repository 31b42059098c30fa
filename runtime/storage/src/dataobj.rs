//! Data objects: what the uploader writes. One object holds the batches of
//! many partitions — one contiguous *run* per partition — so an upload cycle
//! costs one PUT however many partitions had data. A footer indexes the runs,
//! which makes an object self-describing (recovery and the compactor can read
//! it without the manifest); the manifest records the same ranges so reads
//! can go straight to a byte range.
//!
//! ```text
//! [run 1: raw Kafka batches][run 2]…[index JSON][index_len u32][crc32c(index) u32]["VGL1"]
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::partition::CachedBatch;

const MAGIC: &[u8; 4] = b"VGL1";
/// Bytes after the index: length, CRC, magic.
pub const FOOTER_LEN: usize = 12;

/// One partition's batches inside a data object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition index.
    pub partition: i32,
    /// First offset.
    pub base_offset: i64,
    /// One past the last offset.
    pub next_offset: i64,
    /// Byte position of the run in the object.
    pub start: u64,
    /// Byte length of the run.
    pub len: u64,
    /// Largest record timestamp in the run.
    pub max_timestamp: i64,
}

/// The footer index of a data object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataIndex {
    /// Runs in byte order.
    pub runs: Vec<Run>,
}

/// Builds one data object. The batches are kept as the `Bytes` they already
/// are (no copy); the object is handed to the store as a list of chunks.
#[derive(Debug, Default)]
pub struct DataObjectBuilder {
    chunks: Vec<Bytes>,
    len: usize,
    index: DataIndex,
}

impl DataObjectBuilder {
    /// An empty object.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no run was added.
    pub fn is_empty(&self) -> bool {
        self.index.runs.is_empty()
    }

    /// Adds a partition's contiguous batches as one run; returns it.
    pub fn add_run(
        &mut self,
        topic_id: Uuid,
        partition: i32,
        batches: &[CachedBatch],
    ) -> Option<Run> {
        let first = batches.first()?;
        let last = batches.last()?;
        let start = self.len as u64;
        for b in batches {
            self.len += b.bytes.len();
            self.chunks.push(b.bytes.clone());
        }
        let run = Run {
            topic_id,
            partition,
            base_offset: first.header.base_offset,
            next_offset: last.header.last_offset() + 1,
            start,
            len: self.len as u64 - start,
            max_timestamp: batches
                .iter()
                .map(|b| b.header.max_timestamp)
                .max()
                .unwrap_or(-1),
        };
        self.index.runs.push(run.clone());
        Some(run)
    }

    /// The object as chunks (batches, then index and footer), its total
    /// length, and its index.
    pub fn finish_chunks(mut self) -> (Vec<Bytes>, usize, DataIndex) {
        // Serializing plain data cannot fail; an empty index would only make
        // the object unreadable for recovery, never for manifest reads.
        let index = serde_json::to_vec(&self.index).unwrap_or_default();
        let crc = crc32c::crc32c(&index);
        let mut tail = BytesMut::with_capacity(index.len() + FOOTER_LEN);
        tail.extend_from_slice(&index);
        tail.put_u32(index.len() as u32);
        tail.put_u32(crc);
        tail.put_slice(MAGIC);
        self.len += tail.len();
        self.chunks.push(tail.freeze());
        (self.chunks, self.len, self.index)
    }

    /// The object as one contiguous buffer, and its index.
    pub fn finish(self) -> (Bytes, DataIndex) {
        let (chunks, len, index) = self.finish_chunks();
        let mut body = BytesMut::with_capacity(len);
        for c in chunks {
            body.extend_from_slice(&c);
        }
        (body.freeze(), index)
    }
}

/// Why a data object's footer or index is unreadable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DataObjectError {
    /// Too short, wrong magic or an impossible length.
    #[error("bad footer: {0}")]
    Footer(String),
    /// CRC mismatch or bad JSON.
    #[error("bad index: {0}")]
    Index(String),
}

/// Reads the footer (the last [`FOOTER_LEN`] bytes): the index length.
pub fn parse_footer(footer: &[u8], object_len: u64) -> Result<(u64, u32), DataObjectError> {
    if footer.len() != FOOTER_LEN || &footer[8..12] != MAGIC {
        return Err(DataObjectError::Footer("missing VGL1 magic".into()));
    }
    let len = u64::from(u32::from_be_bytes([
        footer[0], footer[1], footer[2], footer[3],
    ]));
    let crc = u32::from_be_bytes([footer[4], footer[5], footer[6], footer[7]]);
    if len + FOOTER_LEN as u64 > object_len {
        return Err(DataObjectError::Footer(format!(
            "index of {len} bytes does not fit an object of {object_len}"
        )));
    }
    Ok((len, crc))
}

/// Parses an index checked against the footer's CRC.
pub fn parse_index(index: &[u8], crc: u32) -> Result<DataIndex, DataObjectError> {
    if crc32c::crc32c(index) != crc {
        return Err(DataObjectError::Index("CRC mismatch".into()));
    }
    serde_json::from_slice(index).map_err(|e| DataObjectError::Index(e.to_string()))
}

/// Parses a whole object's index.
pub fn index_of(object: &[u8]) -> Result<DataIndex, DataObjectError> {
    let n = object.len();
    if n < FOOTER_LEN {
        return Err(DataObjectError::Footer(format!(
            "object of {n} bytes is too short"
        )));
    }
    let (len, crc) = parse_footer(&object[n - FOOTER_LEN..], n as u64)?;
    let start = n - FOOTER_LEN - len as usize;
    parse_index(&object[start..n - FOOTER_LEN], crc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::kafka_protocol::records::Compression;
    use vigil_protocol::{BatchBuilder, BatchHeader};

    fn cached(base: i64, n: i64, ts: i64) -> CachedBatch {
        let mut b = (0..n)
            .fold(BatchBuilder::new(Compression::None), |b, i| {
                b.record(ts + i, None, Some(Bytes::from_static(b"v")))
            })
            .build()
            .expect("batch")
            .to_vec();
        vigil_protocol::batch::set_base_offset(&mut b, base);
        let header = BatchHeader::parse(&b).expect("header");
        CachedBatch {
            header,
            bytes: Bytes::from(b),
            appended: std::time::Instant::now(),
        }
    }

    #[test]
    fn runs_index_their_bytes_and_the_footer_round_trips() {
        let a = [cached(0, 2, 10), cached(2, 3, 20)];
        let c = [cached(100, 1, 5)];
        let mut w = DataObjectBuilder::new();
        let ra = w.add_run(Uuid::from_u128(1), 0, &a).expect("run");
        let rc = w.add_run(Uuid::from_u128(2), 7, &c).expect("run");
        assert!(w.add_run(Uuid::from_u128(3), 0, &[]).is_none());
        let (obj, index) = w.finish();
        assert_eq!(index.runs, vec![ra.clone(), rc.clone()]);
        assert_eq!(
            (ra.base_offset, ra.next_offset, ra.max_timestamp),
            (0, 5, 22)
        );
        assert_eq!(
            (rc.start, rc.base_offset, rc.next_offset),
            (ra.len, 100, 101)
        );
        let slice = &obj[rc.start as usize..(rc.start + rc.len) as usize];
        assert_eq!(slice, &c[0].bytes[..]);
        assert_eq!(index_of(&obj), Ok(index));
    }

    #[test]
    fn damaged_footers_and_indexes_are_reported() {
        let mut w = DataObjectBuilder::new();
        w.add_run(Uuid::nil(), 0, &[cached(0, 1, 0)]);
        let (obj, _) = w.finish();
        let mut bad = obj.to_vec();
        let n = bad.len();
        bad[n - FOOTER_LEN - 2] ^= 1;
        assert!(matches!(index_of(&bad), Err(DataObjectError::Index(_))));
        assert!(matches!(
            index_of(&obj[..n - 1]),
            Err(DataObjectError::Footer(_))
        ));
        assert!(matches!(
            index_of(b"short"),
            Err(DataObjectError::Footer(_))
        ));
    }
}
