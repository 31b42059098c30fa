//! All of this crate's integration tests, compiled and linked as one
//! binary: one link instead of one per file (the suite's build time is
//! mostly linking). Each `tests/*.rs` file is a module here;
//! `every_test_file_is_a_module` (in runtime/storage/tests/integration.rs)
//! fails if a new file is not added.

mod bombs;
mod common;
mod cpu_budget;
mod records;
mod sdk_keyed;
mod sdk_modules;
mod wasm;
