//! The WAL entry format, shared by the file and object backends:
//! `len:u32 crc32c:u32 payload`, where payload is
//! `1 topic_id:[u8;16] partition:i32 batch…`,
//! `2 key_len:u16 key has_value:u8 value…` (keys up to 65,535 bytes) or
//! `3 key_len:u32 key has_value:u8 value…` (longer keys; written only when
//! needed, so WALs with short keys stay readable by older versions).
//!
//! Replay stops at the first torn entry (length or CRC wrong: a crash during
//! a write), and at a length of zero, which no entry has (its payload holds
//! at least its kind): the zeroed, unused tail of a recycled segment. It
//! never stops at an intact one: a CRC-valid entry that this version
//! cannot decode is skipped and logged, and the entries after it are kept.

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

use super::WalEntry;

const KIND_BATCH: u8 = 1;
const KIND_KV: u8 = 2;
const KIND_KV_LONG: u8 = 3;
const ENTRY_HEADER: usize = 8;

pub(super) fn entry_len(e: &WalEntry) -> usize {
    ENTRY_HEADER
        + match e {
            WalEntry::Batch { batch, .. } => 1 + 16 + 4 + batch.len(),
            WalEntry::Kv { key, value } => {
                1 + key_len_width(key) + key.len() + 1 + value.as_ref().map_or(0, |v| v.len())
            }
        }
}

pub(super) fn encode_entry(e: &WalEntry, buf: &mut BytesMut) {
    let start = buf.len();
    buf.put_u32(0);
    buf.put_u32(0);
    match e {
        WalEntry::Batch {
            topic_id,
            partition,
            batch,
        } => {
            buf.put_u8(KIND_BATCH);
            buf.put_slice(topic_id.as_bytes());
            buf.put_i32(*partition);
            buf.put_slice(batch);
        }
        WalEntry::Kv { key, value } => {
            // Never cut a key: a cut can split a UTF-8 character, and the
            // entry would then not decode although its CRC is valid.
            match u16::try_from(key.len()) {
                Ok(n) => {
                    buf.put_u8(KIND_KV);
                    buf.put_u16(n);
                }
                Err(_) => {
                    buf.put_u8(KIND_KV_LONG);
                    // Entries are bounded far below 4 GiB by the group size.
                    buf.put_u32(u32::try_from(key.len()).unwrap_or(u32::MAX));
                }
            }
            buf.put_slice(key.as_bytes());
            match value {
                Some(v) => {
                    buf.put_u8(1);
                    buf.put_slice(v.as_bytes());
                }
                None => buf.put_u8(0),
            }
        }
    }
    let payload_len = (buf.len() - start - ENTRY_HEADER) as u32;
    let crc = crc32c::crc32c(&buf[start + ENTRY_HEADER..]);
    buf[start..start + 4].copy_from_slice(&payload_len.to_be_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// Decodes entries from the start of `data`, stopping at the first torn or
/// corrupt one. Returns the entries and how many bytes they span.
pub(super) fn decode_entries(data: &[u8]) -> (Vec<WalEntry>, usize) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + ENTRY_HEADER <= data.len() {
        let len =
            u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let crc = u32::from_be_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
        if len == 0 {
            break; // the zeroed tail of a recycled segment
        }
        let body_start = pos + ENTRY_HEADER;
        let Some(body) = data.get(body_start..body_start + len) else {
            break;
        };
        if crc32c::crc32c(body) != crc {
            break;
        }
        match decode_payload(body) {
            Some(e) => out.push(e),
            None => tracing::error!(
                offset = pos,
                len,
                kind = body.first().copied(),
                "WAL entry is intact (CRC valid) but cannot be decoded by this version; skipping it"
            ),
        }
        pos = body_start + len;
    }
    (out, pos)
}

/// Reads entries from `r` one at a time (never the whole segment at once:
/// startup memory is the entries kept, not the segment plus its copy),
/// stopping at the first torn or corrupt one like [`decode_entries`].
/// `size` is the segment's length, which bounds a length field (a corrupt
/// one must not make us allocate gigabytes). Returns how many bytes the
/// intact entries span.
pub(super) fn read_entries(
    r: &mut impl std::io::Read,
    size: u64,
    out: &mut Vec<WalEntry>,
) -> std::io::Result<u64> {
    let mut pos = 0u64;
    let mut header = [0u8; ENTRY_HEADER];
    let mut body = Vec::new();
    loop {
        if size - pos < ENTRY_HEADER as u64 {
            return Ok(pos);
        }
        r.read_exact(&mut header)?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as u64;
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 || len > size - pos - ENTRY_HEADER as u64 {
            return Ok(pos);
        }
        body.resize(len as usize, 0);
        r.read_exact(&mut body)?;
        if crc32c::crc32c(&body) != crc {
            return Ok(pos);
        }
        match decode_payload(&body) {
            Some(e) => out.push(e),
            None => tracing::error!(
                offset = pos,
                len,
                kind = body.first().copied(),
                "WAL entry is intact (CRC valid) but cannot be decoded by this version; skipping it"
            ),
        }
        pos += ENTRY_HEADER as u64 + len;
    }
}

fn decode_payload(body: &[u8]) -> Option<WalEntry> {
    match *body.first()? {
        KIND_BATCH => {
            let id: [u8; 16] = body.get(1..17)?.try_into().ok()?;
            let p = body.get(17..21)?;
            Some(WalEntry::Batch {
                topic_id: Uuid::from_bytes(id),
                partition: i32::from_be_bytes([p[0], p[1], p[2], p[3]]),
                batch: Bytes::copy_from_slice(body.get(21..)?),
            })
        }
        KIND_KV => {
            let kl = body.get(1..3)?;
            decode_kv(body, 3, u16::from_be_bytes([kl[0], kl[1]]) as usize)
        }
        KIND_KV_LONG => {
            let kl = body.get(1..5)?;
            decode_kv(
                body,
                5,
                u32::from_be_bytes([kl[0], kl[1], kl[2], kl[3]]) as usize,
            )
        }
        _ => None,
    }
}

/// Bytes of the key-length field the encoding of `key` uses.
fn key_len_width(key: &str) -> usize {
    if key.len() <= u16::MAX as usize {
        2
    } else {
        4
    }
}

/// A key/value payload whose key (`kl` bytes) starts at `at`.
fn decode_kv(body: &[u8], at: usize, kl: usize) -> Option<WalEntry> {
    let key_end = at.checked_add(kl)?;
    let key = std::str::from_utf8(body.get(at..key_end)?)
        .ok()?
        .to_string();
    let value = match *body.get(key_end)? {
        0 => None,
        _ => Some(
            std::str::from_utf8(body.get(key_end + 1..)?)
                .ok()?
                .to_string(),
        ),
    };
    Some(WalEntry::Kv { key, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: Option<&str>) -> WalEntry {
        WalEntry::Kv {
            key: key.into(),
            value: value.map(Into::into),
        }
    }

    fn batch(n: u8) -> WalEntry {
        WalEntry::Batch {
            topic_id: Uuid::from_bytes([n; 16]),
            partition: i32::from(n),
            batch: Bytes::from(vec![n; 10]),
        }
    }

    fn roundtrip(entries: &[WalEntry]) -> (Vec<WalEntry>, usize, usize) {
        let mut buf = BytesMut::new();
        for e in entries {
            encode_entry(e, &mut buf);
        }
        let (out, valid) = decode_entries(&buf);
        (out, valid, buf.len())
    }

    /// Issue 11 item 3: a key longer than 65,535 bytes was cut, possibly
    /// inside a UTF-8 character; replay then stopped at that CRC-valid
    /// entry and truncated everything after it.
    #[test]
    fn a_long_key_survives_whole_and_does_not_end_replay() {
        let long = format!("{}é", "a".repeat(u16::MAX as usize - 1));
        let entries = vec![batch(1), kv(&long, Some("v")), batch(2), batch(3)];
        let (out, valid, len) = roundtrip(&entries);
        assert_eq!(valid, len, "every byte written is replayed");
        assert_eq!(out, entries);
    }

    #[test]
    fn reading_a_stream_matches_decoding_a_buffer_torn_tail_included() {
        let mut buf = BytesMut::new();
        for e in [batch(1), kv("k", Some("v")), batch(2)] {
            encode_entry(&e, &mut buf);
        }
        let full = buf.len();
        encode_entry(&batch(3), &mut buf);
        // A torn tail: the last entry cut short, and a length field far
        // past the end.
        let mut torn = buf[..buf.len() - 3].to_vec();
        for data in [&buf[..], &torn[..]] {
            let (want, want_len) = decode_entries(data);
            let mut got = Vec::new();
            let len = read_entries(&mut &data[..], data.len() as u64, &mut got).expect("read");
            assert_eq!((got, len as usize), (want, want_len));
        }
        torn.truncate(full);
        torn.extend_from_slice(&u32::MAX.to_be_bytes());
        torn.extend_from_slice(&[0; 4]);
        let mut got = Vec::new();
        let len = read_entries(&mut &torn[..], torn.len() as u64, &mut got).expect("read");
        assert_eq!((got.len(), len as usize), (3, full));
    }

    /// A recycled segment's unused tail is zeros. An all-zero header would
    /// otherwise read as an intact empty entry (the CRC of nothing is 0),
    /// be "skipped" with an error, and replay would walk the whole tail.
    #[test]
    fn a_zeroed_tail_ends_replay() {
        let mut buf = BytesMut::new();
        for e in [batch(1), kv("k", Some("v"))] {
            encode_entry(&e, &mut buf);
        }
        let written = buf.len();
        buf.extend_from_slice(&[0; 4096]);
        let (out, valid) = decode_entries(&buf);
        assert_eq!((out.len(), valid), (2, written));
        let mut got = Vec::new();
        let len = read_entries(&mut &buf[..], buf.len() as u64, &mut got).expect("read");
        assert_eq!((got.len(), len as usize), (2, written));
    }

    #[test]
    fn entry_len_matches_the_encoding() {
        for e in [
            batch(7),
            kv("k", None),
            kv("key", Some("value")),
            kv(&"b".repeat(70_000), Some("x")),
        ] {
            let mut buf = BytesMut::new();
            encode_entry(&e, &mut buf);
            assert_eq!(entry_len(&e), buf.len());
        }
    }

    /// A CRC-valid entry this version cannot decode (a kind from a newer
    /// version, say) is skipped, not a reason to drop what follows it.
    #[test]
    fn an_undecodable_but_intact_entry_is_skipped_not_truncated() {
        let mut buf = BytesMut::new();
        encode_entry(&batch(1), &mut buf);
        let body = [99u8, 1, 2, 3];
        buf.put_u32(body.len() as u32);
        buf.put_u32(crc32c::crc32c(&body));
        buf.put_slice(&body);
        encode_entry(&batch(2), &mut buf);
        let (out, valid) = decode_entries(&buf);
        assert_eq!(valid, buf.len());
        assert_eq!(out, vec![batch(1), batch(2)]);
    }

    #[test]
    fn a_torn_tail_still_stops_replay() {
        let mut buf = BytesMut::new();
        encode_entry(&batch(1), &mut buf);
        let good = buf.len();
        encode_entry(&batch(2), &mut buf);
        buf.truncate(buf.len() - 3);
        let (out, valid) = decode_entries(&buf);
        assert_eq!(valid, good);
        assert_eq!(out, vec![batch(1)]);
    }
}
