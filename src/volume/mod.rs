//! The setup helper: `setup`, `teardown` and `status` of emptyDir volumes laid out where
//! kubelet lays them out (see `layout.rs`), each FUSE volume served by a detached daemon
//! and each `HugePages` volume a hugetlbfs mount.
//!
//! # Layout
//! - [`layout`]: the paths of a volume and the checks on its names and kubelet root;
//! - [`spec`]: a volume's medium, limits and root ownership, and `volume.conf`;
//! - [`dirs`]: creating (and undoing), locking and deleting the directories;
//! - [`daemon`]: starting a daemon detached, waiting until it mounts, finding, stopping;
//! - [`hugepages`]: hugetlbfs page sizes, the pool check, the mount;
//! - [`probe`]: health and usage from the mount table and `statfs`;
//! - [`setup`], [`teardown`], [`status`]: the three commands.

pub mod daemon;
pub mod dirs;
pub mod hugepages;
pub mod layout;
pub mod probe;
pub mod setup;
pub mod spec;
pub mod status;
pub mod teardown;
