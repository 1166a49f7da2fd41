//! Open files, data and attribute changes.
//!
//! # Access times
//! A read that reaches the daemon updates the file's atime as the volume's mount options
//! say ([`atime`]). The kernel keeps a memory volume's file pages across opens
//! (`KEEP_CACHE`) and serves reads from them without a request, so an open that a read
//! should update the atime of (under `relatime`: the file changed since it was last read,
//! or that was a day ago; `strictatime`: always) is answered without `KEEP_CACHE`: the
//! kernel drops the file's pages, and the open's first read reaches the daemon. Opens
//! after that keep the cache until the file changes again. So under `relatime` a file
//! read over and over is read from the page cache; the first read after each change is
//! read from the daemon. What the page cache still serves without a request: reads of
//! pages an open file (or a mapping) already has, after the file changed through another
//! open file; reading an empty file or past the end.

use super::MemoryFs;
use super::inode::{Body, Inode};
use crate::daemon::fs::atime;
use crate::daemon::fs::*;
use std::ffi::OsStr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

/// The most one `copy_file_range` request copies; callers loop on short copies.
const COPY_CHUNK: u64 = 16 << 20;

/// A memory volume's file handle says one thing: that the file was opened `O_NOATIME`
/// (its reads leave the atime alone). Otherwise it is 0.
const NOATIME_FH: Fh = 1;

fn resolve(t: SetTime, now: SystemTime) -> SystemTime {
    match t {
        SetTime::Now => now,
        SetTime::At(t) => t,
    }
}

impl MemoryFs {
    /// Opens `inode` with the `open(2)` `flags`.
    pub(super) fn do_open(&self, inode: &Arc<Inode>, flags: i32) -> Result<Opened> {
        if inode.kind == FileKind::Directory {
            return Err(Errno::EISDIR);
        }
        let _decided = inode.body(); // see `maybe_release`
        inode.opens.fetch_add(1, Relaxed);
        if inode.released.load(Relaxed) {
            inode.opens.fetch_sub(1, Relaxed);
            return Err(Errno::ESTALE);
        }
        let noatime = flags & libc::O_NOATIME != 0;
        let reads = flags & libc::O_ACCMODE != libc::O_WRONLY;
        // Every change to the data passes through this daemon and the kernel, so the
        // kernel's page cache stays valid across opens; but a read that should update
        // the atime must reach the daemon (see the module's doc).
        let keep_cache = !(reads && !noatime && self.atime_due(inode));
        Ok(Opened {
            fh: if noatime { NOATIME_FH } else { 0 },
            keep_cache,
        })
    }

    /// Whether a read of `inode` now would update its atime.
    fn atime_due(&self, inode: &Inode) -> bool {
        let rule = self.mount.options().rule(inode.kind);
        let m = inode.meta();
        atime::due(rule, m.atime, m.mtime, m.ctime, SystemTime::now())
    }

    /// A read of `inode` (a file's data, a directory's entries) was served: updates its
    /// atime as the volume's mount options say, unless the reader opened it `O_NOATIME`
    /// (`noatime`).
    pub(super) fn accessed(&self, inode: &Inode, noatime: bool) {
        if noatime {
            return;
        }
        let rule = self.mount.options().rule(inode.kind);
        let now = SystemTime::now();
        let mut m = inode.meta();
        if atime::due(rule, m.atime, m.mtime, m.ctime, now) {
            m.atime = now;
        }
    }

    pub(super) fn do_setattr(&self, ino: Ino, set: &SetAttr) -> Result<Attr> {
        let inode = self.get(ino)?;
        let mut body = inode.body_mut();
        let now = SystemTime::now();
        let mut resized = false;
        if let Some(size) = set.size {
            match &mut *body {
                Body::File(f) => {
                    if size > i64::MAX as u64 {
                        return Err(Errno::EFBIG);
                    }
                    resized = size != f.size();
                    f.truncate(size, &self.usage, &self.store)?;
                }
                Body::Dir(_) => return Err(Errno::EISDIR),
                _ => return Err(Errno::EINVAL),
            }
        }
        let mut m = inode.meta();
        // With the group before a chown changes it, as the VFS decides.
        if let Some(k) = &set.kill
            && inode.kind == FileKind::Regular
        {
            m.perm = killpriv::cleared(m.perm, m.gid, k);
        }
        if let Some(mode) = set.mode {
            m.perm = (mode & 0o7777) as u16;
        }
        if let Some(uid) = set.uid {
            m.uid = uid;
        }
        if let Some(gid) = set.gid {
            m.gid = gid;
        }
        if let Some(t) = set.atime {
            m.atime = resolve(t, now);
        }
        match set.mtime {
            Some(t) => m.mtime = resolve(t, now),
            None if resized => m.mtime = now,
            None => {}
        }
        m.ctime = set.ctime.unwrap_or(now);
        drop(m);
        Ok(inode.attr_with(&body))
    }

    /// Reads for open file `fh`, updating the atime (before the kernel is answered: it
    /// asks for the attributes again after a read).
    pub(super) fn do_read(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        size: u32,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let inode = self.get(ino)?;
        match &*inode.body() {
            Body::File(f) => f.read(offset, size as usize, buf, &self.store)?,
            Body::Dir(_) => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        }
        self.accessed(&inode, fh == NOATIME_FH);
        Ok(())
    }

    pub(super) fn do_write(
        &self,
        ino: Ino,
        offset: u64,
        data: &[u8],
        clear: killpriv::Clear,
    ) -> Result<Written> {
        let inode = self.get(ino)?;
        let mut body = inode.body_mut();
        let Body::File(f) = &mut *body else {
            return Err(Errno::EINVAL);
        };
        let n = f.write(offset, data, &self.usage, &self.store)?;
        let mut m = inode.meta();
        m.touch_mc(SystemTime::now());
        let before = m.perm;
        if let Some(who) = clear.setid {
            m.perm = killpriv::cleared(m.perm, m.gid, &killpriv::Kill::Modified(who));
        }
        let mode_changed = m.perm != before;
        drop((m, body));
        if clear.caps {
            match self.do_removexattr(ino, std::ffi::OsStr::new("security.capability")) {
                Ok(()) | Err(Errno::ENODATA) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Written {
            bytes: n as u32,
            mode_changed,
        })
    }

    pub(super) fn do_fallocate(&self, ino: Ino, offset: u64, len: u64, mode: i32) -> Result<()> {
        let known = FALLOC_KEEP_SIZE | FALLOC_PUNCH_HOLE | FALLOC_ZERO_RANGE;
        if mode & !known != 0 || (mode & FALLOC_PUNCH_HOLE != 0 && mode & FALLOC_ZERO_RANGE != 0) {
            return Err(Errno::EOPNOTSUPP);
        }
        let inode = self.get(ino)?;
        let mut body = inode.body_mut();
        let Body::File(f) = &mut *body else {
            return Err(Errno::ENODEV);
        };
        let keep = mode & FALLOC_KEEP_SIZE != 0;
        let before = f.size();
        let changes_data = mode & (FALLOC_PUNCH_HOLE | FALLOC_ZERO_RANGE) != 0;
        if mode & FALLOC_PUNCH_HOLE != 0 {
            f.punch_hole(offset, len, &self.usage, &self.store)?;
        } else if mode & FALLOC_ZERO_RANGE != 0 {
            f.zero_range(offset, len, keep, &self.usage, &self.store)?;
        } else {
            f.allocate(offset, len, keep, &self.usage)?;
        }
        let now = SystemTime::now();
        let mut m = inode.meta();
        m.ctime = now;
        if changes_data || f.size() != before {
            m.mtime = now;
        }
        Ok(())
    }

    pub(super) fn do_lseek(&self, ino: Ino, offset: i64, whence: i32) -> Result<i64> {
        let offset = u64::try_from(offset).map_err(|_| Errno::ENXIO)?;
        let inode = self.get(ino)?;
        let body = inode.body();
        let Body::File(f) = &*body else {
            return Err(Errno::EINVAL);
        };
        let pos = match whence {
            libc::SEEK_DATA => f.seek_data(offset)?,
            libc::SEEK_HOLE => f.seek_hole(offset)?,
            _ => return Err(Errno::EINVAL),
        };
        Ok(pos as i64)
    }

    pub(super) fn do_copy_file_range(
        &self,
        ino_in: Ino,
        fh_in: Fh,
        off_in: u64,
        ino_out: Ino,
        off_out: u64,
        len: u64,
    ) -> Result<u32> {
        let mut buf = Vec::new();
        self.do_read(ino_in, fh_in, off_in, len.min(COPY_CHUNK) as u32, &mut buf)?;
        if buf.is_empty() {
            return Ok(0);
        }
        // Setid bits were cleared by the SETATTR the kernel sent before it.
        let w = self.do_write(ino_out, off_out, &buf, killpriv::Clear::default())?;
        Ok(w.bytes)
    }

    pub(super) fn do_setxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        let inode = self.get(ino)?;
        let mut m = inode.meta();
        let previous = m.xattrs.get(name).ok().map(<[u8]>::to_vec);
        m.xattrs.set(name, value, flags)?;
        let blocks = (m.xattrs.bytes() as u64).div_ceil(BLOCK_SIZE);
        if blocks > m.xattr_blocks && !self.usage.reserve_blocks(blocks - m.xattr_blocks) {
            match previous {
                Some(v) => m.xattrs.set(name, &v, 0)?,
                None => m.xattrs.remove(name)?,
            }
            return Err(Errno::ENOSPC);
        }
        if blocks < m.xattr_blocks {
            self.usage.release_blocks(m.xattr_blocks - blocks);
        }
        m.xattr_blocks = blocks;
        m.ctime = SystemTime::now();
        Ok(())
    }

    pub(super) fn do_removexattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        let inode = self.get(ino)?;
        let mut m = inode.meta();
        m.xattrs.remove(name)?;
        let blocks = (m.xattrs.bytes() as u64).div_ceil(BLOCK_SIZE);
        self.usage.release_blocks(m.xattr_blocks - blocks);
        m.xattr_blocks = blocks;
        m.ctime = SystemTime::now();
        Ok(())
    }
}
