//! Compile tests of `#[vigil_sdk::detector]`: one detector that must
//! compile, and the mistakes the macro must explain (tests/ui/*.stderr).
//! Regenerate the expected output with `TRYBUILD=overwrite`.

#[test]
fn detector_macro_ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass_full.rs");
    t.compile_fail("tests/ui/fail_*.rs");
}
