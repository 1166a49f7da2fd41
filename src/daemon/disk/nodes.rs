//! The disk backend's inode table: which backing inode each FUSE inode number names, how
//! many references the kernel holds on it, and how a descriptor of it is obtained.
//!
//! # Inode numbers and generations
//! A node's number is its backing inode's `st_ino`, so `readdir`'s `d_ino` and `stat`'s
//! `st_ino` agree. Two exceptions: the backing directory itself is [`ROOT_INO`], and an
//! inode whose `st_ino` is still held by another node (a deleted inode the kernel still
//! refers to, whose number the backing filesystem has reused; or `st_ino` 1) gets a number
//! from [`SYNTHETIC_BASE`] up.
//!
//! A node's generation is derived from its backing file handle ([`Handle::generation`]),
//! so an inode that takes a deleted inode's `st_ino` has another one; 0 for the root, and
//! for nodes a predecessor from before state format 3 handed on (it told the kernel 0).
//! A node the kernel forgets is remembered by number in `forgotten` (`nodes/forgotten.rs`)
//! until its inode is deleted, so a file handle of it still opens ([`Nodes::recall`]).
//!
//! # Descriptors (who owns which fd)
//! A node holds a kernel file handle, not a descriptor: `open_by_handle_at` turns it into
//! an `O_PATH` descriptor when one is needed. Recently used descriptors stay in a cache of
//! at most [`FD_CACHE_CAP`] and a quarter of RLIMIT_NOFILE (evicted in arbitrary order),
//! so the daemon's descriptors do not grow with the number of inodes the kernel knows. While a node has open files, the
//! descriptor of one of them is pinned to it and answers first: an unlinked open file stays
//! reachable whether or not its handle still opens.
//!
//! # Lookup counts
//! `lookups` counts the kernel's references. Increments happen while a guard on the node's
//! table shard is held, and a node is removed only by `remove_if` on a zero count, so a
//! lookup racing a `forget` never loses its node.

mod forgotten;
mod state;

use super::handle::Handle;
use super::sys;
use crate::daemon::fs::ratelimit::RateLimit;
use crate::daemon::fs::*;
use crate::daemon::state::FdTable;
use crate::daemon::state::{Reader, Refused, Writer};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use forgotten::Forgotten;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most `O_PATH` descriptors kept open for speed; never more than a quarter of
/// RLIMIT_NOFILE (often 20,000 or less), leaving the rest for open files.
pub const FD_CACHE_CAP: usize = 4096;

fn fd_cache_cap() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit to `lim`, a live local of that type.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 256;
    }
    (lim.rlim_cur / 4).clamp(16, FD_CACHE_CAP as u64) as usize
}
/// Whether nodes get generations (see the module's doc); not when the tests stand in for
/// a build from before state format 3 (`fault.rs`), which answered 0 for every inode.
fn generations() -> bool {
    !crate::daemon::fault::fault("state-format-1")
}

/// First synthetic inode number (far above any `st_ino` ext4 or xfs hands out).
pub const SYNTHETIC_BASE: u64 = 1 << 62;

/// What the volume's usage holds for one inode, and its open files.
#[derive(Debug, Default)]
pub struct NodeState {
    /// 4 KiB blocks of this inode counted in the volume's usage.
    pub charged: u64,
    /// Open files of this node.
    pub opens: u32,
    /// The last link is gone but files are open: its space and inode are given back at
    /// the last close.
    pub orphan: bool,
    /// It has passthrough opens and is kept without holes (`passthrough.rs`).
    pub hole_free: bool,
}

/// One backing inode the kernel knows.
pub struct Node {
    pub ino: Ino,
    /// Told to the kernel with every entry of this node (see the module's doc).
    pub generation: u32,
    pub backing_ino: u64,
    pub kind: FileKind,
    handle: Handle,
    lookups: AtomicU64,
    /// Its last link was removed: its `st_ino` may be handed to a new inode.
    pub unlinked: AtomicBool,
    pinned: Mutex<Option<Arc<OwnedFd>>>,
    /// Whether it is known to have no `security.capability` (see `caps.rs`).
    pub caps: super::caps::CapsKnown,
    /// Held across every change to the inode's blocks or open count. Lock order: a
    /// directory's state before the state of a non-directory in it; two directories in
    /// ascending `ino` order; never two non-directories.
    state: Mutex<NodeState>,
}

impl Node {
    /// The attributes of this node's inode, whose `stat` is `st`.
    pub fn attr(&self, st: &libc::stat) -> Attr {
        Attr {
            generation: self.generation,
            ..attr_of(self.ino, st)
        }
    }

    pub fn state(&self) -> MutexGuard<'_, NodeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn try_state(&self) -> Option<MutexGuard<'_, NodeState>> {
        self.state.try_lock().ok()
    }

    /// Makes `fd` (an open file of this node) answer for it until [`Node::unpin`].
    pub fn pin(&self, fd: &Arc<OwnedFd>) {
        let mut p = self.pinned.lock().unwrap_or_else(|p| p.into_inner());
        if p.is_none() {
            *p = Some(fd.clone());
        }
    }

    pub fn unpin(&self) {
        *self.pinned.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn pinned(&self) -> Option<Arc<OwnedFd>> {
        self.pinned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The table of nodes, and the descriptor cache.
pub struct Nodes {
    map: DashMap<Ino, Arc<Node>>,
    synthetic: DashMap<(u64, Handle), Ino>,
    next_synthetic: AtomicU64,
    /// Nodes the kernel forgot, for file handles of them (`nodes/forgotten.rs`).
    forgotten: Forgotten,
    /// Generations are derived from handles; else all are 0 (test stand-in for a build
    /// from before state format 3).
    generations: bool,
    /// Cached descriptors of directories and of other inodes, kept apart so that a walk
    /// over many files does not evict the directories every lookup starts from.
    dir_fds: FdCache,
    file_fds: FdCache,
    /// The backing directory, opened read-only (`open_by_handle_at` refuses `O_PATH`).
    root_fd: Arc<OwnedFd>,
    root_backing_ino: u64,
}

/// 4 KiB blocks a `stat` shows as held.
pub fn blocks_of(st: &libc::stat) -> u64 {
    (st.st_blocks as u64).div_ceil(BLOCK_SIZE / 512)
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + Duration::from_nanos(nsec as u64)
    }
}

/// The attributes of a backing inode as number `ino` shows them (generation 0: for a
/// node's own, [`Node::attr`]).
pub fn attr_of(ino: Ino, st: &libc::stat) -> Attr {
    Attr {
        ino,
        generation: 0,
        kind: FileKind::from_mode(st.st_mode).unwrap_or(FileKind::Regular),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: time(st.st_atime, st.st_atime_nsec),
        mtime: time(st.st_mtime, st.st_mtime_nsec),
        ctime: time(st.st_ctime, st.st_ctime_nsec),
    }
}

impl Nodes {
    /// The table with the root node, the backing directory behind `root_fd`.
    pub fn new(root_fd: OwnedFd) -> Result<Nodes> {
        let st = sys::fstat(root_fd.as_fd())?;
        let handle = Handle::of(root_fd.as_fd())?;
        let nodes = Nodes {
            map: DashMap::new(),
            synthetic: DashMap::new(),
            next_synthetic: AtomicU64::new(SYNTHETIC_BASE),
            forgotten: Forgotten::default(),
            generations: generations(),
            dir_fds: FdCache::new(fd_cache_cap() / 2),
            file_fds: FdCache::new(fd_cache_cap() / 2),
            root_fd: Arc::new(root_fd),
            root_backing_ino: st.st_ino,
        };
        let root = nodes.new_node(ROOT_INO, &st, handle)?;
        nodes.map.insert(ROOT_INO, root);
        Ok(nodes)
    }

    pub fn root_fd(&self) -> BorrowedFd<'_> {
        self.root_fd.as_fd()
    }

    /// Reaches the backing directory (and opens file handles) through `fd` from now on:
    /// the same directory on another mount (`backing/mount.rs`). Before serving only.
    pub fn set_root(&mut self, fd: OwnedFd) {
        self.root_fd = Arc::new(fd);
    }

    /// A node for the inode of `handle` numbered `ino`, with one kernel reference. Its
    /// generation is the one it had when the kernel forgot it, if it did; else derived.
    fn new_node(&self, ino: Ino, st: &libc::stat, handle: Handle) -> Result<Arc<Node>> {
        let remembered = self.forgotten.take(ino, &handle);
        let generation = match remembered {
            _ if ino == ROOT_INO || !self.generations => 0,
            Some(g) => g,
            None => handle.generation(),
        };
        Ok(Arc::new(Node {
            ino,
            generation,
            backing_ino: st.st_ino,
            kind: FileKind::from_mode(st.st_mode).ok_or(Errno::EIO)?,
            handle,
            lookups: AtomicU64::new(1),
            unlinked: AtomicBool::new(false),
            pinned: Mutex::new(None),
            caps: Default::default(),
            state: Mutex::new(NodeState {
                charged: blocks_of(st),
                ..Default::default()
            }),
        }))
    }

    pub fn get(&self, ino: Ino) -> Result<Arc<Node>> {
        self.map
            .get(&ino)
            .map(|n| n.value().clone())
            .ok_or(Errno::ESTALE)
    }

    /// The number `readdir` shows for backing inode `st_ino` without looking it up.
    pub fn dirent_ino(&self, st_ino: u64) -> Ino {
        if st_ino == self.root_backing_ino {
            ROOT_INO
        } else {
            st_ino
        }
    }

    /// The live node of backing inode `st`, if the kernel knows it.
    pub fn find(&self, st: &libc::stat) -> Option<Arc<Node>> {
        let live = |n: &Arc<Node>| n.backing_ino == st.st_ino && !n.unlinked.load(Relaxed);
        if let Some(n) = self
            .map
            .get(&self.dirent_ino(st.st_ino))
            .filter(|n| live(n))
        {
            return Some(n.clone());
        }
        let numbers: Vec<Ino> = self
            .synthetic
            .iter()
            .filter(|e| e.key().0 == st.st_ino)
            .map(|e| *e.value())
            .collect();
        numbers
            .into_iter()
            .filter_map(|i| self.get(i).ok())
            .find(live)
    }

    /// Adds one kernel reference to the node of the inode behind `fd` (whose `stat` is
    /// `st`), creating the node if needed; `fd` joins the descriptor cache if it is `O_PATH`.
    pub fn remember(&self, fd: OwnedFd, st: &libc::stat, is_path_fd: bool) -> Result<Arc<Node>> {
        let want = self.dirent_ino(st.st_ino);
        // Fast path: a live node with this number is this inode.
        if let Some(n) = self.map.get(&want)
            && n.backing_ino == st.st_ino
            && !n.unlinked.load(Relaxed)
        {
            n.lookups.fetch_add(1, Relaxed);
            return Ok(n.clone());
        }
        let handle = Handle::of(fd.as_fd())?;
        // An inode that already has a synthetic number keeps it.
        let known = self
            .synthetic
            .get(&(st.st_ino, handle.clone()))
            .map(|e| *e.value());
        let mut ino = known.unwrap_or(want);
        let node = loop {
            match self.map.entry(ino) {
                Entry::Vacant(v) => {
                    let n = self.new_node(ino, st, handle.clone())?;
                    break v.insert(n).clone();
                }
                Entry::Occupied(o) if o.get().handle == handle => {
                    o.get().lookups.fetch_add(1, Relaxed);
                    break o.get().clone();
                }
                Entry::Occupied(_) if ino == want && known.is_none() => {
                    // The number is held by another inode: use a synthetic one.
                    ino = *self
                        .synthetic
                        .entry((st.st_ino, handle.clone()))
                        .or_insert_with(|| self.next_synthetic.fetch_add(1, Relaxed));
                }
                Entry::Occupied(_) => return Err(Errno::EIO),
            }
        };
        if is_path_fd {
            self.cache(&node, Arc::new(fd));
        }
        Ok(node)
    }

    /// Takes `n` kernel references from node `ino`; a node left with none leaves the table
    /// (remembered first, unless deleted: a handle of it never finds neither).
    pub fn forget(&self, ino: Ino, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let Ok(node) = self.get(ino) else { return };
        let prev = node
            .lookups
            .fetch_update(Relaxed, Relaxed, |l| Some(l.saturating_sub(n)))
            .unwrap_or_else(|prev| prev); // never Err: the closure always answers
        if prev < n {
            // The kernel forgot more than it was given: the count stops at 0 (above).
            static MISCOUNTED: RateLimit = RateLimit::new(Duration::from_secs(10));
            if let Some(more) = MISCOUNTED.admit_now() {
                log::error!("inode {ino}: {n} lookups forgotten while it held {prev}{more}");
            }
        }
        if prev > n {
            return;
        }
        if ino < SYNTHETIC_BASE && !node.unlinked.load(Relaxed) {
            self.forgotten
                .insert(ino, node.handle.clone(), node.generation);
        }
        if self
            .map
            .remove_if(&ino, |_, cur| {
                Arc::ptr_eq(cur, &node) && cur.lookups.load(Relaxed) == 0
            })
            .is_some()
        {
            self.fds_of(&node).map.remove(&ino);
            if ino >= SYNTHETIC_BASE {
                self.synthetic
                    .remove(&(node.backing_ino, node.handle.clone()));
            }
        }
    }

    /// The last link of the inode numbered `st_ino` is gone: no handle of it may open.
    pub fn deleted(&self, st_ino: u64) {
        self.forgotten.remove(self.dirent_ino(st_ino));
    }

    /// Node `ino` with one more kernel reference, for a file handle the kernel decodes
    /// after it forgot the inode (a LOOKUP of `.`): from the table, or from what was
    /// remembered when the kernel forgot it. ESTALE for a deleted inode, whether the
    /// table still has it (the kernel's FORGET on its way) or its backing handle is stale.
    pub fn recall(&self, ino: Ino, dev: u64) -> Result<(Arc<Node>, libc::stat)> {
        if let Some(n) = self.map.get(&ino) {
            if n.unlinked.load(Relaxed) {
                return Err(Errno::ESTALE);
            }
            if ino != ROOT_INO {
                n.lookups.fetch_add(1, Relaxed);
            }
            let node = n.clone();
            drop(n);
            let st = self.fd(&node).and_then(|fd| sys::fstat(fd.as_fd()));
            return match st {
                Ok(st) => Ok((node, st)),
                Err(e) => {
                    self.forget(ino, 1);
                    Err(e)
                }
            };
        }
        let (handle, _) = self.forgotten.get(ino).ok_or(Errno::ESTALE)?;
        let opened = handle
            .open(self.root_fd(), libc::O_PATH)
            .and_then(|fd| Ok((sys::fstat(fd.as_fd())?, fd)));
        let (st, fd) = match opened {
            Ok((st, fd)) if st.st_dev == dev && st.st_ino == ino && st.st_nlink > 0 => (st, fd),
            Ok(_) | Err(Errno::ESTALE) | Err(Errno::ENOENT) => {
                self.forgotten.remove(ino);
                return Err(Errno::ESTALE);
            }
            Err(e) => return Err(e),
        };
        let node = self.remember(fd, &st, true)?;
        if node.ino != ino {
            self.forget(node.ino, 1);
            return Err(Errno::ESTALE);
        }
        Ok((node, st))
    }

    /// A descriptor naming `node`: its pinned open file, a cached `O_PATH` descriptor, or
    /// a new one from its file handle.
    pub fn fd(&self, node: &Node) -> Result<Arc<OwnedFd>> {
        if let Some(fd) = node.pinned() {
            return Ok(fd);
        }
        if node.ino == ROOT_INO {
            return Ok(self.root_fd.clone());
        }
        if let Some(fd) = self.fds_of(node).get(node) {
            return Ok(fd);
        }
        let fd = Arc::new(node.handle.open(self.root_fd(), libc::O_PATH)?);
        self.cache(node, fd.clone());
        Ok(fd)
    }

    /// Opens `node` for I/O with `flags` (a regular file or a directory).
    pub fn open(&self, node: &Node, flags: i32) -> Result<OwnedFd> {
        match node.pinned() {
            Some(fd) => sys::reopen(fd.as_fd(), flags),
            None if node.ino == ROOT_INO => sys::reopen(self.root_fd(), flags),
            None => node.handle.open(self.root_fd(), flags),
        }
    }

    /// Drops a deleted inode's cached descriptor, so the backing filesystem frees it now.
    pub fn uncache(&self, node: &Node) {
        self.fds_of(node).map.remove(&node.ino);
    }

    fn cache(&self, node: &Node, fd: Arc<OwnedFd>) {
        self.fds_of(node).insert(node, fd);
    }

    fn fds_of(&self, node: &Node) -> &FdCache {
        if node.kind == FileKind::Directory {
            &self.dir_fds
        } else {
            &self.file_fds
        }
    }
}

/// A bounded map from node to `O_PATH` descriptor, evicting arbitrary entries when full.
/// Each entry keeps the address of the node it was opened for, so that a late insert for
/// a forgotten node never answers for a new node with the same number.
struct FdCache {
    map: DashMap<Ino, (usize, Arc<OwnedFd>)>,
    cap: usize,
}

impl FdCache {
    fn new(cap: usize) -> FdCache {
        FdCache {
            map: DashMap::new(),
            cap: cap.max(8),
        }
    }

    fn get(&self, node: &Node) -> Option<Arc<OwnedFd>> {
        let e = self.map.get(&node.ino)?;
        (e.0 == node as *const Node as usize).then(|| e.1.clone())
    }

    fn insert(&self, node: &Node, fd: Arc<OwnedFd>) {
        self.map
            .insert(node.ino, (node as *const Node as usize, fd));
        if self.map.len() > self.cap {
            let victims: Vec<Ino> = self
                .map
                .iter()
                .take(self.cap / 4)
                .map(|e| *e.key())
                .collect();
            for v in victims {
                self.map.remove(&v);
            }
        }
    }
}
