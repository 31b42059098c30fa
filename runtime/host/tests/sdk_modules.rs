//! The host against real SDK-built modules
//! (`$VIGIL_WASM_DIR` or `target/wasm/wasm32-unknown-unknown/release/*.wasm`,
//! built by `scripts/build-detectors.sh`, which `scripts/test-all.sh` runs
//! before the tests). A missing module fails the test: skipping would hide
//! that the real modules were never exercised.

use crate::common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::Compression;
use serde_json::json;
use vigil_host::{build_batch, GuestError, Limits, ValueSchema};
use vigil_protocol::batch::{set_base_offset, BatchBuilder};

fn module(name: &str) -> Option<Vec<u8>> {
    Some(vigil_host::read_built_module(name).unwrap_or_else(|e| panic!("{e}")))
}

fn records(n: usize, base: i64) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..n {
        let v =
            json!({"amount": if i == n - 1 { 1e6 } else { 10.0 + (i % 5) as f64 }, "card": "c1"});
        b = b.record(
            i as i64,
            Some(Bytes::from("c1")),
            Some(Bytes::from(v.to_string())),
        );
    }
    let mut w = BytesMut::from(&b.build().unwrap()[..]);
    set_base_offset(&mut w, base);
    w.freeze()
}

#[test]
fn hostile_module_limits() {
    let Some(wasm) = module("vigil_test_hostile") else {
        return;
    };
    let m = common::host().load(&wasm).unwrap();
    assert_eq!(m.abi_version, 1);
    let built = build_batch(0, &records(10, 500), 0, None).unwrap();
    let limits = Limits {
        memory_bytes: 32 << 20,
        cpu_per_batch: Duration::from_millis(100),
        max_alerts_per_batch: 1000,
    };
    let run = |mode: &str| {
        let mut inst = m
            .instantiate(&limits, &json!({ "mode": mode }).to_string(), "sdk/hostile")
            .unwrap();
        inst.process(&built.batch)
    };
    let ok = run("ok").unwrap();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].source_offset, 500);
    assert!(
        matches!(run("trap"), Err(GuestError::Trap { message }) if message.contains("deliberate panic"))
    );
    assert!(matches!(run("loop"), Err(GuestError::CpuBudget { .. })));
    assert!(matches!(run("memory"), Err(GuestError::MemoryLimit { .. })));
    // A Rust guest overflows its shadow stack (in linear memory) first.
    assert!(matches!(run("recursion"), Err(GuestError::StackOverflow)));
    assert!(matches!(
        run("flood"),
        Err(GuestError::AlertLimit { limit: 1000 })
    ));
    assert!(matches!(run("error"), Err(GuestError::Detector(m)) if m.contains("detector error")));
    let bad = m
        .instantiate(&limits, r#"{"mode":"nope"}"#, "sdk/hostile")
        .err()
        .unwrap();
    assert!(matches!(bad, GuestError::Detector(_)), "{bad:?}");
}

#[test]
fn zscore_plugin_runs_on_built_batches() {
    let Some(wasm) = module("vigil_plugin_zscore") else {
        return;
    };
    let m = common::host().load(&wasm).unwrap();
    let schema = ValueSchema::from_json(&json!({"amount": "float64", "card": "string"})).unwrap();
    let built = build_batch(0, &records(200, 1000), 0, Some(&schema)).unwrap();
    let config = r#"{"field": "amount"}"#;
    let mut inst = m
        .instantiate(&Limits::default(), config, "sdk/zscore")
        .unwrap();
    let alerts = inst.process(&built.batch).unwrap();
    // Only the last record (1e6 among values 10..14) is an outlier.
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].source_offset, 1199);
    assert!(alerts[0].fields.iter().any(|(k, _)| k == "z"));
    // State survives a snapshot/restore into a fresh instance.
    let state = inst.snapshot().unwrap().expect("zscore snapshots");
    let mut again = m
        .instantiate(&Limits::default(), config, "sdk/zscore-2")
        .unwrap();
    assert!(again.restore(&state).unwrap());
    assert_eq!(again.snapshot().unwrap().unwrap(), state);
    // A config the plugin refuses is the detector's error, not the host's.
    let e = m
        .instantiate(&Limits::default(), "{}", "sdk/zscore-3")
        .err()
        .unwrap();
    assert!(matches!(e, GuestError::Detector(_)), "{e:?}");
}
