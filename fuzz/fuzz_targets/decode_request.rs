//! Any bytes as one request frame (the size prefix already stripped, as the
//! connection hands frames to the decoder): decoding returns a request or an
//! error, never panics, aborts or allocates without bound; an error always
//! says whether it can be answered. Also feeds the bytes, size prefix
//! included, to the frame splitter.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use vigil_protocol::{decode_request, FrameDecoder};

// The allocator the broker runs with: without it a tiny frame claiming a huge
// array aborts (see vigil_protocol::alloc), which is a known, handled case.
#[global_allocator]
static ALLOC: vigil_protocol::alloc::LazyLargeAlloc = vigil_protocol::alloc::LazyLargeAlloc;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = decode_request(Bytes::copy_from_slice(data)) {
        let _ = e.answerable();
    }
    let frames = FrameDecoder::new(1 << 20);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = frames.decode(&mut buf) {
        let _ = decode_request(frame);
    }
});
