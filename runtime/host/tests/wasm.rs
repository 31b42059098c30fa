//! The wasm host against WAT detectors: load-time validation, the
//! process path, every limit, snapshot/restore and the compiled cache.

use crate::common;

use std::time::Duration;

use common::{batch, detector, detector_with, host, mode, Wat};
use vigil_host::{GuestError, Host, HostConfig, Limits, MemoryLayout, ModuleError, Severity};

fn limits() -> Limits {
    Limits::default()
}

#[test]
fn valid_module_loads_and_processes_a_batch() {
    let wasm = detector();
    let m = host().load(&wasm).unwrap();
    assert_eq!(m.hash, Host::hash(&wasm));
    assert_eq!(m.hash.len(), 64);
    assert_eq!(m.abi_version, 1);
    assert_eq!(m.sdk_version, "0.1.2");
    assert_eq!(m.size, wasm.len());
    // A second load of the same bytes is the same module, not a recompile.
    assert!(std::sync::Arc::ptr_eq(&m, &host().load(&wasm).unwrap()));

    let mut inst = m.instantiate(&limits(), &mode('n'), "test/valid").unwrap();
    let alerts = inst.process(&batch()).unwrap();
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(a.source_offset, 101);
    assert_eq!(a.severity, Severity::High);
    assert_eq!(a.key.as_deref(), Some(&b"card-7"[..]));
    assert_eq!(a.fields, vec![("z".to_string(), "4.5".to_string())]);
    assert_eq!(a.score, 1.0);
    assert_eq!(inst.process(&batch()).unwrap()[0].score, 2.0);
    assert!(inst.memory_bytes() >= 2 * 65536);
    assert_eq!(inst.label(), "test/valid");
}

#[test]
fn sliced_batches_are_normalized() {
    let m = host().load(&detector()).unwrap();
    let mut inst = m.instantiate(&limits(), &mode('n'), "test/slice").unwrap();
    // Offsets 101..=102: the alert for 101 is inside.
    let alerts = inst.process(&batch().slice(1, 2)).unwrap();
    assert_eq!(alerts[0].source_offset, 101);
    // Offsets 102..=102: the alert for 101 is outside.
    let e = inst.process(&batch().slice(2, 1)).unwrap_err();
    assert!(
        e.to_string()
            .contains("alert for offset 101 outside batch 102..102"),
        "{e}"
    );
}

#[test]
fn abi_mismatch_names_both_versions_and_what_to_upgrade() {
    // A future module that also imports a host function this host lacks:
    // the version, not the import, is what the user must hear about.
    let newer = wat::parse_str(common::wat(&Wat {
        abi: 2,
        extra_imports: r#"(import "vigil" "emit_metric" (func (param i32 i32)))"#,
    }))
    .unwrap();
    let e = host().load(&newer).unwrap_err();
    assert!(
        matches!(e, ModuleError::AbiMismatch { module: 2, host: 1 }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("v2") && msg.contains("v1") && msg.contains("upgrade the broker"),
        "{msg}"
    );

    let older = wat::parse_str(common::wat(&Wat {
        abi: 0,
        ..Wat::default()
    }))
    .unwrap();
    let msg = host().load(&older).unwrap_err().to_string();
    assert!(
        msg.contains("v0") && msg.contains("rebuild the module with vigil-sdk >="),
        "{msg}"
    );
}

#[test]
fn missing_export_is_refused() {
    let wasm = detector_with(r#"(export "vigil_restore")"#, "");
    match host().load(&wasm).unwrap_err() {
        ModuleError::MissingExport { name, expected_sig } => {
            assert_eq!(name, "vigil_restore");
            assert_eq!(expected_sig, "func(i32) -> i32");
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn wrong_signature_is_refused() {
    let wasm = detector_with(
        r#"(func (export "vigil_process") (param $len i32)"#,
        r#"(func (export "vigil_process") (param $len i64)"#,
    );
    let e = host().load(&wasm).unwrap_err();
    assert!(
        matches!(&e, ModuleError::WrongSignature { name, .. } if name == "vigil_process"),
        "{e:?}"
    );
    assert!(e.to_string().contains("func(i64) -> i32"), "{e}");
}

#[test]
fn wrong_host_import_signature_is_refused() {
    let wasm = detector_with(
        "(memory (export \"memory\") 2)",
        "(import \"vigil\" \"emit_state\" (func (param i64)))\n  (memory (export \"memory\") 2)",
    );
    let e = host().load(&wasm).unwrap_err();
    assert!(
        matches!(&e, ModuleError::ImportSignature { name, .. } if name == "emit_state"),
        "{e:?}"
    );
}

#[test]
fn wasi_import_is_refused() {
    let wasm = wat::parse_str(common::wat(&Wat {
        extra_imports: r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
        ..Wat::default()
    }))
    .unwrap();
    let e = host().load(&wasm).unwrap_err();
    match &e {
        ModuleError::ForbiddenImport { module, name } => {
            assert_eq!(module, "wasi_snapshot_preview1");
            assert_eq!(name, "fd_write");
        }
        e => panic!("{e:?}"),
    }
    assert!(
        e.to_string().contains("wasi_snapshot_preview1::fd_write"),
        "{e}"
    );
    assert!(e.to_string().contains("only `vigil` host functions"), "{e}");
}

#[test]
fn not_wasm_is_refused() {
    let e = host().load(b"definitely not wasm").unwrap_err();
    assert!(matches!(e, ModuleError::Invalid(_)), "{e:?}");
    assert!(e.to_string().contains("not a WebAssembly binary"), "{e}");
    // Right magic, broken body: the compiler's message is passed on.
    let e = host().load(b"\0asm\x01\0\0\0\x01\x05garbage").unwrap_err();
    assert!(matches!(e, ModuleError::Invalid(_)), "{e:?}");
}

#[test]
fn init_error_is_a_detector_error() {
    let m = host().load(&detector()).unwrap();
    let e = m
        .instantiate(&limits(), &mode('!'), "test/init")
        .err()
        .unwrap();
    assert!(
        matches!(&e, GuestError::Detector(msg) if msg == "bad config"),
        "{e:?}"
    );
}

#[test]
fn detector_error_keeps_the_instance() {
    let m = host().load(&detector()).unwrap();
    let mut inst = m.instantiate(&limits(), &mode('e'), "test/err").unwrap();
    for _ in 0..2 {
        let e = inst.process(&batch()).unwrap_err();
        assert!(
            matches!(&e, GuestError::Detector(m) if m == "bad batch"),
            "{e:?}"
        );
        assert!(!e.poisons_instance());
    }
    assert!(!inst.is_poisoned());
}

#[test]
fn infinite_loop_hits_the_cpu_budget_and_other_instances_keep_working() {
    let m = host().load(&detector()).unwrap();
    let l = Limits {
        cpu_per_batch: Duration::from_millis(50),
        ..limits()
    };
    let mut looping = m.instantiate(&l, &mode('l'), "test/loop").unwrap();
    let e = looping.process(&batch()).unwrap_err();
    assert!(
        matches!(e, GuestError::CpuBudget { budget } if budget == Duration::from_millis(50)),
        "{e:?}"
    );
    assert_eq!(e.cause(), "cpu");
    assert!(e.poisons_instance());
    // Poisoned: no further calls.
    let again = looping.process(&batch()).unwrap_err();
    assert!(again.to_string().contains("re-instantiate"), "{again}");

    let mut fine = m.instantiate(&l, &mode('n'), "test/fine").unwrap();
    assert_eq!(fine.process(&batch()).unwrap().len(), 1);
}

#[test]
fn memory_growth_beyond_the_cap_is_a_memory_limit() {
    let m = host().load(&detector()).unwrap();
    let l = Limits {
        memory_bytes: 4 << 20,
        ..limits()
    };
    let mut inst = m.instantiate(&l, &mode('m'), "test/mem").unwrap();
    let e = inst.process(&batch()).unwrap_err();
    assert!(
        matches!(e, GuestError::MemoryLimit { limit } if limit == 4 << 20),
        "{e:?}"
    );
    assert!(inst.memory_bytes() <= 4 << 20);
}

#[test]
fn initial_memory_above_the_limit_fails_instantiation() {
    let m = host().load(&detector()).unwrap();
    let l = Limits {
        memory_bytes: 64 << 10, // the module declares two 64 KiB pages
        ..limits()
    };
    let e = m.instantiate(&l, &mode('n'), "test/small").err().unwrap();
    assert!(
        matches!(e, GuestError::MemoryLimit { limit } if limit == 64 << 10),
        "{e:?}"
    );
}

#[test]
fn a_full_pool_is_a_host_error_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let h = Host::new(HostConfig {
        cache_dir: dir.path().to_path_buf(),
        max_instances: 2,
        max_memory_bytes: 64 << 20,
        ..HostConfig::default()
    })
    .unwrap();
    let m = h.load(&detector()).unwrap();
    let a = m.instantiate(&limits(), &mode('n'), "test/pool-1").unwrap();
    let _b = m.instantiate(&limits(), &mode('n'), "test/pool-2").unwrap();
    if h.memory_layout() != MemoryLayout::OnDemand {
        let e = m
            .instantiate(&limits(), &mode('n'), "test/pool-3")
            .err()
            .unwrap();
        assert!(
            matches!(&e, GuestError::Host(msg) if msg.contains("max_instances")),
            "{e:?}"
        );
        // Loading another module needs a probe slot too.
        let e = h
            .load(&detector_with("bad batch", "bad batch!"))
            .unwrap_err();
        assert!(matches!(e, ModuleError::Host(_)), "{e:?}");
    }
    // A freed slot is reusable.
    drop(a);
    m.instantiate(&limits(), &mode('n'), "test/pool-3").unwrap();
}

#[test]
fn memory_limit_is_capped_by_the_pool_slot() {
    let m = host().load(&detector()).unwrap();
    let l = Limits {
        memory_bytes: u64::MAX,
        ..limits()
    };
    let mut inst = m.instantiate(&l, &mode('m'), "test/mem-cap").unwrap();
    assert_eq!(inst.limits().memory_bytes, host().config().max_memory_bytes);
    let e = inst.process(&batch()).unwrap_err();
    assert!(
        matches!(e, GuestError::MemoryLimit { limit } if limit == host().config().max_memory_bytes),
        "{e:?}"
    );
}

#[test]
fn deep_recursion_is_a_stack_overflow() {
    let m = host().load(&detector()).unwrap();
    let mut inst = m.instantiate(&limits(), &mode('r'), "test/stack").unwrap();
    let e = inst.process(&batch()).unwrap_err();
    assert!(matches!(e, GuestError::StackOverflow), "{e:?}");
    assert_eq!(e.cause(), "stack");
}

#[test]
fn shadow_stack_overflow_is_a_stack_overflow_and_wild_stores_are_traps() {
    let m = host().load(&detector()).unwrap();
    let mut inst = m.instantiate(&limits(), &mode('s'), "test/shadow").unwrap();
    let e = inst.process(&batch()).unwrap_err();
    assert!(matches!(e, GuestError::StackOverflow), "{e:?}");
    let mut inst = m.instantiate(&limits(), &mode('w'), "test/wild").unwrap();
    let e = inst.process(&batch()).unwrap_err();
    match &e {
        GuestError::Trap { message } => {
            assert!(message.contains("out of bounds memory access"), "{message}")
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn alert_flood_hits_the_alert_limit() {
    let m = host().load(&detector()).unwrap();
    let l = Limits {
        max_alerts_per_batch: 50,
        ..limits()
    };
    let mut inst = m.instantiate(&l, &mode('f'), "test/flood").unwrap();
    let e = inst.process(&batch()).unwrap_err();
    assert!(matches!(e, GuestError::AlertLimit { limit: 50 }), "{e:?}");
}

#[test]
fn trap_reports_the_panic_message() {
    let m = host().load(&detector()).unwrap();
    let mut inst = m.instantiate(&limits(), &mode('p'), "test/panic").unwrap();
    let e = inst.process(&batch()).unwrap_err();
    match &e {
        GuestError::Trap { message } => assert!(message.contains("boom"), "{message}"),
        e => panic!("{e:?}"),
    }
    assert_eq!(e.cause(), "trap");
}

#[test]
fn out_of_bounds_pointer_is_an_error_not_a_panic() {
    let m = host().load(&detector()).unwrap();
    let mut inst = m.instantiate(&limits(), &mode('o'), "test/oob").unwrap();
    let e = inst.process(&batch()).unwrap_err();
    match &e {
        GuestError::Trap { message } => {
            assert!(
                message.contains("emit_alerts") && message.contains("outside guest memory"),
                "{message}"
            )
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn alert_outside_the_batch_is_an_abi_violation() {
    let m = host().load(&detector()).unwrap();
    let mut inst = m
        .instantiate(&limits(), &mode('x'), "test/outside")
        .unwrap();
    let e = inst.process(&batch()).unwrap_err();
    assert_eq!(e.cause(), "abi");
    assert!(
        e.to_string()
            .contains("alert for offset 5 outside batch 100..102"),
        "{e}"
    );
}

#[test]
fn unknown_status_is_an_abi_violation() {
    let m = host().load(&detector()).unwrap();
    let mut inst = m.instantiate(&limits(), &mode('b'), "test/status").unwrap();
    let e = inst.process(&batch()).unwrap_err();
    assert!(
        matches!(&e, GuestError::AbiViolation(m) if m.contains("status 7")),
        "{e:?}"
    );
}

#[test]
fn log_flood_is_bounded_and_harmless() {
    let m = host().load(&detector()).unwrap();
    let mut inst = m.instantiate(&limits(), &mode('g'), "test/log").unwrap();
    assert_eq!(inst.process(&batch()).unwrap().len(), 1);
}

#[test]
fn snapshot_restore_round_trip() {
    let m = host().load(&detector()).unwrap();
    let mut a = m.instantiate(&limits(), &mode('n'), "test/snap-a").unwrap();
    a.process(&batch()).unwrap();
    a.process(&batch()).unwrap();
    let state = a.snapshot().unwrap().expect("supports snapshots");
    assert_eq!(state, 2u32.to_le_bytes());

    let mut b = m.instantiate(&limits(), &mode('n'), "test/snap-b").unwrap();
    assert!(b.restore(&state).unwrap());
    assert_eq!(b.process(&batch()).unwrap()[0].score, 3.0);
    assert_eq!(b.snapshot().unwrap().unwrap(), 3u32.to_le_bytes());
    // A bad snapshot is the detector's error; the instance stays usable.
    let e = b.restore(b"xx").unwrap_err();
    assert!(matches!(e, GuestError::Detector(_)), "{e:?}");

    let mut u = m.instantiate(&limits(), &mode('u'), "test/snap-u").unwrap();
    assert_eq!(u.snapshot().unwrap(), None);
    assert!(!u.restore(&state).unwrap());
}

#[test]
fn compiled_modules_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let config = HostConfig {
        cache_dir: dir.path().to_path_buf(),
        max_instances: 4,
        max_memory_bytes: 64 << 20,
        ..HostConfig::default()
    };
    let wasm = detector_with("bad config", "bad cnfig!");
    let hash = Host::hash(&wasm);
    let first = Host::new(config.clone()).unwrap();
    let m = first.load(&wasm).unwrap();
    assert!(!m.loaded_from_cache);
    let file = dir.path().join(format!("{hash}.cwasm"));
    assert!(file.exists(), "cache file written");
    drop((m, first));

    let second = Host::new(config.clone()).unwrap();
    let m = second.load(&wasm).unwrap();
    assert!(m.loaded_from_cache);
    let mut inst = m.instantiate(&limits(), &mode('n'), "test/cache").unwrap();
    assert_eq!(inst.process(&batch()).unwrap().len(), 1);

    // A corrupt cache entry is ignored and rewritten.
    std::fs::write(&file, b"garbage").unwrap();
    let third = Host::new(config).unwrap();
    let m = third.load(&wasm).unwrap();
    assert!(!m.loaded_from_cache);
    assert!(std::fs::metadata(&file).unwrap().len() > 100);
}

#[test]
fn refused_modules_are_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let h = Host::new(HostConfig {
        cache_dir: dir.path().to_path_buf(),
        max_instances: 4,
        max_memory_bytes: 64 << 20,
        ..HostConfig::default()
    })
    .unwrap();
    let wasm = detector_with(r#"(export "vigil_restore")"#, "");
    assert!(h.load(&wasm).is_err());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn instance_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<vigil_host::Instance>();
    assert_send::<Host>();
    fn assert_sync<T: Sync>() {}
    assert_sync::<Host>();
    assert_sync::<vigil_host::Module>();
}
