//! A global allocator that puts every allocation on a 64-byte boundary, for the tests that
//! compare two passes within a tolerance: the SIMD matrix-vector product groups its sums by the
//! weights' address (`kernels::simd::gemv`'s aligning step), so with the system allocator's
//! 16-byte boundaries a case's last bits, and a property test's verdict near its bound, would
//! depend on the heap's state (a failing case would not replay). On 64-byte boundaries, as a
//! model file or arena is meant to be placed, each case gives the same bits in every run.
#![allow(unsafe_code)] // test harness code, not the library

use std::alloc::{GlobalAlloc, Layout, System};

struct Aligned;

const LINE: usize = 64;

/// The caller's layout on a 64-byte boundary (or its own, if wider).
fn line(layout: Layout) -> Layout {
    // A valid layout's size rounded up to a larger power-of-two alignment stays valid unless it
    // overflows isize, which no test comes near; the fallback keeps the caller's alignment.
    layout.align_to(LINE).unwrap_or(layout)
}

// SAFETY: forwards to the system allocator with a wider alignment, the same for `alloc`,
// `dealloc` and `realloc` of one block (`line` is a function of the caller's layout).
unsafe impl GlobalAlloc for Aligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's (a non-zero size, kept by `line`).
        unsafe { System.alloc(line(layout)) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(line(layout)) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with `line(layout)`.
        unsafe { System.dealloc(ptr, line(layout)) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `alloc` with `line(layout)`; the new size is the caller's.
        unsafe { System.realloc(ptr, line(layout), new_size) }
    }
}

#[global_allocator]
static GLOBAL: Aligned = Aligned;
