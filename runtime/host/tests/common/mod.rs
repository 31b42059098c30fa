//! WAT test detectors and a shared host.

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use arrow_array::{Float64Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use vigil_abi::{encode_alerts, Alert, Severity};
use vigil_host::{Host, HostConfig};

/// One host for most tests (one engine, like the broker). Its cache lives
/// in a temp dir that is leaked on purpose (the process ends right after).
pub fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        Host::new(HostConfig {
            cache_dir: dir,
            max_instances: 64,
            max_memory_bytes: 256 << 20,
            ..HostConfig::default()
        })
        .unwrap()
    })
}

/// Offsets of the test batch.
pub const OFFSETS: [i64; 3] = [100, 101, 102];

/// A batch with `_offset` 100..=102 and one typed column.
pub fn batch() -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("_offset", DataType::Int64, false),
            Field::new("amount", DataType::Float64, true),
        ])),
        vec![
            Arc::new(Int64Array::from(OFFSETS.to_vec())),
            Arc::new(Float64Array::from(vec![Some(1.0), None, Some(3.5)])),
        ],
    )
    .unwrap()
}

fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

fn alert_bytes(offset: i64) -> Vec<u8> {
    let mut out = Vec::new();
    encode_alerts(
        &[Alert {
            source_offset: offset,
            severity: Severity::High,
            score: 0.0,
            key: Some(b"card-7".to_vec()),
            value: None,
            fields: vec![("z".into(), "4.5".into())],
        }],
        &mut out,
    )
    .unwrap();
    out
}

/// Knobs for the generated module.
pub struct Wat {
    pub abi: i32,
    pub extra_imports: &'static str,
}

impl Default for Wat {
    fn default() -> Self {
        Wat {
            abi: 1,
            extra_imports: "",
        }
    }
}

/// A detector in WAT whose behaviour in `vigil_process` is picked by the
/// config: a JSON string whose first character is the mode.
///
/// - `n` normal: checks the batch magic, counts batches, emits one alert for
///   offset 101 with score = batches seen
/// - `l` infinite loop; `m` grows memory until refused, then traps;
///   `r` unbounded recursion; `f` emits alerts until refused (-1), then traps
///   like the SDK; `p` sets a panic message and traps; `o` passes an
///   out-of-bounds pointer to emit_alerts; `x` emits an alert for offset 5;
///   `e` reports a detector error; `g` logs 1000 lines then acts normal;
///   `b` returns an unknown status; `u` cannot snapshot/restore; `s` stores
///   just below 4 GiB (what a Rust shadow-stack overflow does); `w` stores
///   out of bounds at 256 MiB
/// - config `"!"` makes `vigil_init` fail with "bad config"
pub fn wat(w: &Wat) -> String {
    let ok = alert_bytes(101);
    let out = alert_bytes(5);
    format!(
        r#"(module
  (import "vigil" "log" (func $log (param i32 i32 i32)))
  (import "vigil" "emit_alerts" (func $emit (param i32 i32) (result i32)))
  (import "vigil" "set_error" (func $set_error (param i32 i32)))
  (import "vigil" "emit_state" (func $emit_state (param i32 i32)))
  {extra_imports}
  (memory (export "memory") 2)
  (global $mode (mut i32) (i32.const 110))
  (global $count (mut i32) (i32.const 0))
  (data (i32.const 16) "{ok}")
  (data (i32.const 4096) "{out}")
  (data (i32.const 8192) "panicked at src/lib.rs:7:5: boom")
  (data (i32.const 8256) "bad config")
  (data (i32.const 8272) "bad batch")
  (data (i32.const 8288) "hello from the guest")
  (func (export "vigil_abi_version") (result i32) (i32.const {abi}))
  (func (export "vigil_sdk_version") (result i32) (i32.const 0x000102))
  (func (export "vigil_input") (param $len i32) (result i32)
    (local $need i32)
    (local.set $need (i32.shr_u (i32.add (i32.add (local.get $len) (i32.const 65536)) (i32.const 65535)) (i32.const 16)))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then (if (i32.eq (memory.grow (i32.sub (local.get $need) (memory.size))) (i32.const -1)) (then unreachable))))
    (i32.const 65536))
  (func (export "vigil_init") (param $len i32) (result i32)
    (global.set $mode (i32.load8_u (i32.const 65537)))
    (if (i32.eq (global.get $mode) (i32.const 33))
      (then (call $set_error (i32.const 8256) (i32.const 10)) (return (i32.const 1))))
    (call $log (i32.const 2) (i32.const 8288) (i32.const 20))
    (i32.const 0))
  (func $rec (param i32) (result i32)
    (i32.add (call $rec (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func (export "vigil_process") (param $len i32) (result i32)
    (local $i i32)
    (if (i32.ne (i32.load (i32.const 65536)) (i32.const 0x31424756))
      (then (call $set_error (i32.const 8272) (i32.const 9)) (return (i32.const 1))))
    (if (i32.eq (global.get $mode) (i32.const 108)) (then (loop $l (br $l))))
    (if (i32.eq (global.get $mode) (i32.const 109))
      (then (loop $l
        (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then unreachable))
        (br $l))))
    (if (i32.eq (global.get $mode) (i32.const 114)) (then (drop (call $rec (i32.const 0)))))
    (if (i32.eq (global.get $mode) (i32.const 102))
      (then (loop $l
        (if (i32.eq (call $emit (i32.const 16) (i32.const {ok_len})) (i32.const -1)) (then unreachable))
        (br $l))))
    (if (i32.eq (global.get $mode) (i32.const 112))
      (then (call $set_error (i32.const 8192) (i32.const 32)) unreachable))
    (if (i32.eq (global.get $mode) (i32.const 111))
      (then (drop (call $emit (i32.const 0x7fff0000) (i32.const 100)))))
    (if (i32.eq (global.get $mode) (i32.const 120))
      (then (drop (call $emit (i32.const 4096) (i32.const {out_len}))) (return (i32.const 0))))
    (if (i32.eq (global.get $mode) (i32.const 101))
      (then (call $set_error (i32.const 8272) (i32.const 9)) (return (i32.const 1))))
    (if (i32.eq (global.get $mode) (i32.const 98)) (then (return (i32.const 7))))
    (if (i32.eq (global.get $mode) (i32.const 115))
      (then (i32.store (i32.const 0xFFFFFF00) (i32.const 1))))
    (if (i32.eq (global.get $mode) (i32.const 119))
      (then (i32.store (i32.const 0x10000000) (i32.const 1))))
    (if (i32.eq (global.get $mode) (i32.const 103))
      (then (loop $l
        (call $log (i32.const 2) (i32.const 8288) (i32.const 20))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const 1000))))))
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (f64.store (i32.const 29) (f64.convert_i32_u (global.get $count)))
    (drop (call $emit (i32.const 16) (i32.const {ok_len})))
    (i32.const 0))
  (func (export "vigil_snapshot") (result i32)
    (if (i32.eq (global.get $mode) (i32.const 117)) (then (return (i32.const 2))))
    (i32.store (i32.const 8400) (global.get $count))
    (call $emit_state (i32.const 8400) (i32.const 4))
    (i32.const 0))
  (func (export "vigil_restore") (param $len i32) (result i32)
    (if (i32.eq (global.get $mode) (i32.const 117)) (then (return (i32.const 2))))
    (if (i32.ne (local.get $len) (i32.const 4))
      (then (call $set_error (i32.const 8256) (i32.const 10)) (return (i32.const 1))))
    (global.set $count (i32.load (i32.const 65536)))
    (i32.const 0))
)"#,
        extra_imports = w.extra_imports,
        ok = escape(&ok),
        out = escape(&out),
        ok_len = ok.len(),
        out_len = out.len(),
        abi = w.abi,
    )
}

/// The default detector as wasm bytes.
pub fn detector() -> Vec<u8> {
    wat::parse_str(wat(&Wat::default())).unwrap()
}

/// `detector()` with a text substitution (for the refusal tests).
pub fn detector_with(from: &str, to: &str) -> Vec<u8> {
    let text = wat(&Wat::default());
    assert!(text.contains(from), "template lacks {from:?}");
    wat::parse_str(text.replace(from, to)).unwrap()
}

/// The config JSON that selects `mode`.
pub fn mode(m: char) -> String {
    format!("\"{m}\"")
}
