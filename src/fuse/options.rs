//! How a volume is mounted and what the kernel is asked for: the one place that decides
//! how the kernel caches and talks to a volume.
//!
//! The mount itself is ours, not fuser's: fuser's own mount always uses type `fuse` (so
//! `mount` could not show `fuse.emptydirfs`), and its unmount fails on busy volumes. We open
//! `/dev/fuse`, call mount(2) and hand the descriptor to `Session::from_fd`.

use super::Adapter;
use crate::fs::Backend;
use fuser::{Config, InitFlags, KernelConfig, Session, SessionACL};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

/// Filesystem type shown by `mount` and in `/proc/self/mountinfo`.
pub const FSTYPE: &str = "fuse.emptydirfs";

/// Largest write request (the kernel caps it at `fs.fuse.max_pages_limit` pages: 1 MiB).
const MAX_WRITE: u32 = 1 << 20;

/// Mounts `backend` at `mountpoint` and completes the FUSE handshake.
///
/// Options: `allow_other` with the kernel's permission checks (`default_permissions`:
/// pods run as many uids), `nodev` and `nosuid` because pods are not trusted, source
/// `emptydirfs-<medium>` and type `fuse.emptydirfs` so that `mount` and `df` name it.
pub fn mount<B: Backend>(
    backend: Arc<B>,
    mountpoint: &Path,
    threads: usize,
) -> io::Result<Session<Adapter<B>>> {
    let dev = unsafe { libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if dev < 0 {
        return Err(io::Error::other(format!(
            "opening /dev/fuse: {}",
            io::Error::last_os_error()
        )));
    }
    let fd = unsafe { OwnedFd::from_raw_fd(dev) };
    let data = format!(
        "fd={dev},rootmode=40000,user_id={},group_id={},default_permissions,allow_other",
        unsafe { libc::geteuid() },
        unsafe { libc::getegid() }
    );
    let source = format!("emptydirfs-{}", backend.medium());
    crate::mounts::mount(&source, mountpoint, FSTYPE, &data)?;
    let mut cfg = Config::default();
    cfg.n_threads = Some(threads.max(1));
    cfg.clone_fd = true;
    Session::from_fd(Adapter::new(backend), fd, SessionACL::All, cfg).inspect_err(|_| {
        let _ = crate::mounts::unmount(mountpoint);
    })
}

/// Kernel features asked for at `init`.
///
/// Deliberately not asked for: `WRITEBACK_CACHE` (ENOSPC would surface at fsync or close
/// instead of from the write(2) that crosses the limit), and the flags fuser 0.18 mishandles
/// (`SETXATTR_EXT`, `HANDLE_KILLPRIV_V2`, `SECURITY_CTX`, `CREATE_SUPP_GROUP`, ...).
pub fn kernel_config(config: &mut KernelConfig) {
    let wanted = [
        InitFlags::FUSE_DO_READDIRPLUS,
        InitFlags::FUSE_READDIRPLUS_AUTO,
        InitFlags::FUSE_PARALLEL_DIROPS,
        InitFlags::FUSE_CACHE_SYMLINKS,
        InitFlags::FUSE_BIG_WRITES,
        InitFlags::FUSE_ASYNC_READ,
    ];
    for flag in wanted {
        if config.add_capabilities(flag).is_err() {
            log::debug!("kernel does not offer {flag:?}");
        }
    }
    let _ = config.set_max_write(MAX_WRITE);
    let _ = config.set_max_background(64);
    let _ = config.set_congestion_threshold(48);
}
