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

use crate::daemon::fs::{Errno, Result};
use std::cell::RefCell;

/// Alignment of direct requests: a multiple of every logical block size up to 4 KiB.
pub const ALIGN: usize = 4096;

/// Whether a request at `offset` of `len` bytes can go direct.
pub fn aligned(offset: u64, len: usize) -> bool {
    len > 0 && offset.is_multiple_of(ALIGN as u64) && len.is_multiple_of(ALIGN)
}

/// A heap buffer with an [`ALIGN`]ed window, grown on demand. Safe code only: the bytes
/// are a zeroed `Vec`, so they are always initialised, and the window starts at the first
/// aligned address in it (the `Vec` is `ALIGN` longer than the longest window asked).
#[derive(Default)]
struct Bounce(Vec<u8>);

impl Bounce {
    /// The aligned window of `len` bytes (contents unspecified but initialised); ENOMEM
    /// if the buffer cannot grow to hold it.
    fn with_len(&mut self, len: usize) -> Result<&mut [u8]> {
        let need = len.checked_add(ALIGN).ok_or(Errno::ENOMEM)?;
        if self.0.len() < need {
            let mut grown = Vec::new();
            grown.try_reserve_exact(need).map_err(|_| Errno::ENOMEM)?;
            grown.resize(need, 0);
            self.0 = grown;
        }
        let skip = self.0.as_ptr().addr().wrapping_neg() % ALIGN;
        Ok(&mut self.0[skip..skip + len])
    }
}

thread_local! {
    /// One per request thread: requests of one thread never overlap.
    static BOUNCE: RefCell<Bounce> = RefCell::new(Bounce::default());
}

/// Runs `f` on this thread's aligned buffer of `len` bytes (contents unspecified).
pub fn with_bounce<T>(len: usize, f: impl FnOnce(&mut [u8]) -> Result<T>) -> Result<T> {
    BOUNCE.with_borrow_mut(|b| f(b.with_len(len)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_rule_and_buffer() {
        assert!(aligned(0, 4096) && aligned(8192, 1 << 20));
        assert!(!aligned(0, 0) && !aligned(512, 4096) && !aligned(4096, 1000));
        let fresh = with_bounce(10_000, |b| {
            assert_eq!(b.len(), 10_000);
            assert_eq!(b.as_ptr() as usize % ALIGN, 0);
            let zeros = b.iter().all(|&x| x == 0);
            b.fill(1);
            Ok(zeros)
        });
        assert_eq!(fresh, Ok(true), "a new buffer is initialised (zeroed)");
        let kept = with_bounce(100, |b| {
            assert_eq!(b.as_ptr() as usize % ALIGN, 0);
            Ok(b.len())
        });
        assert_eq!(kept, Ok(100));
        assert_eq!(with_bounce(0, |b| Ok(b.len())), Ok(0));
        assert_eq!(
            with_bounce(usize::MAX, |_| Ok(())),
            Err(Errno::ENOMEM),
            "a length that cannot be allocated is an error, not a panic"
        );
    }
}
