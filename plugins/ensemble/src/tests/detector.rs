//! The detector through the SDK: alerts, snapshots, keys, config, memory, score stream.

use super::*;

#[test]
fn clean_seasonal_series_raises_nothing() {
    let values: Vec<f64> = (0..10 * DAY).map(sine).collect();
    let alerts = run::<Ensemble>(json!({}), &batches(&values, 500)).unwrap();
    assert_eq!(offsets(&alerts), Vec::<i64>::new());
}

#[test]
fn spike_and_level_shift_alert_near_injection() {
    let mut values: Vec<f64> = (0..10 * DAY).map(sine).collect();
    let spike = 1700;
    values[spike] += 12.0;
    let shift = 2300;
    for v in &mut values[shift..] {
        *v += 8.0;
    }
    let alerts = run::<Ensemble>(json!({}), &batches(&values, 500)).unwrap();
    let got = offsets(&alerts);
    // The spike, the shift, and at most one reminder of the still-shifted
    // level once the cooldown is over.
    assert!((2..=3).contains(&got.len()), "alerts at {got:?}");
    assert!(
        got[2..].iter().all(|&o| o > got[1] + 288),
        "alerts at {got:?}"
    );
    assert_eq!(got[0], spike as i64);
    assert!(
        (shift as i64..shift as i64 + 12).contains(&got[1]),
        "alerts at {got:?}"
    );
    let a = &alerts[0];
    assert_eq!(a.get_field("kind"), Some("\"range_breakout\""));
    assert!(a.get_severity() >= Severity::High);
    assert!(a.get_score() >= 0.5 && a.get_score() <= 1.0);
    let expected: f64 = a.get_field("expected").unwrap().parse().unwrap();
    assert!(
        (expected - (values[spike] - 12.0)).abs() < 1.5,
        "expected {expected}"
    );
    let lo: f64 = a.get_field("expected_low").unwrap().parse().unwrap();
    let hi: f64 = a.get_field("expected_high").unwrap().parse().unwrap();
    assert!(lo < expected && expected < hi && hi < values[spike]);
}

#[test]
fn in_range_change_of_behaviour_is_flagged() {
    // The daily sine starts flipping between 7 and 13 every record: both
    // values are well inside the range seen, only the movement is new.
    let mut values: Vec<f64> = (0..10 * DAY).map(sine).collect();
    let change = 8 * DAY + 10;
    for (k, v) in values[change..change + 50].iter_mut().enumerate() {
        *v = if k % 2 == 0 { 7.0 } else { 13.0 };
    }
    let alerts = run::<Ensemble>(json!({}), &batches(&values, 400)).unwrap();
    let got = offsets(&alerts);
    assert!(!got.is_empty(), "no alert");
    assert!(
        (change as i64..change as i64 + 20).contains(&got[0]),
        "alerts at {got:?}"
    );
    assert_eq!(alerts[0].get_field("kind"), Some("\"deviation\""));
    // Flipping between two in-range values is both a large error against
    // the recent median and new movement; either may be the larger.
    let signal = alerts[0].get_field("signal").unwrap_or_default();
    assert!(
        ["\"prediction_error\"", "\"movement_pattern\""].contains(&signal),
        "{signal}"
    );
}

#[test]
fn snapshot_restore_gives_identical_alerts() {
    let mut values: Vec<f64> = (0..10 * DAY).map(sine).collect();
    values[2100] += 12.0;
    for v in &mut values[2600..] {
        *v -= 8.0;
    }
    let all = batches(&values, 300);
    let (head, tail) = all.split_at(5);
    let cfg = json!({"warmup": 200});
    let mut original = new_detector::<Ensemble>(cfg.clone()).unwrap();
    process_all(&mut original, head).unwrap();
    let mut restored = snapshot_round_trip::<Ensemble>(cfg, &original).unwrap();
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
    let alerts = run::<Ensemble>(cfg, &[rows.build()]).unwrap();
    assert_eq!(offsets(&alerts), vec![2001]);
    assert_eq!(alerts[0].get_key(), Some(&b"b"[..]));
}

#[test]
fn config_is_validated() {
    let err = |v: Value| new_detector::<Ensemble>(v).unwrap_err().to_string();
    assert!(err(json!({"threshold": 1.5})).contains("`threshold`"));
    assert!(err(json!({"likelihood_window": 2})).contains("`likelihood_window`"));
    assert!(err(json!({"short_window": 0})).contains("`short_window`"));
    assert!(err(json!({"max_keys": 0})).contains("`max_keys`"));
    assert!(err(json!({"cooldown_minutes": 2_000_000_000u64})).contains("`cooldown_minutes`"));
    assert!(new_detector::<Ensemble>(json!({"cooldown_minutes": -1})).is_err());
    assert!(new_detector::<Ensemble>(json!({"cooldown_minutes": 0})).is_ok());
    assert!(err(json!({"treshold": 0.5})).contains("unknown field `treshold`"));
    let e = run::<Ensemble>(json!({"field": "cpu"}), &batches(&[1.0], 1)).unwrap_err();
    assert!(e.to_string().contains("no column `cpu`"), "{e}");
}

#[test]
fn model_bounds_memory_and_ignores_warmup() {
    let cfg = Config {
        likelihood_window: 64,
        ..Config::default()
    };
    let mut m = SeriesModel::new(&cfg);
    let mut sizes = Vec::new();
    for i in 0..20_000 {
        let o = m.update(&cfg, sine(i) + 3.0 * noise(i + 11), i as i64 * STEP_MS);
        if i < cfg.warmup {
            assert_eq!((o.score, o.alert, o.kind), (0.0, false, Kind::Normal));
        }
        if i % 5000 == 4999 {
            sizes.push(vigil_sdk::state::to_bytes(&m).unwrap().len());
        }
    }
    // Bounded whatever the stream length: four likelihoods of (64 + 20)
    // f64s each, the pattern bitset (1024 words of at most 10 varint
    // bytes), the time-of-day bitset (2 cuts × 24 hours × 8 levels = 6
    // words), the 10-value predictor window and scalars; the scale
    // statistic's day and week of absolute errors (8 × 288 5-minute
    // values) and its likelihood; the day-aware shift's 4 days and the
    // rhythm break's 8 days × 24 slot means and their likelihoods; the
    // open hour's 8 days × 288 slot means and its likelihood.
    let cap = 4 * 8 * (64 + 20) + 10 * (1024 + 6) + 8 * 10 + 300 + 8 * (8 * 288) + 8 * (64 + 20);
    let cap = cap + 8 * 12 * 24 + 2 * 8 * (64 + 20);
    let cap = cap + 8 * (8 * 288) + 8 * (64 + 20);
    // The forgetting pattern memory's older generation and its bitset of
    // every pattern ever seen (1024 words each).
    let cap = cap + 2 * 10 * 1024;
    assert!(sizes.iter().all(|&s| s < cap), "{sizes:?} vs {cap}");
    assert_eq!(m.records(), 20_000);
}

#[test]
fn score_stream_carries_the_alerts_and_is_quiet_in_cooldown() {
    let mut values: Vec<f64> = (0..10 * DAY).map(sine).collect();
    values[1700] += 12.0;
    for v in &mut values[2300..] {
        *v += 8.0;
    }
    let b = batches(&values, 500);
    let alerts = run::<Ensemble>(json!({}), &b).unwrap();
    let stream = run::<Ensemble>(json!({"scores": true}), &b).unwrap();
    let field = |a: &Alert, name: &str| a.get_field(name).map(str::to_string);
    assert!(stream
        .iter()
        .all(|a| field(a, "stream").as_deref() == Some("\"score\"")));
    // The records the stream marks as alerting are exactly the alerts.
    let marked: Vec<i64> = stream
        .iter()
        .filter(|a| field(a, "alert").as_deref() == Some("true"))
        .map(Alert::source_offset)
        .collect();
    assert_eq!(marked, offsets(&alerts));
    assert!(stream.len() > 10 * marked.len(), "{} records", stream.len());
    // Within a cooldown (288 records) after an alert nothing is scored, and
    // outside one no score reaches the threshold without alerting.
    for &m in &marked {
        assert!(
            stream
                .iter()
                .all(|a| a.source_offset() <= m || a.source_offset() > m + 288),
            "scores within the cooldown after {m}"
        );
    }
    assert!(stream
        .iter()
        .filter(|a| a.get_score() >= 0.5)
        .all(|a| marked.contains(&a.source_offset())));
}

#[test]
fn detector_alert_names_the_time_of_day_context() {
    let mut values: Vec<f64> = (0..14 * DAY).map(office_hours).collect();
    let start = 12 * DAY + 2 * DAY / 24;
    // Noisy, so that the repeated-values signal has nothing to say.
    for (k, v) in values[start..start + 2 * DAY / 24].iter_mut().enumerate() {
        *v = 20.0 + 0.5 * noise(k + 5);
    }
    // metric_batches starts at 1_400_000_000_000 ms = 16:53:20 UTC; start
    // the series at midnight so the hours above are UTC hours.
    let midnight = 1_400_000_000_000 - 1_400_000_000_000 % 86_400_000;
    let alerts =
        run::<Ensemble>(json!({}), &metric_batches(&values, 500, midnight, STEP_MS)).unwrap();
    let a = alerts
        .iter()
        .find(|a| a.source_offset() >= start as i64)
        .unwrap_or_else(|| panic!("no alert after {start}: {:?}", offsets(&alerts)));
    assert!(a.source_offset() < (start + 2 * DAY / 24) as i64);
    assert_eq!(a.get_field("signal"), Some("\"time_of_day\""));
    let message = a.get_message().unwrap_or_default();
    assert!(message.contains("at this time of day"), "{message}");
}
