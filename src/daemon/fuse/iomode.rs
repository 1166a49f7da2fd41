//! How the kernel reads and caches each open file of a volume that has a backing file
//! per inode (disk), so that the node's page cache holds one copy of its data, not two
//! (FUSE's pages and the backing file's).
//!
//! Each open is answered in one of three modes; `fs/fuse/iomode.c` decides which may be
//! mixed on one inode, and answers EIO to an open that breaks its rules:
//!
//! - **passthrough** (`FOPEN_PASSTHROUGH`), for files opened read-only: the kernel reads
//!   and maps the backing file itself, no request reaches the daemon, and the only copy
//!   is in the backing file's page cache.
//! - **direct** (`FOPEN_DIRECT_IO`), for files opened for writing: every read and write
//!   is a request, and the daemon writes the backing file, so the limit holds and ENOSPC
//!   comes from the `write(2)` that crosses it. Shared `mmap` works
//!   (`DIRECT_IO_ALLOW_MMAP`): the kernel caches that inode's pages while it is mapped.
//! - **passthrough and direct**, for a file opened for writing while its inode has
//!   passthrough opens: the kernel fails any other mode then, and every open must share
//!   the inode's one backing id. Reads and writes are requests (direct wins), but `mmap`
//!   maps the backing file, so a shared mapping could write into holes behind the
//!   daemon's back: the backend keeps an inode that has passthrough opens without holes
//!   ([`Backend::passthrough_begin`]), and such writes take no space.
//!
//! Per inode: if it has passthrough opens, passthrough (and direct to write); else if it
//! has direct opens, direct (a direct file's shared mapping holds the inode in cached
//! mode, where a passthrough open fails); else read-only opens are passthrough when the
//! backend gives a file without holes, and the rest direct.
//!
//! A backing id is opened at an inode's first passthrough open and closed at its last
//! RELEASE (the kernel drops its own reference before it sends that RELEASE). Ids belong
//! to the connection, not to this process, so a hand-off passes them on with the mode of
//! every open file ([`IoModes::export`]).
//!
//! Everything stays in the page-cache mode ([`Mode::Cached`], what the volume did before)
//! on backends without backing files (memory), where passthrough is not available (the
//! kernel, or no `CAP_SYS_ADMIN`: `probe`), and on a volume taken over from a daemon that
//! cached everything: its cached opens would make a passthrough open fail.
//!
//! Invariant: the table is changed only under its lock, and an open's mode is counted
//! before its reply is sent, so the table never knows fewer opens than the kernel.

use crate::daemon::fs::{Backend, Fh, Ino};
use crate::daemon::state::{Reader, Refused, Writer};
use fuser::FopenFlags;
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// `FUSE_DEV_IOC_BACKING_CLOSE`: `_IOW(229, 2, uint32_t)` (`linux/fuse.h`).
const BACKING_CLOSE: libc::c_ulong = 0x4004_e502;

/// How the kernel serves one open file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Through FUSE's page cache (each read that misses it, and each write, a request).
    Cached,
    /// Every read and write a request; no page cache.
    Direct,
    /// The kernel reads (and maps) the backing file itself; `direct`: reads and writes
    /// are requests all the same (a file opened for writing).
    Passthrough { direct: bool },
}

/// The answer to one open: flags, and the backing id of a passthrough open.
pub struct Chosen {
    pub flags: FopenFlags,
    pub backing: Option<u32>,
    pub mode: Mode,
}

#[derive(Default)]
struct Inode {
    backing: Option<u32>,
    passthrough: u32,
    direct: u32,
}

#[derive(Default)]
struct Table {
    inodes: HashMap<Ino, Inode>,
    /// Open files that are not cached, and their inode.
    files: HashMap<Fh, (Ino, Mode)>,
}

#[derive(Default)]
pub struct IoModes {
    /// The connection, for backing-id ioctls; unset: every open is cached. Set before
    /// the session serves, never changed after.
    device: OnceLock<OwnedFd>,
    table: Mutex<Table>,
}

impl IoModes {
    /// Serves one copy of the data from now on, on `device`'s connection, if `backend`
    /// has backing files, the connection negotiated passthrough and the kernel lets this
    /// daemon open a backing id; else every open stays cached. Call before serving.
    pub fn probe<B: Backend>(&self, backend: &B, device: &OwnedFd, negotiated: bool) {
        // The tests' stand-in for a build from before format 2, which cached every open.
        if !negotiated || crate::daemon::fault::fault("state-format-1") {
            return;
        }
        let Some(probe) = backend.passthrough_probe() else {
            return;
        };
        let tried = fuser::BackingId::create_raw(device, &probe).and_then(|id| {
            close_backing(device, id);
            device.try_clone()
        });
        match tried {
            Ok(device) => {
                let _ = self.device.set(device);
                log::info!(
                    "one copy of the data: passthrough for reading, {} for writing",
                    if backend.passthrough_writes() {
                        "passthrough"
                    } else {
                        "direct"
                    }
                );
            }
            Err(e) => log::warn!("no passthrough ({e}): the page cache holds data twice"),
        }
    }

    /// Whether opens may be other than cached.
    pub fn single_copy(&self) -> bool {
        self.device.get().is_some()
    }

    /// Who moves file data, for `status`: `kernel` (passthrough for every open),
    /// `kernel reads` (writes served direct, through the daemon) or `daemon` (no
    /// passthrough: every open cached, every read and write a request).
    pub fn data_path<B: Backend>(&self, backend: &B) -> &'static str {
        if self.kernel_writes(backend) {
            "kernel"
        } else if self.single_copy() {
            "kernel reads"
        } else {
            "daemon"
        }
    }

    /// Whether the kernel writes files' data itself (passthrough for writing too): then a
    /// `write(2)` sends the daemon nothing.
    pub fn kernel_writes<B: Backend>(&self, backend: &B) -> bool {
        self.single_copy() && backend.passthrough_writes()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Chooses how file `fh` of `ino`, just opened by the backend with `flags`, is
    /// served, and records it; `keep_cache`: what the backend said for a cached open.
    /// Lock order: the table before anything the backend locks.
    pub fn open<B: Backend>(
        &self,
        backend: &B,
        ino: Ino,
        fh: Fh,
        flags: i32,
        keep_cache: bool,
    ) -> Chosen {
        let Some(device) = self.device.get() else {
            return chosen(Mode::Cached, keep_cache, None);
        };
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let mut t = self.lock();
        let inode = t.inodes.entry(ino).or_default();
        // The backing filesystem keeps the limit: the kernel may write it too.
        let writable = writable && !backend.passthrough_writes();
        let mode = if inode.passthrough > 0 {
            Mode::Passthrough { direct: writable }
        } else if inode.direct > 0 || writable {
            Mode::Direct
        } else {
            match backend.passthrough_begin(ino, fh) {
                None => Mode::Direct,
                Some(fd) => match fuser::BackingId::create_raw(device, &fd) {
                    Ok(id) => {
                        inode.backing = Some(id);
                        Mode::Passthrough { direct: false }
                    }
                    Err(e) => {
                        log::warn!("backing id for inode {ino}: {e}; served direct");
                        backend.passthrough_end(ino);
                        Mode::Direct
                    }
                },
            }
        };
        match mode {
            Mode::Passthrough { .. } => inode.passthrough += 1,
            _ => inode.direct += 1,
        }
        let backing = inode.backing;
        t.files.insert(fh, (ino, mode));
        chosen(mode, false, backing)
    }

    /// Forgets file `fh`, closing its inode's backing id after the last passthrough open.
    pub fn release<B: Backend>(&self, backend: &B, fh: Fh) {
        let Some(device) = self.device.get() else {
            return;
        };
        let mut t = self.lock();
        let Some((ino, mode)) = t.files.remove(&fh) else {
            return;
        };
        let Some(inode) = t.inodes.get_mut(&ino) else {
            return;
        };
        match mode {
            Mode::Passthrough { .. } => {
                inode.passthrough -= 1;
                if inode.passthrough == 0 {
                    if let Some(id) = inode.backing.take() {
                        close_backing(device, id);
                    }
                    backend.passthrough_end(ino);
                }
            }
            _ => inode.direct -= 1,
        }
        if inode.passthrough == 0 && inode.direct == 0 {
            t.inodes.remove(&ino);
        }
    }

    /// The mode file `fh` was opened in.
    pub fn mode(&self, fh: Fh) -> Mode {
        if self.device.get().is_none() {
            return Mode::Cached;
        }
        self.lock()
            .files
            .get(&fh)
            .map_or(Mode::Cached, |&(_, mode)| mode)
    }

    /// Writes the table for a successor (no request runs).
    pub fn export(&self, w: &mut Writer) {
        let t = self.lock();
        w.bool(self.single_copy());
        w.u64(t.files.len() as u64);
        for (&fh, &(ino, mode)) in &t.files {
            w.u64(fh);
            w.u64(ino);
            w.u8(match mode {
                Mode::Cached => 0,
                Mode::Direct => 1,
                Mode::Passthrough { direct: false } => 2,
                Mode::Passthrough { direct: true } => 3,
            });
        }
        w.u64(t.inodes.len() as u64);
        for (&ino, i) in &t.inodes {
            w.u64(ino);
            w.u32(i.backing.unwrap_or(0));
            w.bool(i.backing.is_some());
        }
    }

    /// Reads what [`IoModes::export`] wrote, on the connection `device`, telling
    /// `backend` which inodes have passthrough opens.
    pub fn import<B: Backend>(
        r: &mut Reader<'_>,
        backend: &B,
        device: &OwnedFd,
    ) -> Result<IoModes, Refused> {
        if r.version() < 2 {
            // Written by a daemon that cached every open, as this one will.
            return Ok(IoModes::default());
        }
        let single_copy = r.bool()?;
        let mut t = Table::default();
        for _ in 0..r.count(17)? {
            let (fh, ino) = (r.u64()?, r.u64()?);
            let mode = match r.u8()? {
                1 => Mode::Direct,
                2 => Mode::Passthrough { direct: false },
                3 => Mode::Passthrough { direct: true },
                m => return Err(format!("open file {fh}: unknown io mode {m}")),
            };
            let inode = t.inodes.entry(ino).or_default();
            match mode {
                Mode::Passthrough { .. } => inode.passthrough += 1,
                _ => inode.direct += 1,
            }
            t.files.insert(fh, (ino, mode));
        }
        for _ in 0..r.count(13)? {
            let (ino, id, has) = (r.u64()?, r.u32()?, r.bool()?);
            let Some(inode) = t.inodes.get_mut(&ino) else {
                return Err(format!(
                    "backing id {id} of inode {ino}, which has no open file"
                ));
            };
            inode.backing = has.then_some(id);
        }
        if t.inodes
            .values()
            .any(|i| (i.passthrough > 0) != i.backing.is_some())
        {
            return Err("an inode's passthrough opens and backing id disagree".into());
        }
        if !single_copy {
            return match t.files.is_empty() {
                true => Ok(IoModes::default()),
                false => Err("open files that are not cached, on a cached volume".into()),
            };
        }
        for (&ino, _) in t.inodes.iter().filter(|(_, i)| i.passthrough > 0) {
            backend.passthrough_resume(ino);
        }
        let device = device
            .try_clone()
            .map_err(|e| format!("the connection's descriptor: {e}"))?;
        Ok(IoModes {
            device: OnceLock::from(device),
            table: Mutex::new(t),
        })
    }
}

fn chosen(mode: Mode, keep_cache: bool, backing: Option<u32>) -> Chosen {
    // No FLUSH: nothing is buffered between a write and the backend.
    let flags = FopenFlags::FOPEN_NOFLUSH
        | match mode {
            Mode::Cached if keep_cache => FopenFlags::FOPEN_KEEP_CACHE,
            Mode::Cached | Mode::Passthrough { direct: false } => FopenFlags::empty(),
            Mode::Direct | Mode::Passthrough { direct: true } => {
                FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES
            }
        };
    Chosen {
        flags,
        backing: backing.filter(|_| matches!(mode, Mode::Passthrough { .. })),
        mode,
    }
}

fn close_backing(device: &OwnedFd, id: u32) {
    // SAFETY: FUSE_DEV_IOC_BACKING_CLOSE reads one u32 from the pointer, and `id` is a live
    // u32; `device` is the open connection the id belongs to.
    let r = unsafe { libc::ioctl(device.as_fd().as_raw_fd(), BACKING_CLOSE, &id) };
    if r != 0 {
        log::warn!(
            "closing backing id {id}: {}",
            std::io::Error::last_os_error()
        );
    }
}
