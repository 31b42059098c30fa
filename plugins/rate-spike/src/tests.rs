use serde_json::{json, Value};
use vigil_sdk::testing::{new_detector, process_all, run, snapshot_round_trip, FieldType, Rows};
use vigil_sdk::{Alert, Batch, Severity};

use crate::RateSpike;

const MIN: i64 = 60_000;
const T0: i64 = 1_700_000_000_000;

/// Events as (timestamp, card), in the order given; offsets from `first`.
fn batch(first: i64, events: &[(i64, String)]) -> Batch {
    let mut b = Rows::new(3, first).schema(&[("merchant", FieldType::Str)]);
    for (ts, card) in events {
        b = b.keyed_row(*ts, card, json!({"merchant": format!("m-{card}")}));
    }
    b.build()
}

/// Three hours of one event per minute on each of five cards, phases staggered.
fn steady() -> Vec<(i64, String)> {
    let mut ev = Vec::new();
    for m in 0..180 {
        for c in 0..5 {
            ev.push((T0 + m * MIN + c * 7_000, format!("card-{c}")));
        }
    }
    ev
}

fn cfg() -> Value {
    json!({"window_ms": 60000, "factor": 3.0, "min_events": 5, "baseline_half_life_ms": 3600000})
}

fn keys(alerts: &[Alert]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| String::from_utf8_lossy(a.get_key().unwrap_or_default()).into_owned())
        .collect()
}

#[test]
fn burst_on_one_card_alerts_for_it_only() {
    let mut ev = steady();
    let burst_start = T0 + 180 * MIN;
    for i in 0..20 {
        ev.push((burst_start + i * 500, "card-2".to_string()));
    }
    // Other cards keep their pace during and after the burst.
    for m in 180..200 {
        for c in [0, 1, 3, 4] {
            ev.push((T0 + m * MIN + c * 7_000, format!("card-{c}")));
        }
    }
    ev.sort_by_key(|e| e.0);
    let alerts = run::<RateSpike>(cfg(), &[batch(0, &ev[..500]), batch(500, &ev[500..])]).unwrap();
    assert_eq!(keys(&alerts), vec!["card-2"]);
    let a = &alerts[0];
    // The alert is on the burst's 4th event: with the card's regular event
    // 46 s earlier the window then holds 5, reaching min_events and 3× the
    // ~1 event/min baseline for the first time.
    let idx = ev
        .iter()
        .position(|e| e.0 == burst_start + 3 * 500 && e.1 == "card-2")
        .unwrap();
    assert_eq!(a.source_offset(), idx as i64);
    assert_eq!(a.get_field("count"), Some("5"));
    assert_eq!(a.get_field("new_key"), Some("false"));
    let expected: f64 = a.get_field("expected").unwrap().parse().unwrap();
    assert!((expected - 1.0).abs() < 0.1, "expected {expected}");
    assert_eq!(a.get_severity(), Severity::Medium);
}

#[test]
fn new_key_burst_alerts_small_one_does_not() {
    let mut ev = steady();
    let t = T0 + 100 * MIN;
    ev.extend((0..8).map(|i| (t + i * 3_000, "fresh".to_string())));
    ev.extend((0..2).map(|i| (t + i * 3_000, "quiet".to_string())));
    ev.sort_by_key(|e| e.0);
    let alerts = run::<RateSpike>(cfg(), &[batch(0, &ev)]).unwrap();
    assert_eq!(keys(&alerts), vec!["fresh"]);
    assert_eq!(alerts[0].get_field("new_key"), Some("true"));
    assert_eq!(alerts[0].get_field("count"), Some("5"));
}

#[test]
fn uses_event_time_not_arrival() {
    // 30 events of one card arrive together, but their timestamps are a
    // minute apart: no spike. Then 10 events 2 s apart, arriving shuffled
    // across two batches: a spike.
    let slow: Vec<(i64, String)> = (0..30).map(|i| (T0 + i * MIN, "c".to_string())).collect();
    let fast_t = T0 + 40 * MIN;
    let mut fast: Vec<(i64, String)> = (0..10)
        .map(|i| (fast_t + i * 2_000, "c".to_string()))
        .collect();
    fast.swap(1, 6);
    fast.swap(3, 8);
    let alerts = run::<RateSpike>(
        cfg(),
        &[
            batch(0, &slow),
            batch(30, &fast[..5]),
            batch(35, &fast[5..]),
        ],
    )
    .unwrap();
    assert_eq!(alerts.len(), 1, "{:?}", keys(&alerts));
    assert!(alerts[0].source_offset() >= 34);
    assert!(alerts[0].get_score() >= 5.0);
}

#[test]
fn one_alert_per_episode_and_rearm() {
    let mut ev = steady();
    for burst in [T0 + 181 * MIN, T0 + 200 * MIN] {
        ev.extend((0..15).map(|i| (burst + i * 1_000, "card-4".to_string())));
    }
    ev.sort_by_key(|e| e.0);
    let alerts = run::<RateSpike>(cfg(), &[batch(0, &ev)]).unwrap();
    assert_eq!(keys(&alerts), vec!["card-4", "card-4"]);
}

#[test]
fn snapshot_restore_continues_identically() {
    let mut ev = steady();
    for (n, card) in ["card-1", "card-3"].iter().enumerate() {
        let t = T0 + (120 + 30 * n as i64) * MIN;
        ev.extend((0..12).map(|i| (t + i * 2_000, card.to_string())));
    }
    ev.sort_by_key(|e| e.0);
    let mut d = new_detector::<RateSpike>(cfg()).unwrap();
    process_all(&mut d, &[batch(0, &ev[..400])]).unwrap();
    let mut r = snapshot_round_trip::<RateSpike>(cfg(), &d).unwrap();
    let tail = [batch(400, &ev[400..])];
    let a = process_all(&mut d, &tail).unwrap();
    let b = process_all(&mut r, &tail).unwrap();
    assert_eq!(keys(&a), vec!["card-1", "card-3"]);
    assert_eq!(a, b);
}

#[test]
fn config_errors_are_clear() {
    let err = |v: Value| new_detector::<RateSpike>(v).unwrap_err().to_string();
    assert!(err(json!({"window_ms": 0})).contains("`window_ms`"));
    assert!(err(json!({"factor": 0.5})).contains("`factor`"));
    assert!(err(json!({"min_events": 1})).contains("`min_events`"));
    assert!(err(json!({"baseline_half_life_ms": 1000})).contains("`baseline_half_life_ms`"));
    assert!(err(json!({"windowms": 1})).contains("unknown field `windowms`"));
    assert!(new_detector::<RateSpike>(json!({})).is_ok());
}
