//! Where a memory volume keeps its files' data: a tmpfs instance of its own, sized to
//! the volume's limit, attached to no path (`fsopen`/`fsmount`: no mount namespace shows
//! it), reached only through its descriptor.
//!
//! Each regular file's data is one file there, named by the inode's number in hex. The
//! kernel reads, writes and maps it itself (FUSE passthrough, `fuse/iomode.rs`): no byte
//! goes through the daemon, and the kernel enforces the limit as tmpfs does, exactly,
//! with ENOSPC from the `write(2)` that crosses it, charging each page to the memory
//! cgroup of the process that writes it (the pod's). What the daemon does to data itself
//! (truncate, `fallocate`, `SEEK_DATA`, `copy_file_range`, reads and writes when the
//! kernel has no passthrough) it does to that file, by name.
//!
//! # The limit and metadata
//! The volume's space is the tmpfs's size. Metadata that counts against the limit
//! (xattr values, long symlink targets) is held in the daemon's memory but its blocks
//! are reserved in the same tmpfs, as allocated pages of one file ([`BALLAST`]) of
//! exactly the blocks reserved, so data and metadata share one limit that the kernel
//! keeps and `statfs` of the tmpfs counts both: usage is known at once, with no walk.
//!
//! # Who owns what
//! The tmpfs lives while a descriptor of it is open: its mount's (held here, handed to a
//! successor with the state), or a backing file the kernel holds for a passthrough open.
//! No descriptor of a data file is kept between requests: with a file per inode, a
//! volume of 100,000 files would pass the descriptor limit. The kernel holds its own
//! references to files opened for passthrough.

use crate::daemon::backing::mount::BackingMount;
use crate::daemon::backing::sys;
use crate::daemon::backing::trouble::within_limit;
use crate::daemon::fs::atime::Options;
use crate::daemon::fs::{BLOCK_SIZE, Errno, Ino, Result};
use crate::daemon::state::{FdTable, Reader, Refused, Writer};
use crate::fscontext::FsContext;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// The file whose allocated pages are the metadata's share of the limit. Not a hex
/// number, so never an inode's data file.
const BALLAST: &CStr = c"metadata";

/// A data file's size, blocks and times.
#[derive(Clone, Copy, Debug)]
pub struct DataStat {
    pub size: u64,
    /// In 512-byte units, as `st_blocks`.
    pub blocks: u64,
    pub atime: std::time::SystemTime,
    pub mtime: std::time::SystemTime,
    pub ctime: std::time::SystemTime,
}

/// The private tmpfs of one volume.
pub struct Data {
    /// Its mount, whose access-time options follow the volume's.
    mount: BackingMount,
    /// Its root directory.
    root: OwnedFd,
    /// The ballast file, and the blocks it holds ([`BALLAST`]).
    ballast: Mutex<(OwnedFd, u64)>,
    /// Blocks of the ballast that are not metadata: the tmpfs is at least one page
    /// (size 0 would be unlimited), so a volume of 0 bytes holds one here for good.
    base: u64,
}

fn name(ino: Ino) -> CString {
    CString::new(format!("{ino:x}")).expect("no NUL in a hex number")
}

/// A new tmpfs of `blocks` 4 KiB blocks and up to `inodes` inodes, mounted nowhere: the
/// descriptor of its mount.
fn new_tmpfs(blocks: u64, inodes: u64) -> Result<OwnedFd> {
    let fs = FsContext::open(c"tmpfs")?;
    fs.set(c"size", &(blocks * BLOCK_SIZE).to_string())?
        .set(c"nr_inodes", &inodes.to_string())?
        .set(c"mode", "0700")?
        // Whole 4 KiB pages, so the limit and every file's blocks count as the volume's do.
        .set(c"huge", "never")?;
    let attrs = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC;
    Ok(fs.mount(attrs)?)
}

/// A `stat` time: `sec` may be negative (before 1970), `nsec` is always added.
fn time(sec: i64, nsec: i64) -> std::time::SystemTime {
    let whole = std::time::Duration::from_secs(sec.unsigned_abs());
    let base = if sec >= 0 {
        std::time::UNIX_EPOCH + whole
    } else {
        std::time::UNIX_EPOCH - whole
    };
    base + std::time::Duration::from_nanos(nsec as u64)
}

impl Data {
    /// A tmpfs of its own for a volume of `bytes` and `inodes`.
    pub fn new(bytes: u64, inodes: u64) -> Result<Data> {
        let limit = bytes.div_ceil(BLOCK_SIZE);
        let blocks = limit.max(1);
        // Its own files: every regular file's, and the ballast.
        let tree = new_tmpfs(blocks, inodes.saturating_add(2))?;
        let data = Data::on(BackingMount::adopt(tree), None, blocks - limit)?;
        data.reserve(blocks - limit)?;
        Ok(data)
    }

    /// The tmpfs of `mount`, with its ballast (created if `ballast` is `None`).
    fn on(mount: BackingMount, ballast: Option<u64>, base: u64) -> Result<Data> {
        let tree = mount.tree().ok_or(Errno::EIO)?;
        let root = sys::openat(tree, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        let create = if ballast.is_none() {
            libc::O_CREAT | libc::O_EXCL
        } else {
            0
        };
        let file = sys::openat(root.as_fd(), BALLAST, libc::O_RDWR | create, 0o600)?;
        let held = ballast.unwrap_or(0);
        if held.checked_mul(BLOCK_SIZE).is_none() {
            return Err(Errno::EINVAL);
        }
        Ok(Data {
            mount,
            root,
            ballast: Mutex::new((file, held)),
            base,
        })
    }

    /// Applies the volume's access-time options to the data files.
    pub fn follow(&self, o: Options) {
        self.mount.follow(o);
    }

    /// Makes the (empty) data file of a new regular file `ino`.
    pub fn create(&self, ino: Ino) -> Result<()> {
        sys::openat(
            self.root.as_fd(),
            &name(ino),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )
        .map(drop)
    }

    /// Opens the data file of `ino` with the `open(2)` access `flags` (and `O_NOATIME`).
    pub fn open(&self, ino: Ino, flags: i32) -> Result<OwnedFd> {
        let keep = libc::O_ACCMODE | libc::O_NOATIME;
        sys::openat(self.root.as_fd(), &name(ino), flags & keep, 0)
    }

    /// An unlinked file of the tmpfs, to learn whether the kernel allows passthrough.
    pub fn probe_file(&self) -> Option<OwnedFd> {
        sys::openat(
            self.root.as_fd(),
            c".",
            libc::O_TMPFILE | libc::O_RDWR,
            0o600,
        )
        .inspect_err(|e| log::warn!("no file for the passthrough probe: {e}"))
        .ok()
    }

    /// Removes the data file of `ino`; its space comes back once nothing holds it open
    /// (the kernel may, for a file that is still mapped).
    pub fn remove(&self, ino: Ino) {
        if let Err(e) = sys::unlinkat(self.root.as_fd(), &name(ino), 0) {
            log::error!("removing the data of inode {ino}: {e}");
        }
    }

    pub fn stat(&self, ino: Ino) -> Result<DataStat> {
        let st = sys::fstatat(self.root.as_fd(), &name(ino))?;
        Ok(DataStat {
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            atime: time(st.st_atime, st.st_atime_nsec),
            mtime: time(st.st_mtime, st.st_mtime_nsec),
            ctime: time(st.st_ctime, st.st_ctime_nsec),
        })
    }

    /// Sets the access and modification times of `ino`'s data (`UTIME_NOW`,
    /// `UTIME_OMIT` as `utimensat`).
    pub fn set_times(&self, ino: Ino, times: &[libc::timespec; 2]) -> Result<()> {
        let f = self.open(ino, libc::O_WRONLY)?;
        sys::utimens(f.as_fd(), times)
    }

    /// Reads up to `size` bytes of `ino` at `offset` into `buf` (cleared first);
    /// `noatime`: the reader opened the file `O_NOATIME`.
    pub fn read(
        &self,
        ino: Ino,
        offset: u64,
        size: u32,
        noatime: bool,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let noatime = if noatime { libc::O_NOATIME } else { 0 };
        let f = self.open(ino, libc::O_RDONLY | noatime)?;
        buf.clear();
        buf.resize(size as usize, 0);
        let mut done = 0;
        while done < buf.len() {
            match sys::pread(f.as_fd(), &mut buf[done..], offset + done as u64)? {
                0 => break,
                n => done += n,
            }
        }
        buf.truncate(done);
        Ok(())
    }

    /// Writes as much of `data` at `offset` of `ino` as the volume has room for: the
    /// bytes written, ENOSPC when not one fits.
    pub fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> Result<usize> {
        let f = self.open(ino, libc::O_WRONLY)?;
        let mut done = 0;
        while done < data.len() {
            match within_limit(|| sys::pwrite(f.as_fd(), &data[done..], offset + done as u64)) {
                Ok(n) => done += n,
                Err(e) if done > 0 && e == Errno::ENOSPC => break,
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    pub fn truncate(&self, ino: Ino, size: u64) -> Result<()> {
        let f = self.open(ino, libc::O_WRONLY)?;
        sys::ftruncate(f.as_fd(), size)
    }

    /// `fallocate(2)` of `ino`'s data with `mode` (`KEEP_SIZE`, `PUNCH_HOLE`,
    /// `ZERO_RANGE`); tmpfs has no `ZERO_RANGE`, so that is a punched hole allocated again.
    pub fn fallocate(&self, ino: Ino, offset: u64, len: u64, mode: i32) -> Result<()> {
        let f = self.open(ino, libc::O_WRONLY)?;
        let keep = mode & libc::FALLOC_FL_KEEP_SIZE;
        within_limit(|| {
            if mode & libc::FALLOC_FL_ZERO_RANGE != 0 {
                let size = sys::fstat(f.as_fd())?.st_size as u64;
                let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
                if offset < size {
                    sys::fallocate(f.as_fd(), punch, offset, len.min(size - offset))?;
                }
                sys::fallocate(f.as_fd(), keep, offset, len)
            } else {
                sys::fallocate(f.as_fd(), mode, offset, len)
            }
        })
    }

    /// `SEEK_DATA` or `SEEK_HOLE` in `ino`'s data.
    pub fn seek(&self, ino: Ino, offset: i64, whence: i32) -> Result<i64> {
        let f = self.open(ino, libc::O_RDONLY | libc::O_NOATIME)?;
        sys::lseek(f.as_fd(), offset, whence)
    }

    /// Copies up to `len` bytes from `from` at `off_in` to `to` at `off_out` in the
    /// kernel: the bytes copied (short when the volume fills).
    pub fn copy(&self, from: Ino, off_in: u64, to: Ino, off_out: u64, len: usize) -> Result<usize> {
        let (i, o) = (
            self.open(from, libc::O_RDONLY)?,
            self.open(to, libc::O_WRONLY)?,
        );
        within_limit(|| sys::copy_file_range(i.as_fd(), off_in, o.as_fd(), off_out, len))
    }

    /// Moves the ctime of `ino`'s data to now: the inode's metadata changed (a chmod,
    /// chown, link, rename, xattr), and tmpfs decides `relatime` by its file's ctime.
    pub fn touch(&self, ino: Ino) {
        let touched = sys::open_path(self.root.as_fd(), &name(ino))
            .and_then(|f| sys::fchmod(f.as_fd(), 0o600));
        if let Err(e) = touched {
            log::debug!("the ctime of inode {ino}'s data: {e}");
        }
    }

    /// The volume is over (its daemon exits with no successor): frees the data of
    /// `files` (every live data file) and leaves the tmpfs one page, taken, so that a
    /// process that still holds a data file open (the kernel serves it without the
    /// daemon) reads its end at once and gets ENOSPC from any write that needs space
    /// (or SIGBUS through a mapping), instead of keeping the volume's memory.
    pub fn destroy(&self, files: &[Ino]) {
        for &ino in files {
            if let Err(e) = self.truncate(ino, 0) {
                log::warn!("freeing the data of inode {ino}: {e}");
            }
            self.remove(ino);
        }
        let mut b = self.ballast.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = sys::ftruncate(b.0.as_fd(), 0) {
            log::warn!("freeing the metadata's blocks: {e}");
        }
        b.1 = 0;
        match self.shrink_to_one_page() {
            Ok(()) => {
                if within_limit(|| sys::fallocate(b.0.as_fd(), 0, 0, BLOCK_SIZE)).is_ok() {
                    b.1 = 1;
                }
            }
            Err(e) => log::warn!("the volume's tmpfs stays writable by open files: {e}"),
        }
    }

    /// Sets the tmpfs's size to one page (size 0 would be unlimited).
    fn shrink_to_one_page(&self) -> Result<()> {
        let tree = self.mount.tree().ok_or(Errno::EIO)?;
        let fs = FsContext::pick(tree.as_fd())?;
        fs.set(c"size", &BLOCK_SIZE.to_string())?;
        Ok(fs.reconfigure()?)
    }

    /// Reserves `blocks` of the limit for metadata: ENOSPC if they do not fit.
    pub fn reserve(&self, blocks: u64) -> Result<()> {
        if blocks == 0 {
            return Ok(());
        }
        let mut b = self.ballast.lock().unwrap_or_else(|e| e.into_inner());
        let len = blocks.checked_mul(BLOCK_SIZE).ok_or(Errno::ENOSPC)?;
        within_limit(|| sys::fallocate(b.0.as_fd(), 0, b.1 * BLOCK_SIZE, len))?;
        b.1 += blocks;
        Ok(())
    }

    /// Gives back `blocks` reserved for metadata.
    pub fn release(&self, blocks: u64) {
        if blocks == 0 {
            return;
        }
        let mut b = self.ballast.lock().unwrap_or_else(|e| e.into_inner());
        let n = blocks.min(b.1.saturating_sub(self.base));
        if n < blocks {
            log::error!("{blocks} metadata blocks given back of {} held", b.1);
        }
        // Truncating frees the pages at once (a punch would leave the size).
        match sys::ftruncate(b.0.as_fd(), (b.1 - n) * BLOCK_SIZE) {
            Ok(()) => b.1 -= n,
            Err(e) => log::error!("giving back {n} metadata blocks: {e}"),
        }
    }

    /// Metadata blocks held (not counting the base).
    pub fn metadata_blocks(&self) -> u64 {
        let b = self.ballast.lock().unwrap_or_else(|e| e.into_inner());
        b.1.saturating_sub(self.base)
    }

    /// The volume's blocks: (the limit, used by data and metadata). Never waits for a
    /// request (tmpfs counts with per-CPU counters).
    pub fn blocks(&self) -> (u64, u64) {
        match sys::statvfs(self.root.as_fd()) {
            Ok(st) => {
                let total = st.f_blocks * st.f_frsize / BLOCK_SIZE;
                let used = (st.f_blocks - st.f_bfree) * st.f_frsize / BLOCK_SIZE;
                (
                    total.saturating_sub(self.base),
                    used.saturating_sub(self.base),
                )
            }
            Err(e) => {
                log::error!("statfs of the volume's data: {e}");
                (0, 0)
            }
        }
    }

    /// For a hand-off: the tmpfs's mount goes with the state (its files are shared,
    /// never copied), and what the ballast holds.
    pub fn write_state(&self, w: &mut Writer, fds: &mut Vec<RawFd>) {
        self.mount.write_state(w, fds);
        let b = self.ballast.lock().unwrap_or_else(|e| e.into_inner());
        w.u64(b.1);
        w.u64(self.base);
    }

    pub fn read_state(r: &mut Reader<'_>, fds: &mut FdTable) -> std::result::Result<Data, Refused> {
        let mount = BackingMount::read_state(r, fds)?;
        let (held, base) = (r.u64()?, r.u64()?);
        if base > held {
            return Err(format!(
                "a ballast of {held} blocks, {base} of them its base"
            ));
        }
        let data = Data::on(mount, Some(held), base)
            .map_err(|e| format!("the volume's data (its tmpfs): {e}"))?;
        let st = sys::fstat(data.ballast.lock().unwrap().0.as_fd()).map_err(|e| e.to_string())?;
        if st.st_size as u64 != held * BLOCK_SIZE {
            return Err(format!(
                "the ballast is {} bytes, its state says {held} blocks",
                st.st_size
            ));
        }
        Ok(data)
    }
}
