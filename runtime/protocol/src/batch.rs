//! Magic-v2 record batches, read in place.
//!
//! vigil stores batches as the producer sent them (compression and CRC
//! intact) so that Fetch never re-encodes. The broker only needs the fixed
//! 61-byte header: offsets, timestamps, producer id/epoch/sequence. The CRC
//! covers everything from `attributes` on, so the broker can rewrite
//! `base_offset` and `partition_leader_epoch` without recomputing it.

use bytes::Bytes;

/// Size of the fixed magic-v2 batch header.
pub const HEADER_LEN: usize = 61;
/// Offset of the `batch_length` field; the batch spans `12 + batch_length` bytes.
const LENGTH_END: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_COVERS_FROM: usize = 21;

/// Why bytes are not a valid magic-v2 record batch.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than the header or the declared length.
    #[error("record batch truncated: needs {needed} bytes, {available} available")]
    Truncated {
        /// Bytes the header/length require.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// Magic byte other than 2 (message format v0/v1 is not supported).
    #[error("record batch has magic {0}; only magic v2 (Kafka 0.11+) is supported")]
    UnsupportedMagic(i8),
    /// Declared length too small to hold a header.
    #[error("record batch declares length {0}, smaller than its own header")]
    BadLength(i32),
    /// CRC-32C mismatch.
    #[error(
        "record batch CRC mismatch: header says {expected:#010x}, bytes hash to {actual:#010x}"
    )]
    CrcMismatch {
        /// CRC stored in the batch.
        expected: u32,
        /// CRC computed over the bytes.
        actual: u32,
    },
    /// `last_offset_delta` does not fit the record count, or the records
    /// do not frame the declared count.
    #[error("record batch is inconsistent: {0}")]
    Inconsistent(String),
    /// The records decompress to more than the broker's cap: a compression
    /// bomb, or a batch far larger than `max.message.bytes`. The same bytes
    /// fail again; a producer should send smaller batches.
    #[error("record batch decompresses ({codec}) to more than {limit} bytes, the broker's cap (8 x max.message.bytes); send smaller batches")]
    TooLarge {
        /// The codec.
        codec: &'static str,
        /// The cap in bytes.
        limit: usize,
    },
    /// The compressed records are not valid for their codec (not retriable).
    #[error("record batch does not decompress ({codec}): {message}")]
    Decompress {
        /// The codec.
        codec: &'static str,
        /// What the decompressor said.
        message: String,
    },
}

/// Compression codec of a batch (attributes bits 0–2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Uncompressed.
    None,
    /// gzip.
    Gzip,
    /// snappy (xerial framing).
    Snappy,
    /// lz4 frame.
    Lz4,
    /// zstd.
    Zstd,
    /// A codec id Kafka does not define.
    Unknown(u8),
}

/// The fixed header of a magic-v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the `batch_length` field.
    pub batch_length: i32,
    /// Leader epoch the batch was written under.
    pub partition_leader_epoch: i32,
    /// Always 2 once parsed.
    pub magic: i8,
    /// CRC-32C of the bytes from `attributes` to the end.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control bits.
    pub attributes: i16,
    /// `last_offset - base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub records_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl BatchHeader {
    /// Reads the header at the start of `b` without checking the CRC.
    pub fn parse(b: &[u8]) -> Result<Self, BatchError> {
        if b.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: b.len(),
            });
        }
        let magic = b[MAGIC_AT] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        let batch_length = be_i32(b, 8);
        if batch_length < (HEADER_LEN - LENGTH_END) as i32 {
            return Err(BatchError::BadLength(batch_length));
        }
        Ok(Self {
            base_offset: be_i64(b, 0),
            batch_length,
            partition_leader_epoch: be_i32(b, 12),
            magic,
            crc: u32::from_be_bytes([b[17], b[18], b[19], b[20]]),
            attributes: be_i16(b, 21),
            last_offset_delta: be_i32(b, 23),
            base_timestamp: be_i64(b, 27),
            max_timestamp: be_i64(b, 35),
            producer_id: be_i64(b, 43),
            producer_epoch: be_i16(b, 51),
            base_sequence: be_i32(b, 53),
            records_count: be_i32(b, 57),
        })
    }

    /// Total size of the batch in bytes, header included.
    pub fn total_len(&self) -> usize {
        LENGTH_END + self.batch_length as usize
    }

    /// Offset of the last record. Saturating: the base offset is not
    /// covered by the CRC, so a damaged one must not overflow.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Number of offsets the batch occupies.
    pub fn offset_count(&self) -> i64 {
        i64::from(self.last_offset_delta) + 1
    }

    /// Compression codec.
    pub fn compression(&self) -> Compression {
        match self.attributes & 0x7 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            n => Compression::Unknown(n as u8),
        }
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// Whether this is a control batch (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    /// Whether the producer is idempotent (has a producer id).
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence number of the last record (wrapping as Kafka does).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        self.base_sequence.wrapping_add(self.last_offset_delta) & i32::MAX
    }
}

/// Checks a single batch: header, length and CRC-32C. `b` must hold exactly
/// one batch.
pub fn validate(b: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(b)?;
    if b.len() != h.total_len() {
        return Err(BatchError::Truncated {
            needed: h.total_len(),
            available: b.len(),
        });
    }
    let actual = crc32c::crc32c(&b[CRC_COVERS_FROM..]);
    if actual != h.crc {
        return Err(BatchError::CrcMismatch {
            expected: h.crc,
            actual,
        });
    }
    if h.records_count < 0
        || h.last_offset_delta < 0
        || i64::from(h.records_count) > i64::from(h.last_offset_delta) + 1
    {
        return Err(BatchError::Inconsistent(format!(
            "{} records with last_offset_delta {}",
            h.records_count, h.last_offset_delta
        )));
    }
    if let Compression::Unknown(n) = h.compression() {
        return Err(BatchError::Inconsistent(format!(
            "unknown compression codec {n}"
        )));
    }
    Ok(h)
}

/// Overwrites `base_offset` in place (not covered by the CRC).
pub fn set_base_offset(b: &mut [u8], base_offset: i64) {
    b[..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Overwrites `partition_leader_epoch` in place (not covered by the CRC).
pub fn set_partition_leader_epoch(b: &mut [u8], epoch: i32) {
    b[12..16].copy_from_slice(&epoch.to_be_bytes());
}

/// Splits a run of concatenated batches (a produce request's `records`, a
/// stored segment) into `(header, bytes)` pairs, zero-copy.
///
/// Yields an error for the first batch that cannot be framed and stops.
/// CRCs are not checked here; use [`validate`] where bytes come from outside.
#[derive(Debug, Clone)]
pub struct RecordBatches {
    rest: Bytes,
    failed: bool,
}

impl RecordBatches {
    /// Iterates the batches in `bytes`.
    pub fn new(bytes: Bytes) -> Self {
        Self {
            rest: bytes,
            failed: false,
        }
    }
}

impl Iterator for RecordBatches {
    type Item = Result<(BatchHeader, Bytes), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let h = match BatchHeader::parse(&self.rest) {
            Ok(h) => h,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        if self.rest.len() < h.total_len() {
            self.failed = true;
            return Some(Err(BatchError::Truncated {
                needed: h.total_len(),
                available: self.rest.len(),
            }));
        }
        let b = self.rest.split_to(h.total_len());
        Some(Ok((h, b)))
    }
}

mod builder;
pub mod inflate;
pub use builder::{wrap_records, BatchBuilder};
pub use inflate::{check_batch, decode_records, decompress, DEFAULT_DECOMPRESSED_LIMIT};

#[cfg(test)]
mod tests;
