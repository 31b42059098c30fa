//! Property tests over the request decoder: whatever bytes arrive, decoding
//! returns a value or an error — it never panics or aborts — and valid
//! requests round-trip.

use bytes::{BufMut, Bytes, BytesMut};

// The same allocator the broker runs with: without it, a tiny frame claiming
// a huge array aborts the process (see vigil_protocol::alloc).
#[global_allocator]
static ALLOC: vigil_protocol::alloc::LazyLargeAlloc = vigil_protocol::alloc::LazyLargeAlloc;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;
use vigil_protocol::{decode_request, DecodeError, FrameDecoder, SUPPORTED_APIS};

/// A valid request frame (without size prefix) for `api` at `version`, with a
/// default body.
fn valid_frame(api: ApiKey, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")))
        .encode(&mut buf, api.request_header_version(version))
        .expect("header encodes");
    let body = vigil_protocol::empty_request(api)
        .unwrap_or_else(|| RequestKind::ApiVersions(Default::default()));
    body.encode(&mut buf, version).expect("body encodes");
    buf.freeze()
}

fn served() -> impl Strategy<Value = (ApiKey, i16)> {
    (0..SUPPORTED_APIS.len()).prop_flat_map(|i| {
        let (k, min, max) = SUPPORTED_APIS[i];
        (Just(k), min..=max)
    })
}

#[test]
fn every_served_version_of_every_api_round_trips() {
    for &(api, min, max) in SUPPORTED_APIS {
        for v in min..=max {
            let req =
                decode_request(valid_frame(api, v)).unwrap_or_else(|e| panic!("{api:?} v{v}: {e}"));
            assert_eq!(
                (req.api_key, req.version, req.header.correlation_id),
                (api, v, 42)
            );
        }
    }
}

#[test]
fn unknown_keys_and_versions_are_answerable() {
    let mut f = BytesMut::new();
    f.put_i16(9999);
    f.put_i16(0);
    f.put_i32(7);
    let e = decode_request(f.freeze()).expect_err("unknown key");
    assert!(matches!(
        e,
        DecodeError::UnknownApiKey { api_key: 9999, .. }
    ));
    assert_eq!(e.answerable(), Some(7));

    let mut f = BytesMut::new();
    f.put_i16(ApiKey::Produce as i16);
    f.put_i16(99);
    f.put_i32(8);
    let e = decode_request(f.freeze()).expect_err("bad version");
    assert_eq!(e.answerable(), Some(8));
}

/// Claims a huge array inside a tiny frame: must be an error, not an attempt
/// to allocate gigabytes.
#[test]
fn huge_array_counts_in_small_frames_are_rejected() {
    for (api, v) in [
        (ApiKey::Metadata, 4i16),
        (ApiKey::Produce, 7),
        (ApiKey::Fetch, 11),
    ] {
        let mut frame = BytesMut::from(&valid_frame(api, v)[..]);
        // Overwrite the tail with a maximal array length and nothing after it.
        let n = frame.len();
        frame.truncate(n.saturating_sub(4).max(14));
        frame.put_i32(i32::MAX);
        assert!(decode_request(frame.freeze()).is_err(), "{api:?} v{v}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_request(Bytes::from(bytes));
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        (api, v) in served(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut f = valid_frame(api, v).to_vec();
        for (at, b) in flips {
            let i = at % f.len();
            f[i] = b;
        }
        let keep = 4 + cut % f.len().saturating_sub(3).max(1);
        f.truncate(keep.min(f.len()));
        let _ = decode_request(Bytes::from(f));
    }

    #[test]
    fn frame_decoder_never_buffers_past_its_limit(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let d = FrameDecoder::new(1024);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(frame)) = d.decode(&mut buf) {
            prop_assert!(frame.len() <= 1024);
        }
    }
}

/// librdkafka 2.16's "all topics" Metadata v12 request, byte for byte as it
/// sends it (three bytes follow the body); Kafka accepts it, so must we.
#[test]
fn librdkafka_metadata_v12_with_trailing_bytes_decodes() {
    let frame = [
        0x00, 0x03, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x03, 0x00, 0x07, b'r', b'd', b'k', b'a', b'f',
        b'k', b'a', 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
    ];
    let req = decode_request(Bytes::copy_from_slice(&frame)).expect("decodes");
    match req.body {
        RequestKind::Metadata(m) => assert!(m.topics.is_none(), "null topics = all topics"),
        other => panic!("unexpected {other:?}"),
    }
}
