//! The wasm side of the ABI (docs/design/0003-detector-abi.md): the host
//! imports, the input arena, the detector instance, and the export bodies
//! that `#[detector]` wires up. This is the only file with FFI; everything
//! `unsafe` in the SDK lives here.
//!
//! wasm32-unknown-unknown is single-threaded, so the instance and arena are
//! thread-locals (plain statics there) behind `RefCell`s.

use std::alloc::{GlobalAlloc, Layout, System};
use std::any::Any;
use std::cell::RefCell;

use arrow_buffer::Buffer;
use vigil_abi::status;

use crate::{Alert, Alerts, Batch, Detector, Error};

mod host {
    #[link(wasm_import_module = "vigil")]
    extern "C" {
        pub fn log(level: i32, ptr: i32, len: i32);
        pub fn emit_alerts(ptr: i32, len: i32) -> i32;
        pub fn set_error(ptr: i32, len: i32);
        pub fn emit_state(ptr: i32, len: i32);
    }
}

thread_local! {
    /// The detector, once `vigil_init` succeeded (a `Box<T>` for the
    /// module's single detector type).
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    /// Where the host writes each call's input; `u64` words make it
    /// 8-aligned, as the batch region needs.
    static ARENA: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// Reused encoding buffer for alert chunks.
    static ALERT_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Converts a guest pointer or length to the ABI's i32. wasm32 addresses and
/// sizes are 32-bit, so the conversion is lossless.
fn abi_i32(n: usize) -> i32 {
    n as i32
}

/// Sends a log line to the host.
pub(crate) fn host_log(level: i32, msg: &str) {
    // SAFETY: the pointer and length describe `msg`, which is live for the
    // call; the host only reads that range of guest memory.
    unsafe { host::log(level, abi_i32(msg.as_ptr() as usize), abi_i32(msg.len())) }
}

/// Reports the message for the failing call.
fn set_error(msg: &str) {
    // SAFETY: as in `host_log`: a live, borrowed byte range.
    unsafe { host::set_error(abi_i32(msg.as_ptr() as usize), abi_i32(msg.len())) }
}

/// Stops the module: after `set_error`, the host reports the trap with that
/// message.
fn trap(msg: &str) -> ! {
    set_error(msg);
    core::arch::wasm32::unreachable()
}

/// Installs (once) the hook that reports panics through `set_error`; the
/// build uses panic=abort, so the panic then traps.
fn install_panic_hook() {
    thread_local!(static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    if DONE.with(|d| d.replace(true)) {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let what = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("Box<dyn Any>");
        let msg = match info.location() {
            Some(l) => format!(
                "panicked at {}:{}:{}: {what}",
                l.file(),
                l.line(),
                l.column()
            ),
            None => format!("panicked: {what}"),
        };
        set_error(&msg);
    }));
}

/// The global allocator: the system allocator, plus a `set_error` when an
/// allocation fails, because with panic=abort an out-of-memory abort
/// otherwise traps without any message. (A detector crate therefore cannot
/// declare its own `#[global_allocator]` for wasm.)
struct ReportingAlloc;

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees carry over; the report only reads the
// layout.
unsafe impl GlobalAlloc for ReportingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded under the caller's contract.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            report_oom(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded under the caller's contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            report_oom(layout.size());
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded under the caller's contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            report_oom(new_size);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded under the caller's contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: ReportingAlloc = ReportingAlloc;

/// Reports a failed allocation without allocating: the message is
/// formatted into a stack buffer.
fn report_oom(size: usize) {
    struct Buf {
        bytes: [u8; 128],
        len: usize,
    }
    impl std::fmt::Write for Buf {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = self.bytes.len() - self.len;
            let n = s.len().min(room);
            self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }
    let mut buf = Buf {
        bytes: [0; 128],
        len: 0,
    };
    let _ = std::fmt::Write::write_fmt(
        &mut buf,
        format_args!("out of memory: allocating {size} bytes failed (memory limit reached?)"),
    );
    // The message is ASCII, so any prefix is valid UTF-8.
    // SAFETY: as in `host_log`: a live byte range on this stack frame.
    unsafe { host::set_error(abi_i32(buf.bytes.as_ptr() as usize), abi_i32(buf.len)) }
}

/// `vigil_abi_version`.
pub fn abi_version() -> i32 {
    vigil_abi::ABI_VERSION
}

/// `vigil_sdk_version`.
pub fn sdk_version() -> i32 {
    crate::__private::SDK_VERSION_PACKED
}

/// `vigil_input`: a pointer to at least `len` bytes, 8-aligned, reused
/// across calls. A negative length (a host bug) gets 0, which no Rust
/// allocation ever returns.
pub fn input(len: i32) -> i32 {
    let Ok(len) = usize::try_from(len) else {
        return 0;
    };
    ARENA.with(|a| {
        let mut a = a.borrow_mut();
        let words = len.div_ceil(8).max(1);
        if a.len() < words {
            // Zero-filled so the whole arena is initialized memory; this
            // costs only when the arena grows.
            a.resize(words, 0);
        }
        abi_i32(a.as_mut_ptr() as usize)
    })
}

/// Copies the first `len` input bytes out of the arena (config JSON,
/// snapshot bytes: small and read once).
fn input_bytes(len: i32) -> Result<Vec<u8>, Error> {
    ARENA.with(|a| {
        let a = a.borrow();
        let bytes: &[u8] = bytemuck_u8(&a);
        usize::try_from(len)
            .ok()
            .and_then(|n| bytes.get(..n))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Error::msg(format!("input length {len} exceeds the input buffer")))
    })
}

/// Views the arena's words as bytes.
fn bytemuck_u8(words: &[u64]) -> &[u8] {
    // SAFETY: u64 has no padding and every byte pattern is a valid u8; the
    // byte slice covers exactly the words' memory and borrows it immutably
    // for the same lifetime.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8) }
}

fn with_instance<T: Detector, R>(f: impl FnOnce(&mut T) -> R) -> Result<R, Error> {
    INSTANCE.with(|i| {
        let mut slot = i.borrow_mut();
        match slot.as_mut().and_then(|b| b.downcast_mut::<T>()) {
            Some(d) => Ok(f(d)),
            None => Err(Error::msg(
                "detector is not initialized (vigil_init has not succeeded)",
            )),
        }
    })
}

/// Maps a call's outcome to a status, reporting errors.
fn finish(r: Result<i32, Error>) -> i32 {
    match r {
        Ok(s) => s,
        Err(e) => {
            set_error(e.message());
            status::ERROR
        }
    }
}

/// `vigil_init`: config JSON → `T::Config` → `T::new`.
pub fn init<T: Detector>(len: i32) -> i32 {
    install_panic_hook();
    finish((|| {
        let json = input_bytes(len)?;
        let cfg: T::Config = serde_json::from_slice(&json)
            .map_err(|e| Error::msg(format!("invalid config: {e}")))?;
        let d = T::new(cfg)?;
        INSTANCE.with(|i| *i.borrow_mut() = Some(Box::new(d)));
        Ok(status::OK)
    })())
}

/// `vigil_process`: decode the batch region in place, run the detector,
/// send its alerts.
pub fn process<T: Detector>(len: i32) -> i32 {
    let words = ARENA.with(|a| std::mem::take(&mut *a.borrow_mut()));
    let full = Buffer::from_vec(words);
    let result = process_region::<T>(&full, len);
    // Every slice of the region was dropped with the batch, so the buffer is
    // unique again and the arena's allocation is reused; if not, the next
    // `vigil_input` allocates a fresh one.
    if let Ok(words) = full.into_vec::<u64>() {
        ARENA.with(|a| *a.borrow_mut() = words);
    }
    finish(result)
}

fn process_region<T: Detector>(full: &Buffer, len: i32) -> Result<i32, Error> {
    let n = usize::try_from(len)
        .ok()
        .filter(|n| *n <= full.len())
        .ok_or_else(|| Error::msg(format!("batch length {len} exceeds the input buffer")))?;
    let region = full.slice_with_length(0, n);
    let batch = Batch::new(vigil_abi::decode_batch(&region)?)?;
    drop(region);
    with_instance::<T, _>(|d| {
        let mut alerts = Alerts::with_sink(send_alerts);
        d.process(&batch, &mut alerts)?;
        // Alerts of a failed call are not flushed; earlier chunks may have
        // been sent already.
        alerts.flush();
        Ok(status::OK)
    })?
}

/// The [`Alerts`] sink: encodes and sends pending alerts; traps if the host
/// says the deployment's alert limit is exceeded.
fn send_alerts(pending: &mut Vec<Alert>) {
    if pending.is_empty() {
        return;
    }
    // Same size and layout (`Alert` is a transparent wrapper), so this
    // collect reuses the allocation.
    let abi: Vec<vigil_abi::Alert> = std::mem::take(pending)
        .into_iter()
        .map(Alert::into_abi)
        .collect();
    let rc = ALERT_BUF.with(|b| {
        let mut buf = b.borrow_mut();
        buf.clear();
        if let Err(e) = vigil_abi::encode_alerts(&abi, &mut buf) {
            trap(&format!("cannot encode alerts: {e}"));
        }
        // SAFETY: `buf` is a live Vec borrowed for the call; the host only
        // reads `len` bytes at `ptr`.
        unsafe { host::emit_alerts(abi_i32(buf.as_ptr() as usize), abi_i32(buf.len())) }
    });
    if rc == -1 {
        trap("alert limit exceeded");
    }
}

/// `vigil_snapshot`: the detector's bytes behind a tag saying which
/// detector type and state format wrote them (see [`state::tag`]).
pub fn snapshot<T: Detector>() -> i32 {
    finish(
        with_instance::<T, _>(|d| match d.snapshot() {
            None => Ok(status::UNSUPPORTED),
            Some(Ok(bytes)) => {
                let tagged = crate::state::tag::<T>(&bytes);
                // SAFETY: `tagged` is a live Vec for the call; the host only
                // reads that range.
                unsafe {
                    host::emit_state(abi_i32(tagged.as_ptr() as usize), abi_i32(tagged.len()))
                };
                Ok(status::OK)
            }
            Some(Err(e)) => Err(e.context("snapshot")),
        })
        .and_then(|r| r),
    )
}

/// `vigil_restore`: into the instance `vigil_init` built. State written by
/// another detector type or state format is declined (`UNSUPPORTED`), so
/// the host rebuilds instead of feeding the detector bytes it cannot read.
pub fn restore<T: Detector>(len: i32) -> i32 {
    finish((|| {
        let bytes = input_bytes(len)?;
        let Some(payload) = crate::state::untag::<T>(&bytes) else {
            return Ok(status::UNSUPPORTED);
        };
        with_instance::<T, _>(|d| match d.restore(payload) {
            None => Ok(status::UNSUPPORTED),
            Some(Ok(())) => Ok(status::OK),
            Some(Err(e)) => Err(e.context("restore")),
        })?
    })())
}
