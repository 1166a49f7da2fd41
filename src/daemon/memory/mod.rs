//! The `Memory` medium: the whole volume lives in an in-memory inode table.
//!
//! - `inode.rs`: one inode, its locks and the lock order;
//! - `dir.rs`, `xattr.rs`: what an inode holds;
//! - `data.rs`: the files' data, a file each in a tmpfs of the volume's own, which the
//!   kernel reads and writes itself (passthrough) and which keeps the limit;
//! - `legacy.rs`: the data of a volume handed over by a build that kept it in a memfd;
//! - `namespace.rs`: lookups, creation, unlink, rename;
//! - `listing.rs`: open directories and where their listings end;
//! - `io.rs`: open files, data, attributes changes;
//! - `reclaim.rs`: returning freed memory to the system.
//!
//! # Inode numbers and file handles
//! An inode's number (its FUSE node id and `st_ino`) comes from a 64-bit counter that
//! only grows, and goes to a successor with the state: a number is never given twice in
//! a volume's life, and a file handle of a freed inode finds no inode and gets ESTALE
//! (`lookup_self`), never another file. So one generation serves every inode of a volume
//! (the root's is 0): a random number drawn when the volume is made and handed on with
//! it. A volume made again (a daemon restarted: empty, its numbers counted from 2 again)
//! draws another, so a handle from before gets ESTALE rather than the new inode of its
//! number, as on a tmpfs mounted again. A volume from a state before format 3 keeps 0,
//! what its daemon told the kernel.
//!
//! # Lifetime of an inode
//! An inode stays in the table while the kernel holds lookups on it or a directory
//! entry points at it. Its space and its place in the inode count are given back as soon
//! as its link count is 0 and no handle is open (`released`); it leaves the table once,
//! in addition, the kernel has forgotten it.

mod data;
mod dir;
mod handoff;
mod inode;
mod io;
mod legacy;
mod listing;
mod namespace;
mod reclaim;
mod xattr;

pub use reclaim::spawn_reclaimer;

use crate::daemon::fs::mount_options::VolumeMount;
use crate::daemon::fs::usage::Usage;
use crate::daemon::fs::*;
use dashmap::DashMap;
use inode::{Body, Inode, Meta};
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// An in-memory volume.
pub struct MemoryFs {
    table: DashMap<Ino, Arc<Inode>>,
    next_ino: AtomicU64,
    /// Every inode's but the root's (see above).
    generation: u32,
    /// The limits, and the inodes used; the blocks used are the tmpfs's (`data.rs`).
    usage: Usage,
    data: data::Data,
    /// Serialises renames between directories (lock order level 1, see `inode.rs`).
    rename_lock: Mutex<()>,
    /// Open directories (`listing.rs`).
    listings: listing::Listings,
    /// The volume's mount, whose options decide access times.
    mount: VolumeMount,
    /// Inodes freed since the daemon started (`reclaim.rs`).
    freed_inodes: AtomicU64,
    /// The next open file's handle (even: `io.rs`).
    next_fh: AtomicU64,
}

impl MemoryFs {
    /// A volume of `bytes` and `inodes` whose root is owned by the daemon, mode 0777.
    /// Fails only if the tmpfs for its data cannot be made (no `CAP_SYS_ADMIN`).
    pub fn new(bytes: u64, inodes: u64) -> std::io::Result<MemoryFs> {
        let fs = MemoryFs {
            table: DashMap::new(),
            next_ino: AtomicU64::new(ROOT_INO + 1),
            generation: new_generation(),
            usage: Usage::new(bytes, inodes),
            data: data::Data::new(bytes, inodes)
                .map_err(|e| std::io::Error::from_raw_os_error(e.0))?,
            rename_lock: Mutex::new(()),
            listings: Default::default(),
            mount: Default::default(),
            freed_inodes: AtomicU64::new(0),
            next_fh: AtomicU64::new(2),
        };
        fs.usage.preload(0, 1);
        let now = SystemTime::now();
        let meta = Meta {
            perm: 0o777,
            // SAFETY: geteuid takes nothing and cannot fail.
            uid: unsafe { libc::geteuid() },
            // SAFETY: getegid takes nothing and cannot fail.
            gid: unsafe { libc::getegid() },
            nlink: 2,
            rdev: 0,
            atime: now,
            mtime: now,
            ctime: now,
            xattrs: Default::default(),
            xattr_blocks: 0,
        };
        let root = Inode::new(
            ROOT_INO,
            0,
            FileKind::Directory,
            Body::Dir(Default::default()),
            meta,
            ROOT_INO,
        );
        fs.table.insert(ROOT_INO, Arc::new(root));
        Ok(fs)
    }

    /// Bytes of memory the volume's file data and metadata blocks hold now, in its tmpfs
    /// (not part of the daemon's RSS).
    pub fn data_bytes_held(&self) -> u64 {
        self.data.blocks().1 * BLOCK_SIZE
    }

    /// The metadata of `inode` changed (its ctime is now): a regular file's data file
    /// is told (`data.rs`: tmpfs decides access times by it).
    fn changed(&self, inode: &Inode) {
        if inode.kind == FileKind::Regular && !inode.released.load(Relaxed) {
            self.data.touch(inode.ino);
        }
    }

    /// The attributes of `inode`.
    fn attr(&self, inode: &Inode) -> Attr {
        self.attr_with(inode, &inode.body())
    }

    /// The attributes of `inode`, whose body the caller has locked.
    fn attr_with(&self, inode: &Inode, body: &Body) -> Attr {
        let data = match body {
            // A released file's data is gone (nothing links or holds it).
            Body::File if inode.released.load(Relaxed) => None,
            Body::File => self
                .data
                .stat(inode.ino)
                .inspect_err(|e| log::error!("the data of inode {}: {e}", inode.ino))
                .ok(),
            _ => None,
        };
        inode.attr_with(body, data)
    }

    fn get(&self, ino: Ino) -> Result<Arc<Inode>> {
        self.table
            .get(&ino)
            .map(|e| e.value().clone())
            .ok_or(Errno::ESTALE)
    }

    /// Gives back the space and inode of an inode nothing links or holds open, and drops
    /// it from the table once the kernel has forgotten it too. Call after any change that
    /// lowers a link count, an open count or a lookup count, with no lock held.
    fn maybe_release(&self, inode: &Arc<Inode>) {
        if inode.ino == ROOT_INO {
            return;
        }
        // Decided under the body's write lock: `do_open` counts its open under the read
        // lock, so an open either sees `released` or is counted before this looks.
        let body = inode.body_mut();
        let unlinked = inode.meta().nlink == 0;
        if unlinked && inode.opens.load(Relaxed) == 0 && !inode.released.swap(true, Relaxed) {
            match &*body {
                Body::File => self.data.remove(inode.ino),
                Body::Symlink(t) => self.data.release(Inode::symlink_blocks(t)),
                _ => {}
            }
            drop(body);
            let mut m = inode.meta();
            self.data.release(std::mem::take(&mut m.xattr_blocks));
            drop(m);
            self.usage.release_inode();
            self.freed_inodes.fetch_add(1, Relaxed);
            log::trace!("released inode {}", inode.ino);
        } else {
            drop(body); // no lock while the table shard is locked
        }
        if inode.released.load(Relaxed) && inode.lookups.load(Relaxed) == 0 {
            self.table.remove(&inode.ino);
        }
    }

    /// Inodes in the table, for tests of lookup counting: linked ones and unlinked ones
    /// the kernel still refers to.
    pub fn inodes_in_table(&self) -> usize {
        self.table.len()
    }

    /// Blocks held by all inodes, found by walking the table: what the tmpfs must say is
    /// used. For tests and consistency checks; never on a request path.
    pub fn walk_blocks(&self) -> u64 {
        let inodes: Vec<_> = self.table.iter().map(|e| e.value().clone()).collect();
        inodes
            .iter()
            .filter(|i| !i.released.load(Relaxed))
            .map(|i| {
                let data = match &*i.body() {
                    Body::File => self.data.stat(i.ino).map_or(0, |d| d.blocks / 8),
                    Body::Symlink(t) => Inode::symlink_blocks(t),
                    _ => 0,
                };
                data + i.meta().xattr_blocks
            })
            .sum()
    }

    /// Blocks used, as the tmpfs counts them (data and metadata).
    pub fn blocks_used(&self) -> u64 {
        self.data.blocks().1
    }
}

/// A new volume's generation: random (from the hasher keys the standard library draws
/// from the system), or 0 when the tests stand in for a build from before state format 3
/// (`fault.rs`), which told the kernel 0.
fn new_generation() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    if crate::daemon::fault::fault("state-format-1") {
        return 0;
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(ROOT_INO);
    h.finish() as u32
}

impl Backend for MemoryFs {
    fn usage(&self) -> &Usage {
        &self.usage
    }
    fn volume_mount(&self) -> &VolumeMount {
        &self.mount
    }

    fn medium(&self) -> &'static str {
        "memory"
    }
    fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        self.do_lookup(parent, name)
    }
    fn lookup_self(&self, ino: Ino) -> Result<Attr> {
        self.recall(&self.get(ino)?)
    }
    fn lookup_parent(&self, ino: Ino) -> Result<Attr> {
        let dir = self.get(ino)?;
        if dir.kind != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        // A removed directory's parent pointer is stale: it has no parent any more.
        if dir.meta().nlink == 0 {
            return Err(Errno::ESTALE);
        }
        self.recall(&self.get(dir.parent()).map_err(|_| Errno::ESTALE)?)
    }
    fn forget(&self, ino: Ino, nlookup: u64) {
        if let Ok(inode) = self.get(ino) {
            inode::take_away(&inode.lookups, nlookup, "lookups", ino);
            self.maybe_release(&inode);
        }
    }
    fn getattr(&self, ino: Ino) -> Result<Attr> {
        Ok(self.attr(&*self.get(ino)?))
    }
    fn setattr(&self, ino: Ino, _fh: Option<Fh>, set: &SetAttr) -> Result<Attr> {
        self.do_setattr(ino, set)
    }
    fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        match &*self.get(ino)?.body() {
            Body::Symlink(t) => Ok(t.clone()),
            _ => Err(Errno::EINVAL),
        }
    }
    fn mknod(&self, who: &Caller, parent: Ino, name: &OsStr, mode: u32, rdev: u32) -> Result<Attr> {
        let kind = FileKind::from_mode(mode).ok_or(Errno::EINVAL)?;
        if kind == FileKind::Directory || kind == FileKind::Symlink {
            return Err(Errno::EINVAL);
        }
        let body = if kind == FileKind::Regular {
            Body::File
        } else {
            Body::Special
        };
        self.make(who, parent, name, kind, mode, rdev, body, 0)
    }
    fn mkdir(&self, who: &Caller, parent: Ino, name: &OsStr, mode: u32) -> Result<Attr> {
        self.make(
            who,
            parent,
            name,
            FileKind::Directory,
            mode,
            0,
            Body::Dir(Default::default()),
            0,
        )
    }
    fn symlink(&self, who: &Caller, parent: Ino, name: &OsStr, target: &OsStr) -> Result<Attr> {
        names::check_symlink_target(target)?;
        let t = std::os::unix::ffi::OsStrExt::as_bytes(target).to_vec();
        let blocks = Inode::symlink_blocks(&t);
        self.make(
            who,
            parent,
            name,
            FileKind::Symlink,
            0o777,
            0,
            Body::Symlink(t),
            blocks,
        )
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
        self.do_open(&self.get(ino)?, flags)
    }
    fn create(
        &self,
        who: &Caller,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(Attr, Opened)> {
        let attr = self.make(who, parent, name, FileKind::Regular, mode, 0, Body::File, 0)?;
        Ok((attr, self.do_open(&self.get(attr.ino)?, flags)?))
    }
    fn read(&self, ino: Ino, fh: Fh, offset: u64, size: u32, buf: &mut Vec<u8>) -> Result<()> {
        self.do_read(ino, fh, offset, size, buf)
    }
    fn write(
        &self,
        ino: Ino,
        _fh: Fh,
        offset: u64,
        data: &[u8],
        clear: killpriv::Clear,
    ) -> Result<Written> {
        self.do_write(ino, offset, data, clear)
    }
    fn flush(&self, _ino: Ino, _fh: Fh) -> Result<()> {
        Ok(())
    }
    fn release(&self, ino: Ino, _fh: Fh) -> Result<()> {
        let inode = self.get(ino)?;
        inode::take_away(&inode.opens, 1, "opens", ino);
        self.maybe_release(&inode);
        Ok(())
    }
    fn fsync(&self, _ino: Ino, _fh: Fh, _datasync: bool) -> Result<()> {
        Ok(())
    }
    fn opendir(&self, ino: Ino, flags: i32) -> Result<Fh> {
        self.do_opendir(ino, flags)
    }
    fn readdir(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        plus: bool,
        add: &mut dyn FnMut(&DirEntry<'_>) -> bool,
    ) -> Result<()> {
        self.do_readdir(ino, fh, offset, plus, add)
    }
    fn releasedir(&self, _ino: Ino, fh: Fh) -> Result<()> {
        self.do_releasedir(fh);
        Ok(())
    }
    fn fsyncdir(&self, _ino: Ino, _fh: Fh, _datasync: bool) -> Result<()> {
        Ok(()) // nothing outlives the daemon: as tmpfs
    }
    fn statfs(&self) -> StatFs {
        let (limit, used) = self.data.blocks();
        let free = limit.saturating_sub(used);
        StatFs {
            blocks: limit,
            blocks_free: free,
            blocks_avail: free,
            ..self.usage.statfs()
        }
    }
    fn statfs_cached(&self) -> StatFs {
        self.statfs() // tmpfs's counters: no wait
    }
    fn setxattr(&self, ino: Ino, name: &OsStr, value: &[u8], flags: i32) -> Result<()> {
        self.do_setxattr(ino, name, value, flags)
    }
    fn getxattr(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>> {
        Ok(self.get(ino)?.meta().xattrs.get(name)?.to_vec())
    }
    fn listxattr(&self, ino: Ino) -> Result<Vec<u8>> {
        Ok(self.get(ino)?.meta().xattrs.list())
    }
    fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        self.do_removexattr(ino, name)
    }
    fn fallocate(&self, ino: Ino, _fh: Fh, offset: u64, length: u64, mode: i32) -> Result<()> {
        self.do_fallocate(ino, offset, length, mode)
    }
    fn lseek(&self, ino: Ino, _fh: Fh, offset: i64, whence: i32) -> Result<i64> {
        self.do_lseek(ino, offset, whence)
    }
    fn copy_file_range(
        &self,
        ino_in: Ino,
        _fh_in: Fh,
        offset_in: u64,
        ino_out: Ino,
        _fh_out: Fh,
        offset_out: u64,
        len: u64,
    ) -> Result<u32> {
        self.do_copy_file_range(ino_in, offset_in, ino_out, offset_out, len)
    }
    fn passthrough_probe(&self) -> Option<std::os::fd::OwnedFd> {
        self.data.probe_file()
    }
    /// Every open of a regular file: the kernel writes the data file itself too, and
    /// tmpfs keeps the limit (holes and shared mappings included, as it does for its
    /// own files), so nothing needs the daemon.
    fn passthrough_begin(&self, ino: Ino, _fh: Fh) -> Option<std::os::fd::OwnedFd> {
        self.data
            .open(ino, libc::O_RDWR)
            .inspect_err(|e| log::error!("the data of inode {ino}: {e}"))
            .ok()
    }
    fn passthrough_writes(&self) -> bool {
        true
    }
    fn limit_kept_by(&self) -> &'static str {
        "tmpfs"
    }
    fn end(&self) {
        let files: Vec<Ino> = self
            .table
            .iter()
            .filter(|e| e.value().kind == FileKind::Regular && !e.value().released.load(Relaxed))
            .map(|e| *e.key())
            .collect();
        self.data.destroy(&files);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel forgetting more than it was given, from many threads at once, leaves
    /// the count at 0, never wrapped, and so does a release without an open: the inode
    /// is still freed once it is unlinked.
    #[test]
    fn counts_taken_below_zero_stop_at_zero() {
        let fs = MemoryFs::new(1 << 20, 100).unwrap();
        let who = Caller {
            uid: 0,
            gid: 0,
            pid: 0,
        };
        let f = OsStr::new("f");
        let ino = fs
            .mknod(&who, ROOT_INO, f, libc::S_IFREG | 0o644, 0)
            .unwrap()
            .ino;
        for _ in 1..1000 {
            fs.lookup(ROOT_INO, f).unwrap();
        }
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| (0..200).for_each(|_| fs.forget(ino, 1)));
            }
        });
        fs.open(ino, libc::O_RDONLY).unwrap();
        fs.release(ino, 0).unwrap();
        fs.release(ino, 0).unwrap();
        let inode = fs.get(ino).unwrap();
        assert_eq!(
            (inode.lookups.load(Relaxed), inode.opens.load(Relaxed)),
            (0, 0)
        );
        drop(inode);
        fs.unlink(ROOT_INO, f).unwrap();
        assert_eq!(fs.inodes_in_table(), 1, "freed: only the root is left");
        assert_eq!(fs.usage().inodes_used(), 1);
    }
}
