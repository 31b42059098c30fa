use serde_json::{json, Value};
use vigil_sdk::testing::{
    metric_batches, new_detector, noise, process_all, run, snapshot_round_trip, FieldType, Rows,
};
use vigil_sdk::{Alert, Batch, Severity};

use crate::config::Config;
use crate::model::{Kind, SeriesModel};
use crate::Seasonal;

const STEP_MS: i64 = 300_000; // 5-minute metric
const DAY: usize = 288; // records per day at that step

/// Daily sine between 5 and 15 with small noise.
fn sine(i: usize) -> f64 {
    let phase = (i % DAY) as f64 / DAY as f64 * std::f64::consts::TAU;
    10.0 + 5.0 * phase.sin() + 0.3 * noise(i)
}

fn batches(values: &[f64], per_batch: usize) -> Vec<Batch> {
    metric_batches(values, per_batch, 1_400_000_000_000, STEP_MS)
}

fn offsets(alerts: &[Alert]) -> Vec<i64> {
    alerts.iter().map(Alert::source_offset).collect()
}

#[test]
fn clean_seasonal_series_raises_nothing() {
    let values: Vec<f64> = (0..10 * DAY).map(sine).collect();
    let alerts = run::<Seasonal>(json!({}), &batches(&values, 500)).unwrap();
    assert_eq!(offsets(&alerts), Vec::<i64>::new());
}

#[test]
fn spike_and_level_shift_alert_near_injection() {
    let mut values: Vec<f64> = (0..10 * DAY).map(sine).collect();
    let spike = 1700;
    values[spike] += 12.0;
    let shift = 2300;
    for v in &mut values[shift..] {
        *v += 4.0;
    }
    let alerts = run::<Seasonal>(json!({}), &batches(&values, 500)).unwrap();
    let got = offsets(&alerts);
    assert_eq!(got.len(), 2, "alerts at {got:?}");
    assert_eq!(got[0], spike as i64);
    assert!(
        (shift as i64..shift as i64 + 12).contains(&got[1]),
        "alerts at {got:?}"
    );
    let a = &alerts[0];
    assert_eq!(a.get_field("kind"), Some("\"range_breakout\""));
    assert!(a.get_severity() >= Severity::High);
    assert!(a.get_score() >= 0.7 && a.get_score() <= 1.0);
    let expected: f64 = a.get_field("expected").unwrap().parse().unwrap();
    assert!(
        (expected - (values[spike] - 12.0)).abs() < 1.5,
        "expected {expected}"
    );
}

#[test]
fn in_range_anomaly_needs_the_season() {
    // At the daily trough (value ~5) a value of 14 is inside the series'
    // range: only a seasonal baseline sees that it is wrong for the time of day.
    let mut values: Vec<f64> = (0..10 * DAY).map(sine).collect();
    let trough = 8 * DAY + 3 * DAY / 4;
    for v in &mut values[trough..trough + 6] {
        *v = 14.0;
    }
    let alerts = run::<Seasonal>(json!({}), &batches(&values, 400)).unwrap();
    let got = offsets(&alerts);
    assert_eq!(got.len(), 1, "alerts at {got:?}");
    assert!(
        (trough as i64..trough as i64 + 6).contains(&got[0]),
        "alerts at {got:?}"
    );
    assert_eq!(alerts[0].get_field("period_records"), Some("288"));
    assert_eq!(alerts[0].get_field("kind"), Some("\"deviation\""));

    let none = run::<Seasonal>(json!({"seasonality": "none"}), &batches(&values, 400)).unwrap();
    assert!(
        offsets(&none).iter().all(|o| *o != got[0]),
        "{:?}",
        offsets(&none)
    );
}

#[test]
fn snapshot_restore_gives_identical_alerts() {
    let mut values: Vec<f64> = (0..10 * DAY).map(sine).collect();
    values[2100] += 12.0;
    for v in &mut values[2600..] {
        *v -= 4.0;
    }
    let all = batches(&values, 300);
    let (head, tail) = all.split_at(5);
    let cfg = json!({"warmup": 200});
    let mut original = new_detector::<Seasonal>(cfg.clone()).unwrap();
    process_all(&mut original, head).unwrap();
    let mut restored = snapshot_round_trip::<Seasonal>(cfg, &original).unwrap();
    let a = process_all(&mut original, tail).unwrap();
    let b = process_all(&mut restored, tail).unwrap();
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

#[test]
fn keys_are_separate_series() {
    // Two hosts in one partition: a flat one and one whose value jumps.
    let mut rows = Rows::new(0, 0).schema(&[("cpu", FieldType::F64), ("host", FieldType::Str)]);
    for i in 0..1200 {
        let t = i as i64 * STEP_MS;
        let b = if i >= 1000 { 90.0 } else { 20.0 + noise(i) };
        rows = rows
            .row(t, None, json!({"cpu": 50.0 + noise(i + 7), "host": "a"}))
            .row(t, None, json!({"cpu": b, "host": "b"}));
    }
    let cfg = json!({"field": "cpu", "key": "host"});
    let alerts = run::<Seasonal>(cfg, &[rows.build()]).unwrap();
    assert_eq!(offsets(&alerts), vec![2001]);
    assert_eq!(alerts[0].get_key(), Some(&b"b"[..]));
}

#[test]
fn config_is_validated() {
    let err = |v: Value| new_detector::<Seasonal>(v).unwrap_err().to_string();
    assert!(err(json!({"threshold": 1.5})).contains("`threshold`"));
    assert!(err(json!({"seasonality": "hourly"})).contains("`seasonality`"));
    assert!(err(json!({"history": 2})).contains("`history`"));
    assert!(err(json!({"max_keys": 0})).contains("`max_keys`"));
    assert!(err(json!({"treshold": 0.5})).contains("unknown field `treshold`"));
    let e = run::<Seasonal>(json!({"field": "cpu"}), &batches(&[1.0], 1)).unwrap_err();
    assert!(e.to_string().contains("no column `cpu`"), "{e}");
}

#[test]
fn model_bounds_memory_and_ignores_warmup() {
    let cfg = Config {
        history: 64,
        likelihood_window: 32,
        ..Config::default()
    };
    let mut m = SeriesModel::new(&cfg);
    for i in 0..5000 {
        let o = m.update(&cfg, i as i64 * STEP_MS, sine(i));
        if i < cfg.warmup {
            assert_eq!((o.score, o.alert, o.kind), (0.0, false, Kind::Normal));
        }
    }
    let bytes = vigil_sdk::state::to_bytes(&m).unwrap();
    // history + likelihood + small rings, 8 bytes per f64 (postcard).
    assert!(bytes.len() < 8 * (64 + 32 + 200), "{} bytes", bytes.len());
    assert_eq!(m.records(), 5000);
}
