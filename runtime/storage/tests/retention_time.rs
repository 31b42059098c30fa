//! Time retention when clients send odd record timestamps (issue 11 item
//! 12): a timestamp that is absent (-1), decades old (1970) or far in the
//! future must neither drop data at once nor keep it for ever. Such a
//! segment is aged by when it was written to the store instead (see
//! docs/design/0009-hardening.md, "Item 12").

use std::sync::Arc;

use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::ObjectStore;
use vigil_protocol::kafka_protocol::records::Compression;
use vigil_protocol::BatchBuilder;
use vigil_storage::{Log, LogConfig, ManualClock, TopicConfig};

const DAY_MS: i64 = 86_400_000;

fn batch(ts: i64) -> Bytes {
    BatchBuilder::new(Compression::None)
        .record(ts, None, Some(Bytes::from_static(b"v")))
        .build()
        .expect("encode")
}

fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A log on an in-memory store (whose objects carry the wall clock's
/// modification time) with an injected clock starting at the wall clock,
/// and one topic per odd timestamp, each with a one-day retention.
async fn log_with(clock: Arc<ManualClock>, dir: &std::path::Path) -> Arc<Log> {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut c = LogConfig::new(dir);
    c.lease_interval = std::time::Duration::from_millis(10);
    Log::open_with_clock(c, store, clock).await.expect("open")
}

#[tokio::test]
async fn odd_timestamps_age_by_upload_time_not_by_what_the_client_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let log = log_with(clock.clone(), dir.path()).await;
    let cases = [
        ("absent", -1),
        ("epoch", 0),
        ("y1970", 86_400_000),
        ("future", wall_ms() + 3650 * DAY_MS),
    ];
    for (topic, ts) in cases {
        let configs = [("retention.ms".to_string(), DAY_MS.to_string())]
            .into_iter()
            .collect();
        log.create_topic(
            topic,
            TopicConfig {
                partitions: 1,
                configs,
            },
        )
        .await
        .expect("create");
        let p = log.partition(topic, 0).expect("partition");
        for _ in 0..3 {
            log.append(&p, batch(ts)).await.expect("append");
        }
    }
    log.upload_once().await.expect("upload");
    // Just uploaded: nothing is a day old yet, whatever the records say.
    let kept = log.enforce_retention().await.expect("retention");
    assert_eq!(kept.runs_dropped, 0, "odd timestamps dropped fresh data");
    for (topic, _) in cases {
        assert_eq!(
            log.partition(topic, 0).expect("p").log_start_offset(),
            0,
            "{topic}"
        );
    }
    // Half a day later: still kept (a far-future timestamp does not count as
    // "newer" either way: it is aged like the others).
    clock.advance(DAY_MS / 2);
    assert_eq!(
        log.enforce_retention()
            .await
            .expect("retention")
            .runs_dropped,
        0
    );
    // Two days after the upload every one of them is past retention.
    clock.advance(2 * DAY_MS);
    let dropped = log.enforce_retention().await.expect("retention");
    assert_eq!(
        dropped.runs_dropped,
        cases.len(),
        "by upload time, all are past retention"
    );
    for (topic, _) in cases {
        assert_eq!(
            log.partition(topic, 0).expect("p").log_start_offset(),
            3,
            "{topic}"
        );
    }
    log.abandon().await;
}

/// Plausible timestamps keep Kafka's rule: a record already past retention
/// when it arrives goes at the next pass, and a huge `retention.ms` keeps
/// everything instead of overflowing.
#[tokio::test]
async fn plausible_timestamps_and_huge_retention_keep_kafkas_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let log = log_with(clock.clone(), dir.path()).await;
    for (topic, retention) in [("late", DAY_MS), ("forever", i64::MAX)] {
        let configs = [("retention.ms".to_string(), retention.to_string())]
            .into_iter()
            .collect();
        log.create_topic(
            topic,
            TopicConfig {
                partitions: 1,
                configs,
            },
        )
        .await
        .expect("create");
        let p = log.partition(topic, 0).expect("partition");
        log.append(&p, batch(wall_ms() - 2 * DAY_MS))
            .await
            .expect("append");
    }
    log.upload_once().await.expect("upload");
    let stats = log.enforce_retention().await.expect("retention");
    assert_eq!(stats.runs_dropped, 1);
    assert_eq!(log.partition("late", 0).expect("p").log_start_offset(), 1);
    assert_eq!(
        log.partition("forever", 0).expect("p").log_start_offset(),
        0
    );
    log.abandon().await;
}
