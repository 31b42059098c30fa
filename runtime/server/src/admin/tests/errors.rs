//! One test per error class, each from a real cause where one exists.

use axum::http::StatusCode;
use object_store::{ObjectStoreExt as _, PutPayload};
use vigil_api::ErrorKind;
use vigil_engine::registry::RegistryError;
use vigil_engine::DetectorError;
use vigil_storage::store::FaultKind;
use vigil_storage::StorageError;

use super::{wasm, zscore_spec, Harness};

#[tokio::test]
async fn bad_input_is_400() {
    let h = Harness::new().await;
    // The engine refuses it: not a wasm module.
    h.post("/v1/modules", b"this is not a wasm module".to_vec())
        .await
        .expect_error(
            StatusCode::BAD_REQUEST,
            ErrorKind::Invalid,
            "not a valid detector module",
        );
    // The route refuses it: not JSON.
    h.post("/v1/deployments", "{not json").await.expect_error(
        StatusCode::BAD_REQUEST,
        ErrorKind::Invalid,
        "invalid deployment spec",
    );
    // The spec is JSON but invalid (a name with a space).
    h.post(
        "/v1/deployments",
        zscore_spec("has space", "0", "in", "out"),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, ErrorKind::Invalid, "name");
    h.shutdown().await;
}

#[tokio::test]
async fn unknown_things_are_404() {
    let h = Harness::new().await;
    for (method, uri) in [
        ("GET", "/v1/deployments/ghost"),
        ("POST", "/v1/deployments/ghost/pause"),
        ("POST", "/v1/deployments/ghost/resume"),
        ("DELETE", "/v1/deployments/ghost"),
        ("GET", "/v1/replays/ghost"),
        ("DELETE", "/v1/replays/ghost"),
    ] {
        let method = method.parse().expect("method");
        h.call(method, uri, axum::body::Body::empty())
            .await
            .expect_error(StatusCode::NOT_FOUND, ErrorKind::NotFound, "ghost");
    }
    // An unknown module in a spec.
    h.create_topic("in").await;
    h.post(
        "/v1/deployments",
        zscore_spec("d", &"0".repeat(64), "in", "out"),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, ErrorKind::NotFound, &"0".repeat(16));
    // A path no route has.
    h.get("/v2/nothing").await.expect_error(
        StatusCode::NOT_FOUND,
        ErrorKind::NotFound,
        "no such endpoint",
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_second_deploy_of_one_name_is_409() {
    let h = Harness::new().await;
    let module = h.upload_zscore().await;
    h.create_topic("in").await;
    let spec = zscore_spec("dup", &module, "in", "dup-out");
    let first = h.post("/v1/deployments", spec.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    h.post("/v1/deployments", spec).await.expect_error(
        StatusCode::CONFLICT,
        ErrorKind::Conflict,
        "dup",
    );
    h.shutdown().await;
}

#[tokio::test]
async fn object_store_failures_are_503_and_retriable() {
    let h = Harness::new().await;
    // Writes fail: the module cannot be stored.
    h.faults.fail_all(FaultKind::Write, true);
    h.post("/v1/modules", wasm("vigil_plugin_zscore"))
        .await
        .expect_error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Unavailable,
            "object store",
        );
    assert!(h.faults.counts(FaultKind::Write).failed > 0);
    h.faults.fail_all(FaultKind::Write, false);
    // Reads fail: the modules cannot be listed.
    h.faults.fail_all(FaultKind::Read, true);
    h.get("/v1/modules").await.expect_error(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Unavailable,
        "object store",
    );
    h.faults.fail_all(FaultKind::Read, false);
    // Once the store is back, the same requests succeed.
    h.upload_zscore().await;
    let listed = h.get("/v1/modules").await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.json().as_array().map(Vec::len), Some(1));
    h.shutdown().await;
}

#[tokio::test]
async fn corrupt_stored_metadata_is_500() {
    let h = Harness::new().await;
    let hash = "ab".repeat(32);
    h.raw_store
        .put(
            &vigil_storage::paths::module_meta(&hash),
            PutPayload::from_static(b"{ this is not metadata"),
        )
        .await
        .expect("plant a corrupt record");
    let msg = h.get("/v1/modules").await.expect_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Internal,
        "unreadable",
    );
    assert!(msg.contains(&hash), "the error names the module: {msg}");
    h.shutdown().await;
}

/// The classes of the variants no request above reaches.
#[test]
fn every_error_class_has_its_status() {
    let io = || object_store::Error::Generic {
        store: "test",
        source: "down".into(),
    };
    let cases = [
        (DetectorError::Store("put failed".into()), 503),
        (
            DetectorError::Registry(RegistryError::Store {
                key: "k".into(),
                source: io(),
            }),
            503,
        ),
        (
            DetectorError::Registry(RegistryError::Corrupt("h".into())),
            500,
        ),
        (
            DetectorError::Registry(RegistryError::Ambiguous("ab".into())),
            400,
        ),
        (DetectorError::Exists("d".into()), 409),
        (
            DetectorError::Storage(StorageError::TopicExists("t".into())),
            409,
        ),
        (
            DetectorError::Storage(StorageError::Corrupt {
                what: "manifest",
                key: "k".into(),
                reason: "truncated".into(),
            }),
            500,
        ),
        (
            DetectorError::Storage(StorageError::ObjectStore {
                op: "get",
                key: "k".into(),
                source: io(),
            }),
            503,
        ),
        (DetectorError::Storage(StorageError::WalClosed), 503),
        (
            DetectorError::Storage(StorageError::Fenced {
                ours: 1,
                theirs: 2,
                by: "b".into(),
            }),
            503,
        ),
        (
            DetectorError::Storage(StorageError::Invalid("bad".into())),
            400,
        ),
        (
            DetectorError::Storage(StorageError::UnknownPartition {
                topic: "t".into(),
                partition: 3,
            }),
            404,
        ),
        (DetectorError::UnknownTopic("t".into()), 404),
        (DetectorError::Schema("x".into()), 400),
    ];
    for (e, status) in cases {
        assert_eq!(e.kind().http_status(), status, "{e:?}");
    }
}
