use serde_json::{json, Value};
use vigil_sdk::testing::{new_detector, process_all, run, snapshot_round_trip, FieldType, Rows};
use vigil_sdk::{Alert, Batch, Severity};

use crate::Rcf;

/// Deterministic standard normal noise (Box-Muller).
fn noise(i: u64, salt: u64) -> f64 {
    let mut r = crate::rng::Rng::new(i.wrapping_mul(31).wrapping_add(salt));
    gauss(&mut r)
}

fn gauss(r: &mut crate::rng::Rng) -> f64 {
    let (u, v) = (1.0 - r.next_f64(), r.next_f64());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Rows of three metrics per host with Gaussian noise: cpu 50 (std 2),
/// mem = cpu / 2 + 10 (std 0.5 around that), latency 20 (std 1). `bump(host, i)` adds to (cpu, mem, latency).
fn batch(
    first: i64,
    n: usize,
    hosts: &[&str],
    bump: impl Fn(&str, usize) -> (f64, f64, f64),
) -> Batch {
    let mut b = Rows::new(0, first).schema(&[
        ("cpu", FieldType::F64),
        ("mem", FieldType::F64),
        ("lat", FieldType::F64),
        ("host", FieldType::Str),
    ]);
    let mut off = first;
    for i in 0..n {
        for (h, host) in hosts.iter().enumerate() {
            let t = (first as u64) + off as u64 + h as u64;
            let cpu = 50.0 + 2.0 * noise(t, 1);
            let (dc, dm, dl) = bump(host, i);
            let row = json!({
                "cpu": cpu + dc,
                "mem": 0.5 * cpu + 10.0 + 0.5 * noise(t, 2) + dm,
                "lat": 20.0 + noise(t, 3) + dl,
                "host": host,
            });
            b = b.keyed_row(off, host, row);
            off += 1;
        }
    }
    b.build()
}

fn cfg() -> Value {
    json!({"fields": ["cpu", "mem", "lat"], "key": "host"})
}

fn opened(alerts: &[Alert]) -> Vec<&Alert> {
    alerts
        .iter()
        .filter(|a| a.get_field("incident") == Some("\"opened\""))
        .collect()
}

fn field(a: &Alert, name: &str) -> Value {
    serde_json::from_str(a.get_field(name).unwrap()).unwrap()
}

#[test]
fn a_spike_in_one_column_of_one_host_is_one_incident_attributed_to_it() {
    // 1000 rows per host; host b's latency jumps by 15 std for rows 700..710.
    let b = batch(0, 1000, &["a", "b"], |h, i| {
        if h == "b" && (700..710).contains(&i) {
            (0.0, 0.0, 15.0)
        } else {
            (0.0, 0.0, 0.0)
        }
    });
    let alerts = run::<Rcf>(cfg(), &[b]).unwrap();
    let open = opened(&alerts);
    assert_eq!(open.len(), 1, "{alerts:#?}");
    let a = open[0];
    // Row 700 of host b is record 2 * 700 + 1.
    assert_eq!(a.source_offset(), 1401);
    assert_eq!(a.get_key(), Some(&b"b"[..]));
    assert_eq!(field(a, "field"), "lat");
    assert_eq!(field(a, "direction"), "above");
    let expected = field(a, "expected").as_f64().unwrap();
    let hi = field(a, "expected_high").as_f64().unwrap();
    assert!((expected - 20.0).abs() < 1.0, "{expected}");
    assert!(hi > expected && hi < 35.0, "{hi}");
    assert!(field(a, "deviation").as_f64().unwrap() > 5.0);
    let attr = field(a, "attribution");
    assert_eq!(attr[0]["field"], "lat");
    assert!(attr[0]["share"].as_f64().unwrap() > 0.5, "{attr}");
    assert!(
        a.get_message().unwrap().contains("lat 3"),
        "{:?}",
        a.get_message()
    );
    assert!(a.get_severity() >= Severity::Medium);
    assert_eq!(field(a, "keys_tracked"), 2);
    assert_eq!(field(a, "keys_evicted"), 0);
    // The incident is closed by a notice with its start and end.
    let closed: Vec<&Alert> = alerts
        .iter()
        .filter(|a| a.get_field("incident") == Some("\"closed\""))
        .collect();
    assert_eq!(closed.len(), 1, "{alerts:#?}");
    let c = closed[0];
    assert_eq!(c.get_severity(), Severity::Info);
    assert_eq!(field(c, "incident_start"), 1401);
    let end = field(c, "incident_end").as_i64().unwrap();
    assert!((1401..=1430).contains(&end), "{end}");
    assert_eq!(c.get_key(), Some(&b"b"[..]));
}

#[test]
fn a_broken_correlation_is_found() {
    // mem normally follows cpu; for rows 800..806 of one host cpu is up
    // 2.5 std and mem down about 2.2 std of its own (each shift alone
    // within the expected range of ±3 std; with the noise the flagged row
    // may be outside it), the pair 10 std off the line mem = cpu / 2 + 10.
    // A weaker break (cpu +1.5 std, mem -2.7 std) is not flagged at the
    // default threshold: axis-parallel cuts isolate diagonal outliers late.
    let b = batch(0, 1000, &["a"], |_, i| {
        if (800..806).contains(&i) {
            (5.0, -2.5, 0.0)
        } else {
            (0.0, 0.0, 0.0)
        }
    });
    let alerts = run::<Rcf>(cfg(), &[b]).unwrap();
    let open = opened(&alerts);
    assert_eq!(open.len(), 1, "{alerts:#?}");
    assert!((800..806).contains(&open[0].source_offset()));
    let top = field(open[0], "field");
    assert!(top == "mem" || top == "cpu", "{top}");
}

#[test]
fn quiet_series_raise_nothing_and_state_round_trips() {
    let b1 = batch(0, 600, &["a", "b"], |_, _| (0.0, 0.0, 0.0));
    let b2 = batch(1200, 600, &["a", "b"], |_, _| (0.0, 0.0, 0.0));
    let mut d = new_detector::<Rcf>(cfg()).unwrap();
    let mut alerts = process_all(&mut d, std::slice::from_ref(&b1)).unwrap();
    // Restored after b1, a fresh instance continues exactly as the original.
    let mut back = snapshot_round_trip::<Rcf>(cfg(), &d).unwrap();
    let rest = process_all(&mut d, std::slice::from_ref(&b2)).unwrap();
    assert_eq!(process_all(&mut back, &[b2]).unwrap(), rest);
    alerts.extend(rest);
    assert!(opened(&alerts).is_empty(), "{alerts:#?}");
}

#[test]
fn keys_are_bounded_and_evictions_are_reported() {
    let hosts: Vec<String> = (0..6).map(|i| format!("h{i}")).collect();
    let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let mut c = cfg();
    c["max_keys"] = json!(4);
    c["trees"] = json!(11);
    c["sample_size"] = json!(64);
    c["warmup"] = json!(80);
    // Rows 300.. of h5 spike; 6 hosts round-robin through 4 models, so
    // every model is evicted before it warms up — except when keys fit.
    let spike = |h: &str, i: usize| {
        if h == "h5" && i == 300 {
            (40.0, 0.0, 0.0)
        } else {
            (0.0, 0.0, 0.0)
        }
    };
    let alerts = run::<Rcf>(c.clone(), &[batch(0, 400, &names, spike)]).unwrap();
    assert!(opened(&alerts).is_empty(), "evicted models never warm up");
    c["max_keys"] = json!(6);
    let alerts = run::<Rcf>(c, &[batch(0, 400, &names, spike)]).unwrap();
    let open = opened(&alerts);
    assert!(
        open.iter().any(|a| a.get_key() == Some(&b"h5"[..])),
        "{alerts:#?}"
    );
    assert_eq!(field(open[0], "keys_evicted"), 0);
    assert_eq!(field(open[0], "keys_tracked"), 6);
}

#[test]
fn score_stream_marks_the_alerting_record() {
    let b = batch(0, 1000, &["a"], |_, i| {
        if i == 700 {
            (0.0, 0.0, 20.0)
        } else {
            (0.0, 0.0, 0.0)
        }
    });
    let mut c = cfg();
    c["scores"] = json!(true);
    let recs = run::<Rcf>(c, &[b]).unwrap();
    let alerting: Vec<i64> = recs
        .iter()
        .filter(|a| a.get_field("alert") == Some("true"))
        .map(Alert::source_offset)
        .collect();
    assert_eq!(alerting, vec![700]);
    assert!(recs
        .iter()
        .all(|a| a.get_field("stream") == Some("\"score\"")));
    let at = recs.iter().find(|a| a.source_offset() == 700).unwrap();
    assert!(at.get_score() >= 1.0);
}

#[test]
fn bad_configs_are_refused_with_the_field_named() {
    for (c, needle) in [
        (json!({}), "`fields`"),
        (json!({"fields": ["a"], "shingle": 0}), "`shingle`"),
        (json!({"fields": ["a"], "threshold": -1}), "`threshold`"),
        (
            json!({"fields": ["a"], "trees": 500, "sample_size": 8192, "shingle": 64}),
            "too big",
        ),
        (json!({"fields": ["a"], "nope": 1}), "nope"),
    ] {
        let e = vigil_sdk::testing::new_detector::<Rcf>(c.clone())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(needle), "{c}: {e}");
    }
    // A missing column is named at process time.
    let b = Rows::new(0, 0)
        .schema(&[("cpu", FieldType::F64)])
        .row(0, None, json!({"cpu": 1.0}))
        .build();
    let e = run::<Rcf>(json!({"fields": ["cpu", "gpu"]}), &[b])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("gpu"), "{e}");
}

#[test]
fn extreme_values_and_constant_columns_do_not_break_the_forest() {
    // A constant column that then jumps to 1e300, and ±1e308 values: the
    // scaled coordinates are clamped, so cuts stay finite and nothing panics.
    let mut b = Rows::new(0, 0).schema(&[("a", FieldType::F64), ("b", FieldType::F64)]);
    for i in 0..1500i64 {
        let a = match i {
            1000 => 1e300,
            1200 => -1e308,
            _ => 5.0,
        };
        b = b.row(i, None, json!({"a": a, "b": (i % 7) as f64}));
    }
    let mut c = json!({"fields": ["a", "b"], "sample_size": 64, "trees": 9, "warmup": 100});
    let alerts = run::<Rcf>(c.clone(), &[b.build()]).unwrap();
    let open = opened(&alerts);
    assert!(
        open.iter().any(|a| a.source_offset() == 1000),
        "{alerts:#?}"
    );
    assert_eq!(field(open[0], "field"), "a");
    c["shingle"] = json!(3);
    let mut b = Rows::new(0, 0).schema(&[("a", FieldType::F64), ("b", FieldType::F64)]);
    for i in 0..300i64 {
        let a = if i % 2 == 0 { f64::MAX } else { -f64::MAX };
        b = b.row(i, None, json!({"a": a, "b": 1.0}));
    }
    run::<Rcf>(c, &[b.build()]).unwrap();
}
