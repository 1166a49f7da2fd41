//! A daemon's state as a successor reads it: the versioned, checksummed container
//! ([`format`]) and the descriptors that travel with it. A leaf of the daemon: the
//! FUSE adapter and the media write their parts with it (each medium implements
//! `fs::Transfer`), and `handoff/` moves the whole between processes.
//!
//! # Layout
//! - this file: [`FdTable`];
//! - [`format`]: the container and the primitives each part is written with.

pub mod format;

pub use format::{FORMAT_VERSION, OLDEST_FORMAT, Reader, Refused, Writer};
use std::os::fd::{OwnedFd, RawFd};

/// Descriptors received, taken by position (each once).
pub struct FdTable(Vec<Option<OwnedFd>>);

impl FdTable {
    pub fn new(fds: Vec<OwnedFd>) -> FdTable {
        FdTable(fds.into_iter().map(Some).collect())
    }

    pub fn take(&mut self, i: u64) -> Result<OwnedFd, Refused> {
        self.0
            .get_mut(i as usize)
            .and_then(Option::take)
            .ok_or_else(|| format!("descriptor {i} of the state is missing or taken twice"))
    }

    /// The position a descriptor will have when pushed.
    pub fn push(fds: &mut Vec<RawFd>, fd: RawFd) -> u64 {
        fds.push(fd);
        (fds.len() - 1) as u64
    }
}
