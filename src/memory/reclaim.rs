//! Giving freed memory back to the system.
//!
//! Blocks are 4 KiB heap allocations. glibc keeps freed chunks in its arenas, so after a
//! pod deletes a gigabyte the daemon would stay a gigabyte large. A background thread
//! watches how many blocks were released and, once enough were, asks glibc to return free
//! pages (`malloc_trim`, which `madvise`s them away in every arena). It does this off the
//! request path and stops when the volume is dropped.

use super::MemoryFs;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Trim once this many blocks (32 MiB) were released since the last trim.
const TRIM_AFTER_BLOCKS: u64 = 8192;
const POLL: Duration = Duration::from_millis(200);

/// Starts the reclaimer thread of `fs`.
pub fn spawn_reclaimer(fs: &Arc<MemoryFs>) -> std::io::Result<()> {
    let weak: Weak<MemoryFs> = Arc::downgrade(fs);
    let mut trimmed_at = fs.usage().released_total();
    std::thread::Builder::new()
        .name("reclaim".into())
        .spawn(move || {
            loop {
                std::thread::sleep(POLL);
                let Some(fs) = weak.upgrade() else { return };
                let released = fs.usage().released_total();
                drop(fs);
                if released - trimmed_at >= TRIM_AFTER_BLOCKS {
                    trimmed_at = released;
                    let t = std::time::Instant::now();
                    unsafe { libc::malloc_trim(0) };
                    log::debug!(
                        "malloc_trim after {released} released blocks took {:?}",
                        t.elapsed()
                    );
                }
            }
        })?;
    Ok(())
}
