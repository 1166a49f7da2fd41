//! `O_DIRECT` passed through to the backing file.
//!
//! A file opened with `O_DIRECT` on the volume gets a second backing descriptor opened
//! with `O_DIRECT`, so its data goes to the disk without passing through the node's page
//! cache (which a database opening its files `O_DIRECT` counts on, and which would
//! otherwise be charged to the daemon's memory cgroup). The kernel accepts any offset
//! and length for `O_DIRECT` on a FUSE file, but the backing filesystem wants them
//! aligned to its logical block size: requests whose offset and length are multiples of
//! [`ALIGN`] go direct through a bounce buffer aligned to it (fuser's request buffer is
//! not), others use the buffered descriptor. Both reach the same inode, and the backing
//! filesystem keeps direct and buffered I/O of a file coherent.
//!
//! Whether a file is direct is decided at open: a later `fcntl(F_SETFL, O_DIRECT)` changes
//! only how the kernel sends requests, not the backing descriptor used.

use std::alloc::{Layout, alloc, dealloc};
use std::cell::RefCell;

/// Alignment of direct requests: a multiple of every logical block size up to 4 KiB.
pub const ALIGN: usize = 4096;

/// Whether a request at `offset` of `len` bytes can go direct.
pub fn aligned(offset: u64, len: usize) -> bool {
    len > 0 && offset.is_multiple_of(ALIGN as u64) && len.is_multiple_of(ALIGN)
}

/// A heap buffer aligned to [`ALIGN`], grown on demand.
struct Bounce {
    ptr: *mut u8,
    cap: usize,
}

impl Bounce {
    fn with_len(&mut self, len: usize) -> &mut [u8] {
        if len > self.cap {
            self.release();
            let cap = len.next_multiple_of(ALIGN);
            let layout = Layout::from_size_align(cap, ALIGN).expect("bounce buffer layout");
            let ptr = unsafe { alloc(layout) };
            assert!(!ptr.is_null(), "allocating a {cap}-byte bounce buffer");
            (self.ptr, self.cap) = (ptr, cap);
        }
        unsafe { std::slice::from_raw_parts_mut(self.ptr, len) }
    }

    fn release(&mut self) {
        if self.cap > 0 {
            let layout = Layout::from_size_align(self.cap, ALIGN).unwrap();
            unsafe { dealloc(self.ptr, layout) };
            (self.ptr, self.cap) = (std::ptr::null_mut(), 0);
        }
    }
}

impl Drop for Bounce {
    fn drop(&mut self) {
        self.release();
    }
}

thread_local! {
    /// One per request thread: requests of one thread never overlap.
    static BOUNCE: RefCell<Bounce> = const {
        RefCell::new(Bounce { ptr: std::ptr::null_mut(), cap: 0 })
    };
}

/// Runs `f` on this thread's aligned buffer of `len` bytes (contents unspecified).
pub fn with_bounce<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    BOUNCE.with_borrow_mut(|b| f(b.with_len(len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_rule_and_buffer() {
        assert!(aligned(0, 4096) && aligned(8192, 1 << 20));
        assert!(!aligned(0, 0) && !aligned(512, 4096) && !aligned(4096, 1000));
        with_bounce(10_000, |b| {
            assert_eq!(b.len(), 10_000);
            assert_eq!(b.as_ptr() as usize % ALIGN, 0);
            b.fill(1);
        });
        with_bounce(100, |b| assert_eq!(b.as_ptr() as usize % ALIGN, 0));
    }
}
