//! The FUSE adapter: fuser's `Filesystem` over any [`Backend`], and nothing more.
//!
//! Each handler converts the request, calls the backend inside [`Adapter::guard`] and
//! converts the answer. `guard` turns a panic into EIO: fuser ends the whole session on a
//! panic, which would unmount the volume under a pod. This module is the only one that
//! knows fuser, so another FUSE crate could replace it.

#[macro_use]
mod adapter;
mod convert;
mod gate;
mod handshake;
mod inflight;
mod iomode;
mod notify;
mod options;

pub use adapter::Adapter;
pub use gate::Gate;
pub use handshake::{Connection, InitExchange, Negotiated};
pub use iomode::{IoModes, Mode};
pub use options::{FSTYPE, Mounted, kernel_config, mount, take_over};

use crate::daemon::fs::{Backend, DirEntry, SetAttr, killpriv};
use adapter::{READ_BUF, TTL, empty, xattr_reply};
use convert::{caller, errno, generation, time};
use fuser::*;
use std::ffi::OsStr;
use std::path::Path;
use std::time::SystemTime;

impl<B: Backend> Filesystem for Adapter<B> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let passthrough = self.backend.passthrough_probe().is_some();
        let granted = kernel_config(config, self.adopt.as_ref(), passthrough);
        self.kills = granted.contains(InitFlags::FUSE_HANDLE_KILLPRIV_V2);
        self.atomic_trunc = granted.contains(InitFlags::FUSE_ATOMIC_O_TRUNC);
        Ok(())
    }

    /// `.` and `..` reach a filesystem only from the kernel's file-handle code
    /// (`FUSE_EXPORT_SUPPORT`): the node itself, and a directory's parent.
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _pass = self.gate.pass();
        match name.as_encoded_bytes() {
            b"." => return self.entry(reply, self.guard("lookup", |b| b.lookup_self(parent.0))),
            b".." => return self.entry(reply, self.guard("lookup", |b| b.lookup_parent(parent.0))),
            _ => {}
        }
        match self.guard("lookup", |b| b.lookup(parent.0, name)) {
            // A node id of 0 tells the kernel to cache the name's absence for TTL (a
            // compiler probing include paths, a shell searching PATH).
            Err(e) if e == crate::daemon::fs::Errno::ENOENT => {
                reply.entry(&TTL, &convert::absent(), Generation(0))
            }
            r => self.entry(reply, r),
        }
    }

    /// No pass: fuser serves a BATCH_FORGET as one `forget` call per node, and a thread
    /// must never stop half way through a batch (the rest would be lost in a hand-off).
    /// A forget has no answer; the thread parks after the next request it reads.
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let _ = self.guard("forget", |b| {
            b.forget(ino.0, nlookup);
            Ok(())
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let _pass = self.gate.pass();
        let r = self.guard("getattr", |b| b.getattr(ino.0));
        answer!(reply, r, |a| reply.attr(&TTL, &self.attr(&a)))
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _pass = self.gate.pass();
        let mut set = SetAttr {
            kill: None,
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time),
            mtime: mtime.map(time),
            ctime: ctime.map(convert::before_epoch_fixed),
        };
        if self.kills {
            set.kill = convert::setattr_kill(&caller(req), &set);
        }
        let r = self.guard("setattr", |b| b.setattr(ino.0, fh.map(|f| f.0), &set));
        answer!(reply, r, |a| reply.attr(&TTL, &self.attr(&a)))
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let _pass = self.gate.pass();
        let r = self.guard("readlink", |b| b.readlink(ino.0));
        answer!(reply, r, |t| reply.data(&t))
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let _pass = self.gate.pass();
        self.entry(
            reply,
            self.guard("mknod", |b| {
                b.mknod(&caller(req), parent.0, name, mode, rdev)
            }),
        )
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let _pass = self.gate.pass();
        self.entry(
            reply,
            self.guard("mkdir", |b| b.mkdir(&caller(req), parent.0, name, mode)),
        )
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _pass = self.gate.pass();
        empty(reply, self.guard("unlink", |b| b.unlink(parent.0, name)))
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _pass = self.gate.pass();
        empty(reply, self.guard("rmdir", |b| b.rmdir(parent.0, name)))
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let _pass = self.gate.pass();
        let target = target.as_os_str();
        self.entry(
            reply,
            self.guard("symlink", |b| {
                b.symlink(&caller(req), parent.0, link_name, target)
            }),
        )
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _pass = self.gate.pass();
        let r = self.guard("rename", |b| {
            b.rename(parent.0, name, newparent.0, newname, flags.bits())
        });
        empty(reply, r)
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let _pass = self.gate.pass();
        self.entry(
            reply,
            self.guard("link", |b| b.link(ino.0, newparent.0, newname)),
        )
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _pass = self.gate.pass();
        let r = self.guard("open", |b| {
            let o = b.open(ino.0, flags.0)?;
            // Only with `ATOMIC_O_TRUNC` does the kernel leave O_TRUNC in an OPEN.
            if self.atomic_trunc && flags.0 & libc::O_TRUNC != 0 {
                self.truncate_opened(b, &caller(req), ino.0, o.fh)
                    .inspect_err(|_| {
                        let _ = b.release(ino.0, o.fh);
                    })?;
            }
            Ok((o.fh, self.io.open(b, ino.0, o.fh, flags.0, o.keep_cache)))
        });
        answer!(reply, r, |(fh, c)| match c.backing {
            None => reply.opened(FileHandle(fh), c.flags),
            Some(id) => {
                // Not closed here: the id is the inode's until its last release.
                // SAFETY: fuser's contract: `id` is open and belongs to this connection
                // (`IoModes` opened it on it, or a predecessor did and handed it on), and
                // it is not closed while the BackingId lives: `IoModes` closes an id only
                // at its inode's last RELEASE, and this open is counted before its reply,
                // which is sent just below; `into_raw` then takes the id back without
                // closing it.
                let id = unsafe { reply.wrap_backing(id) };
                reply.opened_passthrough(FileHandle(fh), c.flags, &id);
                id.into_raw();
            }
        })
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _pass = self.gate.pass();
        READ_BUF.with_borrow_mut(|buf| {
            let r = self.guard("read", |b| b.read(ino.0, fh.0, offset, size, buf));
            answer!(reply, r, |()| reply.data(buf))
        })
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _pass = self.gate.pass();
        let clear = killpriv::Clear {
            // The kernel's word that the writer lacks CAP_FSETID (with KILLPRIV_V2, or
            // on any direct write).
            setid: write_flags
                .contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID)
                .then(|| caller(req)),
            // What the kernel does itself before any write but a direct one.
            caps: matches!(
                self.io.mode(fh.0),
                Mode::Direct | Mode::Passthrough { direct: true }
            ),
        };
        let r = self.guard("write", |b| b.write(ino.0, fh.0, offset, data, clear));
        if r.as_ref().is_ok_and(|w| w.mode_changed) {
            // Before the answer: the writer's next `stat` must not see the old mode.
            self.notify.attributes_changed(ino.0);
        }
        answer!(reply, r, |w| reply.written(w.bytes))
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        let _pass = self.gate.pass();
        empty(reply, self.guard("flush", |b| b.flush(ino.0, fh.0)))
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _pass = self.gate.pass();
        let r = self.guard("release", |b| {
            self.io.release(b, fh.0);
            b.release(ino.0, fh.0)
        });
        empty(reply, r)
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _pass = self.gate.pass();
        empty(
            reply,
            self.guard("fsync", |b| b.fsync(ino.0, fh.0, datasync)),
        )
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _pass = self.gate.pass();
        let r = self.guard("opendir", |b| b.opendir(ino.0, flags.0));
        answer!(reply, r, |fh| reply
            .opened(FileHandle(fh), FopenFlags::empty()))
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let _pass = self.gate.pass();
        let r = self.guard("readdir", |b| {
            let mut add = |e: &DirEntry<'_>| {
                !reply.add(INodeNo(e.ino), e.next_offset, convert::kind(e.kind), e.name)
            };
            b.readdir(ino.0, fh.0, offset, false, &mut add)
        });
        answer!(reply, r, |()| reply.ok())
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let _pass = self.gate.pass();
        let r = self.guard("readdirplus", |b| {
            // An entry without attributes (a backend bug) ends this reply before it; if
            // it is the first, the listing fails with EIO rather than ending early.
            let (mut added, mut bare) = (0, false);
            let mut add = |e: &DirEntry<'_>| {
                let Some(a) = e.attr.as_ref() else {
                    bare = true;
                    return false;
                };
                let (g, a) = (generation(a), self.attr(a));
                let full = reply.add(INodeNo(e.ino), e.next_offset, e.name, &TTL, &a, g);
                added += usize::from(!full);
                !full
            };
            b.readdir(ino.0, fh.0, offset, true, &mut add)?;
            if bare && added == 0 {
                log::error!(
                    "readdirplus of inode {}: an entry without attributes",
                    ino.0
                );
                return Err(crate::daemon::fs::Errno::EIO);
            }
            Ok(())
        });
        answer!(reply, r, |()| reply.ok())
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let _pass = self.gate.pass();
        empty(
            reply,
            self.guard("releasedir", |b| b.releasedir(ino.0, fh.0)),
        )
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _pass = self.gate.pass();
        empty(
            reply,
            self.guard("fsyncdir", |b| b.fsyncdir(ino.0, fh.0, datasync)),
        )
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let _pass = self.gate.pass();
        let r = self.guard("statfs", |b| Ok(b.statfs()));
        answer!(reply, r, |s| reply.statfs(
            s.blocks,
            s.blocks_free,
            s.blocks_avail,
            s.files,
            s.files_free,
            s.block_size,
            s.name_max,
            s.block_size
        ))
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let _pass = self.gate.pass();
        empty(
            reply,
            self.guard("setxattr", |b| b.setxattr(ino.0, name, value, flags)),
        )
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let _pass = self.gate.pass();
        xattr_reply(
            reply,
            size,
            self.guard("getxattr", |b| b.getxattr(ino.0, name)),
        )
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let _pass = self.gate.pass();
        xattr_reply(reply, size, self.guard("listxattr", |b| b.listxattr(ino.0)))
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _pass = self.gate.pass();
        empty(
            reply,
            self.guard("removexattr", |b| b.removexattr(ino.0, name)),
        )
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        let _pass = self.gate.pass();
        reply.ok() // default_permissions: the kernel has checked
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let _pass = self.gate.pass();
        let r = self.guard("create", |b| {
            let (a, o) = b.create(&caller(req), parent.0, name, mode, flags)?;
            Ok((a, o.fh, self.io.open(b, a.ino, o.fh, flags, o.keep_cache)))
        });
        answer!(reply, r, |(a, fh, c)| match c.backing {
            None => reply.created(
                &TTL,
                &self.attr(&a),
                generation(&a),
                FileHandle(fh),
                c.flags
            ),
            Some(id) => {
                // SAFETY: fuser's contract: `id` is open and belongs to this connection
                // (`IoModes` opened it on it, or a predecessor did and handed it on), and
                // it is not closed while the BackingId lives: `IoModes` closes an id only
                // at its inode's last RELEASE, and this open is counted before its reply,
                // which is sent just below; `into_raw` then takes the id back without
                // closing it.
                let id = unsafe { reply.wrap_backing(id) };
                let (fh, g, a) = (FileHandle(fh), generation(&a), self.attr(&a));
                reply.created_passthrough(&TTL, &a, g, fh, c.flags, &id);
                id.into_raw();
            }
        })
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let _pass = self.gate.pass();
        empty(
            reply,
            self.guard("fallocate", |b| {
                b.fallocate(ino.0, fh.0, offset, length, mode)
            }),
        )
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let _pass = self.gate.pass();
        let r = self.guard("lseek", |b| b.lseek(ino.0, fh.0, offset, whence));
        answer!(reply, r, |o| reply.offset(o))
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let _pass = self.gate.pass();
        let r = self.guard("copy_file_range", |b| {
            b.copy_file_range(
                ino_in.0, fh_in.0, offset_in, ino_out.0, fh_out.0, offset_out, len,
            )
        });
        answer!(reply, r, |n| reply.written(n))
    }
}
