//! The disk medium: a passthrough to a backing directory, with hard limits.
//!
//! - `handle.rs`: kernel file handles, how a node names its inode without a descriptor;
//! - `nodes.rs`: the inode table, inode numbers, lookup counts and the descriptor cache;
//! - `creds.rs`: acting as the caller while creating, so files are born with their owner;
//! - `account.rs`: charging real backing space to the volume (reserve, measure, settle);
//! - `namespace.rs`: lookup, create, link, unlink, rename, readdir;
//! - `data.rs`: open files, data, sizes, attributes and xattrs;
//! - `direct.rs`: `O_DIRECT` passed through to the backing file;
//! - `caps.rs`: remembering that a node has no `security.capability` (asked per write).
//! - `passthrough.rs`: files the kernel reads and maps itself, kept without holes;
//!
//! The system calls, their trouble and the daemon's private mount of the backing
//! directory are `crate::daemon::backing`'s, shared with the memory medium.
//!
//! # Safety against the served tree
//! The daemon never resolves a path built from names: every call starts from a descriptor
//! of the inode itself or of its parent directory (from a file handle or the cache) and
//! names at most one component, with `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW`. A symlink in the
//! tree is served as a symlink and never followed by the daemon, and a rename racing a
//! request cannot lead it out of the backing directory: there is no path to re-walk.
//!
//! # Limits
//! Usage is what `du` of the backing directory reports, counted at start and then kept
//! by measuring each change (`account.rs`). Without a size limit the volume has none of
//! its own: `statfs` shows the backing filesystem, as kubelet's disk emptyDir does.

mod account;
mod caps;
mod creds;
mod data;
mod direct;
mod handle;
mod handoff;
mod namespace;
mod nodes;
mod passthrough;

use account::Space;
pub use account::scan;

use crate::daemon::backing::mount::BackingMount;
use crate::daemon::backing::{sys, trouble};
use crate::daemon::fs::mount_options::VolumeMount;
use crate::daemon::fs::usage::Usage;
use crate::daemon::fs::*;
use dashmap::DashMap;
use data::{OpenDir, OpenFile};
use nodes::Nodes;
use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Size of the buffer each open directory reads entries into.
const DIRENT_BUF: usize = 32 << 10;

/// A volume served from a backing directory.
pub struct DiskFs {
    nodes: Nodes,
    /// The backing filesystem; inodes on other devices (mounts inside) are not served.
    dev: u64,
    files: DashMap<Fh, Arc<OpenFile>>,
    dirs: DashMap<Fh, Arc<OpenDir>>,
    next_fh: AtomicU64,
    usage: Usage,
    size_limited: bool,
    inodes_limited: bool,
    /// The backing filesystem's free blocks (of [`BLOCK_SIZE`]) and inodes, as the last
    /// `statfs` measured them.
    node_free: AtomicU64,
    node_free_inodes: AtomicU64,
    /// The volume's mount, whose access-time options the backing mount follows.
    mount: VolumeMount,
    /// The daemon's private mount of the backing directory.
    backing: BackingMount,
}

impl DiskFs {
    /// Serves the directory `backing`, counting what it already holds. `None` limits
    /// leave the backing filesystem's own.
    pub fn open(
        backing: &Path,
        size: Option<u64>,
        inodes: Option<u64>,
    ) -> std::result::Result<DiskFs, String> {
        let shown = backing.display();
        let path = CString::new(backing.as_os_str().as_bytes())
            .map_err(|_| format!("{shown}: NUL in path"))?;
        // Said before the open below refuses it (with ELOOP, as for any symlink).
        if std::fs::symlink_metadata(backing).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(format!(
                "backing directory {shown} is a symlink; give the directory itself"
            ));
        }
        // SAFETY: AT_FDCWD is not a descriptor but the kernel's name for the working
        // directory, valid for the whole process life; this BorrowedFd is only given to
        // openat (an *at call), which resolves `path` against it, and is never closed.
        let cwd = unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) };
        // Not O_PATH: open_by_handle_at needs a real descriptor of the filesystem.
        let root = sys::openat(cwd, &path, libc::O_RDONLY | libc::O_DIRECTORY, 0).map_err(|e| {
            let why = if e == Errno::ENOTDIR || e == Errno::ELOOP {
                "not a directory".to_string()
            } else {
                e.to_string()
            };
            format!("backing directory {shown}: {why}")
        })?;
        let (backing, root) = match BackingMount::clone_of(root.as_fd()) {
            Ok((m, clone)) => (m, clone),
            Err(e) => {
                log::warn!(
                    "{shown}: no private mount of it ({e}): access times follow the node's mount options, not the volume's"
                );
                (BackingMount::none(), root)
            }
        };
        handle::supported(root.as_fd()).map_err(|e| {
            format!("backing directory {shown}: its filesystem gives no usable file handles ({e})")
        })?;
        let dev = sys::fstat(root.as_fd())
            .map_err(|e| format!("{shown}: {e}"))?
            .st_dev;
        let tally =
            scan(root.as_fd(), dev).map_err(|e| format!("counting what {shown} holds: {e}"))?;
        let usage = Usage::new(size.unwrap_or(u64::MAX), inodes.unwrap_or(u64::MAX));
        let allowance = metadata_allowance(usage.block_limit());
        let usage = usage.with_metadata_allowance(allowance);
        usage.preload(tally.data_blocks, tally.inodes);
        usage.force_add_metadata_blocks(tally.metadata_blocks);
        if usage.blocks_used() > usage.block_limit() || inodes.is_some_and(|n| tally.inodes > n) {
            log::warn!(
                "{shown} already holds more than the limits: writes and creates fail until space is freed"
            );
        }
        let nodes = Nodes::new(root).map_err(|e| format!("{shown}: {e}"))?;
        log::info!(
            "{shown} holds {} blocks of 4 KiB of data and {} of directories in {} inodes",
            tally.data_blocks,
            tally.metadata_blocks,
            tally.inodes
        );
        let fs = DiskFs {
            nodes,
            dev,
            files: DashMap::new(),
            dirs: DashMap::new(),
            next_fh: AtomicU64::new(1),
            usage,
            size_limited: size.is_some(),
            inodes_limited: inodes.is_some(),
            node_free: AtomicU64::new(u64::MAX / BLOCK_SIZE),
            node_free_inodes: AtomicU64::new(u64::MAX / 2),
            mount: VolumeMount::default(),
            backing,
        };
        fs.statfs(); // the node's free space, measured once before anyone asks
        Ok(fs)
    }

    /// Gives the backing mount the volume mount's access-time options, before a read
    /// (by the daemon, or by the kernel through a file being opened) may update one.
    fn follow_volume_mount(&self) {
        self.backing.follow(self.mount.options());
    }
}

/// Blocks the backing filesystem's metadata (its directories' blocks) may take beyond a
/// volume's size limit, so that data has the whole limit and a full volume still gets
/// new entries, as tmpfs does: 1/64 of the limit, at least 1 MiB, at most 256 MiB.
/// Directories beyond it take the limit.
pub fn metadata_allowance(block_limit: u64) -> u64 {
    const MIN: u64 = (1 << 20) / BLOCK_SIZE;
    const MAX: u64 = (256 << 20) / BLOCK_SIZE;
    (block_limit / 64).clamp(MIN, MAX)
}

impl Backend for DiskFs {
    fn usage(&self) -> &Usage {
        &self.usage
    }
    fn volume_mount(&self) -> &VolumeMount {
        &self.mount
    }

    fn medium(&self) -> &'static str {
        "disk"
    }
    fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        self.do_lookup(parent, name)
    }
    fn lookup_self(&self, ino: Ino) -> Result<Attr> {
        self.do_lookup_self(ino)
    }
    fn lookup_parent(&self, ino: Ino) -> Result<Attr> {
        self.do_lookup_parent(ino)
    }
    fn forget(&self, ino: Ino, nlookup: u64) {
        self.nodes.forget(ino, nlookup)
    }
    fn getattr(&self, ino: Ino) -> Result<Attr> {
        self.attr(&*self.nodes.get(ino)?)
    }
    fn setattr(&self, ino: Ino, fh: Option<Fh>, set: &SetAttr) -> Result<Attr> {
        self.do_setattr(ino, fh, set)
    }
    fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        sys::readlink(self.nodes.fd(&*self.nodes.get(ino)?)?.as_fd())
    }
    fn mknod(&self, who: &Caller, parent: Ino, name: &OsStr, mode: u32, rdev: u32) -> Result<Attr> {
        let made = self.make(who, parent, name, (Space::Data, 0), |dir, n| {
            let mode = namespace::creation_mode(who, dir, mode)?;
            sys::mknodat(dir, n, mode, rdev.into()).map(|()| None)
        });
        Ok(made?.0)
    }
    fn mkdir(&self, who: &Caller, parent: Ino, name: &OsStr, mode: u32) -> Result<Attr> {
        let made = self.make(who, parent, name, (Space::Metadata, 1), |dir, n| {
            sys::mkdirat(dir, n, mode & 0o7777).map(|()| None)
        });
        Ok(made?.0)
    }
    fn symlink(&self, who: &Caller, parent: Ino, name: &OsStr, target: &OsStr) -> Result<Attr> {
        names::check_symlink_target(target)?;
        // ext4 keeps a target shorter than 60 bytes in the inode; longer ones take a block.
        let own = u64::from(target.len() >= 60);
        let target = sys::cstr(target)?;
        let made = self.make(who, parent, name, (Space::Data, own), |dir, n| {
            sys::symlinkat(&target, dir, n).map(|()| None)
        });
        Ok(made?.0)
    }
    fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr> {
        self.do_link(ino, newparent, newname)
    }
    fn unlink(&self, parent: Ino, name: &OsStr) -> Result<()> {
        self.remove(parent, name, false)
    }
    fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<()> {
        self.remove(parent, name, true)
    }
    fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
    ) -> Result<()> {
        self.do_rename(parent, name, newparent, newname, flags)
    }
    fn open(&self, ino: Ino, flags: i32) -> Result<Opened> {
        self.follow_volume_mount();
        self.open_node(self.nodes.get(ino)?, flags, None)
    }
    fn create(
        &self,
        who: &Caller,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(Attr, Opened)> {
        self.follow_volume_mount();
        let open = libc::O_CREAT | libc::O_EXCL | data::backing_flags(flags);
        let (attr, fd) = self.make(who, parent, name, (Space::Data, 0), |dir, n| {
            let mode = namespace::creation_mode(who, dir, mode)?;
            sys::openat(dir, n, open, mode & 0o7777).map(Some)
        })?;
        let opened = self.open_node(self.nodes.get(attr.ino)?, flags, fd)?;
        Ok((attr, opened))
    }
    fn read(&self, _ino: Ino, fh: Fh, offset: u64, size: u32, buf: &mut Vec<u8>) -> Result<()> {
        self.follow_volume_mount();
        self.do_read(fh, offset, size, buf)
    }
    fn write(
        &self,
        _ino: Ino,
        fh: Fh,
        offset: u64,
        data: &[u8],
        clear: killpriv::Clear,
    ) -> Result<Written> {
        self.do_write(fh, offset, data, clear)
    }
    fn flush(&self, _ino: Ino, _fh: Fh) -> Result<()> {
        Ok(()) // nothing is buffered here: every write went to the backing file
    }
    fn release(&self, _ino: Ino, fh: Fh) -> Result<()> {
        self.do_release(fh)
    }
    fn fsync(&self, _ino: Ino, fh: Fh, datasync: bool) -> Result<()> {
        self.do_fsync(fh, datasync)
    }
    fn opendir(&self, ino: Ino, _flags: i32) -> Result<Fh> {
        self.follow_volume_mount();
        let node = self.nodes.get(ino)?;
        if node.kind != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        let fd = self.nodes.open(&node, libc::O_RDONLY | libc::O_DIRECTORY)?;
        let fh = self
            .next_fh
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.dirs.insert(
            fh,
            Arc::new(OpenDir {
                fd,
                buf: vec![0; DIRENT_BUF].into(),
            }),
        );
        Ok(fh)
    }
    fn readdir(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        plus: bool,
        add: &mut dyn FnMut(&DirEntry<'_>) -> bool,
    ) -> Result<()> {
        self.follow_volume_mount();
        self.do_readdir(ino, fh, offset, plus, add)
    }
    fn releasedir(&self, _ino: Ino, fh: Fh) -> Result<()> {
        self.dirs.remove(&fh).map(drop).ok_or(Errno::EBADF)
    }
    fn fsyncdir(&self, _ino: Ino, fh: Fh, datasync: bool) -> Result<()> {
        let dir = self
            .dirs
            .get(&fh)
            .map(|d| d.value().clone())
            .ok_or(Errno::EBADF)?;
        sys::fsync(dir.fd.as_fd(), datasync)
    }
    fn statfs(&self) -> StatFs {
        let Ok(b) = sys::statvfs(self.nodes.root_fd()) else {
            return self.usage.statfs();
        };
        let blocks =
            |n: u64| (u128::from(n) * u128::from(b.f_frsize) / u128::from(BLOCK_SIZE)) as u64;
        self.node_free.store(blocks(b.f_bavail), Relaxed);
        self.node_free_inodes.store(b.f_ffree, Relaxed);
        self.statfs_cached()
    }
    /// Used is always the volume's own (so `df` and `status` show what this volume holds,
    /// not the node's disk); what is free is also bounded by the node's disk, as its last
    /// `statfs` measured it. Without a limit of its own the size is what it holds plus
    /// what the disk has left.
    fn statfs_cached(&self) -> StatFs {
        let mut s = self.usage.statfs();
        let avail = self.node_free.load(Relaxed);
        let ffree = self.node_free_inodes.load(Relaxed);
        if self.size_limited {
            s.blocks_avail = s.blocks_avail.min(avail);
        } else {
            let used = self.usage.total_blocks_used();
            (s.blocks, s.blocks_free, s.blocks_avail) = (used + avail, avail, avail);
        }
        if !self.inodes_limited {
            (s.files, s.files_free) = (self.usage.inodes_used() + ffree, ffree);
        }
        s
    }
    fn setxattr(&self, ino: Ino, name: &OsStr, value: &[u8], flags: i32) -> Result<()> {
        names::check_xattr_name(name)?;
        let name = sys::cstr(name)?;
        // Worst case: the value in blocks of its own, plus one for the name.
        let blocks = (value.len() as u64).div_ceil(BLOCK_SIZE) + 1;
        self.change_xattr(ino, blocks, |fd| {
            sys::setxattr(fd.as_fd(), &name, value, flags)
        })
    }
    fn getxattr(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>> {
        names::check_xattr_name(name)?;
        self.do_getxattr(ino, name)
    }
    fn listxattr(&self, ino: Ino) -> Result<Vec<u8>> {
        // Without what no volume gives (POSIX ACLs a backing file had before).
        Ok(names::listable_xattrs(&self.do_listxattr(ino)?))
    }
    fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        names::check_xattr_name(name)?;
        let name = sys::cstr(name)?;
        self.change_xattr(ino, 0, |fd| sys::removexattr(fd.as_fd(), &name))
    }
    fn fallocate(&self, _ino: Ino, fh: Fh, offset: u64, length: u64, mode: i32) -> Result<()> {
        self.do_fallocate(fh, offset, length, mode)
    }
    fn lseek(&self, _ino: Ino, fh: Fh, offset: i64, whence: i32) -> Result<i64> {
        self.do_lseek(fh, offset, whence)
    }
    fn copy_file_range(
        &self,
        _ino_in: Ino,
        fh_in: Fh,
        offset_in: u64,
        _ino_out: Ino,
        fh_out: Fh,
        offset_out: u64,
        len: u64,
    ) -> Result<u32> {
        self.do_copy_file_range(fh_in, offset_in, fh_out, offset_out, len)
    }
    fn passthrough_probe(&self) -> Option<std::os::fd::OwnedFd> {
        self.probe_file()
    }
    fn passthrough_begin(&self, ino: Ino, fh: Fh) -> Option<std::os::fd::OwnedFd> {
        self.begin_passthrough(ino, fh)
    }
    fn passthrough_end(&self, ino: Ino) {
        self.end_passthrough(ino)
    }
    fn passthrough_resume(&self, ino: Ino) {
        self.resume_passthrough(ino)
    }
}
