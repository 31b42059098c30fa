//! Bounded decompression of record batches: the one place the broker turns a
//! compressed records section into bytes.
//!
//! A producer controls the compressed bytes, so a 1 MB gzip batch can expand
//! to 1 GiB of zeros. Every decoder here is streamed through a limit
//! (`Read::take` on the decoder's output; snappy's declared lengths are
//! checked before anything is allocated), so a bomb costs at most `limit`
//! bytes and fails with [`BatchError::TooLarge`] instead of exhausting memory.
//!
//! [`check_records`] walks the record framing of a decompressed section
//! without materialising records, so a declared record count that does not
//! match the bytes (which would make a decoder reserve memory for billions of
//! records) is refused before anything else decodes it. [`decode_records`] is
//! the bounded replacement for `RecordBatchDecoder::decode` that every
//! broker-side reader of kafka-protocol `Record`s uses.

use std::io::Read;

use bytes::{Buf, Bytes};
use kafka_protocol::records::{RecordBatchDecoder, RecordSet};

use super::{BatchError, BatchHeader, Compression, HEADER_LEN};

/// Kafka's default `max.message.bytes` (1 MiB plus the 12-byte log overhead):
/// the largest batch a producer may send.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// How many times `max.message.bytes` the records of one batch may take once
/// decompressed. Producers close batches on their (estimated) compressed or
/// uncompressed size, so real batches stay well below this; a larger
/// expansion is treated as a compression bomb. See
/// docs/design/0009-hardening.md, "Item 8".
pub const DECOMPRESSION_RATIO: usize = 8;

/// The decompressed-size cap used by the broker: [`DECOMPRESSION_RATIO`] ×
/// [`DEFAULT_MAX_MESSAGE_BYTES`] (8,388,704 bytes).
pub const DEFAULT_DECOMPRESSED_LIMIT: usize = decompressed_limit(DEFAULT_MAX_MESSAGE_BYTES);

/// Smallest possible encoded record: length, attributes, timestamp delta,
/// offset delta, key length, value length and header count, one byte each.
pub const MIN_RECORD_BYTES: usize = 7;

/// The decompressed-size cap for a topic whose `max.message.bytes` is
/// `max_message_bytes`.
pub const fn decompressed_limit(max_message_bytes: usize) -> usize {
    max_message_bytes.saturating_mul(DECOMPRESSION_RATIO)
}

/// Name of a codec for errors and logs.
pub fn codec_name(c: Compression) -> &'static str {
    match c {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
        Compression::Unknown(_) => "unknown",
    }
}

/// Decompresses the records section `body` of a batch compressed with
/// `codec`, failing with [`BatchError::TooLarge`] as soon as the output
/// would exceed `limit` bytes. Uncompressed bodies are returned as they are
/// (they are already bounded by the batch's own size).
pub fn decompress(codec: Compression, body: Bytes, limit: usize) -> Result<Bytes, BatchError> {
    let name = codec_name(codec);
    let failed = |e: std::io::Error| BatchError::Decompress {
        codec: name,
        message: e.to_string(),
    };
    let out = match codec {
        Compression::None => return Ok(body),
        Compression::Gzip => read_capped(flate2::read::GzDecoder::new(&body[..]), limit, name)?,
        Compression::Snappy => snappy(&body, limit)?,
        Compression::Lz4 => {
            read_capped(lz4::Decoder::new(&body[..]).map_err(failed)?, limit, name)?
        }
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(&body[..]).map_err(failed)?;
            // The frame header chooses the window the decoder allocates; a
            // batch within the cap never needs a window larger than the cap.
            d.window_log_max(window_log_for(limit)).map_err(failed)?;
            read_capped(d, limit, name)?
        }
        Compression::Unknown(n) => {
            return Err(BatchError::Inconsistent(format!(
                "unknown compression codec {n}"
            )))
        }
    };
    Ok(Bytes::from(out))
}

/// Decompresses and structurally checks the records of one whole batch `b`
/// (as [`super::validate`] accepted it): the decompressed size must stay
/// within `limit` and the records must frame exactly `records_count`
/// records. Returns the decompressed records section. Used on produce, so a
/// bomb is refused before it is stored.
pub fn check_batch(b: &Bytes, limit: usize) -> Result<Bytes, BatchError> {
    let h = BatchHeader::parse(b)?;
    let body = b.slice(HEADER_LEN.min(b.len())..h.total_len().min(b.len()));
    let records = decompress(h.compression(), body, limit)?;
    check_records(&h, &records)?;
    Ok(records)
}

/// Checks that `records` (a decompressed records section) holds exactly
/// `h.records_count` well-framed records: every length stays inside its
/// record, header counts fit the bytes, nothing is left over.
pub fn check_records(h: &BatchHeader, records: &[u8]) -> Result<(), BatchError> {
    let bad = |i: i32, what: String| {
        BatchError::Inconsistent(format!(
            "record {i} of {} (base offset {}): {what}",
            h.records_count, h.base_offset
        ))
    };
    let count = usize::try_from(h.records_count)
        .map_err(|_| bad(0, format!("negative record count {}", h.records_count)))?;
    if count > records.len() / MIN_RECORD_BYTES {
        return Err(BatchError::Inconsistent(format!(
            "{count} records declared but the records section has only {} bytes",
            records.len()
        )));
    }
    let mut cur = Walk { b: records, pos: 0 };
    for i in 0..h.records_count {
        let len = cur.varint().map_err(|e| bad(i, e))?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| cur.pos.checked_add(l))
            .filter(|e| *e <= records.len())
            .ok_or_else(|| bad(i, format!("length {len} runs past the records")))?;
        let mut rec = Walk {
            b: &records[..end],
            pos: cur.pos,
        };
        rec.skip(1).map_err(|e| bad(i, e))?; // attributes
        rec.varint().map_err(|e| bad(i, e))?; // timestamp delta
        rec.varint().map_err(|e| bad(i, e))?; // offset delta
        rec.bytes().map_err(|e| bad(i, format!("key: {e}")))?;
        rec.bytes().map_err(|e| bad(i, format!("value: {e}")))?;
        let headers = rec.varint().map_err(|e| bad(i, e))?;
        // Each header takes at least two bytes (two lengths): a count larger
        // than that is a lie a decoder would reserve memory for.
        if headers < 0 || headers as usize > (end - rec.pos) / 2 {
            return Err(bad(
                i,
                format!("header count {headers} does not fit the record"),
            ));
        }
        for _ in 0..headers {
            if !rec
                .bytes()
                .map_err(|e| bad(i, format!("header key: {e}")))?
            {
                return Err(bad(i, "null header key".into()));
            }
            rec.bytes()
                .map_err(|e| bad(i, format!("header value: {e}")))?;
        }
        if rec.pos != end {
            return Err(bad(
                i,
                format!("{} bytes left inside the record", end - rec.pos),
            ));
        }
        cur.pos = end;
    }
    if cur.pos != records.len() {
        return Err(BatchError::Inconsistent(format!(
            "{} bytes after the {count} declared records (base offset {})",
            records.len() - cur.pos,
            h.base_offset
        )));
    }
    Ok(())
}

/// Decodes the first batch of `buf` into kafka-protocol records (advancing
/// `buf` past it), decompressing with the cap `limit` and checking the record
/// framing first, so the decoder never reserves memory a batch cannot fill.
/// The bounded replacement for `RecordBatchDecoder::decode`.
pub fn decode_records(buf: &mut Bytes, limit: usize) -> Result<RecordSet, BatchError> {
    let h = BatchHeader::parse(buf)?;
    if buf.len() < h.total_len() {
        return Err(BatchError::Truncated {
            needed: h.total_len(),
            available: buf.len(),
        });
    }
    let mut batch = buf.split_to(h.total_len());
    let records = check_batch(&batch, limit)?;
    // The records were decompressed (and checked) above: hand them over
    // instead of letting the decoder decompress again without a cap.
    let set = RecordBatchDecoder::decode_with_custom_compression(
        &mut batch,
        Some(|_: &mut Bytes, _| Ok(records.clone())),
    )
    .map_err(|e| BatchError::Inconsistent(format!("cannot decode records: {e:#}")))?;
    Ok(set)
}

/// Reads all of `r` into memory, failing once more than `limit` bytes come
/// out.
fn read_capped(r: impl Read, limit: usize, codec: &'static str) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    r.take(cap)
        .read_to_end(&mut out)
        .map_err(|e| BatchError::Decompress {
            codec,
            message: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(BatchError::TooLarge { codec, limit });
    }
    Ok(out)
}

/// zstd window log for a cap: large enough for any frame whose content fits
/// `limit`, at least the 8 MiB producers use by default, at most zstd's own
/// default ceiling (128 MiB).
fn window_log_for(limit: usize) -> u32 {
    let bits = usize::BITS - limit.max(1).saturating_sub(1).leading_zeros();
    bits.clamp(23, 27)
}

/// The "xerial" framing Java clients write, or raw snappy without it.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
/// Magic plus the version and compatible-version words.
const XERIAL_HEADER_LEN: usize = 16;

/// Snappy declares each block's decompressed length up front: check it
/// against what is left of the cap before allocating.
fn snappy(body: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    if !body.starts_with(XERIAL_MAGIC) {
        snappy_block(body, limit, &mut out)?;
        return Ok(out);
    }
    let mut rest = body.get(XERIAL_HEADER_LEN..).unwrap_or_default();
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(snappy_error("truncated block length".into()));
        }
        let n = rest.get_u32() as usize;
        if rest.len() < n {
            return Err(snappy_error(format!(
                "block of {n} bytes, {} available",
                rest.len()
            )));
        }
        let (b, tail) = rest.split_at(n);
        snappy_block(b, limit, &mut out)?;
        rest = tail;
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, keeping `out` within `limit`.
fn snappy_block(compressed: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    let n = snap::raw::decompress_len(compressed).map_err(|e| snappy_error(e.to_string()))?;
    if n > limit.saturating_sub(out.len()) {
        return Err(BatchError::TooLarge {
            codec: "snappy",
            limit,
        });
    }
    let start = out.len();
    out.resize(start + n, 0);
    let got = snap::raw::Decoder::new()
        .decompress(compressed, &mut out[start..])
        .map_err(|e| snappy_error(e.to_string()))?;
    out.truncate(start + got);
    Ok(())
}

fn snappy_error(message: String) -> BatchError {
    BatchError::Decompress {
        codec: "snappy",
        message,
    }
}

/// A bounds-checked cursor over record bytes.
struct Walk<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Walk<'_> {
    fn skip(&mut self, n: usize) -> Result<(), String> {
        match self.pos.checked_add(n).filter(|e| *e <= self.b.len()) {
            Some(e) => {
                self.pos = e;
                Ok(())
            }
            None => Err("truncated".into()),
        }
    }

    /// A zigzag varint (up to 64 bits; callers bound the value).
    fn varint(&mut self) -> Result<i64, String> {
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = *self.b.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b & 0x80 == 0 {
                return Ok(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    /// Skips a length-prefixed byte string; false if it was null (-1).
    fn bytes(&mut self) -> Result<bool, String> {
        let n = self.varint()?;
        if n == -1 {
            return Ok(false);
        }
        let n = usize::try_from(n).map_err(|_| format!("negative length {n}"))?;
        self.skip(n)
            .map_err(|_| format!("{n} bytes run past the record"))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
