//! The vigil wasm host: one wasmtime [`Engine`](wasmtime::Engine) for the
//! process, module validation against detector ABI v1
//! (`docs/design/0003-detector-abi.md`) with a compiled-module cache,
//! instances with memory/CPU/stack/alert limits, Arrow batches in, alerts out.
//!
//! Also the record → Arrow side: [`build_batch`] turns stored Kafka record
//! batches into the [`RecordBatch`](arrow_array::RecordBatch) a detector sees,
//! with typed columns decoded from JSON values per a [`ValueSchema`].
//!
//! # Memory layout
//! Pooling allocator with a 4 GiB reservation + 64 KiB guard per slot, so
//! compiled code needs no bounds checks (measured: they cost ~23% on a
//! memory-bound loop); ~1 TiB of uncommitted address space for 256 slots.
//! Smaller, bounds-checked layouts are the fallback; see [`MemoryLayout`].

mod built;
mod cpu;
mod engine;
mod error;
mod hostfns;
mod instance;
mod json;
mod limits;
mod logsink;
mod meta;
mod module;
mod records;
mod schema;

pub use built::{built_modules_dir, read_built_module};
pub use cpu::thread_cpu;
pub use engine::{Host, HostConfig, MemoryLayout};
pub use error::{GuestError, HostError, ModuleError, MIN_SDK_FOR_ABI};
pub use instance::Instance;
pub use limits::Limits;
pub use logsink::{GuestLogLine, GuestLogSink};
pub use meta::SECTION as METADATA_SECTION;
pub use module::Module;
pub use records::{build_batch, record_schema, BadRecord, BuiltBatch, RecordsError};
pub use schema::{FieldType, SchemaError, ValueSchema};

pub use vigil_abi::{Alert, Severity};
