//! The WAL entry format, shared by the file and object backends:
//! `len:u32 crc32c:u32 payload`, where payload is
//! `1 topic_id:[u8;16] partition:i32 batch…` or
//! `2 key_len:u16 key has_value:u8 value…`.

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

use super::WalEntry;

const KIND_BATCH: u8 = 1;
const KIND_KV: u8 = 2;
const ENTRY_HEADER: usize = 8;

pub(super) fn entry_len(e: &WalEntry) -> usize {
    ENTRY_HEADER
        + match e {
            WalEntry::Batch { batch, .. } => 1 + 16 + 4 + batch.len(),
            WalEntry::Kv { key, value } => {
                1 + 2 + key.len() + 1 + value.as_ref().map_or(0, |v| v.len())
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
            buf.put_u8(KIND_KV);
            // Keys are short names built by the broker; longer ones are cut
            // rather than corrupting the framing.
            let key = &key.as_bytes()[..key.len().min(u16::MAX as usize)];
            buf.put_u16(key.len() as u16);
            buf.put_slice(key);
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
        let body_start = pos + ENTRY_HEADER;
        let Some(body) = data.get(body_start..body_start + len) else {
            break;
        };
        if crc32c::crc32c(body) != crc {
            break;
        }
        match decode_payload(body) {
            Some(e) => out.push(e),
            None => break,
        }
        pos = body_start + len;
    }
    (out, pos)
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
            let kl = u16::from_be_bytes([kl[0], kl[1]]) as usize;
            let key = std::str::from_utf8(body.get(3..3 + kl)?).ok()?.to_string();
            let value = match *body.get(3 + kl)? {
                0 => None,
                _ => Some(std::str::from_utf8(body.get(4 + kl..)?).ok()?.to_string()),
            };
            Some(WalEntry::Kv { key, value })
        }
        _ => None,
    }
}
