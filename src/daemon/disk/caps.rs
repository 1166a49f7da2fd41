//! What the daemon remembers about one xattr: `security.capability`.
//!
//! The kernel asks for it before every `write(2)` (`file_remove_privs`: a write must drop
//! file capabilities) and keeps no answer for a FUSE inode, so each write costs a
//! `GETXATTR` request. Asked of the backing file, that is a `getxattr` through
//! `/proc/self/fd/N`, a path walk: a sixth of the daemon's CPU time during 4 KiB writes.
//! Every xattr change of a volume goes through this daemon, so a node can remember that
//! it has none and answer `ENODATA` at once.
//!
//! The one risk is a stale "none" while a capability exists: a write would then keep it.
//! So the state is a generation with a "known absent" bit: a change bumps the generation
//! (and clears the bit) *after* it reaches the backing file, and a lookup sets the bit
//! only if the generation is still the one it saw before asking the backing file.

use crate::daemon::fs::{Errno, Result};
use std::sync::atomic::{AtomicU64, Ordering};

pub const NAME: &str = "security.capability";

/// Generation (`>> 1`) and "known absent" (`& 1`) of a node's `security.capability`.
#[derive(Debug, Default)]
pub struct CapsKnown(AtomicU64);

impl CapsKnown {
    /// Answers a lookup of `security.capability`, asking `get` (the backing file) unless
    /// the answer is known to be "none".
    pub fn lookup(&self, get: impl FnOnce() -> Result<Vec<u8>>) -> Result<Vec<u8>> {
        let seen = self.0.load(Ordering::Acquire);
        if seen & 1 == 1 {
            return Err(Errno::ENODATA);
        }
        let r = get();
        if r == Err(Errno::ENODATA) {
            let _ = self
                .0
                .compare_exchange(seen, seen | 1, Ordering::AcqRel, Ordering::Relaxed);
        }
        r
    }

    /// Records that the node's inode was just created by this daemon (so it has none),
    /// unless the node has already seen an xattr change.
    pub fn created(&self) {
        let _ = self
            .0
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// Forgets what is known: call after any xattr change of the node has been made.
    pub fn changed(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some((v | 1) + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_none_until_a_change() {
        let c = CapsKnown::default();
        let mut asked = 0;
        for _ in 0..3 {
            let r = c.lookup(|| {
                asked += 1;
                Err(Errno::ENODATA)
            });
            assert_eq!(r, Err(Errno::ENODATA));
        }
        assert_eq!(asked, 1);
        c.changed();
        assert_eq!(c.lookup(|| Ok(vec![1])), Ok(vec![1]));
        assert_eq!(
            c.lookup(|| Ok(vec![2])),
            Ok(vec![2]),
            "a value is never cached"
        );
    }

    #[test]
    fn a_new_file_has_none_unless_already_changed() {
        let c = CapsKnown::default();
        c.created();
        assert_eq!(c.lookup(|| Ok(vec![1])), Err(Errno::ENODATA));
        let d = CapsKnown::default();
        d.changed();
        d.created();
        assert_eq!(d.lookup(|| Ok(vec![1])), Ok(vec![1]));
    }

    #[test]
    fn a_change_during_a_lookup_wins() {
        let c = CapsKnown::default();
        // The backing file said "none", but a capability was set before the answer came.
        let r = c.lookup(|| {
            c.changed();
            Err(Errno::ENODATA)
        });
        assert_eq!(r, Err(Errno::ENODATA));
        assert_eq!(
            c.lookup(|| Ok(vec![7])),
            Ok(vec![7]),
            "not remembered as none"
        );
    }
}
