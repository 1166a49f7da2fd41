//! How a volume is doing, read from the mount table and one `statfs`, never from a walk:
//! the daemon's counters answer `statfs` at once however many files the volume holds.
//!
//! `statfs` on a FUSE mount whose daemon is stopped (not dead) would block; it runs on a
//! thread of its own and is given up on after a timeout, so `status` never hangs.

use crate::mounts;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Usage as `statfs` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Size in bytes (`None` when the filesystem reports none, as hugetlbfs without `size=`).
    pub size: Option<u64>,
    pub used_bytes: Option<u64>,
    /// What an unprivileged writer may still use (`f_bavail`).
    pub available_bytes: Option<u64>,
    pub inodes: Option<u64>,
    pub inodes_used: Option<u64>,
    pub inodes_free: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Mounted (with this filesystem type) and answering.
    Serving(String, Counters),
    /// A FUSE mount whose daemon is gone: every access fails with `ENOTCONN` (the
    /// requests under way when it died with `ECONNABORTED`).
    DeadMount,
    /// Mounted, but `statfs` did not answer in time (a stopped or stuck daemon).
    NotAnswering,
    /// Mounted, and `statfs` failed otherwise.
    Failing(String),
    NotMounted,
}

impl Health {
    pub fn label(&self) -> &'static str {
        match self {
            Health::Serving(..) => "serving",
            Health::DeadMount => "dead mount",
            Health::NotAnswering => "not answering",
            Health::Failing(_) => "failing",
            Health::NotMounted => "not mounted",
        }
    }
}

/// The health of whatever is mounted at `path` (a canonical path).
pub fn probe(path: &Path) -> Health {
    let fstype = match mounts::mounted_at(path) {
        Ok(Some(m)) => m.fstype,
        Ok(None) => return Health::NotMounted,
        Err(e) => return Health::Failing(format!("reading the mount table: {e}")),
    };
    let (tx, rx) = mpsc::channel();
    let owned = path.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("statfs".into())
        .spawn(move || tx.send(statvfs(&owned)));
    if spawned.is_err() {
        return Health::Failing("cannot start a thread".into());
    }
    match rx.recv_timeout(ANSWER_TIMEOUT) {
        Ok(Ok(st)) => Health::Serving(fstype, counters(&st)),
        // ECONNABORTED: the daemon died while the request was on its way.
        Ok(Err(e)) if e == libc::ENOTCONN || e == libc::ECONNABORTED => Health::DeadMount,
        Ok(Err(e)) => Health::Failing(std::io::Error::from_raw_os_error(e).to_string()),
        Err(_) => Health::NotAnswering,
    }
}

fn statvfs(path: &Path) -> Result<libc::statvfs, i32> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)?;
    // SAFETY: libc::statvfs is plain integers, for which all-zero bytes are a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated CString and `st` a live, writable statvfs, both
    // outliving the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0 {
        Ok(st)
    } else {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    }
}

fn counters(st: &libc::statvfs) -> Counters {
    // hugetlbfs without size= or nr_inodes= reports -1 (or 0) for what it does not bound.
    let known = |n: u64| n != 0 && n != u64::MAX;
    let bytes = |n: u64| n.saturating_mul(st.f_frsize);
    let sized = known(st.f_blocks);
    let counted = known(st.f_files);
    Counters {
        size: sized.then(|| bytes(st.f_blocks)),
        used_bytes: sized.then(|| bytes(st.f_blocks - st.f_bfree.min(st.f_blocks))),
        available_bytes: sized.then(|| bytes(st.f_bavail.min(st.f_blocks))),
        inodes: counted.then_some(st.f_files),
        inodes_used: counted.then(|| st.f_files - st.f_ffree.min(st.f_files)),
        inodes_free: counted.then(|| st.f_ffree.min(st.f_files)),
    }
}
