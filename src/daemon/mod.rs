//! What runs inside a volume's daemon (`emptydirfs serve`): the media, the FUSE adapter,
//! the hand-off of a live volume to a successor.
//!
//! Nothing here imports the node's control side ([`crate::control`]); what both need is
//! in [`crate::common`]. The modules are private: the control side cannot reach them,
//! and the compiler says so. The few names the command line and the tests need are
//! re-exported below.
//!
//! # Layout
//! - `fs`: the backend contract (`fs::Backend`), its types and errno, the volume's usage
//!   counters and checks shared by all media;
//! - `memory`: the `Memory` medium, an in-memory inode table;
//! - `backing`: the filesystem a medium keeps files on (a backing directory, a private
//!   tmpfs): system calls, their trouble, the daemon's private mount of it;
//! - `disk`: the disk medium (kubelet's default), a safe passthrough to a backing
//!   directory;
//! - `fuse`: the thin adapter from fuser's `Filesystem` to any backend, the mount
//!   options and kernel features;
//! - `state`: the state a successor reads (a leaf: `fuse` and the media write it);
//! - `journal`: an append-only log in a memfd that outlives its writer, for a successor
//!   after a crash (issue 22; a leaf, not used yet);
//! - `handoff`: the hand-off protocol, predecessor and successor sides;
//! - `serve`: the `serve` command: mount point checks, mounting, signals, shutdown;
//! - `fault`: test-only fault injection.
//!
//! Who depends on whom, top down: `serve` -> `handoff` -> `fuse` -> `memory`, `disk` ->
//! `backing`, `state`, `fs` -> `fault`.

mod backing;
mod disk;
mod fault;
mod fs;
mod fuse;
mod handoff;
// The crash-safe log of issue 22; the keeper and the media's records use it next.
#[cfg_attr(not(test), allow(dead_code))]
mod journal;
mod memory;
mod serve;
mod state;

pub use serve::serve;

/// What the integration tests look at inside a daemon: backends mounted in the test
/// process, the disk medium's metadata allowance, the state checksum. Not for the
/// control side.
#[doc(hidden)]
pub mod testing {
    pub use super::disk::metadata_allowance;
    pub use super::fs::*;
    pub use super::fuse::mount;
    pub use super::memory::MemoryFs;
}
