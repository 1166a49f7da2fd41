//! The node's control side: what lays volumes out, starts, watches and stops their
//! daemons, for both front ends (the setup helper and the CSI node plugin).
//!
//! Nothing here imports a daemon's internals ([`crate::daemon`]'s modules are private to
//! it); a daemon is known by its command line, its mount and its control socket
//! ([`crate::common`]). Nothing here ever enters a volume that may be wedged.
//!
//! # Layout
//! - [`volume`]: what a volume is and how it runs (spec, daemon, mount, health,
//!   directories), shared by both front ends;
//! - [`emptydir`]: the setup helper (`setup`, `teardown`, `status`, `upgrade`): volumes
//!   laid out as kubelet lays out emptyDir volumes;
//! - [`csi`]: the CSI node plugin (`csi`): the same volumes through kubelet's CSI
//!   ephemeral inline volumes, daemons placed in the pods' cgroups;
//! - [`cgroup`]: the node's cgroup hierarchies, kubelet's pod cgroups.

pub mod cgroup;
pub mod csi;
pub mod emptydir;
pub mod volume;
