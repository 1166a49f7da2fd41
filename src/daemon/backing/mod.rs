//! The filesystem a medium keeps its files on, reached only through descriptors: a disk
//! volume's backing directory, a memory volume's private tmpfs.
//!
//! - `sys.rs` (with `sys/`): thin wrappers over the `*at` system calls, one per call,
//!   never following a symlink;
//! - `trouble.rs`: which of their errors tell of trouble with the node, logged
//!   (rate-limited);
//! - `mount.rs`: the daemon's private, detached mount of that filesystem, whose
//!   access-time options follow the volume's mount.

pub mod mount;
pub mod sys;
pub mod trouble;
