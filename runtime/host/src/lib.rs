//! The vigil wasm host: one wasmtime Engine, module validation and compiled cache, instances with limits, Arrow batches in, alerts out
