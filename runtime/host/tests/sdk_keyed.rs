//! Per-key models and the multivariate `rcf` plugin through the real host,
//! as modules built from the SDK (`scripts/build-detectors.sh`; a missing
//! module fails the test, as in `sdk_modules.rs`).

use crate::common;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::Compression;
use serde_json::{json, Value};
use vigil_abi::Alert;
use vigil_host::{build_batch, Limits, ValueSchema};
use vigil_protocol::batch::{set_base_offset, BatchBuilder};

fn module(name: &str) -> Vec<u8> {
    vigil_host::read_built_module(name).unwrap_or_else(|e| panic!("{e}"))
}

/// One wire batch of `(key, JSON value)` records from offset `base`.
fn wire(rows: &[(String, Value)], base: i64) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for (i, (k, v)) in rows.iter().enumerate() {
        b = b.record(
            i as i64,
            Some(Bytes::from(k.clone())),
            Some(Bytes::from(v.to_string())),
        );
    }
    let mut w = BytesMut::from(&b.build().unwrap()[..]);
    set_base_offset(&mut w, base);
    w.freeze()
}

fn field(a: &Alert, name: &str) -> Value {
    let text = a
        .fields
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no field {name} in {a:?}"))
        .1
        .as_str();
    serde_json::from_str(text).unwrap()
}

#[test]
fn zscore_keeps_one_model_per_host_within_max_keys_and_reports_evictions() {
    let m = common::host().load(&module("vigil_plugin_zscore")).unwrap();
    let schema = ValueSchema::from_json(&json!({"v": "float64", "host": "string"})).unwrap();
    let mut rows = Vec::new();
    for i in 0..60 {
        for (h, level) in [("a", 10.0), ("b", 100.0)] {
            rows.push((
                h.to_string(),
                json!({"v": level + (i % 5) as f64, "host": h}),
            ));
        }
    }
    // A third host arrives: with max_keys 2, the least recently used
    // model (a's) is evicted.
    rows.push(("c".into(), json!({"v": 5.0, "host": "c"})));
    // b kept its model: an outlier alerts, with b's expected range.
    rows.push(("b".into(), json!({"v": 1e6, "host": "b"})));
    // a's model is gone: the same outlier is its first sample, no alert
    // (and a's new model evicts c's, the least recently used).
    rows.push(("a".into(), json!({"v": 1e6, "host": "a"})));
    let built = build_batch(0, &wire(&rows, 0), 0, Some(&schema)).unwrap();
    let config = json!({"field": "v", "key": "host", "max_keys": 2}).to_string();
    let mut inst = m
        .instantiate(&Limits::default(), &config, "sdk/zscore-keyed")
        .unwrap();
    let alerts = inst.process(&built.batch).unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(a.source_offset, 121);
    assert_eq!(a.key.as_deref(), Some(&b"b"[..]));
    assert_eq!(field(a, "keys_tracked"), 2);
    assert_eq!(field(a, "keys_evicted"), 1);
    let expected = field(a, "expected").as_f64().unwrap();
    let (lo, hi) = (
        field(a, "expected_low").as_f64().unwrap(),
        field(a, "expected_high").as_f64().unwrap(),
    );
    assert!((expected - 102.0).abs() < 0.5, "{expected}");
    assert!(lo < 100.0 && hi > 104.0 && hi < 110.0, "{lo}..{hi}");
    // The eviction count (2 by now) is part of the snapshot.
    let state = inst.snapshot().unwrap().unwrap();
    let mut again = m
        .instantiate(&Limits::default(), &config, "sdk/zscore-keyed-2")
        .unwrap();
    assert!(again.restore(&state).unwrap());
    let more = vec![("b".to_string(), json!({"v": -1e6, "host": "b"}))];
    let built = build_batch(0, &wire(&more, 200), 200, Some(&schema)).unwrap();
    let alerts = again.process(&built.batch).unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(field(&alerts[0], "keys_evicted"), 2);
}

/// SplitMix64 → standard normal (Box-Muller), so the data is the same
/// on every run.
struct Gauss(u64);

impl Gauss {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn next(&mut self) -> f64 {
        let (u, v) = (1.0 - self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

#[test]
fn rcf_attributes_a_multivariate_anomaly_to_its_column_in_wasm() {
    let m = common::host().load(&module("vigil_plugin_rcf")).unwrap();
    let schema = ValueSchema::from_json(
        &json!({"cpu": "float64", "mem": "float64", "lat": "float64", "host": "string"}),
    )
    .unwrap();
    let mut g = Gauss(42);
    let mut rows = Vec::new();
    for i in 0..1000 {
        for h in ["a", "b"] {
            let cpu = 50.0 + 2.0 * g.next();
            let spike = if h == "b" && (700..710).contains(&i) {
                15.0
            } else {
                0.0
            };
            rows.push((
                h.to_string(),
                json!({"cpu": cpu, "mem": 0.5 * cpu + 10.0 + 0.5 * g.next(),
                       "lat": 20.0 + g.next() + spike, "host": h}),
            ));
        }
    }
    let config = json!({"fields": ["cpu", "mem", "lat"], "key": "host"}).to_string();
    let mut inst = m
        .instantiate(&Limits::default(), &config, "sdk/rcf")
        .unwrap();
    // Two batches with a snapshot/restore into a fresh instance between.
    let first = build_batch(0, &wire(&rows[..1000], 0), 0, Some(&schema)).unwrap();
    let mut alerts = inst.process(&first.batch).unwrap();
    let state = inst.snapshot().unwrap().expect("rcf snapshots");
    let mut inst = m
        .instantiate(&Limits::default(), &config, "sdk/rcf-2")
        .unwrap();
    assert!(inst.restore(&state).unwrap());
    let second = build_batch(0, &wire(&rows[1000..], 1000), 1000, Some(&schema)).unwrap();
    alerts.extend(inst.process(&second.batch).unwrap());

    let opened: Vec<&Alert> = alerts
        .iter()
        .filter(|a| field(a, "incident") == "opened")
        .collect();
    assert_eq!(opened.len(), 1, "{alerts:#?}");
    let a = opened[0];
    // Row 700 of host b.
    assert_eq!(a.source_offset, 1401);
    assert_eq!(a.key.as_deref(), Some(&b"b"[..]));
    assert_eq!(field(a, "field"), "lat");
    assert_eq!(field(a, "direction"), "above");
    let attribution = field(a, "attribution");
    assert_eq!(attribution[0]["field"], "lat");
    assert!(
        attribution[0]["share"].as_f64().unwrap() > 0.5,
        "{attribution}"
    );
    assert!(attribution[0]["expected_high"].as_f64().unwrap() < 30.0);
    let message = String::from_utf8(a.value.clone().unwrap()).unwrap();
    assert!(
        message.contains("lat") && message.contains("above expected"),
        "{message}"
    );
    let closed: Vec<&Alert> = alerts
        .iter()
        .filter(|a| field(a, "incident") == "closed")
        .collect();
    assert_eq!(closed.len(), 1, "{alerts:#?}");
    assert_eq!(field(closed[0], "incident_start"), 1401);
}
