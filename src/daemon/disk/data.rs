//! Open files and what changes an inode in place: data, size, attributes, xattrs.
//!
//! Every change that can take or free space runs under the node's state lock and is
//! settled by measuring the inode afterwards (see `account.rs`). Reads take no lock.

use super::account::{self, Charge, Space};
use super::nodes::{Node, blocks_of};
use super::{DiskFs, caps, direct, passthrough, sys};
use crate::daemon::fs::*;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// Clears the setid bits of the open file `fd` (whose `stat` is `st`) as `kill` says;
/// returns whether the mode changed.
fn kill_setid(
    fd: std::os::fd::BorrowedFd<'_>,
    st: &libc::stat,
    kill: &killpriv::Kill,
) -> Result<bool> {
    let perm = (st.st_mode & 0o7777) as u16;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(false);
    }
    let now = killpriv::cleared(perm, st.st_gid, kill);
    if now != perm {
        sys::fchmod(fd, now.into())?;
    }
    Ok(now != perm)
}

/// Removes `security.capability` of `node` (open as `fd`) if it has one.
fn remove_caps(node: &Node, fd: std::os::fd::BorrowedFd<'_>) -> Result<()> {
    let name = c"security.capability";
    if node.caps.lookup(|| sys::getxattr(fd, name)).is_err() {
        return Ok(());
    }
    let r = sys::removexattr(fd, name);
    node.caps.changed();
    match r {
        Err(Errno::ENODATA) => Ok(()),
        r => r,
    }
}

/// The most one `copy_file_range` request copies; callers loop on short copies.
const COPY_CHUNK: u64 = 16 << 20;

/// An open regular file: its backing descriptor, opened read-write so that one descriptor
/// serves every request the kernel sends for it.
pub struct OpenFile {
    pub fd: Arc<OwnedFd>,
    pub node: Arc<Node>,
    /// The same file opened `O_DIRECT`, for a file opened `O_DIRECT` (`direct.rs`); none
    /// if the backing filesystem refuses it.
    pub direct: Option<OwnedFd>,
}

/// An open directory and its `getdents` buffer.
pub struct OpenDir {
    pub fd: OwnedFd,
    pub buf: std::sync::Mutex<Vec<u8>>,
}

/// Backing open flags for a file the kernel opens with `flags`: read-write whatever was
/// asked (the kernel has checked the caller's access), keeping only flags that change
/// how data reaches the disk. Not `O_APPEND` (the kernel sends the offset to write at),
/// not `O_DIRECT` (requests need not be aligned: `direct.rs` opens a second descriptor),
/// not `O_TRUNC` (sent as a setattr).
pub(super) fn backing_flags(flags: i32) -> i32 {
    libc::O_RDWR | (flags & (libc::O_SYNC | libc::O_DSYNC | libc::O_NOATIME))
}

fn resolve(t: Option<SetTime>) -> libc::timespec {
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

impl DiskFs {
    pub(super) fn file(&self, fh: Fh) -> Result<Arc<OpenFile>> {
        self.files
            .get(&fh)
            .map(|f| f.value().clone())
            .ok_or(Errno::EBADF)
    }

    /// Opens `node` for I/O and registers the open file.
    pub(super) fn open_node(
        &self,
        node: Arc<Node>,
        flags: i32,
        fd: Option<OwnedFd>,
    ) -> Result<Opened> {
        if node.kind == FileKind::Directory {
            return Err(Errno::EISDIR);
        }
        let fd = match fd {
            Some(fd) => fd,
            None => match self.nodes.open(&node, backing_flags(flags)) {
                Err(e) if e == Errno::EROFS || e == Errno::ETXTBSY => {
                    self.nodes.open(&node, flags & libc::O_ACCMODE)?
                }
                r => r?,
            },
        };
        let direct = (flags & libc::O_DIRECT != 0)
            .then(|| sys::reopen(fd.as_fd(), backing_flags(flags) | libc::O_DIRECT))
            .and_then(|r| {
                r.inspect_err(|e| log::debug!("no O_DIRECT on the backing file: {e:?}"))
                    .ok()
            });
        let fd = Arc::new(fd);
        {
            let mut s = node.state();
            s.opens += 1;
            node.pin(&fd);
        }
        let fh = self
            .next_fh
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.files
            .insert(fh, Arc::new(OpenFile { fd, node, direct }));
        // The daemon is the only writer of the backing tree: the page cache stays valid.
        Ok(Opened {
            fh,
            keep_cache: true,
        })
    }

    pub(super) fn do_release(&self, fh: Fh) -> Result<()> {
        let (_, file) = self.files.remove(&fh).ok_or(Errno::EBADF)?;
        let node = file.node.clone();
        let mut s = node.state();
        s.opens = s.opens.saturating_sub(1); // one release per open: `files` held it once
        if s.opens > 0 {
            return Ok(());
        }
        node.unpin();
        // Close before measuring: filesystems trim preallocation at the last close.
        drop(file);
        if std::mem::take(&mut s.orphan) {
            self.nodes.uncache(&node);
            let space = Space::of_kind(node.kind);
            Charge::none(&self.usage).freed(space, std::mem::take(&mut s.charged));
            self.usage.release_inode();
        } else if let Ok(st) = self.nodes.fd(&node).and_then(|fd| sys::fstat(fd.as_fd())) {
            Charge::none(&self.usage).measured(&mut s.charged, blocks_of(&st));
        }
        Ok(())
    }

    pub(super) fn do_read(&self, fh: Fh, offset: u64, size: u32, buf: &mut Vec<u8>) -> Result<()> {
        let file = self.file(fh)?;
        if let Some(d) = &file.direct
            && direct::aligned(offset, size as usize)
        {
            let n = direct::with_bounce(size as usize, |b| {
                let n = sys::pread(d.as_fd(), b, offset)?;
                buf.clear();
                buf.extend_from_slice(&b[..n]);
                Ok::<_, Errno>(n)
            });
            if n != Err(Errno::EINVAL) {
                return n.map(drop);
            }
        }
        buf.resize(size as usize, 0);
        let mut done = 0;
        while done < buf.len() {
            let n = sys::pread(file.fd.as_fd(), &mut buf[done..], offset + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        buf.truncate(done);
        Ok(())
    }

    pub(super) fn do_write(
        &self,
        fh: Fh,
        offset: u64,
        data: &[u8],
        clear: killpriv::Clear,
    ) -> Result<Written> {
        let file = self.file(fh)?;
        let fd = file.fd.as_fd();
        let mut s = file.node.state();
        self.allocate_gap(fd, &mut s, offset)?;
        let (mut charge, allowed) =
            account::reserve_write(&self.usage, fd, offset, data.len() as u64)?;
        let data = &data[..allowed as usize];
        let written = match &file.direct {
            Some(d) if direct::aligned(offset, data.len()) => {
                let r = direct::with_bounce(data.len(), |b| {
                    b.copy_from_slice(data);
                    sys::pwrite(d.as_fd(), b, offset)
                });
                match r {
                    Err(Errno::EINVAL) => sys::pwrite(fd, data, offset),
                    r => r,
                }
            }
            _ => sys::pwrite(fd, data, offset),
        };
        let st = sys::fstat(fd)?;
        charge.measured(&mut s.charged, blocks_of(&st));
        let mode_changed = match clear.setid {
            Some(who) => kill_setid(fd, &st, &killpriv::Kill::Modified(who))?,
            None => false,
        };
        if clear.caps {
            remove_caps(&file.node, fd)?;
        }
        Ok(Written {
            bytes: written? as u32,
            mode_changed,
        })
    }

    pub(super) fn do_fsync(&self, fh: Fh, datasync: bool) -> Result<()> {
        sys::fsync(self.file(fh)?.fd.as_fd(), datasync)
    }

    pub(super) fn do_setattr(&self, ino: Ino, fh: Option<Fh>, set: &SetAttr) -> Result<Attr> {
        let node = self.nodes.get(ino)?;
        if let Some(size) = set.size {
            match node.kind {
                FileKind::Regular => {}
                FileKind::Directory => return Err(Errno::EISDIR),
                _ => return Err(Errno::EINVAL),
            }
            let file = fh.and_then(|fh| self.file(fh).ok());
            let fd = match &file {
                Some(f) => f.fd.clone(),
                None => Arc::new(self.nodes.open(&node, libc::O_WRONLY)?),
            };
            let mut s = node.state();
            self.allocate_gap(fd.as_fd(), &mut s, size)?;
            let mut charge = Charge::none(&self.usage);
            let r = sys::ftruncate(fd.as_fd(), size);
            charge.measured(&mut s.charged, blocks_of(&sys::fstat(fd.as_fd())?));
            r?;
        }
        let fd = self.nodes.fd(&node)?;
        // Decided on the mode and group from before a chown, as the VFS decides.
        let killed = match &set.kill {
            Some(k) if node.kind == FileKind::Regular => {
                let st = sys::fstat(fd.as_fd())?;
                let perm = (st.st_mode & 0o7777) as u16;
                let now = killpriv::cleared(perm, st.st_gid, k);
                (now != perm).then_some(now)
            }
            _ => None,
        };
        if set.uid.is_some() || set.gid.is_some() {
            sys::fchown(
                fd.as_fd(),
                set.uid.unwrap_or(u32::MAX),
                set.gid.unwrap_or(u32::MAX),
            )?;
        }
        if let Some(perm) = killed {
            sys::fchmod(fd.as_fd(), perm.into())?;
        }
        if let Some(mode) = set.mode {
            sys::fchmod(fd.as_fd(), mode & 0o7777)?;
        }
        if set.atime.is_some() || set.mtime.is_some() {
            sys::utimens(fd.as_fd(), &[resolve(set.atime), resolve(set.mtime)])?;
        }
        self.attr(&node)
    }

    /// The node's attributes; counts blocks the backing filesystem added or dropped on
    /// its own since the last measurement (extent blocks written back late).
    pub(super) fn attr(&self, node: &Node) -> Result<Attr> {
        let fd = self.nodes.fd(node)?;
        // Measured under the node's lock, or a change running meanwhile would be counted
        // twice or lost; when the lock is busy, the change in progress measures anyway.
        let Some(mut s) = node.try_state() else {
            return Ok(node.attr(&sys::fstat(fd.as_fd())?));
        };
        let st = sys::fstat(fd.as_fd())?;
        let linked = st.st_nlink > 0 && !node.unlinked.load(Relaxed) && !s.orphan;
        if linked && s.charged != blocks_of(&st) {
            let space = Space::of_kind(node.kind);
            Charge::none(&self.usage).measured_in(space, &mut s.charged, blocks_of(&st));
        }
        Ok(node.attr(&st))
    }

    pub(super) fn do_fallocate(&self, fh: Fh, offset: u64, length: u64, mode: i32) -> Result<()> {
        let file = self.file(fh)?;
        let fd = file.fd.as_fd();
        let mut s = file.node.state();
        let mode = passthrough::fallocate_mode(&s, mode);
        if mode & libc::FALLOC_FL_KEEP_SIZE == 0 {
            self.allocate_gap(fd, &mut s, offset)?;
        }
        let need = if mode & FALLOC_PUNCH_HOLE != 0 {
            0
        } else {
            let first = offset / BLOCK_SIZE;
            let end = offset
                .checked_add(length)
                .ok_or(Errno::EFBIG)?
                .div_ceil(BLOCK_SIZE);
            account::hole_blocks(fd, first, end)?
        };
        let mut charge = Charge::reserve(&self.usage, need)?;
        let r = sys::fallocate(fd, mode, offset, length);
        charge.measured(&mut s.charged, blocks_of(&sys::fstat(fd)?));
        r
    }

    pub(super) fn do_lseek(&self, fh: Fh, offset: i64, whence: i32) -> Result<i64> {
        sys::lseek(self.file(fh)?.fd.as_fd(), offset, whence)
    }

    pub(super) fn do_copy_file_range(
        &self,
        fh_in: Fh,
        offset_in: u64,
        fh_out: Fh,
        offset_out: u64,
        len: u64,
    ) -> Result<u32> {
        let (src, dst) = (self.file(fh_in)?, self.file(fh_out)?);
        let out = dst.fd.as_fd();
        let mut s = dst.node.state();
        self.allocate_gap(out, &mut s, offset_out)?;
        let len = len.min(COPY_CHUNK);
        let (mut charge, allowed) = account::reserve_write(&self.usage, out, offset_out, len)?;
        let copied =
            sys::copy_file_range(src.fd.as_fd(), offset_in, out, offset_out, allowed as usize);
        charge.measured(&mut s.charged, blocks_of(&sys::fstat(out)?));
        Ok(copied? as u32)
    }

    /// Runs an xattr change on `ino` with `reserve` blocks set aside (ext4 keeps xattrs
    /// that do not fit in the inode in a block of their own), settled by measuring, in
    /// the space the inode's blocks are counted in.
    pub(super) fn change_xattr(
        &self,
        ino: Ino,
        reserve: u64,
        change: impl FnOnce(&OwnedFd) -> Result<()>,
    ) -> Result<()> {
        let node = self.nodes.get(ino)?;
        let fd = self.nodes.fd(&node)?;
        let mut s = node.state();
        let space = Space::of_kind(node.kind);
        let mut charge = Charge::reserve_in(&self.usage, space, reserve)?;
        let r = change(&fd);
        node.caps.changed();
        charge.measured_in(space, &mut s.charged, blocks_of(&sys::fstat(fd.as_fd())?));
        r
    }

    pub(super) fn do_getxattr(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>> {
        let node = self.nodes.get(ino)?;
        let get = || sys::getxattr(self.nodes.fd(&node)?.as_fd(), &sys::cstr(name)?);
        if name == caps::NAME {
            node.caps.lookup(get)
        } else {
            get()
        }
    }

    pub(super) fn do_listxattr(&self, ino: Ino) -> Result<Vec<u8>> {
        sys::listxattr(self.nodes.fd(&*self.nodes.get(ino)?)?.as_fd())
    }
}
