//! The console's page and read-only views through the admin router.

use bytes::Bytes;
use kafka_protocol::records::Compression;
use vigil_api::console::{History, Overview, RecordsPage, TopicInfo};
use vigil_api::ErrorKind;
use vigil_protocol::BatchBuilder;

use super::Harness;
use axum::http::StatusCode;

/// Appends `n` records `{"i": I}` with key `kI` and a header to `topic[0]`.
async fn append(h: &Harness, topic: &str, n: i64) {
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..n {
        b = b.record_with_headers(
            1_700_000_000_000 + i,
            Some(Bytes::from(format!("k{i}"))),
            Some(Bytes::from(format!("{{\"i\":{i}}}"))),
            vec![("h".to_string(), Some(Bytes::from_static(b"v")))],
        );
    }
    let p = h.log.partition(topic, 0).expect("partition");
    h.log
        .append(&p, b.build().expect("batch"))
        .await
        .expect("append");
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_from_the_binary() {
    let h = Harness::new().await;
    for (path, ty, needle) in [
        ("/console", "text/html", "/console/app.js"),
        ("/console/app.js", "text/javascript", "function plot("),
        ("/console/app.css", "text/css", ".plot"),
    ] {
        let a = h.get(path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        let ct = a.headers.get("content-type").and_then(|v| v.to_str().ok());
        assert!(ct.is_some_and(|c| c.starts_with(ty)), "{path}: {ct:?}");
        assert!(String::from_utf8_lossy(&a.body).contains(needle), "{path}");
    }
    h.shutdown().await;
}

/// Nothing outside the broker can be reached from many users' networks:
/// the page, script and style name no other origin (the SVG namespace is
/// an identifier, never fetched).
#[tokio::test]
async fn the_assets_load_nothing_from_another_origin() {
    let h = Harness::new().await;
    for path in ["/console", "/console/app.js", "/console/app.css"] {
        let a = h.get(path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        let text = String::from_utf8_lossy(&a.body).replace("\"http://www.w3.org/2000/svg\"", "");
        for needle in ["http://", "https://", "//cdn", "@import", "url("] {
            assert!(!text.contains(needle), "{path} names {needle:?}");
        }
    }
    h.shutdown().await;
}

#[tokio::test]
async fn topics_and_the_record_browser_read_the_log() {
    let h = Harness::new().await;
    h.create_topic("in").await;
    append(&h, "in", 10).await;
    let topics: Vec<TopicInfo> =
        serde_json::from_value(h.get("/v1/topics").await.json()).expect("topics");
    assert_eq!(topics.len(), 1);
    assert_eq!(
        (
            topics[0].partitions[0].high_watermark,
            topics[0].partitions[0].records
        ),
        (10, 10)
    );
    // Ten records' bytes at least (their values), not yet uploaded.
    assert!(
        topics[0].partitions[0].size_bytes >= 10,
        "{:?}",
        topics[0].partitions[0]
    );

    // Default: the last records; with an offset, from there.
    let page: RecordsPage =
        serde_json::from_value(h.get("/v1/topics/in/records?limit=3").await.json()).expect("page");
    let offsets: Vec<i64> = page.records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![7, 8, 9]);
    let r = &page.records[0];
    assert_eq!(
        (r.key.as_deref(), r.value.as_deref()),
        (Some("k7"), Some("{\"i\":7}"))
    );
    assert_eq!(r.headers, vec![("h".to_string(), Some("v".to_string()))]);
    let page: RecordsPage = serde_json::from_value(
        h.get("/v1/topics/in/records?partition=0&offset=2&limit=2")
            .await
            .json(),
    )
    .expect("page");
    let offsets: Vec<i64> = page.records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![2, 3]);

    h.get("/v1/topics/in/records?limit=0").await.expect_error(
        StatusCode::BAD_REQUEST,
        ErrorKind::Invalid,
        "limit",
    );
    h.get("/v1/topics/in/records?limit=501").await.expect_error(
        StatusCode::BAD_REQUEST,
        ErrorKind::Invalid,
        "limit",
    );
    h.get("/v1/topics/nope/records").await.expect_error(
        StatusCode::NOT_FOUND,
        ErrorKind::NotFound,
        "nope",
    );
    h.get("/v1/topics/in/records?partition=1")
        .await
        .expect_error(StatusCode::NOT_FOUND, ErrorKind::NotFound, "partition 1");
    h.get("/v1/topics/in/records?bogus=1").await.expect_error(
        StatusCode::BAD_REQUEST,
        ErrorKind::Invalid,
        "bogus",
    );
    h.shutdown().await;
}

#[tokio::test]
async fn overview_history_groups_and_alerts_answer_without_a_broker() {
    let h = Harness::new().await;
    h.create_topic("in").await;
    let o: Overview = serde_json::from_value(h.get("/v1/overview").await.json()).expect("overview");
    assert_eq!((o.topics, o.partitions, o.deployments), (1, 1, 0));
    let hist: History =
        serde_json::from_value(h.get("/v1/history?prefix=broker.").await.json()).expect("history");
    assert_eq!(hist.interval_ms, 2000);
    assert!(
        hist.series.is_empty(),
        "nothing samples an admin API without a broker"
    );
    assert_eq!(h.get("/v1/groups").await.json(), serde_json::json!([]));
    h.get("/v1/deployments/nope/alerts").await.expect_error(
        StatusCode::NOT_FOUND,
        ErrorKind::NotFound,
        "nope",
    );
    h.shutdown().await;
}
