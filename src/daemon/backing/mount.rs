//! The daemon's own mount of the backing directory (or of a memory volume's tmpfs,
//! [`BackingMount::adopt`]), so that the backing filesystem
//! updates access times as the volume's mount options say, not as the node's mount of it
//! does.
//!
//! The backing filesystem updates a backing file's atime when it is read (by the daemon,
//! or by the kernel itself for a file read by passthrough, a read that never reaches the
//! daemon), by the options of the mount the file was opened through. So the daemon opens
//! everything through a private, detached clone of the backing directory's mount
//! (`open_tree(OPEN_TREE_CLONE)`): its root is the descriptor file handles are opened
//! from, and every descriptor opened from a handle, by name below it or by reopening is
//! on it. The clone's atime options (`mount_setattr`) follow the volume's mount
//! ([`Options`]): `relatime`, `strictatime`, `noatime`, `nodiratime`; a read-only volume
//! mount is `noatime` here (the daemon itself must still write). Changed options apply
//! at once to files already open through it. No mount namespace shows the clone, and no
//! mount event propagates to or from it.
//!
//! The clone stays attached to its own anonymous namespace while its tree descriptor is
//! open (closed, the clone is dissolved and its options can no longer change): the daemon
//! holds it, and a hand-off passes it on (state format 3). A successor of a daemon that
//! had none (format 1 or 2) clones the backing directory itself. Where the kernel refuses
//! (no `CAP_SYS_ADMIN`, a kernel before 5.12), files are opened through the node's mount,
//! whose options then decide, as before.

use super::sys;
use crate::daemon::fs::atime::{Options, Rule};
use crate::daemon::fs::{Errno, Result};
use crate::daemon::state::{FdTable, Reader, Refused, Writer};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

/// No options applied yet.
const NONE: u8 = u8::MAX;

/// The private mount, if the kernel gave one.
pub struct BackingMount {
    /// The clone's tree (`O_PATH`), held to keep it attached.
    tree: Option<OwnedFd>,
    /// The [`Options::bits`] applied to it last.
    applied: AtomicU8,
}

impl BackingMount {
    /// Clones the mount of the directory `dir` (a descriptor of the backing directory on
    /// the node's mount) and returns it with a descriptor of the same directory on the
    /// clone, its access times off until [`BackingMount::follow`] says otherwise (the
    /// daemon's own walk at start changes none). Where that fails, says why: the caller
    /// serves through `dir` instead.
    pub fn clone_of(dir: BorrowedFd<'_>) -> Result<(BackingMount, OwnedFd)> {
        let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_EMPTY_PATH as u32;
        // SAFETY: open_tree reads the NUL-terminated empty path and returns a new
        // descriptor, owned by no one else, or -1.
        let fd =
            unsafe { libc::syscall(libc::SYS_open_tree, dir.as_raw_fd(), c"".as_ptr(), flags) };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: `fd` was just returned to us, and is owned here alone.
        let tree = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        let root = sys::openat(tree.as_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        let (a, b) = (sys::fstat(dir)?, sys::fstat(root.as_fd())?);
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
            return Err(Errno::EIO);
        }
        let m = BackingMount {
            tree: Some(tree),
            applied: AtomicU8::new(NONE),
        };
        m.apply(Options::NEVER)?;
        Ok((m, root))
    }

    /// A mount made for the daemon alone (a memory volume's tmpfs, `fsmount`): `tree`
    /// is its descriptor. Access times as a new mount's (`relatime`) until
    /// [`BackingMount::follow`] says otherwise.
    pub fn adopt(tree: OwnedFd) -> BackingMount {
        BackingMount {
            tree: Some(tree),
            applied: AtomicU8::new(NONE),
        }
    }

    /// The mount's root (`O_PATH`), to open from.
    pub fn tree(&self) -> Option<BorrowedFd<'_>> {
        self.tree.as_ref().map(|t| t.as_fd())
    }

    /// Files are opened through the node's mount of the backing directory.
    pub fn none() -> BackingMount {
        BackingMount {
            tree: None,
            applied: AtomicU8::new(NONE),
        }
    }

    /// Gives the private mount the options `o` (the volume's), if it has others.
    pub fn follow(&self, o: Options) {
        if self.tree.is_none() || self.applied.load(Relaxed) == o.bits() {
            return;
        }
        if let Err(e) = self.apply(o) {
            log::warn!("setting access-time options {o:?} on the backing mount: {e}");
            self.applied.store(o.bits(), Relaxed); // said once, not on every request
        }
    }

    fn apply(&self, o: Options) -> Result<()> {
        let Some(tree) = &self.tree else {
            return Ok(());
        };
        let atime = match o.files {
            Rule::Never => libc::MOUNT_ATTR_NOATIME,
            Rule::Relative => libc::MOUNT_ATTR_RELATIME,
            Rule::Always => libc::MOUNT_ATTR_STRICTATIME,
        };
        let nodiratime = o.dirs == Rule::Never && o.files != Rule::Never;
        let attr = libc::mount_attr {
            attr_set: atime
                | if nodiratime {
                    libc::MOUNT_ATTR_NODIRATIME
                } else {
                    0
                },
            attr_clr: libc::MOUNT_ATTR__ATIME | libc::MOUNT_ATTR_NODIRATIME,
            propagation: 0,
            userns_fd: 0,
        };
        // SAFETY: `attr` is a valid `mount_attr` of the size given, and the path the
        // NUL-terminated empty string; the call only reads them.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                tree.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                &attr as *const libc::mount_attr,
                std::mem::size_of::<libc::mount_attr>(),
            )
        };
        if rc < 0 {
            return Err(Errno::last());
        }
        self.applied.store(o.bits(), Relaxed);
        Ok(())
    }

    /// For a hand-off: whether there is a private mount, and its tree's descriptor.
    pub fn write_state(&self, w: &mut Writer, fds: &mut Vec<RawFd>) {
        w.bool(self.tree.is_some());
        if let Some(tree) = &self.tree {
            w.u64(FdTable::push(fds, tree.as_raw_fd()));
        }
    }

    /// What [`BackingMount::write_state`] wrote; the options are applied again at the
    /// successor's first request.
    pub fn read_state(
        r: &mut Reader<'_>,
        fds: &mut FdTable,
    ) -> std::result::Result<BackingMount, Refused> {
        let tree = if r.bool()? {
            Some(fds.take(r.u64()?)?)
        } else {
            None
        };
        Ok(BackingMount {
            tree,
            applied: AtomicU8::new(NONE),
        })
    }
}
