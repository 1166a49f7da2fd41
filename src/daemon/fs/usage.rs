//! A volume's hard limits and what is used of them, as lock-free counters.
//!
//! Space is counted in [`BLOCK_SIZE`] blocks and inodes one by one. Every allocation
//! reserves before it takes (a compare-and-swap loop that never lets `used` pass the
//! limit), so concurrent writers can never push a volume over its limit, and `statfs`
//! answers from the counters with no walk.

use super::{BLOCK_SIZE, StatFs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Limits and usage of one volume.
#[derive(Debug)]
pub struct Usage {
    block_limit: u64,
    /// Blocks above `block_limit` that only metadata may take (see
    /// [`Usage::reserve_metadata_blocks`]).
    metadata_allowance: u64,
    inode_limit: u64,
    blocks: AtomicU64,
    inodes: AtomicU64,
    /// Blocks ever released: only grows, so a sampler never misses a release.
    released: AtomicU64,
}

impl Usage {
    /// A volume of `bytes` (rounded up to whole blocks) and `inodes` inodes.
    pub fn new(bytes: u64, inodes: u64) -> Usage {
        Usage {
            block_limit: bytes.div_ceil(BLOCK_SIZE),
            metadata_allowance: 0,
            inode_limit: inodes,
            blocks: AtomicU64::new(0),
            inodes: AtomicU64::new(0),
            released: AtomicU64::new(0),
        }
    }

    pub fn block_limit(&self) -> u64 {
        self.block_limit
    }

    pub fn inode_limit(&self) -> u64 {
        self.inode_limit
    }

    /// Lets metadata take up to `blocks` beyond the limit, so that a full volume can still
    /// get a new entry (an empty file, a directory, a link) as tmpfs can: data never
    /// passes the limit, data and metadata together never pass limit + allowance.
    pub fn with_metadata_allowance(mut self, blocks: u64) -> Usage {
        self.metadata_allowance = blocks;
        self
    }

    pub fn metadata_allowance(&self) -> u64 {
        self.metadata_allowance
    }

    /// Takes exactly `want` blocks for metadata (a new directory entry, a new inode's own
    /// blocks), from the limit and then from the allowance.
    pub fn reserve_metadata_blocks(&self, want: u64) -> bool {
        let limit = self.block_limit.saturating_add(self.metadata_allowance);
        reserve(&self.blocks, limit, want, true) == want
    }

    pub fn blocks_used(&self) -> u64 {
        self.blocks.load(Relaxed)
    }

    pub fn inodes_used(&self) -> u64 {
        self.inodes.load(Relaxed)
    }

    /// Takes up to `want` blocks; returns how many were granted (maybe 0).
    pub fn reserve_blocks_upto(&self, want: u64) -> u64 {
        reserve(&self.blocks, self.block_limit, want, false)
    }

    /// Takes exactly `want` blocks, or none: returns whether they were granted.
    pub fn reserve_blocks(&self, want: u64) -> bool {
        reserve(&self.blocks, self.block_limit, want, true) == want
    }

    pub fn release_blocks(&self, n: u64) {
        if n > 0 {
            let given_back = release(&self.blocks, n, "blocks");
            self.released.fetch_add(given_back, Relaxed);
        }
    }

    /// Blocks released since the volume started.
    pub fn released_total(&self) -> u64 {
        self.released.load(Relaxed)
    }

    /// Counts `n` blocks that were taken without a reservation (a backing filesystem's
    /// metadata, found only after the fact); usage may then pass the limit by that much.
    pub fn force_add_blocks(&self, n: u64) {
        self.blocks.fetch_add(n, Relaxed);
    }

    /// Takes one inode; false when the inode limit is reached.
    pub fn reserve_inode(&self) -> bool {
        reserve(&self.inodes, self.inode_limit, 1, true) == 1
    }

    pub fn release_inode(&self) {
        release(&self.inodes, 1, "inodes");
    }

    /// Counts already present on a volume that is served again (they may exceed the
    /// limit; then nothing more can be allocated until enough is freed).
    pub fn preload(&self, blocks: u64, inodes: u64) {
        self.blocks.fetch_add(blocks, Relaxed);
        self.inodes.fetch_add(inodes, Relaxed);
    }

    /// Size is the limit, or what is used when metadata took some of the allowance above
    /// it (so that Used is always the true usage, and Avail is 0).
    pub fn statfs(&self) -> StatFs {
        let used = self.blocks_used();
        let free = self.block_limit.saturating_sub(used);
        StatFs {
            blocks: self.block_limit.max(used),
            blocks_free: free,
            blocks_avail: free,
            files: self.inode_limit,
            files_free: self.inode_limit.saturating_sub(self.inodes_used()),
            block_size: BLOCK_SIZE as u32,
            name_max: super::names::NAME_MAX as u32,
        }
    }
}

/// Everything a [`Usage`] holds, to rebuild it in another process (a hand-off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageSnapshot {
    pub block_limit: u64,
    pub metadata_allowance: u64,
    pub inode_limit: u64,
    pub blocks: u64,
    pub inodes: u64,
    pub released: u64,
}

impl Usage {
    /// The counters now (with no allocation running, for a hand-off).
    pub fn snapshot(&self) -> UsageSnapshot {
        UsageSnapshot {
            block_limit: self.block_limit,
            metadata_allowance: self.metadata_allowance,
            inode_limit: self.inode_limit,
            blocks: self.blocks.load(Relaxed),
            inodes: self.inodes.load(Relaxed),
            released: self.released.load(Relaxed),
        }
    }

    pub fn from_snapshot(s: UsageSnapshot) -> Usage {
        Usage {
            block_limit: s.block_limit,
            metadata_allowance: s.metadata_allowance,
            inode_limit: s.inode_limit,
            blocks: AtomicU64::new(s.blocks),
            inodes: AtomicU64::new(s.inodes),
            released: AtomicU64::new(s.released),
        }
    }
}

impl UsageSnapshot {
    pub fn write(&self, w: &mut crate::daemon::state::Writer) {
        for v in [
            self.block_limit,
            self.metadata_allowance,
            self.inode_limit,
            self.blocks,
            self.inodes,
            self.released,
        ] {
            w.u64(v);
        }
    }

    pub fn read(
        r: &mut crate::daemon::state::Reader<'_>,
    ) -> Result<UsageSnapshot, crate::daemon::state::Refused> {
        Ok(UsageSnapshot {
            block_limit: r.u64()?,
            metadata_allowance: r.u64()?,
            inode_limit: r.u64()?,
            blocks: r.u64()?,
            inodes: r.u64()?,
            released: r.u64()?,
        })
    }
}

fn reserve(counter: &AtomicU64, limit: u64, want: u64, exact: bool) -> u64 {
    if want == 0 {
        return 0;
    }
    let mut granted = 0;
    let _ = counter.fetch_update(Relaxed, Relaxed, |used| {
        let room = limit.saturating_sub(used);
        granted = want.min(room);
        if granted == 0 || (exact && granted < want) {
            granted = 0;
            return None;
        }
        Some(used + granted)
    });
    granted
}

/// Gives back `n` of `counter` and returns how many it held of them. Releasing more than
/// is held is a bug elsewhere (something freed twice): the counter stops at 0 rather than
/// wrapping to a volume that is full forever, and the first time it is logged.
fn release(counter: &AtomicU64, n: u64, what: &str) -> u64 {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    let prev = counter
        .fetch_update(Relaxed, Relaxed, |used| Some(used.saturating_sub(n)))
        .unwrap_or_else(|used| used); // never None: the closure always answers
    if prev < n && !LOGGED.swap(true, Relaxed) {
        log::error!(
            "usage: {n} {what} released while {prev} were held (a double release); \
             counted as {prev}, the counter stays at 0 (logged once)"
        );
    }
    prev.min(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn never_passes_the_limit() {
        let u = Usage::new(10 * BLOCK_SIZE, 2);
        assert_eq!(u.reserve_blocks_upto(4), 4);
        assert!(!u.reserve_blocks(7));
        assert_eq!(u.reserve_blocks_upto(7), 6);
        assert_eq!(u.reserve_blocks_upto(1), 0);
        u.release_blocks(3);
        assert!(u.reserve_blocks(3));
        assert!(u.reserve_inode() && u.reserve_inode() && !u.reserve_inode());
        assert_eq!(u.statfs().files_free, 0);
    }

    #[test]
    fn metadata_may_pass_the_data_limit_by_the_allowance_only() {
        let u = Usage::new(10 * BLOCK_SIZE, 100).with_metadata_allowance(3);
        assert!(u.reserve_blocks(10));
        assert!(!u.reserve_blocks(1), "data stops at the limit");
        assert!(u.reserve_metadata_blocks(2));
        assert!(!u.reserve_metadata_blocks(2), "exactly, or nothing");
        assert!(u.reserve_metadata_blocks(1));
        assert!(!u.reserve_metadata_blocks(1), "the allowance is used up");
        u.release_blocks(5);
        assert_eq!(u.reserve_blocks_upto(5), 2, "data below the limit only");
        assert_eq!(u.statfs().blocks_free, 0);
    }

    /// A release of more than is held (a double release, a bug elsewhere) stops the
    /// counters at 0: they never wrap to a volume that reports itself full forever. No
    /// debug assertion guards this, so the test checks what a release build does.
    #[test]
    fn releasing_more_than_held_stops_at_zero() {
        let u = Usage::new(10 * BLOCK_SIZE, 5);
        assert!(u.reserve_blocks(3) && u.reserve_inode());
        u.release_blocks(3);
        u.release_blocks(3);
        u.release_inode();
        u.release_inode();
        assert_eq!((u.blocks_used(), u.inodes_used()), (0, 0));
        assert_eq!(
            u.released_total(),
            3,
            "only what was held counts as released"
        );
        let s = u.statfs();
        assert_eq!(
            (s.blocks_free, s.files_free),
            (10, 5),
            "the volume is empty"
        );
        assert!(u.reserve_blocks(10) && u.reserve_inode(), "and fills again");
    }

    #[test]
    fn limit_rounds_up_to_whole_blocks() {
        assert_eq!(Usage::new(500_000_000, 1).block_limit(), 122_071);
    }

    #[test]
    fn concurrent_reservations_stop_exactly_at_the_limit() {
        let u = Arc::new(Usage::new(100_000 * BLOCK_SIZE, 1));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let u = u.clone();
                std::thread::spawn(move || {
                    (0..50_000).map(|_| u.reserve_blocks_upto(3)).sum::<u64>()
                })
            })
            .collect();
        let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum::<u64>();
        assert_eq!(total, 100_000);
        assert_eq!(u.blocks_used(), 100_000);
    }
}
