//! Giving freed metadata memory back to the system.
//!
//! File data lives in the volume's tmpfs and goes back at once when freed (`data.rs`),
//! but inodes, directories and xattrs are heap allocations, and glibc keeps freed
//! chunks in its arenas: after a pod deletes a million files the daemon would stay as
//! large as it was. A background thread watches how many inodes were freed and, once
//! enough were, asks glibc to return free pages
//! (`malloc_trim`, which `madvise`s them away in every arena). It does this off the
//! request path and stops when the volume is dropped.

use super::MemoryFs;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Trim once this many inodes were freed since the last trim.
const TRIM_AFTER_INODES: u64 = 8192;
const POLL: Duration = Duration::from_millis(200);

/// glibc's trim threshold, fixed. By default glibc raises it (to twice the largest
/// block freed back with `munmap`, e.g. 4 MiB after a 2 MiB slot list), and a request
/// thread's heap then keeps up to that much free at its top for good: `malloc_trim`
/// trims only the main heap's top. Fixing it (which also fixes the mmap threshold at its
/// default) lets every heap shrink as it is freed.
const TRIM_THRESHOLD: i32 = 128 << 10;

/// Starts the reclaimer thread of `fs` and fixes glibc's trim threshold.
pub fn spawn_reclaimer(fs: &Arc<MemoryFs>) -> std::io::Result<()> {
    // SAFETY: mallopt takes two integers; it runs as the daemon starts, before any request
    // thread allocates (glibc wants its tunables set before other threads use malloc).
    unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) };
    let weak: Weak<MemoryFs> = Arc::downgrade(fs);
    let mut trimmed_at = fs.freed_inodes.load(std::sync::atomic::Ordering::Relaxed);
    std::thread::Builder::new()
        .name("reclaim".into())
        .spawn(move || {
            loop {
                std::thread::sleep(POLL);
                let Some(fs) = weak.upgrade() else { return };
                let released = fs.freed_inodes.load(std::sync::atomic::Ordering::Relaxed);
                drop(fs);
                if released - trimmed_at >= TRIM_AFTER_INODES {
                    trimmed_at = released;
                    let t = std::time::Instant::now();
                    // SAFETY: malloc_trim takes an integer and locks each arena as it trims
                    // it, so it is safe beside allocating threads.
                    unsafe { libc::malloc_trim(0) };
                    log::debug!(
                        "malloc_trim after {released} freed inodes took {:?}",
                        t.elapsed()
                    );
                }
            }
        })?;
    Ok(())
}
