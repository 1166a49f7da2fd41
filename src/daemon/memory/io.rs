//! Open files, data and attribute changes.
//!
//! A regular file's data is a file of the volume's tmpfs (`data.rs`), which the kernel
//! reads, writes and maps itself where it can (passthrough, `fuse/iomode.rs`); what
//! reaches the daemon (truncates, `fallocate`, `SEEK_DATA`, `copy_file_range`, and reads
//! and writes on a kernel without passthrough) is done to that file.
//!
//! # Access times
//! A file's times are its data file's: tmpfs updates them on reads and writes, the
//! kernel's own or the daemon's, as the options of the tmpfs's mount say, and those
//! follow the volume's mount (`data.rs`, [`atime`]). A directory's are the inode's: a
//! listing updates them as the volume's options say. Where the kernel has no passthrough
//! and caches a memory volume's file pages across opens (`KEEP_CACHE`), an open that a
//! read should update the atime of (under `relatime`: the file changed since it was last
//! read, or that was a day ago; `strictatime`: always) is answered without `KEEP_CACHE`,
//! so that its first read reaches the daemon.

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

/// A memory volume's file handles are numbered (each open its own, as the kernel's io
/// modes are kept per handle, `fuse/iomode.rs`), and the lowest bit says that the file
/// was opened `O_NOATIME` (its reads leave the atime alone). Before state format 4 every
/// handle was 0 or this bit alone.
const NOATIME_FH: Fh = 1;

fn timespec(t: Option<SetTime>) -> libc::timespec {
    match t {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(SetTime::Now) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(SetTime::At(t)) => {
            let (sec, nsec) = match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => (d.as_secs() as i64, d.subsec_nanos() as i64),
                Err(e) => {
                    // Before 1970: whole seconds down, nanoseconds up.
                    let d = e.duration();
                    let (s, n) = (d.as_secs() as i64, d.subsec_nanos() as i64);
                    if n == 0 {
                        (-s, 0)
                    } else {
                        (-s - 1, 1_000_000_000 - n)
                    }
                }
            };
            libc::timespec {
                tv_sec: sec,
                tv_nsec: nsec,
            }
        }
    }
}

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
        let body = inode.body(); // see `maybe_release`
        inode.opens.fetch_add(1, Relaxed);
        if inode.released.load(Relaxed) {
            inode.opens.fetch_sub(1, Relaxed);
            return Err(Errno::ESTALE);
        }
        // Before the kernel reads the data file itself (passthrough).
        self.data.follow(self.mount.options());
        let noatime = flags & libc::O_NOATIME != 0;
        let reads = flags & libc::O_ACCMODE != libc::O_WRONLY;
        let keep_cache = !(reads && !noatime && self.atime_due(inode, &body));
        Ok(Opened {
            fh: self.next_fh.fetch_add(2, Relaxed) | if noatime { NOATIME_FH } else { 0 },
            keep_cache,
        })
    }

    /// Whether a read of `inode` (whose body the caller has locked: a second read lock
    /// would wait behind a writer that waits for the first) now would update its atime.
    fn atime_due(&self, inode: &Inode, body: &Body) -> bool {
        let rule = self.mount.options().rule(inode.kind);
        let a = self.attr_with(inode, body);
        atime::due(rule, a.atime, a.mtime, a.ctime, SystemTime::now())
    }

    /// A directory was listed: updates its atime as the volume's mount options say,
    /// unless the reader opened it `O_NOATIME` (`noatime`).
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
        let body = inode.body_mut();
        let now = SystemTime::now();
        let file = matches!(&*body, Body::File);
        if let Some(size) = set.size {
            match &*body {
                Body::File => {
                    if size > i64::MAX as u64 {
                        return Err(Errno::EFBIG);
                    }
                    self.data.truncate(ino, size)?;
                }
                Body::Dir(_) => return Err(Errno::EISDIR),
                _ => return Err(Errno::EINVAL),
            }
        }
        if file && (set.atime.is_some() || set.mtime.is_some()) {
            self.data
                .set_times(ino, &[timespec(set.atime), timespec(set.mtime)])?;
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
        if !file {
            if let Some(t) = set.atime {
                m.atime = resolve(t, now);
            }
            if let Some(t) = set.mtime {
                m.mtime = resolve(t, now);
            }
        }
        m.ctime = set.ctime.unwrap_or(now);
        drop(m);
        self.changed(&inode);
        Ok(self.attr_with(&inode, &body))
    }

    /// Reads for open file `fh` (the kernel has no passthrough).
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
            Body::File => self.data.read(ino, offset, size, fh & NOATIME_FH != 0, buf),
            Body::Dir(_) => Err(Errno::EISDIR),
            _ => Err(Errno::EINVAL),
        }
    }

    pub(super) fn do_write(
        &self,
        ino: Ino,
        offset: u64,
        data: &[u8],
        clear: killpriv::Clear,
    ) -> Result<Written> {
        let inode = self.get(ino)?;
        let body = inode.body();
        let Body::File = &*body else {
            return Err(Errno::EINVAL);
        };
        let n = self.data.write(ino, offset, data)?;
        let mut m = inode.meta();
        let before = m.perm;
        if let Some(who) = clear.setid {
            m.perm = killpriv::cleared(m.perm, m.gid, &killpriv::Kill::Modified(who));
        }
        let mode_changed = m.perm != before;
        if mode_changed {
            m.ctime = SystemTime::now();
        }
        drop((m, body));
        if mode_changed {
            self.changed(&inode);
        }
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
        let body = inode.body_mut();
        let Body::File = &*body else {
            return Err(Errno::ENODEV);
        };
        self.data.fallocate(ino, offset, len, mode)
    }

    pub(super) fn do_lseek(&self, ino: Ino, offset: i64, whence: i32) -> Result<i64> {
        if offset < 0 {
            return Err(Errno::ENXIO);
        }
        let inode = self.get(ino)?;
        let body = inode.body();
        let Body::File = &*body else {
            return Err(Errno::EINVAL);
        };
        match whence {
            libc::SEEK_DATA | libc::SEEK_HOLE => self.data.seek(ino, offset, whence),
            _ => Err(Errno::EINVAL),
        }
    }

    pub(super) fn do_copy_file_range(
        &self,
        ino_in: Ino,
        off_in: u64,
        ino_out: Ino,
        off_out: u64,
        len: u64,
    ) -> Result<u32> {
        let (a, b) = (self.get(ino_in)?, self.get(ino_out)?);
        if a.kind != FileKind::Regular || b.kind != FileKind::Regular {
            return Err(Errno::EINVAL);
        }
        // Setid bits were cleared by the SETATTR the kernel sent before it.
        let n = self.data.copy(
            ino_in,
            off_in,
            ino_out,
            off_out,
            len.min(COPY_CHUNK) as usize,
        )?;
        Ok(n as u32)
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
        if blocks > m.xattr_blocks
            && let Err(e) = self.data.reserve(blocks - m.xattr_blocks)
        {
            match previous {
                Some(v) => m.xattrs.set(name, &v, 0)?,
                None => m.xattrs.remove(name)?,
            }
            return Err(e);
        }
        if blocks < m.xattr_blocks {
            self.data.release(m.xattr_blocks - blocks);
        }
        m.xattr_blocks = blocks;
        m.ctime = SystemTime::now();
        drop(m);
        self.changed(&inode);
        Ok(())
    }

    pub(super) fn do_removexattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        let inode = self.get(ino)?;
        let mut m = inode.meta();
        m.xattrs.remove(name)?;
        let blocks = (m.xattrs.bytes() as u64).div_ceil(BLOCK_SIZE);
        self.data.release(m.xattr_blocks - blocks);
        m.xattr_blocks = blocks;
        m.ctime = SystemTime::now();
        drop(m);
        self.changed(&inode);
        Ok(())
    }
}
