//! Ack gates (design 0019): an acknowledgement waits for the partition's
//! gates up to their budgets, a dropped gate holds nothing, and a gated
//! reader sees the tail before it is durable while nobody else does.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::memory::InMemory;
use vigil_storage::config::WalMode;
use vigil_storage::store::{FaultKind, FaultyStore};
use vigil_storage::{Log, LogConfig};

use common::{batch, create_topic, StoreDir};

/// Upper bound of every wait here.
const DEADLINE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn an_ack_waits_for_an_open_gate_and_goes_when_it_passes_the_batch() {
    let dir = StoreDir::new();
    let (log, _data) = dir.open_fresh().await;
    create_topic(&log, "t", 1).await;
    let p = log.partition("t", 0).expect("partition");
    let gate = log.ack_gate(&p, 0, DEADLINE, false);
    let pending = log.start_append(&p, batch("a", None)).await.expect("start");
    let ack = tokio::spawn(pending.wait());
    // Durable, yet not acknowledged while the gate stands before it.
    let until = Instant::now() + DEADLINE;
    while p.high_watermark() < 1 {
        assert!(Instant::now() < until, "the batch never became durable");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !ack.is_finished(),
        "acknowledged before the gate passed the batch"
    );
    gate.advance(1);
    let out = tokio::time::timeout(DEADLINE, ack)
        .await
        .expect("ack after the gate passed")
        .expect("join")
        .expect("append");
    assert_eq!(
        out,
        vigil_storage::AppendOutcome::Appended { base_offset: 0 }
    );
    assert_eq!(p.ack_gate_misses(), 0);
    // A gate already past a batch does not hold it.
    gate.advance(2);
    let t0 = Instant::now();
    log.append(&p, batch("b", None)).await.expect("append");
    assert!(t0.elapsed() < DEADLINE / 2);
    assert_eq!(p.ack_gate_misses(), 0);
}

#[tokio::test]
async fn a_gate_that_misses_its_budget_lets_the_ack_go_and_counts_it() {
    let dir = StoreDir::new();
    let (log, _data) = dir.open_fresh().await;
    create_topic(&log, "t", 1).await;
    let p = log.partition("t", 0).expect("partition");
    let _gate = log.ack_gate(&p, 0, Duration::from_millis(30), false);
    let t0 = Instant::now();
    tokio::time::timeout(DEADLINE, log.append(&p, batch("a", None)))
        .await
        .expect("ack within the deadline")
        .expect("append");
    assert!(
        t0.elapsed() >= Duration::from_millis(30),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(p.ack_gate_misses(), 1);
}

#[tokio::test]
async fn dropping_a_gate_releases_the_acks_waiting_on_it() {
    let dir = StoreDir::new();
    let (log, _data) = dir.open_fresh().await;
    create_topic(&log, "t", 1).await;
    let p = log.partition("t", 0).expect("partition");
    let gate = log.ack_gate(&p, 0, Duration::from_secs(3600), false);
    let ack = tokio::spawn({
        let (log, p) = (log.clone(), p.clone());
        async move { log.append(&p, batch("a", None)).await }
    });
    let until = Instant::now() + DEADLINE;
    while p.high_watermark() < 1 {
        assert!(Instant::now() < until, "the batch never became durable");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(gate);
    tokio::time::timeout(DEADLINE, ack)
        .await
        .expect("ack once the gate is gone")
        .expect("join")
        .expect("append");
    // And later appends do not wait for it either.
    tokio::time::timeout(DEADLINE, log.append(&p, batch("b", None)))
        .await
        .expect("ack without gates")
        .expect("append");
}

#[tokio::test]
async fn a_gated_reader_reads_the_tail_before_it_is_durable_and_plain_reads_do_not() {
    let faulty = FaultyStore::new(Arc::new(InMemory::new()));
    let faults = faulty.control();
    let data = tempfile::tempdir().expect("tempdir");
    let mut c = LogConfig::new(data.path());
    c.wal_mode = WalMode::Object {
        window: Duration::from_millis(1),
    };
    c.lease_interval = Duration::from_millis(10);
    let log: Arc<Log> = Log::open(c, Arc::new(faulty)).await.expect("open");
    create_topic(&log, "t", 1).await;
    let p = log.partition("t", 0).expect("partition");
    log.append(&p, batch("durable", None))
        .await
        .expect("append");
    let gate = log.ack_gate(&p, 1, DEADLINE, false);
    let mut appended = p.watch_appends();
    // The WAL's PUTs hang: the next batch is queued, not durable.
    faults.hang(FaultKind::Write, true);
    let pending = log
        .start_append(&p, batch("tail", None))
        .await
        .expect("start");
    tokio::time::timeout(DEADLINE, appended.changed())
        .await
        .expect("a gated reader is woken by the append")
        .expect("watch");
    assert_eq!((p.high_watermark(), p.log_end_offset()), (1, 2));
    let plain = log
        .read(&p, 1, 1 << 20)
        .await
        .expect("read at the watermark");
    assert!(plain.records.is_empty(), "a plain read saw undurable data");
    let tail = log
        .read_unacked(&p, 1, 1 << 20)
        .await
        .expect("read the tail");
    let mut bytes = tail.records.clone();
    let sets = vigil_protocol::kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes)
        .expect("decode");
    let values: Vec<_> = sets
        .iter()
        .flat_map(|s| s.records.iter())
        .map(|r| (r.offset, r.value.clone().expect("value")))
        .collect();
    assert_eq!(values, vec![(1, bytes::Bytes::from("tail"))]);
    // From below the watermark one read reaches the log end: a gated
    // runner a little behind the watermark that stopped there would count
    // itself behind and drop its gate (seen at 20 000 records/s).
    let head = log.read_unacked(&p, 0, 1).await.expect("read the head");
    assert_eq!(head.records.len(), batch("durable", None).len());
    let across = log
        .read_unacked(&p, 0, 1 << 20)
        .await
        .expect("read across the watermark");
    assert_eq!(
        across.records.len(),
        batch("durable", None).len() + tail.records.len(),
        "a read from below the watermark stopped at it"
    );
    let beyond = log.read_unacked(&p, 3, 1 << 20).await;
    assert!(beyond.is_err(), "read past the log end: {beyond:?}");
    faults.hang(FaultKind::Write, false);
    gate.advance(2);
    tokio::time::timeout(DEADLINE, pending.wait())
        .await
        .expect("ack once the store is back")
        .expect("append");
    assert_eq!(p.high_watermark(), 2);
}
