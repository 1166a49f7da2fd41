//! What a volume is and how it runs, shared by both front ends (the setup helper in
//! [`crate::control::emptydir`] and the CSI node plugin in [`crate::control::csi`]): its spec, its daemon,
//! its mount, its health, and the directories that hold it.
//!
//! # Layout
//! - [`spec`]: a volume's medium, limits and root ownership, and the file keeping them;
//! - [`kv`]: the `key=value` files those are kept in;
//! - [`lifecycle`]: examine, clear, start, set the root of, upgrade (hand off) and stop
//!   one volume;
//! - [`daemon`]: starting a daemon detached (in a given cgroup), finding, stopping it;
//! - [`hugepages`]: hugetlbfs page sizes, the pool check, the mount;
//! - [`probe`]: health and usage from outside the volume: the mount table, the daemon's
//!   control socket and heartbeat, the kernel's count of requests held ([`fusectl`]);
//! - [`names`]: pod UIDs, volume names and the kubelet root, checked;
//! - [`dirs`]: creating (and undoing), locking and deleting directories, never through a
//!   mount.

pub mod daemon;
pub mod dirs;
pub mod fusectl;
pub mod hugepages;
pub mod kv;
pub mod lifecycle;
pub mod names;
pub mod probe;
pub mod spec;
