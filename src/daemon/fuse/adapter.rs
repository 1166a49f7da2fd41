//! The adapter's state ([`Adapter`]: the backend, the gate, the io modes, the notifier),
//! its panic containment ([`Adapter::guard`]) and the helpers that turn a backend's
//! answer into fuser's reply. The requests themselves are in `mod.rs`.

use super::convert::{self, errno, generation};
use super::{Gate, IoModes, Negotiated, notify};
use crate::daemon::fs::{
    Attr, BLOCK_SIZE, Backend, Caller, Fh, Ino, Result, SetAttr, SetTime, killpriv,
};
use fuser::*;
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

/// How long the kernel may trust names (also the absence of a name) and attributes
/// without asking again. Every change to a volume goes through this mount (the disk
/// backend's backing directory belongs to the daemon; a restarted daemon is a new
/// mount), and the kernel updates or drops what it caches on each change it makes, so
/// the cache can be trusted long: each lookup or getattr saved is a round trip.
pub(super) const TTL: Duration = Duration::from_secs(60);
/// `st_blksize` of a regular file whose writes are requests: coreutils' own I/O size
/// (`io_blksize`), an eighth of the largest write request (`MAX_WRITE`, 1 MiB).
pub(super) const REQUEST_IO_BLOCK: u32 = 128 << 10;

thread_local! {
    /// Per-thread buffer for read replies, so reads do not allocate.
    pub(super) static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

pub struct Adapter<B: Backend> {
    pub(super) backend: Arc<B>,
    /// Every request holds a pass of it while it runs (see `gate.rs`).
    pub(super) gate: Arc<Gate>,
    /// How each open file is served (see `iomode.rs`).
    pub(super) io: Arc<IoModes>,
    /// Invalidations of what the kernel caches (see `notify.rs`).
    pub(super) notify: Arc<notify::Notifier>,
    /// A successor's: what its connection negotiated at INIT, asked for again.
    pub(super) adopt: Option<Negotiated>,
    /// `FUSE_HANDLE_KILLPRIV_V2` is in force: clearing setid bits is ours (set at INIT).
    pub(super) kills: bool,
    /// `FUSE_ATOMIC_O_TRUNC` is in force: an OPEN with `O_TRUNC` truncates (set at INIT).
    pub(super) atomic_trunc: bool,
}

impl<B: Backend> Adapter<B> {
    /// The backend is shared so that the caller (the daemon, a test) can still reach it.
    pub fn new(
        backend: Arc<B>,
        gate: Arc<Gate>,
        io: Arc<IoModes>,
        notify: Arc<notify::Notifier>,
        adopt: Option<Negotiated>,
    ) -> Self {
        Adapter {
            backend,
            gate,
            io,
            notify,
            adopt,
            kills: false,
            atomic_trunc: false,
        }
    }

    /// The attributes the kernel is told, with the `st_blksize` of a regular file:
    /// programs size their writes by it. 4 KiB, as tmpfs, where the kernel writes file
    /// data itself; [`REQUEST_IO_BLOCK`] where every `write(2)` is a request to the daemon
    /// (a disk volume; any volume on a kernel without passthrough), so that glibc's stdio
    /// (`sort -T`, a program's `fwrite`) writes 8 KiB at a time, its most, instead of
    /// 4 KiB, and coreutils' `cp` and `cat` 128 KiB.
    pub(super) fn attr(&self, a: &Attr) -> fuser::FileAttr {
        let io_block = if self.io.kernel_writes(&*self.backend) {
            BLOCK_SIZE as u32
        } else {
            REQUEST_IO_BLOCK
        };
        convert::attr(a, io_block)
    }

    pub(super) fn entry(&self, reply: ReplyEntry, r: Result<Attr>) {
        match r {
            Ok(a) => reply.entry(&TTL, &self.attr(&a), generation(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    /// Runs one backend call; a panic inside it answers EIO and keeps the mount up.
    pub(super) fn guard<T>(&self, op: &str, f: impl FnOnce(&B) -> Result<T>) -> Result<T> {
        match catch_unwind(AssertUnwindSafe(|| f(&self.backend))) {
            Ok(r) => r,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                log::error!("{op}: handler panicked ({msg}); answered EIO");
                Err(crate::daemon::fs::Errno::EIO)
            }
        }
    }
}

impl<B: Backend> Adapter<B> {
    /// File `fh` of `ino`, just opened with `O_TRUNC` (`FUSE_ATOMIC_O_TRUNC`), truncated
    /// as the SETATTR the kernel sends after an OPEN without that flag would: size 0,
    /// modification and change times now, setid bits as any truncate by `who` clears
    /// them. After such an OPEN the kernel refreshes only size and times, so it is told
    /// when the mode changed (before the answer, as `write` does).
    pub(super) fn truncate_opened(&self, b: &B, who: &Caller, ino: Ino, fh: Fh) -> Result<()> {
        let before = b.getattr(ino)?.perm;
        let set = SetAttr {
            kill: self.kills.then_some(killpriv::Kill::Truncated(*who)),
            mode: None,
            uid: None,
            gid: None,
            size: Some(0),
            atime: None,
            mtime: Some(SetTime::Now),
            ctime: Some(std::time::SystemTime::now()),
        };
        if b.setattr(ino, Some(fh), &set)?.perm != before {
            self.notify.attributes_changed(ino);
        }
        Ok(())
    }
}

macro_rules! answer {
    ($reply:expr, $result:expr, |$v:pat_param| $ok:expr) => {
        match $result {
            Ok($v) => $ok,
            Err(e) => $reply.error(errno(e)),
        }
    };
}

pub(super) fn empty(reply: ReplyEmpty, r: Result<()>) {
    answer!(reply, r, |()| reply.ok())
}

/// Answers a getxattr/listxattr: the size when asked for 0 bytes, ERANGE when the
/// caller's buffer is too small, else the bytes.
pub(super) fn xattr_reply(reply: ReplyXattr, size: u32, r: Result<Vec<u8>>) {
    answer!(reply, r, |v| {
        if size == 0 {
            reply.size(v.len() as u32)
        } else if v.len() > size as usize {
            reply.error(fuser::Errno::ERANGE)
        } else {
            reply.data(&v)
        }
    })
}
