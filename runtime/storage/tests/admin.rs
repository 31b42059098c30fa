//! Admin changes on the log (issue 15, must-have 3): topic configs replaced
//! and persisted, DeleteRecords' log start offset (reads, retention, reopen)
//! and compaction by key of `cleanup.policy=compact` topics.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::ObjectStore;
use vigil_protocol::batch::{decode_records, RecordBatches, DEFAULT_DECOMPRESSED_LIMIT};
use vigil_protocol::kafka_protocol::records::Compression;
use vigil_protocol::BatchBuilder;
use vigil_storage::{Log, LogConfig, StorageError, TopicConfig};

async fn open(store: Arc<dyn ObjectStore>, dir: &std::path::Path) -> Arc<Log> {
    let mut c = LogConfig::new(dir);
    c.lease_interval = std::time::Duration::from_millis(10);
    c.takeover = true;
    Log::open(c, store).await.expect("open")
}

fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn keyed(records: &[(&'static str, &'static str)]) -> Bytes {
    let mut b = BatchBuilder::new(Compression::Gzip);
    for (k, v) in records {
        b = b.record(
            1_000,
            Some(Bytes::from_static(k.as_bytes())),
            Some(Bytes::from_static(v.as_bytes())),
        );
    }
    b.build().expect("encode")
}

/// Every (offset, key, value) readable from `offset` on.
async fn read_all(log: &Log, topic: &str, offset: i64) -> Vec<(i64, String, String)> {
    let p = log.partition(topic, 0).expect("partition");
    let mut out = Vec::new();
    let mut at = offset;
    while at < p.high_watermark() {
        let f = log.read(&p, at, 1 << 20).await.expect("read");
        assert!(!f.records.is_empty(), "no progress at {at}");
        for item in RecordBatches::new(f.records.clone()) {
            let (h, mut b) = item.expect("batch");
            let set = decode_records(&mut b, DEFAULT_DECOMPRESSED_LIMIT).expect("decode");
            for r in set.records {
                if r.offset >= offset {
                    let s = |b: Option<Bytes>| {
                        String::from_utf8(b.unwrap_or_default().to_vec()).expect("utf8")
                    };
                    out.push((r.offset, s(r.key), s(r.value)));
                }
            }
            at = h.last_offset() + 1;
        }
    }
    out
}

#[tokio::test]
async fn topic_configs_are_replaced_and_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let log = open(store.clone(), dir.path()).await;
    log.create_topic(
        "t",
        TopicConfig {
            partitions: 1,
            configs: configs(&[("retention.ms", "1000")]),
        },
    )
    .await
    .expect("create");
    log.set_topic_configs("t", configs(&[("max.message.bytes", "2000")]))
        .await
        .expect("alter");
    assert_eq!(
        log.topic("t").expect("t").configs,
        configs(&[("max.message.bytes", "2000")])
    );
    assert!(matches!(
        log.set_topic_configs("nope", BTreeMap::new()).await,
        Err(StorageError::UnknownTopic(_))
    ));
    log.close().await;
    let log = open(store, dir.path()).await;
    assert_eq!(
        log.topic("t").expect("t").configs,
        configs(&[("max.message.bytes", "2000")])
    );
}

#[tokio::test]
async fn delete_records_moves_the_log_start_for_reads_retention_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let log = open(store.clone(), dir.path()).await;
    log.create_topic(
        "t",
        TopicConfig {
            partitions: 1,
            configs: BTreeMap::new(),
        },
    )
    .await
    .expect("create");
    let p = log.partition("t", 0).expect("p");
    for _ in 0..3 {
        log.append(&p, keyed(&[("a", "1"), ("b", "2")]))
            .await
            .expect("append");
        log.upload_once().await.expect("upload");
    }
    log.append(&p, keyed(&[("c", "3")])).await.expect("append");
    assert_eq!(p.high_watermark(), 7);

    // Beyond the high watermark: refused.
    assert!(matches!(
        log.delete_records(&p, 8).await,
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // Into the not-yet-uploaded tail: fine, and it is still uploaded.
    assert_eq!(log.delete_records(&p, 4).await.expect("delete"), 4);
    // Lower than the current start: no change.
    assert_eq!(log.delete_records(&p, 2).await.expect("no-op"), 4);
    assert!(matches!(
        log.read(&p, 3, 1 << 20).await,
        Err(StorageError::OffsetOutOfRange { start: 4, .. })
    ));
    let got = read_all(&log, "t", 4).await;
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), vec![4, 5, 6]);

    // Retention drops the runs wholly below the start ([0,2) and [2,4)).
    let stats = log.enforce_retention().await.expect("retention");
    assert_eq!(stats.runs_dropped, 2);
    log.upload_once().await.expect("upload the tail");
    log.close().await;

    let log = open(store, dir.path()).await;
    let p = log.partition("t", 0).expect("p");
    assert_eq!((p.log_start_offset(), p.high_watermark()), (4, 7));
    let got = read_all(&log, "t", 4).await;
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), vec![4, 5, 6]);
}

#[tokio::test]
async fn compacted_topics_keep_the_latest_record_per_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let log = open(store.clone(), dir.path()).await;
    log.create_topic(
        "c",
        TopicConfig {
            partitions: 1,
            configs: configs(&[("cleanup.policy", "compact"), ("retention.ms", "1")]),
        },
    )
    .await
    .expect("create");
    log.create_topic(
        "d",
        TopicConfig {
            partitions: 1,
            configs: BTreeMap::new(),
        },
    )
    .await
    .expect("create");
    for topic in ["c", "d"] {
        let p = log.partition(topic, 0).expect("p");
        log.append(&p, keyed(&[("a", "1"), ("b", "1")]))
            .await
            .expect("append");
        log.upload_once().await.expect("upload");
        log.append(&p, keyed(&[("a", "2"), ("c", "1")]))
            .await
            .expect("append");
        log.upload_once().await.expect("upload");
        log.append(&p, keyed(&[("a", "3")])).await.expect("append");
        log.upload_once().await.expect("upload");
    }
    for topic in ["c", "d"] {
        // Not uploaded yet: left alone, like Kafka's active segment.
        let p = log.partition(topic, 0).expect("p");
        log.append(&p, keyed(&[("b", "2")])).await.expect("append");
    }
    let stats = log.compact_keys_once().await.expect("compact");
    assert_eq!((stats.partitions, stats.records_dropped), (1, 2));
    let latest = vec![
        (1, "b".to_string(), "1".to_string()),
        (3, "c".to_string(), "1".to_string()),
        (4, "a".to_string(), "3".to_string()),
        (5, "b".to_string(), "2".to_string()),
    ];
    assert_eq!(read_all(&log, "c", 0).await, latest);
    // The delete-policy topic is untouched.
    assert_eq!(read_all(&log, "d", 0).await.len(), 6);
    // Nothing new uploaded: the next pass has nothing to do; and a
    // compact-only topic is exempt from time retention (retention.ms=1).
    assert_eq!(log.compact_keys_once().await.expect("again").partitions, 0);
    let r = log.enforce_retention().await.expect("retention");
    assert_eq!(r.runs_dropped, 0);

    log.upload_once().await.expect("upload");
    log.close().await;
    let log = open(store, dir.path()).await;
    let stats = log.compact_keys_once().await.expect("compact after reopen");
    assert_eq!((stats.partitions, stats.records_dropped), (1, 1));
    assert_eq!(
        read_all(&log, "c", 0).await,
        vec![
            (3, "c".to_string(), "1".to_string()),
            (4, "a".to_string(), "3".to_string()),
            (5, "b".to_string(), "2".to_string()),
        ]
    );
}
