//! Files the kernel reads and maps itself (FUSE passthrough, see `fuse/iomode.rs`), and
//! how the limit still holds for them.
//!
//! A passthrough file's reads never reach the daemon, which is fine; its writes do (a
//! file opened for writing is served direct even when it is passthrough). What a shared
//! writable mapping stores goes to the backing file's page cache without a request, so
//! it would take space the daemon never charged wherever it fills a hole. So an inode is
//! made passthrough only while it has no holes, and kept without them until its last
//! passthrough open is released ([`NodeState::hole_free`]): a write past the end, or a
//! truncate that grows the file, first allocates (and charges) the gap, and punching a
//! hole zeroes the range instead. Blocks already allocated take no new space when a
//! mapping writes them, so the usage stays exact.

use super::account::{self, Charge};
use super::nodes::{NodeState, blocks_of};
use super::{DiskFs, sys};
use crate::daemon::fs::*;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

impl DiskFs {
    /// An unlinked empty file on the backing filesystem (`O_TMPFILE`).
    pub(super) fn probe_file(&self) -> Option<OwnedFd> {
        sys::openat(
            self.nodes.root_fd(),
            c".",
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            0o600,
        )
        .inspect_err(|e| log::info!("no O_TMPFILE on the backing filesystem ({e}): no passthrough"))
        .ok()
    }

    pub(super) fn begin_passthrough(&self, ino: Ino, fh: Fh) -> Option<OwnedFd> {
        let file = self.file(fh).ok()?;
        if file.node.ino != ino {
            return None;
        }
        let fd = file.fd.as_fd();
        let mut s = file.node.state();
        let size = sys::fstat(fd).ok()?.st_size as u64;
        // The first hole at or after 0: the end of the file when there is none.
        let hole = sys::lseek(fd, 0, libc::SEEK_HOLE).ok()? as u64;
        if hole < size {
            return None;
        }
        let dup = fd.try_clone_to_owned().ok()?;
        s.hole_free = true;
        Some(dup)
    }

    pub(super) fn end_passthrough(&self, ino: Ino) {
        if let Ok(node) = self.nodes.get(ino) {
            node.state().hole_free = false;
        }
    }

    pub(super) fn resume_passthrough(&self, ino: Ino) {
        if let Ok(node) = self.nodes.get(ino) {
            node.state().hole_free = true;
        }
    }

    /// For a hole-free node (`s`, locked) whose file `fd` is about to be written at
    /// `offset` or grown to `offset`: allocates and charges what lies between its end
    /// and `offset`, so no hole opens. ENOSPC if that does not fit.
    pub(super) fn allocate_gap(
        &self,
        fd: BorrowedFd<'_>,
        s: &mut NodeState,
        offset: u64,
    ) -> Result<()> {
        if !s.hole_free {
            return Ok(());
        }
        let size = sys::fstat(fd)?.st_size as u64;
        if offset <= size {
            return Ok(());
        }
        let (first, end) = (size / BLOCK_SIZE, offset.div_ceil(BLOCK_SIZE));
        let mut charge = Charge::reserve(&self.usage, account::hole_blocks(fd, first, end)?)?;
        let r = sys::fallocate(fd, libc::FALLOC_FL_KEEP_SIZE, size, offset - size);
        charge.measured(&mut s.charged, blocks_of(&sys::fstat(fd)?));
        r
    }
}

/// The `fallocate` mode to run on a node: on a hole-free one, a punched hole is zeroed
/// (and stays allocated) instead.
pub(super) fn fallocate_mode(s: &NodeState, mode: i32) -> i32 {
    if s.hole_free && mode & libc::FALLOC_FL_PUNCH_HOLE != 0 {
        libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE
    } else {
        mode
    }
}
