//! Append taps (design 0019, "Detectors on the appending task"): a reader
//! called on the appending task with each batch as it is queued.

use crate::common;

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use vigil_protocol::batch::RecordBatches;
use vigil_storage::log::tap::AppendTap;
use vigil_storage::{Log, LogConfig, Partition};

use common::{batch, create_topic, StoreDir};

/// Notes every call; with `output`, appends each batch it sees there too.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(i64, i64, i64)>>,
    output: Option<(Arc<Log>, Arc<Partition>)>,
}

impl AppendTap for Recorder {
    fn appended(&self, base: i64, end: i64, records: &Bytes) {
        let (header, _) = RecordBatches::new(records.clone())
            .next()
            .expect("one batch")
            .expect("a valid batch");
        self.seen.lock().push((base, end, header.base_offset));
        if let Some((log, out)) = &self.output {
            log.try_start_append_then(out, batch("copy", None), None)
                .expect("output append")
                .expect("room on the WAL");
        }
    }
}

#[tokio::test]
async fn a_tap_sees_each_queued_batch_as_written_and_its_own_appends_call_no_taps() {
    let dir = StoreDir::new();
    let data = tempfile::tempdir().expect("tempdir");
    let log = Log::open(LogConfig::new(data.path()), dir.store())
        .await
        .expect("open log");
    create_topic(&log, "in", 1).await;
    create_topic(&log, "out", 1).await;
    let input = log.partition("in", 0).expect("partition");
    let out = log.partition("out", 0).expect("partition");
    log.append(&input, batch("before any tap", None))
        .await
        .expect("append");

    let on_out = Arc::new(Recorder::default());
    let _out_tap = out.add_tap(on_out.clone());
    let on_in = Arc::new(Recorder {
        output: Some((log.clone(), out.clone())),
        ..Default::default()
    });
    let in_tap = input.add_tap(on_in.clone());
    for tag in ["a", "b"] {
        log.append(&input, batch(tag, None)).await.expect("append");
    }
    assert_eq!(
        *on_in.seen.lock(),
        vec![(1, 2, 1), (2, 3, 2)],
        "each batch once, offsets assigned in the bytes too"
    );
    assert!(
        on_out.seen.lock().is_empty(),
        "a tap's own append called a tap"
    );
    assert_eq!(out.log_end_offset(), 2, "the tap's outputs were queued");

    log.append(&out, batch("client", None))
        .await
        .expect("append");
    assert_eq!(
        *on_out.seen.lock(),
        vec![(2, 3, 2)],
        "an ordinary append calls taps"
    );

    drop(in_tap);
    log.append(&input, batch("after", None))
        .await
        .expect("append");
    assert_eq!(
        on_in.seen.lock().len(),
        2,
        "called after its handle dropped"
    );
    log.close().await;
}
