//! What the kernel does not tell a FUSE daemon about a caller: its supplementary groups.

use super::Caller;
use std::fs;

/// Whether `who` is a member of `gid`, primary or supplementary. Reads
/// `/proc/<pid>/status` only when the primary group does not answer it, which is rare (a
/// setgid file created in a setgid directory, a file of another group written to).
pub fn in_group(who: &Caller, gid: u32) -> bool {
    if who.gid == gid {
        return true;
    }
    let Ok(status) = fs::read_to_string(format!("/proc/{}/status", who.pid)) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|groups| groups.split_whitespace().any(|g| g.parse() == Ok(gid)))
}

/// As [`in_group`], or root, who may keep a setgid bit for any group.
pub fn in_group_or_root(who: &Caller, gid: u32) -> bool {
    who.uid == 0 || in_group(who, gid)
}
