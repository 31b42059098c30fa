//! All of this crate's integration tests, compiled and linked as one
//! binary: one link instead of one per file (the suite's build time is
//! mostly linking). Each `tests/*.rs` file is a module here;
//! `every_test_file_is_a_module` (in runtime/storage/tests/integration.rs)
//! fails if a new file is not added.

// The allocator the broker runs with (wire.rs and limits.rs rely on it: a
// tiny frame claiming a huge array must not abort the process).
#[global_allocator]
static ALLOC: vigil_protocol::alloc::LazyLargeAlloc = vigil_protocol::alloc::LazyLargeAlloc;

mod acls;
mod cancellation;
mod common;
mod leader_epochs;
mod limits;
mod sasl;
mod served_apis;
mod tls;
mod wire;
