use serde_json::{json, Value};
use vigil_sdk::testing::{
    new_detector, noise, process_all, run, snapshot_round_trip, FieldType, Rows,
};
use vigil_sdk::{Alert, Batch, Severity};

use crate::{ZScore, CONSTANT_Z};

/// One batch of `(key, amount)` rows starting at `first_offset`.
fn batch(first_offset: i64, rows: &[(&str, Option<f64>)]) -> Batch {
    let mut b =
        Rows::new(0, first_offset).schema(&[("amount", FieldType::F64), ("card", FieldType::Str)]);
    for (i, (k, v)) in rows.iter().enumerate() {
        let value = match v {
            Some(v) => json!({"amount": v, "card": format!("card-{k}")}),
            None => json!({"card": format!("card-{k}")}),
        };
        b = b.keyed_row(first_offset + i as i64, k, value);
    }
    b.build()
}

fn offsets(alerts: &[Alert]) -> Vec<i64> {
    alerts.iter().map(Alert::source_offset).collect()
}

fn cfg() -> Value {
    json!({"field": "amount", "window": 100, "threshold": 3.0, "min_samples": 20})
}

#[test]
fn flat_series_with_one_outlier_alerts_once_at_it() {
    let mut rows: Vec<(&str, Option<f64>)> = vec![("a", Some(100.0)); 120];
    rows[60] = ("a", Some(500.0));
    let alerts = run::<ZScore>(cfg(), &[batch(1000, &rows)]).unwrap();
    assert_eq!(offsets(&alerts), vec![1060]);
    let a = &alerts[0];
    assert_eq!(a.get_score(), CONSTANT_Z);
    assert_eq!(a.get_severity(), Severity::Critical);
    assert_eq!(a.get_key(), Some(&b"a"[..]));
    assert_eq!(a.get_field("mean"), Some("100.0"));
    assert_eq!(a.get_field("samples"), Some("60"));
}

#[test]
fn noisy_series_scores_the_outlier_against_prior_values() {
    let mut rows: Vec<(&str, Option<f64>)> = (0..200)
        .map(|i| ("a", Some(100.0 + 10.0 * noise(i))))
        .collect();
    rows[150] = ("a", Some(120.0));
    let alerts = run::<ZScore>(cfg(), &[batch(0, &rows[..100]), batch(100, &rows[100..])]).unwrap();
    assert_eq!(offsets(&alerts), vec![150]);
    let a = &alerts[0];
    // Uniform noise of width 10 has std 10/sqrt(12) = 2.89: z ≈ 20 / 2.89.
    let z = a.get_score();
    assert!((6.0..8.0).contains(&z), "z = {z}");
    assert_eq!(a.get_severity(), Severity::High);
    let mean: f64 = a.get_field("mean").unwrap().parse().unwrap();
    assert!((mean - 100.0).abs() < 1.0, "mean {mean}");
    assert!(a.get_message().unwrap().contains("above the mean"));
}

#[test]
fn keys_are_independent_and_min_samples_applies() {
    let mut rows = Vec::new();
    for i in 0..60 {
        rows.push(("a", Some(10.0 + noise(i))));
        rows.push(("b", Some(1000.0 + 100.0 * noise(i + 999))));
    }
    // A value normal for b but extreme for a; and an early outlier on c,
    // which has too few samples to be scored.
    rows.push(("a", Some(1000.0)));
    rows.push(("c", Some(1.0)));
    rows.push(("c", Some(1e6)));
    let alerts = run::<ZScore>(cfg(), &[batch(0, &rows)]).unwrap();
    assert_eq!(offsets(&alerts), vec![120]);
    assert_eq!(alerts[0].get_key(), Some(&b"a"[..]));
}

#[test]
fn key_column_and_nulls() {
    let mut rows: Vec<(&str, Option<f64>)> = (0..40).map(|i| ("x", Some(5.0 + noise(i)))).collect();
    rows.push(("x", None)); // null amount: skipped, not an error
    rows.push(("x", Some(-50.0)));
    let c = json!({"field": "amount", "key": "card", "min_samples": 20});
    let alerts = run::<ZScore>(c, &[batch(0, &rows)]).unwrap();
    assert_eq!(offsets(&alerts), vec![41]);
    assert_eq!(alerts[0].get_key(), Some(&b"card-x"[..]));
    assert!(alerts[0].get_score() < -3.0);
    assert!(alerts[0].get_message().unwrap().contains("below"));
}

#[test]
fn snapshot_restore_continues_identically() {
    let rows: Vec<(&str, Option<f64>)> = (0..400)
        .map(|i| {
            let k = ["a", "b", "c"][i % 3];
            let v = if i % 97 == 0 {
                60.0
            } else {
                20.0 + 4.0 * noise(i)
            };
            (k, Some(v))
        })
        .collect();
    let head = batch(0, &rows[..200]);
    let tail = [batch(200, &rows[200..300]), batch(300, &rows[300..])];
    let mut d = new_detector::<ZScore>(cfg()).unwrap();
    process_all(&mut d, &[head]).unwrap();
    let mut restored = snapshot_round_trip::<ZScore>(cfg(), &d).unwrap();
    let a = process_all(&mut d, &tail).unwrap();
    let b = process_all(&mut restored, &tail).unwrap();
    assert_eq!(offsets(&a), vec![291, 388]);
    assert_eq!(a, b);
}

#[test]
fn config_errors_are_clear() {
    let err = |v: Value| new_detector::<ZScore>(v).unwrap_err().to_string();
    assert!(err(json!({})).contains("missing field `field`"));
    assert!(err(json!({"field": "a", "window": 1})).contains("`window`"));
    assert!(err(json!({"field": "a", "threshold": -1})).contains("`threshold`"));
    assert!(err(json!({"field": "a", "min_samples": 500})).contains("`min_samples`"));
    assert!(err(json!({"field": "a", "max_keys": 0})).contains("`max_keys`"));
    let e = run::<ZScore>(json!({"field": "amt"}), &[batch(0, &[("a", Some(1.0))])]).unwrap_err();
    assert!(e.to_string().contains("no column `amt`"), "{e}");
}

#[test]
fn with_quiet_a_run_of_outliers_is_one_incident() {
    let mut rows: Vec<(&str, Option<f64>)> = (0..200)
        .map(|i| ("a", Some(100.0 + 10.0 * noise(i))))
        .collect();
    for r in &mut rows[120..125] {
        r.1 = Some(400.0);
    }
    let plain = run::<ZScore>(cfg(), &[batch(0, &rows)]).unwrap();
    assert!(plain.len() >= 2, "{plain:?}");
    let mut c = cfg();
    c["quiet"] = json!(3);
    let alerts = run::<ZScore>(c.clone(), &[batch(0, &rows)]).unwrap();
    let kinds: Vec<&str> = alerts
        .iter()
        .map(|a| a.get_field("incident").unwrap())
        .collect();
    assert_eq!(kinds, vec!["\"opened\"", "\"closed\""], "{alerts:#?}");
    assert_eq!(alerts[0].source_offset(), 120);
    assert_eq!(alerts[1].get_field("incident_start"), Some("120"));
    assert_eq!(alerts[1].get_severity(), Severity::Info);
    // Snapshot mid-incident, restore: the same closing notice.
    let mut d = new_detector::<ZScore>(c.clone()).unwrap();
    process_all(&mut d, &[batch(0, &rows[..122])]).unwrap();
    let mut back = snapshot_round_trip::<ZScore>(c, &d).unwrap();
    let rest = process_all(&mut back, &[batch(122, &rows[122..])]).unwrap();
    assert_eq!(rest, alerts[1..].to_vec());
}
