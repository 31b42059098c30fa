//! The wasmtime resource limiter that enforces the memory part of a
//! deployment's [`Limits`] (defined in `vigil_abi`, shared with the admin API).

pub use vigil_abi::Limits;

/// Enforces [`Limits::memory_bytes`] on one store and remembers whether it
/// had to refuse a growth, so a trap that follows (the guest allocator
/// aborting) is reported as [`GuestError::MemoryLimit`](crate::GuestError)
/// rather than as an anonymous `unreachable`.
#[derive(Debug)]
pub(crate) struct GuestLimiter {
    /// Effective ceiling in bytes.
    pub(crate) memory_bytes: usize,
    /// Set when a growth was refused (by us or by the pool) since the last reset.
    pub(crate) denied: bool,
}

/// Table elements a guest may grow to. Rust guests use one small table of
/// function pointers; the bound only stops a `table.grow` loop.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl GuestLimiter {
    pub(crate) fn new(memory_bytes: u64) -> Self {
        GuestLimiter {
            memory_bytes: usize::try_from(memory_bytes).unwrap_or(usize::MAX),
            denied: false,
        }
    }
}

impl wasmtime::ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Ok(false) makes `memory.grow` return -1, as the spec allows; the
        // guest's allocator then fails and (for Rust) aborts with a trap.
        let ok = desired <= self.memory_bytes;
        if !ok {
            self.denied = true;
        }
        Ok(ok)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // The pool's per-slot ceiling refused it: same outcome for the user.
        self.denied = true;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }

    fn memories(&self) -> usize {
        1
    }
}
