//! The HTTP layer: methods, bodies, query strings, deadlines, limits, and the
//! metrics page.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use vigil_api::ErrorKind;
use vigil_storage::store::FaultKind;

use super::Harness;
use crate::admin::AdminLimits;

#[tokio::test]
async fn a_wrong_method_is_405_with_allow() {
    let h = Harness::new().await;
    for (method, uri, allowed) in [
        (Method::DELETE, "/v1/modules", ["GET", "POST"].as_slice()),
        (Method::PUT, "/v1/deployments/d", &["GET", "DELETE"]),
        (Method::GET, "/v1/diff", &["POST"]),
        (Method::GET, "/v1/deployments/d/pause", &["POST"]),
        (Method::POST, "/healthz", &["GET"]),
    ] {
        let a = h.call(method.clone(), uri, Body::empty()).await;
        a.expect_error(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::Invalid,
            method.as_str(),
        );
        let allow = a
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{method} {uri}: no Allow header"));
        for m in allowed {
            assert!(allow.split(',').any(|a| a.trim() == *m), "{uri}: {allow}");
        }
    }
    h.shutdown().await;
}

#[tokio::test]
async fn bodies_over_the_route_limit_are_413() {
    let h = Harness::with_limits(AdminLimits {
        module_body: 4 << 20,
        json_body: 64 << 10,
        ..AdminLimits::default()
    })
    .await;
    // A JSON body over its limit.
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(100 << 10));
    h.post("/v1/deployments", big.clone()).await.expect_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Invalid,
        "too large",
    );
    // The same size is fine for a module upload (refused as a module, not
    // for its size) ...
    h.post("/v1/modules", big).await.expect_error(
        StatusCode::BAD_REQUEST,
        ErrorKind::Invalid,
        "not a valid detector module",
    );
    // ... up to the module limit.
    h.post("/v1/modules", vec![0u8; (4 << 20) + 1])
        .await
        .expect_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Invalid,
            "too large",
        );
    h.shutdown().await;
}

#[tokio::test]
async fn query_strings_are_decoded_and_checked() {
    let h = Harness::new().await;
    h.upload_zscore().await;
    // `%2D` is `-`: only a decoded name matches the module's crate name.
    let a = h.get("/v1/modules?name=vigil%2Dplugin%2Dzscore").await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let found = a.json();
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
    assert_eq!(found[0]["name"], "vigil-plugin-zscore");
    let a = h.get("/v1/modules?name=my%20det").await;
    assert_eq!(a.json(), serde_json::json!([]));
    // Unknown parameters, and any parameter where none is taken.
    h.get("/v1/modules?nmae=x").await.expect_error(
        StatusCode::BAD_REQUEST,
        ErrorKind::Invalid,
        "nmae",
    );
    h.get("/v1/deployments?all=1").await.expect_error(
        StatusCode::BAD_REQUEST,
        ErrorKind::Invalid,
        "all",
    );
    // Path segments are decoded too.
    h.get("/v1/deployments/my%20det").await.expect_error(
        StatusCode::NOT_FOUND,
        ErrorKind::NotFound,
        "\"my det\"",
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_trailing_slash_reaches_the_same_route() {
    let h = Harness::new().await;
    let a = h.get("/v1/deployments/").await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.json(), serde_json::json!([]));
    h.shutdown().await;
}

#[tokio::test]
async fn a_request_past_its_deadline_is_503() {
    let h = Harness::with_limits(AdminLimits {
        request_timeout: Duration::from_millis(300),
        ..AdminLimits::default()
    })
    .await;
    h.faults.hang(FaultKind::Read, true);
    let started = std::time::Instant::now();
    let msg = h.get("/v1/modules").await.expect_error(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Unavailable,
        "not finished within",
    );
    assert!(msg.contains("GET /v1/modules"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(10));
    h.faults.hang(FaultKind::Read, false);
    assert_eq!(h.get("/v1/modules").await.status, StatusCode::OK);
    h.shutdown().await;
}

#[tokio::test]
async fn requests_past_the_concurrency_limit_wait_then_get_503() {
    let h = Harness::with_limits(AdminLimits {
        max_concurrent: 1,
        request_timeout: Duration::from_millis(300),
        ..AdminLimits::default()
    })
    .await;
    // The first request holds the only slot: its store read hangs, and it
    // keeps the slot past its own deadline (it runs on in the background).
    h.faults.hang(FaultKind::Read, true);
    h.get("/v1/modules").await.expect_error(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Unavailable,
        "not finished within",
    );
    h.get("/v1/deployments").await.expect_error(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Unavailable,
        "busy",
    );
    // Health and metrics are outside the limit.
    assert_eq!(h.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(h.get("/metrics").await.status, StatusCode::OK);
    // Released, the hung request finishes and frees its slot.
    h.faults.hang(FaultKind::Read, false);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let a = h.get("/v1/deployments").await;
        if a.status == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot was never freed: {:?}",
            a.body
        );
    }
    h.shutdown().await;
}

#[tokio::test]
async fn metrics_are_one_openmetrics_page() {
    let h = Harness::new().await;
    let module = h.upload_zscore().await;
    h.create_topic("in").await;
    let a = h
        .post(
            "/v1/deployments",
            super::zscore_spec("m", &module, "in", "m-out"),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let _ = h.get("/v1/deployments/ghost").await;
    let a = h.get("/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some(crate::metrics::CONTENT_TYPE)
    );
    let text = String::from_utf8(a.body.to_vec()).expect("utf-8");
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    let types: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    for t in &types {
        let name = t.split(' ').next().unwrap_or_default();
        assert!(!name.ends_with("_total"), "`_total` in a TYPE line: {t}");
    }
    let mut names: Vec<&str> = types
        .iter()
        .map(|t| t.split(' ').next().unwrap_or_default())
        .collect();
    let all = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all, "a family declared twice: {types:?}");
    for needle in [
        "vigil_storage_appended_bytes_total 0",
        "vigil_object_store_requests_total{op=\"put\",outcome=\"ok\"} ",
        "vigil_admin_requests_total{method=\"POST\",route=\"/v1/deployments\",status=\"201\"} 1",
        "vigil_admin_requests_total{method=\"GET\",route=\"/v1/deployments/{name}\",status=\"404\"} 1",
        "vigil_detector_records_total{deployment=\"m\",topic=\"in\",partition=\"0\"} 0",
        "vigil_detector_deployments{state=\"running\"} 1",
        "vigil_detector_failed{deployment=\"m\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(needle)),
            "missing {needle:?} in\n{text}"
        );
    }
    h.shutdown().await;
}
