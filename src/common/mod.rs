//! The few names both sides of the program need: the daemon that serves a volume
//! ([`crate::daemon`]) and the node's control side that starts, watches and stops daemons
//! ([`crate::control`]). Neither side imports the other; what they share is here.
//!
//! # Layout
//! - this file: the filesystem type of a volume's mount, a build's identity, tmpfs's
//!   defaults (what a memory volume without limits gets);
//! - [`wire`]: the control socket every daemon listens on (messages with descriptors);
//! - [`control`]: what is asked over it by the control side (`STATUS`) and its answer;
//! - [`heartbeat`]: when a daemon's control thread last ran, readable while it cannot
//!   answer;
//! - [`shared_map`]: a memfd mapped shared (the heartbeat's, a daemon's journal);
//! - [`serve_args`]: the `serve` command line, built by the control side, parsed by the
//!   daemon;
//! - [`umask`]: a umask of one thread's own (nothing changes the process-wide one).

pub mod control;
pub mod heartbeat;
pub mod serve_args;
pub mod shared_map;
pub mod umask;
pub mod wire;

use std::sync::OnceLock;

/// The filesystem type of a volume's FUSE mount, as the mount table shows it.
pub const FSTYPE: &str = "fuse.emptydirfs";

/// A fast 64-bit checksum (FNV-1a over 8-byte words): catches a damaged or cut state,
/// and tells two builds apart.
pub fn checksum(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for chunk in data.chunks(8) {
        // Eight bytes a round: the same spread of bits for a tenth of the time.
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h ^= u64::from_le_bytes(w);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    h ^ data.len() as u64
}

/// This program's version and build: `0.1.0+<hash of the executable>`, so that two
/// builds of one version are told apart.
pub fn build() -> &'static str {
    static BUILD: OnceLock<String> = OnceLock::new();
    BUILD.get_or_init(|| {
        let hash = std::fs::read("/proc/self/exe")
            .map(|b| format!("{:016x}", checksum(&b)))
            .unwrap_or_else(|_| "unknown".into());
        format!(
            "{}+{}",
            env!("CARGO_PKG_VERSION"),
            &hash[..12.min(hash.len())]
        )
    })
}

fn physical_pages() -> u64 {
    // SAFETY: sysconf reads a system value; it has no memory effects.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) }).unwrap_or(0)
}

/// tmpfs's default `size`: half of physical memory, in whole pages.
pub fn default_size_limit() -> u64 {
    physical_pages() / 2 * 4096
}

/// tmpfs's default `nr_inodes`: half the number of physical pages.
pub fn default_inode_limit() -> u64 {
    physical_pages() / 2
}
