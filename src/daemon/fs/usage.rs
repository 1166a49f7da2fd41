//! A volume's hard limits and what is used of them, as lock-free counters.
//!
//! Space is counted in [`BLOCK_SIZE`] blocks and inodes one by one. Every allocation
//! reserves before it takes (a compare-and-swap loop that never lets `used` pass the
//! limit), so concurrent writers can never push a volume over its limit, and `statfs`
//! answers from the counters with no walk.
//!
//! Metadata (a disk volume's directories) is counted apart from data: it takes the
//! metadata allowance first and only beyond it the limit, so data has the whole limit
//! (a 64 MiB volume holds 64 MiB of files) while data and metadata together never pass
//! limit + allowance.

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
    /// Blocks of the limit in use: data, and metadata beyond the allowance (its spill).
    blocks: AtomicU64,
    /// Metadata blocks, all of them: the allowance holds up to `metadata_allowance` of
    /// them, `blocks` holds the rest.
    metadata: AtomicU64,
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
            metadata: AtomicU64::new(0),
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

    /// Lets metadata take up to `blocks` beyond the limit, so that data has the whole
    /// limit and a full volume can still get a new entry (an empty file, a directory, a
    /// link) as tmpfs can: data never passes the limit, data and metadata together never
    /// pass limit + allowance.
    pub fn with_metadata_allowance(mut self, blocks: u64) -> Usage {
        self.metadata_allowance = blocks;
        self
    }

    pub fn metadata_allowance(&self) -> u64 {
        self.metadata_allowance
    }

    /// Blocks of the limit that `metadata` blocks take: those beyond the allowance.
    fn spill(&self, metadata: u64) -> u64 {
        metadata.saturating_sub(self.metadata_allowance)
    }

    /// Takes exactly `want` blocks for metadata (a directory's blocks), from the
    /// allowance and, once it is used up, from the limit.
    pub fn reserve_metadata_blocks(&self, want: u64) -> bool {
        if want == 0 {
            return true;
        }
        // The spill is taken from the limit before the metadata counter moves, for the
        // exact move that succeeds: `blocks` never holds less than the spill.
        loop {
            let m = self.metadata.load(Relaxed);
            let spill = self.spill(m.saturating_add(want)) - self.spill(m);
            if spill > 0 && !self.reserve_blocks(spill) {
                return false;
            }
            let moved = self
                .metadata
                .compare_exchange(m, m.saturating_add(want), Relaxed, Relaxed);
            if moved.is_ok() {
                return true;
            }
            self.release_blocks(spill);
        }
    }

    /// Gives back `n` metadata blocks (a release of more than is held stops at 0), and
    /// the limit's blocks they no longer spill into.
    pub fn release_metadata_blocks(&self, n: u64) {
        if n == 0 {
            return;
        }
        let before = self
            .metadata
            .fetch_update(Relaxed, Relaxed, |m| Some(m.saturating_sub(n)))
            .unwrap_or_else(|m| m);
        let after = before.saturating_sub(n);
        self.release_blocks(self.spill(before) - self.spill(after));
    }

    /// Counts `n` metadata blocks taken without a reservation (found after the fact, or
    /// already there when a volume is served again).
    pub fn force_add_metadata_blocks(&self, n: u64) {
        let before = self.metadata.fetch_add(n, Relaxed);
        self.force_add_blocks(self.spill(before.saturating_add(n)) - self.spill(before));
    }

    /// Metadata blocks, those in the allowance and those beyond it.
    pub fn metadata_blocks_used(&self) -> u64 {
        self.metadata.load(Relaxed)
    }

    /// Everything used: data and metadata (on disk, what `du` of the backing directory
    /// counts).
    pub fn total_blocks_used(&self) -> u64 {
        let in_allowance = self.metadata_blocks_used().min(self.metadata_allowance);
        self.blocks_used().saturating_add(in_allowance)
    }

    /// Blocks of the limit in use: data, and metadata beyond the allowance.
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

    /// Size is the limit (or what the limit's blocks hold, when a volume served again
    /// holds more); Avail is what is left of it for data; Used (Size - Free) is all that
    /// is used, data and the metadata in the allowance (on disk what `du` counts), up to
    /// Size. So Avail exceeds Free by the metadata the allowance holds, up to a full limit.
    pub fn statfs(&self) -> StatFs {
        let used = self.blocks_used();
        let size = self.block_limit.max(used);
        let free = self.block_limit.saturating_sub(used);
        StatFs {
            blocks: size,
            blocks_free: size.saturating_sub(self.total_blocks_used()),
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
    /// Metadata blocks; `None` in a state from before format 3, whose `blocks` counted
    /// metadata as data (see [`UsageSnapshot::split_metadata`]).
    pub metadata: Option<u64>,
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
            metadata: Some(self.metadata.load(Relaxed)),
        }
    }

    /// The counters of a snapshot (one from before format 3 with no metadata apart:
    /// split it first where the medium has any).
    pub fn from_snapshot(s: UsageSnapshot) -> Usage {
        Usage {
            block_limit: s.block_limit,
            metadata_allowance: s.metadata_allowance,
            inode_limit: s.inode_limit,
            blocks: AtomicU64::new(s.blocks),
            metadata: AtomicU64::new(s.metadata.unwrap_or(0)),
            inodes: AtomicU64::new(s.inodes),
            released: AtomicU64::new(s.released),
        }
    }
}

impl UsageSnapshot {
    /// Writes the snapshot in the writer's layout; before format 3, `blocks` counted
    /// all metadata blocks with the data, as older builds count them.
    pub fn write(&self, w: &mut crate::daemon::state::Writer) {
        let apart = w.version() >= 3;
        let in_allowance = self.metadata.unwrap_or(0).min(self.metadata_allowance);
        for v in [
            self.block_limit,
            self.metadata_allowance,
            self.inode_limit,
            if apart {
                self.blocks
            } else {
                self.blocks.saturating_add(in_allowance)
            },
            self.inodes,
            self.released,
        ] {
            w.u64(v);
        }
        if apart {
            w.u64(self.metadata.unwrap_or(0));
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
            metadata: if r.version() >= 3 {
                Some(r.u64()?)
            } else {
                None
            },
        })
    }

    /// For a state from before format 3, whose `blocks` counted `metadata` blocks (found
    /// again by the medium) with the data: counts them apart, as this build does.
    pub fn split_metadata(&mut self, metadata: u64) {
        if self.metadata.is_none() {
            let in_allowance = metadata.min(self.metadata_allowance);
            self.blocks = self.blocks.saturating_sub(in_allowance);
            self.metadata = Some(metadata);
        }
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
mod tests;
