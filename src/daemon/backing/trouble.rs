//! Errors of the backing filesystem an operator must see. A failing or full node disk
//! (EIO, ENOSPC, EROFS, ...) reaches a pod as an errno, and without a line in the
//! daemon's log nobody on the node would learn of it.
//!
//! Every failed system call on the backing directory passes through [`note`] (the
//! wrappers in `sys.rs` and `handle.rs`), which logs those that tell of trouble with the
//! node's disk or the daemon's resources, with the call and the error, at most one line
//! per [`INTERVAL`] (with how many were left out). Not logged: what is the caller's
//! business (ENOENT, EEXIST, ENOTEMPTY, ENODATA, EACCES, EPERM, EINVAL, ...), what the
//! daemon probes for and handles (ENOSYS, EOPNOTSUPP, ENOTTY, an unaligned `O_DIRECT`
//! request's EINVAL), ESTALE of a handle whose file is gone, and ENOSPC at the volume's
//! own limit, which is the volume's answer, never a system call's.

use crate::daemon::fs::Errno;
use crate::daemon::fs::ratelimit::RateLimit;
use std::time::Duration;

/// At most one line per this long.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Whether `e`, from the backing filesystem, tells of trouble with the node (its disk,
/// its filesystem, the daemon's memory or descriptors) rather than with the request.
pub fn is_trouble(e: Errno) -> bool {
    matches!(
        e.0,
        libc::EIO
            | libc::ENOSPC
            | libc::EDQUOT
            | libc::EROFS
            | libc::EUCLEAN // EFSCORRUPTED
            | libc::EBADMSG // EFSBADCRC
            | libc::ENOMEM
            | libc::EMFILE
            | libc::ENFILE
            | libc::ENOTCONN // a backing directory on a dead FUSE or network mount
            | libc::ESHUTDOWN
            | libc::ETIMEDOUT
            | libc::EREMOTEIO
            | libc::ENOLINK
    )
}

thread_local! {
    /// Set while ENOSPC is the volume's own limit ([`within_limit`]).
    static LIMIT_IS_OURS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, in which ENOSPC from the backing filesystem is the volume's own limit (a
/// memory volume's tmpfs is sized to it), the answer to the request, not trouble.
pub fn within_limit<R>(f: impl FnOnce() -> R) -> R {
    let before = LIMIT_IS_OURS.replace(true);
    let r = f();
    LIMIT_IS_OURS.set(before);
    r
}

/// Logs `e` from the system call `op` if it is trouble (rate-limited); returns it.
pub fn note(op: &str, e: Errno) -> Errno {
    static LIMIT: RateLimit = RateLimit::new(INTERVAL);
    if is_trouble(e)
        && !(e.0 == libc::ENOSPC && LIMIT_IS_OURS.get())
        && let Some(more) = LIMIT.admit_now()
    {
        log::error!(
            "backing filesystem: {op} failed: {}{more}",
            std::io::Error::from_raw_os_error(e.0)
        );
    }
    e
}

/// The calling thread's errno after the system call `op` failed, noted.
pub fn last(op: &str) -> Errno {
    note(op, Errno::last())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nodes_trouble_is_told_from_the_callers_business() {
        for e in [
            libc::EIO,
            libc::ENOSPC,
            libc::EROFS,
            libc::EDQUOT,
            libc::EMFILE,
        ] {
            assert!(is_trouble(Errno(e)), "{e}");
        }
        for e in [
            libc::ENOENT,
            libc::EEXIST,
            libc::ENOTEMPTY,
            libc::ENODATA,
            libc::EACCES,
            libc::EPERM,
            libc::EINVAL,
            libc::ESTALE,
            libc::ENOSYS,
            libc::EOPNOTSUPP,
            libc::EINTR,
        ] {
            assert!(!is_trouble(Errno(e)), "{e}");
        }
    }
}
