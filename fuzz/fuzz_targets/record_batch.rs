//! Any bytes as stored/produced record batches: framing, header and CRC
//! checks, bounded decompression, record framing checks and record decoding
//! must return values or errors — never panic, abort, or use more memory
//! than the cap allows. The first byte also picks a codec to run the raw
//! decompressor on the rest, so the codecs are fuzzed without a valid CRC.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use vigil_protocol::batch::{self, inflate, BatchHeader, Compression, RecordBatches};

#[global_allocator]
static ALLOC: vigil_protocol::alloc::LazyLargeAlloc = vigil_protocol::alloc::LazyLargeAlloc;

/// Small, so that a bomb shows up as TooLarge quickly.
const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    for item in RecordBatches::new(bytes.clone()) {
        let Ok((h, b)) = item else { break };
        let _ = h.last_offset();
        let _ = h.last_sequence();
        let _ = batch::validate(&b);
        if let Ok(records) = inflate::check_batch(&b, LIMIT) {
            assert!(records.len() <= LIMIT.max(b.len()));
            // Whatever check_batch accepts, the record decoder must decode
            // (CRC aside) without trouble.
            let _ = inflate::decode_records(&mut b.clone(), LIMIT);
        }
    }
    let _ = inflate::decode_records(&mut bytes.clone(), LIMIT);

    if let Some((&sel, rest)) = data.split_first() {
        let codec = match sel % 5 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            _ => Compression::Zstd,
        };
        if let Ok(out) = inflate::decompress(codec, Bytes::copy_from_slice(rest), LIMIT) {
            assert!(out.len() <= LIMIT.max(rest.len()));
            if let Ok(h) = BatchHeader::parse(data) {
                let _ = inflate::check_records(&h, &out);
            }
        }
    }
});
