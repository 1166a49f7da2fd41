//! emptydirfs: a FUSE filesystem that serves Kubernetes emptyDir volumes with hard size
//! and inode limits.
//!
//! # Layout
//! - [`fs`]: the backend contract ([`fs::Backend`]), its types and errno, the volume's
//!   usage counters ([`fs::usage`]) and checks shared by all backends;
//! - [`memory`]: the `Memory` medium, an in-memory inode table;
//! - [`disk`]: the disk medium (kubelet's default), a safe passthrough to a backing
//!   directory;
//! - [`fuse`]: the thin adapter from fuser's `Filesystem` to any backend, and the mount
//!   options and kernel features;
//! - [`serve`]: the `serve` command: mount point checks, mounting, signals, shutdown;
//! - [`volume`]: what a volume is and how it runs (spec, daemon, mount, health), shared by
//!   both front ends;
//! - [`emptydir`]: the setup helper (`setup`, `teardown`, `status`): volumes laid out as
//!   kubelet lays out emptyDir volumes;
//! - [`csi`]: the CSI node plugin (`csi`): the same volumes for pods through kubelet's
//!   CSI ephemeral inline volumes, daemons placed in the pods' cgroups;
//! - [`cgroup`]: the node's cgroup hierarchies, kubelet's pod cgroups;
//! - [`handoff`]: a live volume handed from its daemon to a new one (upgrades with no
//!   error for the pod);
//! - [`mounts`]: the mount table and unmounting;
//! - [`quantity`]: Kubernetes quantities (`64Mi`, `1e9`);
//! - [`cli`], [`error`]: arguments, failures and exit codes. `main.rs` only dispatches.

pub mod cgroup;
pub mod cli;
pub mod csi;
pub mod disk;
pub mod emptydir;
pub mod error;
pub mod fs;
pub mod fuse;
pub mod handoff;
pub mod memory;
pub mod mounts;
pub mod quantity;
pub mod serve;
pub mod volume;
