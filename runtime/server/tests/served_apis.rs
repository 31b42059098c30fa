//! ApiVersions advertises exactly what is served: every API and version in
//! `SUPPORTED_APIS` gets an answer of its own kind on a live broker (a
//! listed API without a handler would leave the client waiting), and an API
//! outside the list is answered UNSUPPORTED_VERSION.

use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use vigil_protocol::{empty_request, SUPPORTED_APIS};
use vigil_server::server;
use vigil_server::{Components, Settings};

use crate::common;

use common::Client;

/// A minimal request of `api`: the empty one, with produce at acks=1 so
/// that it is answered.
fn default_request(api: ApiKey) -> RequestKind {
    match empty_request(api) {
        Some(RequestKind::Produce(p)) => RequestKind::Produce(p.with_acks(1)),
        Some(req) => req,
        None => panic!("{api:?} is served: add it to vigil_protocol::empty_request"),
    }
}

#[tokio::test]
async fn every_advertised_api_and_version_is_answered_in_kind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = Settings::embedded(dir.path());
    let components = Components::from_settings(&settings).expect("components");
    let broker = server::start(settings, components).await.expect("start");
    let mut c = Client::connect(broker.kafka_addr).await;

    // The advertised list is SUPPORTED_APIS, entry for entry.
    let advertised = match c
        .call(
            ApiKey::ApiVersions,
            3,
            RequestKind::ApiVersions(ApiVersionsRequest::default()),
        )
        .await
    {
        ResponseKind::ApiVersions(v) => v.api_keys,
        other => panic!("unexpected {other:?}"),
    };
    let listed: Vec<(i16, i16, i16)> = advertised
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    let served: Vec<(i16, i16, i16)> = SUPPORTED_APIS
        .iter()
        .map(|&(k, lo, hi)| (k as i16, lo, hi))
        .collect();
    assert_eq!(listed, served);

    for &(api, min, max) in SUPPORTED_APIS {
        for v in [min, max] {
            // `call` decodes the body as `api`'s response at `v`: a wrong
            // kind or a missing answer fails here.
            let answer = tokio::time::timeout(
                Duration::from_secs(20),
                c.call(api, v, default_request(api)),
            )
            .await;
            assert!(answer.is_ok(), "{api:?} v{v}: no answer");
        }
    }

    // Not served (transactions are not supported yet): UNSUPPORTED_VERSION.
    let mut f = BytesMut::new();
    f.put_i32(10);
    f.put_i16(ApiKey::AddPartitionsToTxn as i16);
    f.put_i16(0);
    f.put_i32(99);
    f.put_i16(-1);
    c.send_raw(&f).await;
    let mut r = c.recv_raw().await.expect("an answer");
    assert_eq!(r.get_i32(), 99);
    assert_eq!(r.get_i16(), ResponseError::UnsupportedVersion.code());
}
