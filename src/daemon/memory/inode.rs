//! One in-memory inode and its locks.
//!
//! # Locks
//! Each inode has two: `body` (a directory's entries, a file's data, a symlink's target)
//! and `meta` (mode, owner, times, link count, xattrs). Lock order, everywhere:
//! 1. `MemoryFs::rename_lock`, taken only by renames between two directories;
//! 2. `body` of directories, a parent before its child, two parents in inode order;
//! 3. `body` of the non-directory an operation acts on;
//! 4. `meta` of any inode, one at a time, never held while taking a `body`.
//!
//! No lock is held while the inode table (a `DashMap`) is locked: Arcs are cloned out.

use super::data::DataStat;
use super::dir::Dir;
use super::xattr::Xattrs;
use crate::daemon::fs::ratelimit::RateLimit;
use crate::daemon::fs::{Attr, FileKind, Ino};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

/// Symlinks up to this length are stored inline and take no block, as in tmpfs.
pub const SHORT_SYMLINK: usize = 128;

/// 512-byte units (`st_blocks`) in a block.
const SECTORS: u64 = crate::daemon::fs::BLOCK_SIZE / 512;

#[derive(Debug)]
pub enum Body {
    /// A regular file: its data is a file of the volume's tmpfs (`data.rs`).
    File,
    Dir(Dir),
    Symlink(Vec<u8>),
    Special,
}

#[derive(Debug)]
pub struct Meta {
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub rdev: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub xattrs: Xattrs,
    /// Blocks charged to the volume for the xattrs.
    pub xattr_blocks: u64,
}

impl Meta {
    pub fn touch_mc(&mut self, now: SystemTime) {
        self.mtime = now;
        self.ctime = now;
    }
}

#[derive(Debug)]
pub struct Inode {
    pub ino: Ino,
    /// The volume's (`memory/mod.rs`); 0 for the root.
    pub generation: u32,
    pub kind: FileKind,
    /// References the kernel holds (lookups not yet forgotten).
    pub lookups: AtomicU64,
    /// Open file handles.
    pub opens: AtomicU64,
    /// For directories: the parent's inode number (changes only under the rename lock).
    pub parent: AtomicU64,
    /// Set once the inode's space and inode count have been given back.
    pub released: AtomicBool,
    body: RwLock<Body>,
    meta: Mutex<Meta>,
}

/// Takes `n` from a count (`lookups`, `opens`) in one atomic update that stops at 0, and
/// returns what it held before. Less than `n` means a count went wrong elsewhere (the
/// kernel forgot more than it was given, a release without an open): logged, at most
/// once per 10 s, and the count stays at 0 rather than wrapping to an inode that is
/// never freed.
pub fn take_away(count: &AtomicU64, n: u64, what: &str, ino: Ino) -> u64 {
    static MISCOUNTED: RateLimit = RateLimit::new(Duration::from_secs(10));
    let prev = match count.fetch_update(Relaxed, Relaxed, |c| Some(c.saturating_sub(n))) {
        Ok(prev) | Err(prev) => prev,
    };
    if prev < n
        && let Some(more) = MISCOUNTED.admit_now()
    {
        log::error!("inode {ino}: {n} {what} taken away while it held {prev}{more}");
    }
    prev
}

/// Locks ignore poisoning: a handler that panicked answered EIO, and the data it guarded
/// is still memory-safe; failing every later request would only take the volume down.
fn unpoison<G>(r: Result<G, std::sync::PoisonError<G>>) -> G {
    r.unwrap_or_else(|e| e.into_inner())
}

impl Inode {
    pub fn new(
        ino: Ino,
        generation: u32,
        kind: FileKind,
        body: Body,
        meta: Meta,
        parent: Ino,
    ) -> Inode {
        Inode {
            ino,
            generation,
            kind,
            lookups: AtomicU64::new(0),
            opens: AtomicU64::new(0),
            parent: AtomicU64::new(parent),
            released: AtomicBool::new(false),
            body: RwLock::new(body),
            meta: Mutex::new(meta),
        }
    }

    pub fn body(&self) -> RwLockReadGuard<'_, Body> {
        unpoison(self.body.read())
    }

    pub fn body_mut(&self) -> RwLockWriteGuard<'_, Body> {
        unpoison(self.body.write())
    }

    pub fn meta(&self) -> MutexGuard<'_, Meta> {
        unpoison(self.meta.lock())
    }

    pub fn parent(&self) -> Ino {
        self.parent.load(Relaxed)
    }

    /// Attributes from a body the caller has locked and, for a regular file, what its
    /// data file says (its size, blocks and times: the kernel writes it itself).
    pub fn attr_with(&self, body: &Body, data: Option<DataStat>) -> Attr {
        let (size, blocks) = match body {
            Body::File => data.map_or((0, 0), |d| (d.size, d.blocks)),
            Body::Dir(d) => (d.size(), 0),
            Body::Symlink(t) => (t.len() as u64, Self::symlink_blocks(t) * SECTORS),
            Body::Special => (0, 0),
        };
        let m = self.meta();
        let (atime, mtime, ctime) = match data {
            // The data's ctime moves with writes and truncates, the inode's with
            // changes of its metadata: the later is the file's.
            Some(d) => (d.atime, d.mtime, d.ctime.max(m.ctime)),
            None => (m.atime, m.mtime, m.ctime),
        };
        Attr {
            ino: self.ino,
            generation: self.generation,
            kind: self.kind,
            perm: m.perm,
            nlink: m.nlink,
            uid: m.uid,
            gid: m.gid,
            rdev: m.rdev,
            size,
            blocks,
            atime,
            mtime,
            ctime,
        }
    }

    /// Blocks a symlink's target takes from the limit: long ones one, as in tmpfs.
    pub fn symlink_blocks(target: &[u8]) -> u64 {
        u64::from(target.len() > SHORT_SYMLINK)
    }
}
