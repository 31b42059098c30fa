//! A global allocator that reserves very large blocks lazily.
//!
//! The Kafka decoder (`kafka-protocol`) sizes each array with
//! `Vec::with_capacity(n)` where `n` comes straight off the wire, before it
//! has read a single element. A 20-byte request can therefore ask for
//! hundreds of gigabytes; the system allocator refuses, and Rust aborts the
//! whole process — a denial of service no error handling can catch. Clamping
//! `n` would have to happen inside the dependency (upstream fixes are still
//! open), so vigil makes such requests harmless at the allocator instead:
//! blocks of 1 GiB or more are mapped with `MAP_NORESERVE`, which reserves
//! address space without committing memory. The decoder then fails on the
//! missing bytes, the `Vec` is dropped, and the mapping is returned. Only
//! pages actually written consume memory, so legitimate large buffers behave
//! as before.
//!
//! Install it in every binary that decodes untrusted requests:
//! `#[global_allocator] static A: vigil_protocol::alloc::LazyLargeAlloc = vigil_protocol::alloc::LazyLargeAlloc;`

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// Blocks at least this large are mapped lazily.
pub const LAZY_THRESHOLD: usize = 1 << 30;
/// mmap returns page-aligned memory; larger alignments go to the system.
const PAGE: usize = 4096;

/// See the module docs.
pub struct LazyLargeAlloc;

fn is_lazy(layout: &Layout) -> bool {
    layout.size() >= LAZY_THRESHOLD && layout.align() <= PAGE
}

// SAFETY: every block handed out comes either from `System` (and goes back to
// it) or from an anonymous mmap of exactly `layout.size()` bytes (and goes back
// through munmap of the same size); `is_lazy` depends only on the layout,
// which callers must pass unchanged to `dealloc`/`realloc`, so a block is
// always released by the allocator that produced it. mmap memory is zeroed and
// page aligned, satisfying `alloc_zeroed` and any alignment up to `PAGE`.
unsafe impl GlobalAlloc for LazyLargeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_lazy(&layout) {
            // SAFETY: an anonymous private mapping with no address hint has no
            // preconditions; failure is reported as MAP_FAILED.
            let p = unsafe {
                libc::mmap(
                    ptr::null_mut(),
                    layout.size(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                ptr::null_mut()
            } else {
                p.cast()
            }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_lazy(&layout) {
            // SAFETY: anonymous mappings are zero-filled.
            unsafe { self.alloc(layout) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if is_lazy(&layout) {
            // SAFETY: `p` was returned by our mmap of `layout.size()` bytes.
            unsafe {
                libc::munmap(p.cast(), layout.size());
            }
        } else {
            // SAFETY: `p` came from `System` with this layout.
            unsafe { System.dealloc(p, layout) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a
        // valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_lazy(&layout) && !is_lazy(&new_layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.realloc(p, layout, new_size) };
        }
        // SAFETY: `new_layout` is valid (above); on success both blocks are
        // live and at least `min(old, new)` bytes long, and they cannot
        // overlap because `p` is still allocated.
        unsafe {
            let q = self.alloc(new_layout);
            if !q.is_null() {
                ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                self.dealloc(p, layout);
            }
            q
        }
    }
}
