//! All of this crate's integration tests, compiled and linked as one
//! binary: one link instead of one per file (the suite's build time is
//! mostly linking). Each `tests/*.rs` file is a module here;
//! `every_test_file_is_a_module` (in runtime/storage/tests/integration.rs)
//! fails if a new file is not added.

mod ack_gates;
mod admin;
mod append_taps;
mod cancellation;
mod cluster_nodes;
mod common;
mod drills;
mod fencing;
mod gc;
mod group_holds;
mod handover;
mod log;
mod outage;
mod parts;
mod retention_time;
mod state_objects;

/// Crates whose integration tests are one binary (`autotests = false`):
/// a `tests/*.rs` file that is not a module of their `integration.rs` would
/// never be compiled, so its tests would silently never run.
#[test]
fn every_test_file_is_a_module() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut checked = 0;
    for group in ["runtime", "sdk", "plugins"] {
        for krate in std::fs::read_dir(root.join(group)).expect("workspace dir") {
            let tests = krate.expect("dir entry").path().join("tests");
            let Ok(this) = std::fs::read_to_string(tests.join("integration.rs")) else {
                continue;
            };
            for entry in std::fs::read_dir(&tests).expect("tests dir") {
                let name = entry.expect("dir entry").file_name();
                let name = name.to_string_lossy();
                if let Some(stem) = name.strip_suffix(".rs").filter(|s| *s != "integration") {
                    assert!(
                        this.contains(&format!("\nmod {stem};\n")),
                        "{}/{name} is not a module of its integration.rs, so it would never run",
                        tests.display()
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(
        checked >= 30,
        "only {checked} test files found: wrong workspace root?"
    );
}
