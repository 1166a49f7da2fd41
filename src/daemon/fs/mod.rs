//! The backend contract: the node logic every medium implements, free of FUSE types.
//!
//! The FUSE adapter (`crate::daemon::fuse`) translates kernel requests into calls of [`Backend`]
//! and the answers back into replies; nothing else sits between them. So one conformance
//! suite, run through a real mount, covers every backend.
//!
//! Contract shared by all backends:
//! - Permission checks are the kernel's: volumes are mounted with `default_permissions`,
//!   so a backend never checks modes itself, but it does set owners (caller's uid/gid,
//!   setgid-directory inheritance) and clears setgid where `inode_init_owner` would.
//! - Setuid and setgid bits are the backend's to clear on writes, truncates and chowns
//!   (`FUSE_HANDLE_KILLPRIV_V2`): the adapter says when (`kill` of `write`,
//!   [`SetAttr::kill`]), [`killpriv::cleared`] says which.
//! - Lookup counting: `lookup` (also of `.` and `..`: [`Backend::lookup_self`],
//!   [`Backend::lookup_parent`]), `mknod`, `mkdir`, `symlink`, `link`, `create` and each
//!   entry accepted by a `readdir` with attributes add one kernel reference to the inode
//!   they answer with; `forget` takes `n` away. An inode is freed when nothing refers to it.
//! - File handles (`FUSE_EXPORT_SUPPORT`): the kernel makes them from an inode's number
//!   and [`Attr::generation`] alone. When it decodes one after forgetting the inode, it
//!   asks for the number itself ([`Backend::lookup_self`]) and then compares generations;
//!   for a directory it also climbs to the root ([`Backend::lookup_parent`]) and finds the
//!   directory's name by listing its parent (so `readdir` numbers must be `stat`'s).
//! - Limits: every operation that takes space or an inode reserves it first from the
//!   volume's [`usage::Usage`], so usage can never pass the limit, and gives it back when
//!   the space is freed.
//! - Access times: reads update them as the options of the volume's mount say
//!   ([`atime`], [`mount_options`]); the kernel never does for a FUSE inode.

pub mod atime;
mod attr;
pub mod creds;
mod errno;
pub mod killpriv;
pub mod mount_options;
pub mod names;
pub mod ratelimit;
pub mod usage;

pub use attr::*;
pub use errno::{Errno, Result};

use crate::daemon::state::{FdTable, Reader, Refused, Writer};
use std::ffi::OsStr;

/// `fallocate` mode bits that backends understand.
pub const FALLOC_KEEP_SIZE: i32 = libc::FALLOC_FL_KEEP_SIZE;
pub const FALLOC_PUNCH_HOLE: i32 = libc::FALLOC_FL_PUNCH_HOLE;
pub const FALLOC_ZERO_RANGE: i32 = libc::FALLOC_FL_ZERO_RANGE;

/// Filesystem operations as one medium implements them.
///
/// Every method may be called from several threads at once.
pub trait Backend: Send + Sync + 'static {
    /// Short name of the medium, for logs and `fsname`.
    fn medium(&self) -> &'static str;
    /// The volume's limits and what is used of them (lock-free counters: reading them
    /// never waits for a request, nor touches a backing filesystem).
    fn usage(&self) -> &usage::Usage;
    /// The volume's mount, whose options decide when reads update access times; the
    /// daemon tells it where the volume is mounted once it is.
    fn volume_mount(&self) -> &mount_options::VolumeMount;

    fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr>;
    /// The inode numbered `ino` (a LOOKUP of `.` in `ino`: the kernel decodes a file
    /// handle of an inode it has forgotten), with one more kernel reference as `lookup`
    /// adds. ESTALE if no live inode has that number (deleted, or never was): never
    /// another inode's. With the generation it answers, the kernel tells an inode that
    /// took a freed number from the one the handle was made of.
    fn lookup_self(&self, ino: Ino) -> Result<Attr> {
        let _ = ino;
        Err(Errno::ESTALE)
    }
    /// The directory holding directory `ino` (a LOOKUP of `..`, as the kernel climbs
    /// from a decoded directory handle to the root), with one more kernel reference;
    /// the root's is the root. ESTALE if `ino` was removed.
    fn lookup_parent(&self, ino: Ino) -> Result<Attr> {
        let _ = ino;
        Err(Errno::ESTALE)
    }
    fn forget(&self, ino: Ino, nlookup: u64);
    fn getattr(&self, ino: Ino) -> Result<Attr>;
    fn setattr(&self, ino: Ino, fh: Option<Fh>, set: &SetAttr) -> Result<Attr>;
    fn readlink(&self, ino: Ino) -> Result<Vec<u8>>;

    fn mknod(&self, who: &Caller, parent: Ino, name: &OsStr, mode: u32, rdev: u32) -> Result<Attr>;
    fn mkdir(&self, who: &Caller, parent: Ino, name: &OsStr, mode: u32) -> Result<Attr>;
    fn symlink(&self, who: &Caller, parent: Ino, name: &OsStr, target: &OsStr) -> Result<Attr>;
    fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr>;
    fn unlink(&self, parent: Ino, name: &OsStr) -> Result<()>;
    fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<()>;
    /// `flags` are `renameat2` flags (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`).
    fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
    ) -> Result<()>;

    /// `flags` are the `open(2)` flags.
    fn open(&self, ino: Ino, flags: i32) -> Result<Opened>;
    fn create(
        &self,
        who: &Caller,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(Attr, Opened)>;
    /// Reads up to `size` bytes at `offset` into `buf` (cleared first).
    fn read(&self, ino: Ino, fh: Fh, offset: u64, size: u32, buf: &mut Vec<u8>) -> Result<()>;
    /// Writes as much of `data` as fits; fails with ENOSPC only when nothing fits, then
    /// clears what `clear` says (setid bits as [`killpriv`] says, file capabilities), and
    /// says whether that changed the mode.
    fn write(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        data: &[u8],
        clear: killpriv::Clear,
    ) -> Result<Written>;
    fn flush(&self, ino: Ino, fh: Fh) -> Result<()>;
    fn release(&self, ino: Ino, fh: Fh) -> Result<()>;
    fn fsync(&self, ino: Ino, fh: Fh, datasync: bool) -> Result<()>;

    /// `flags` are the `open(2)` flags.
    fn opendir(&self, ino: Ino, flags: i32) -> Result<Fh>;
    /// Lists entries from `offset` on, calling `add` for each until it returns false
    /// (the reply is full). With `plus`, entries carry attributes and count as lookups.
    fn readdir(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        plus: bool,
        add: &mut dyn FnMut(&DirEntry<'_>) -> bool,
    ) -> Result<()>;
    fn releasedir(&self, ino: Ino, fh: Fh) -> Result<()>;
    /// Makes the directory's entries durable (a file created or renamed into it is there
    /// after a crash once this returns), as `fsync(2)` of a directory does.
    fn fsyncdir(&self, ino: Ino, fh: Fh, datasync: bool) -> Result<()>;

    fn statfs(&self) -> StatFs;
    /// As [`Backend::statfs`], from counters and what was last measured only: it never
    /// waits for a request or a backing filesystem (the control thread answers `STATUS`
    /// with it while request threads may be stuck).
    fn statfs_cached(&self) -> StatFs {
        self.usage().statfs()
    }

    /// `flags` are `XATTR_CREATE` / `XATTR_REPLACE`.
    fn setxattr(&self, ino: Ino, name: &OsStr, value: &[u8], flags: i32) -> Result<()>;
    fn getxattr(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>>;
    /// The names, each followed by a NUL byte, as `listxattr(2)` returns them.
    fn listxattr(&self, ino: Ino) -> Result<Vec<u8>>;
    fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<()>;

    fn fallocate(&self, ino: Ino, fh: Fh, offset: u64, length: u64, mode: i32) -> Result<()>;
    /// `SEEK_DATA` and `SEEK_HOLE`; the kernel answers the other `whence` values itself.
    fn lseek(&self, ino: Ino, fh: Fh, offset: i64, whence: i32) -> Result<i64>;
    #[allow(clippy::too_many_arguments)]
    fn copy_file_range(
        &self,
        ino_in: Ino,
        fh_in: Fh,
        offset_in: u64,
        ino_out: Ino,
        fh_out: Fh,
        offset_out: u64,
        len: u64,
    ) -> Result<u32>;

    /// FUSE passthrough, for a backend with a file per inode: the kernel reads and maps
    /// that file itself (see `fuse/iomode.rs`). A descriptor of a regular file of the
    /// backing filesystem (not linked anywhere), to learn whether the kernel allows
    /// passthrough there; `None`: this backend has no backing files.
    fn passthrough_probe(&self) -> Option<std::os::fd::OwnedFd> {
        None
    }
    /// The first passthrough open of `ino` (open as `fh`): a descriptor of its backing
    /// file, which from now until [`Backend::passthrough_end`] the backend keeps without
    /// holes (the kernel may write it through a shared mapping, which takes no space only
    /// where blocks are allocated). `None`: not now (the file has holes), serve it direct.
    fn passthrough_begin(&self, _ino: Ino, _fh: Fh) -> Option<std::os::fd::OwnedFd> {
        None
    }
    /// Whether the kernel may write the backing files itself too: the backing filesystem
    /// keeps the volume's limit (a memory volume's tmpfs). Then every open is
    /// passthrough, for writing as well as reading; otherwise files opened for writing
    /// are served direct, so that every write reaches the backend.
    fn passthrough_writes(&self) -> bool {
        false
    }
    /// What refuses a write that would cross the size limit, for `status`: `daemon` (every
    /// write reaches the backend, which reserves first) unless the backing filesystem
    /// keeps the limit itself (`tmpfs`: [`Backend::passthrough_writes`]).
    fn limit_kept_by(&self) -> &'static str {
        "daemon"
    }
    /// The daemon exits with no successor (a signal, the volume unmounted), after its last
    /// request: what would outlive it goes now. A memory volume's data would, in files the
    /// kernel still reads and writes for a process that holds one open (passthrough): it
    /// is freed, and such a process's writes fail (`memory/data.rs`).
    fn end(&self) {}
    /// The last passthrough open of `ino` was released.
    fn passthrough_end(&self, _ino: Ino) {}
    /// After a hand-off: `ino` has passthrough opens (as after `passthrough_begin`).
    fn passthrough_resume(&self, _ino: Ino) {}
}

/// A backend whose whole state can be written out and read back into a new process.
pub trait Transfer: Backend + Sized {
    /// Writes the state; descriptors it needs are pushed to `fds`, and the state records
    /// their positions. Called with no request running.
    fn export(&self, w: &mut Writer, fds: &mut Vec<std::os::fd::RawFd>) -> std::io::Result<()>;
    /// Rebuilds the backend from what [`Transfer::export`] wrote.
    fn import(r: &mut Reader<'_>, fds: &mut FdTable) -> std::result::Result<Self, Refused>;
}
