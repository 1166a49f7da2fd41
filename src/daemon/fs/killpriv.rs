//! Clearing setuid and setgid where the kernel would clear them on a local filesystem.
//!
//! With `FUSE_HANDLE_KILLPRIV_V2` the kernel leaves this to the filesystem (and, in
//! exchange, stops asking for `security.capability` before every write; it still
//! removes that xattr itself). The VFS rules (`setattr_should_drop_suidgid`,
//! `setattr_should_drop_sgid`, `chown_common`), for regular files only:
//!
//! - a write, truncate, `fallocate` or `copy_file_range` by a caller without
//!   `CAP_FSETID` clears S_ISUID, and S_ISGID if the file is group-executable or the
//!   caller is not in the file's group; a caller with `CAP_FSETID` keeps both;
//! - a change of owner or group clears S_ISUID whoever asks, and S_ISGID if the file is
//!   group-executable, or the caller is neither in the file's group nor has `CAP_FSETID`.
//!
//! The kernel tells a write whether its caller lacks `CAP_FSETID` (the WRITE request's
//! kill flag). fuser 0.18 drops the SETATTR kill flag, so for truncates and the empty
//! SETATTR the kernel sends before `fallocate` and `copy_file_range` the caller's
//! capabilities are read from `/proc/<pid>/status` ([`has_fsetid`]); a caller that is
//! gone counts as unprivileged (bits are cleared rather than kept). That read is made
//! only for a file that has a setid bit, when the answer can change the mode: a chown or
//! truncate of any other file (every file `tar` extracts as root) costs no syscall.

use super::Caller;
use super::creds::in_group;

const S_ISUID: u16 = 0o4000;
const S_ISGID: u16 = 0o2000;
const S_IXGRP: u16 = 0o0010;
/// `linux/capability.h`.
const CAP_FSETID: u32 = 4;

/// Why the setid bits of a file are being looked at.
#[derive(Clone, Copy, Debug)]
pub enum Kill {
    /// Its data or size changes, by a caller without `CAP_FSETID`.
    Modified(Caller),
    /// Its size changes (a truncate, an `O_TRUNC` open, the empty SETATTR before
    /// `fallocate` or `copy_file_range`), by a caller whose `CAP_FSETID` the kernel did
    /// not tell: a caller with it keeps both bits.
    Truncated(Caller),
    /// Its owner or group changes, by a caller whose `CAP_FSETID` the kernel did not tell.
    Chown(Caller),
}

/// What a write clears besides writing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Clear {
    /// The setid bits as [`cleared`] says for this writer, who lacks `CAP_FSETID`.
    pub setid: Option<Caller>,
    /// `security.capability`, whoever writes. The kernel removes it itself before a
    /// write it sends through its page cache, not before one of a `FOPEN_DIRECT_IO` file.
    pub caps: bool,
}

/// The permission bits of a regular file of group `file_gid` after `kill`. Asks for
/// the caller's `CAP_FSETID` ([`has_fsetid`]) only when the answer decides.
pub fn cleared(perm: u16, file_gid: u32, kill: &Kill) -> u16 {
    cleared_with(perm, file_gid, kill, has_fsetid)
}

/// [`cleared`], with `fsetid` telling whether a process has `CAP_FSETID`.
fn cleared_with(perm: u16, file_gid: u32, kill: &Kill, fsetid: impl Fn(u32) -> bool) -> u16 {
    if perm & (S_ISUID | S_ISGID) == 0 {
        return perm;
    }
    let (who, chown) = match kill {
        Kill::Modified(who) => (who, false),
        Kill::Truncated(who) if fsetid(who.pid) => return perm,
        Kill::Truncated(who) => (who, false),
        Kill::Chown(who) => (who, true),
    };
    let mut p = perm & !S_ISUID;
    if p & S_IXGRP != 0
        || (p & S_ISGID != 0 && !in_group(who, file_gid) && !(chown && fsetid(who.pid)))
    {
        p &= !S_ISGID;
    }
    p
}

/// Whether process `pid` has `CAP_FSETID` in its effective set now.
pub fn has_fsetid(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_FSETID) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(uid: u32, gid: u32) -> Caller {
        Caller {
            uid,
            gid,
            pid: u32::MAX, // no such process: no supplementary groups
        }
    }

    #[test]
    fn modifications_clear_as_the_vfs_does() {
        let owner = who(1000, 1000);
        let m = |perm, gid| cleared(perm, gid, &Kill::Modified(owner));
        assert_eq!(m(0o4755, 1000), 0o0755, "setuid always goes");
        assert_eq!(
            m(0o2755, 1000),
            0o0755,
            "setgid of a group-executable file goes"
        );
        assert_eq!(
            m(0o2745, 1000),
            0o2745,
            "non-executable setgid stays for a group member"
        );
        assert_eq!(m(0o2745, 2000), 0o0745, "and goes for anyone else");
        assert_eq!(m(0o6755, 2000), 0o0755);
        assert_eq!(m(0o0755, 2000), 0o0755, "nothing to clear");
    }

    #[test]
    fn a_chown_clears_setuid_even_for_the_privileged() {
        let root = who(0, 0);
        let privileged = |_| true;
        let c = |perm, gid, k, f: &dyn Fn(u32) -> bool| cleared_with(perm, gid, &k, f);
        assert_eq!(c(0o4755, 0, Kill::Chown(root), &privileged), 0o0755);
        assert_eq!(
            c(0o2745, 5, Kill::Chown(root), &privileged),
            0o2745,
            "CAP_FSETID keeps a non-exec setgid"
        );
        assert_eq!(c(0o2745, 5, Kill::Chown(who(7, 7)), &|_| false), 0o0745);
        assert_eq!(
            c(0o2755, 0, Kill::Chown(root), &privileged),
            0o0755,
            "a group-exec setgid goes for all"
        );
    }

    #[test]
    fn a_truncate_keeps_both_bits_for_the_privileged_only() {
        let owner = who(1000, 1000);
        let t =
            |perm, f: &dyn Fn(u32) -> bool| cleared_with(perm, 1000, &Kill::Truncated(owner), f);
        assert_eq!(t(0o6755, &|_| true), 0o6755);
        assert_eq!(t(0o6755, &|_| false), 0o0755);
        assert_eq!(
            t(0o2745, &|_| false),
            0o2745,
            "as a write by a group member"
        );
    }

    #[test]
    fn capabilities_are_asked_only_of_a_file_with_a_setid_bit() {
        let asked = std::cell::Cell::new(0);
        let ask = |_| {
            asked.set(asked.get() + 1);
            true
        };
        let stranger = who(7, 7);
        for k in [Kill::Chown(stranger), Kill::Truncated(stranger)] {
            assert_eq!(cleared_with(0o0755, 5, &k, ask), 0o0755);
            assert_eq!(
                cleared_with(0o1777, 5, &k, ask),
                0o1777,
                "sticky is no setid bit"
            );
        }
        assert_eq!(asked.get(), 0);
        assert_eq!(cleared_with(0o4755, 5, &Kill::Chown(stranger), ask), 0o0755);
        assert_eq!(asked.get(), 0, "setuid goes on a chown whoever asks");
        assert_eq!(cleared_with(0o2745, 5, &Kill::Chown(stranger), ask), 0o2745);
        assert_eq!(asked.get(), 1);
    }

    #[test]
    fn this_test_runs_with_or_without_fsetid_and_a_dead_pid_has_none() {
        let _ = has_fsetid(std::process::id());
        assert!(!has_fsetid(u32::MAX));
    }
}
