use serde_json::{json, Value};
use vigil_sdk::testing::{
    new_detector, noise, process_all, run, snapshot_round_trip, FieldType, Rows,
};
use vigil_sdk::{Alert, Batch, Severity};

use crate::EwmaBands;

fn batch(first_offset: i64, key: &str, values: &[f64]) -> Batch {
    let mut b = Rows::new(0, first_offset)
        .schema(&[("latency", FieldType::F64), ("endpoint", FieldType::Str)]);
    for (i, v) in values.iter().enumerate() {
        b = b.keyed_row(
            first_offset + i as i64,
            key,
            json!({"latency": v, "endpoint": format!("/{key}")}),
        );
    }
    b.build()
}

fn offsets(alerts: &[Alert]) -> Vec<i64> {
    alerts.iter().map(Alert::source_offset).collect()
}

fn cfg() -> Value {
    json!({"field": "latency", "half_life": 20, "k": 3.0, "warmup": 20})
}

#[test]
fn follows_a_drift_and_flags_the_outlier() {
    // A slow upward drift (0.05 per record) with noise, one +15 outlier.
    let mut v: Vec<f64> = (0..300)
        .map(|i| 50.0 + 0.05 * i as f64 + 2.0 * noise(i))
        .collect();
    v[200] += 15.0;
    let alerts = run::<EwmaBands>(cfg(), &[batch(0, "api", &v)]).unwrap();
    assert_eq!(offsets(&alerts), vec![200]);
    let a = &alerts[0];
    assert_eq!(a.get_key(), Some(&b"api"[..]));
    assert_eq!(a.get_field("band"), Some("\"upper\""));
    assert!(a.get_score() > 7.5, "deviation {}", a.get_score());
    assert_eq!(a.get_severity(), Severity::Critical);
    let mean: f64 = a.get_field("mean").unwrap().parse().unwrap();
    // The EWMA tracks the drift: it lags the true level (60) by ~1.4.
    assert!((mean - 58.6).abs() < 1.0, "mean {mean}");
    let upper: f64 = a.get_field("upper").unwrap().parse().unwrap();
    assert!(upper > mean && upper < 75.0, "upper {upper}");
}

#[test]
fn level_shift_alerts_then_bands_adapt() {
    let mut v: Vec<f64> = (0..400).map(|i| 100.0 + 4.0 * noise(i)).collect();
    for x in &mut v[200..] {
        *x -= 30.0;
    }
    let alerts = run::<EwmaBands>(
        cfg(),
        &[batch(0, "db", &v[..250]), batch(250, "db", &v[250..])],
    )
    .unwrap();
    let got = offsets(&alerts);
    assert_eq!(got.first(), Some(&200), "{got:?}");
    assert_eq!(alerts[0].get_field("band"), Some("\"lower\""));
    assert!(alerts[0].get_score() < -3.0);
    // Within a few half-lives the bands have moved to the new level.
    assert!(got.iter().all(|&o| o < 260), "{got:?}");
}

#[test]
fn alpha_config_and_warmup() {
    let v: Vec<f64> = (0..30)
        .map(|i| if i == 5 { 1e6 } else { 1.0 + noise(i) })
        .collect();
    // The early outlier falls inside warmup: no alert.
    let c = json!({"field": "latency", "alpha": 0.1, "warmup": 10});
    let alerts = run::<EwmaBands>(c, &[batch(0, "x", &v)]).unwrap();
    assert_eq!(offsets(&alerts), Vec::<i64>::new());
    // Keyed by a column instead of the record key.
    let mut v: Vec<f64> = (0..30).map(|i| 1.0 + noise(i)).collect();
    v[25] = 9.0;
    let c = json!({"field": "latency", "key": "endpoint", "alpha": 0.1, "warmup": 10});
    let alerts = run::<EwmaBands>(c, &[batch(0, "x", &v)]).unwrap();
    assert_eq!(offsets(&alerts), vec![25]);
    assert_eq!(alerts[0].get_key(), Some(&b"/x"[..]));
}

#[test]
fn snapshot_restore_continues_identically() {
    let v: Vec<f64> = (0..300)
        .map(|i| if i % 71 == 70 { 40.0 } else { 10.0 + noise(i) })
        .collect();
    let mut d = new_detector::<EwmaBands>(cfg()).unwrap();
    process_all(&mut d, &[batch(0, "k", &v[..150])]).unwrap();
    let mut r = snapshot_round_trip::<EwmaBands>(cfg(), &d).unwrap();
    let tail = [batch(150, "k", &v[150..])];
    let a = process_all(&mut d, &tail).unwrap();
    let b = process_all(&mut r, &tail).unwrap();
    assert_eq!(offsets(&a), vec![212, 283]);
    assert_eq!(a, b);
}

#[test]
fn config_errors_are_clear() {
    let err = |v: Value| new_detector::<EwmaBands>(v).unwrap_err().to_string();
    assert!(err(json!({"field": "x", "alpha": 0.1, "half_life": 5})).contains("not both"));
    assert!(err(json!({"field": "x", "alpha": 1.5})).contains("`alpha`"));
    assert!(err(json!({"field": "x", "half_life": 0})).contains("`half_life`"));
    assert!(err(json!({"field": "x", "k": 0})).contains("`k`"));
    assert!(err(json!({"field": "x", "warmup": 1})).contains("`warmup`"));
    assert!(err(json!({"field": "x", "kk": 1})).contains("unknown field `kk`"));
}

#[test]
fn with_quiet_a_continuing_anomaly_is_one_incident_with_start_and_end() {
    // 8 records 40 above the level (20 std), then back.
    let mut v: Vec<f64> = (0..300).map(|i| 100.0 + 2.0 * noise(i)).collect();
    for x in &mut v[200..208] {
        *x += 40.0;
    }
    let plain = run::<EwmaBands>(cfg(), &[batch(0, "api", &v)]).unwrap();
    assert!(
        plain.len() >= 3,
        "one alert per out-of-band value: {plain:?}"
    );
    let mut c = cfg();
    c["quiet"] = json!(5);
    c["cooldown"] = json!(50);
    let alerts = run::<EwmaBands>(c.clone(), &[batch(0, "api", &v)]).unwrap();
    let incident: Vec<&str> = alerts
        .iter()
        .map(|a| a.get_field("incident").unwrap())
        .collect();
    assert_eq!(incident, vec!["\"opened\"", "\"closed\""], "{alerts:#?}");
    assert_eq!(alerts[0].source_offset(), 200);
    assert_eq!(alerts[0].get_field("band"), Some("\"upper\""));
    let closed = &alerts[1];
    assert_eq!(closed.get_severity(), Severity::Info);
    assert_eq!(closed.get_key(), Some(&b"api"[..]));
    assert_eq!(closed.get_field("incident_start"), Some("200"));
    let end: i64 = closed.get_field("incident_end").unwrap().parse().unwrap();
    assert!((200..215).contains(&end), "{end}");
    // The incident state is in the snapshot: restored mid-incident, the
    // rest of the stream gives the same notice.
    let mut d = new_detector::<EwmaBands>(c.clone()).unwrap();
    let first = process_all(&mut d, &[batch(0, "api", &v[..203])]).unwrap();
    assert_eq!(first.len(), 1);
    let mut back = snapshot_round_trip::<EwmaBands>(c.clone(), &d).unwrap();
    let rest = process_all(&mut back, &[batch(203, "api", &v[203..])]).unwrap();
    assert_eq!(rest, alerts[1..].to_vec());
    // `cooldown` alone is refused.
    let e = new_detector::<EwmaBands>(json!({"field": "latency", "cooldown": 5}))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("`cooldown` needs `quiet`"), "{e}");
}
