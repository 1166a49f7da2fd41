//! Charging the backing directory's real space to the volume's usage.
//!
//! Usage is what `du` of the backing directory reports: `st_blocks` of every inode once
//! (hard links once, directories included), in 4 KiB blocks. It is counted once at start
//! ([`scan`]) and then kept by measuring: an operation that may take space reserves its
//! worst case first, runs, then `fstat`s the inodes it touched and settles the difference
//! ([`Charge`]). So usage passes the limit only by blocks the backing filesystem takes
//! beyond any worst case we can see in advance (its own metadata: an extent or xattr
//! block), and only until the next operation is refused.
//!
//! A directory's blocks are metadata ([`Space::Metadata`]): they take the volume's
//! metadata allowance first and the limit only beyond it. Every other inode's blocks are
//! data ([`Space::Data`]), which never takes the allowance. So data has the whole limit.

use super::sys;
use crate::daemon::fs::usage::Usage;
use crate::daemon::fs::{BLOCK_SIZE, Errno, FileKind, Result};
use std::collections::HashSet;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Which count an inode's blocks go to: a directory's are metadata, all others' data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    Data,
    Metadata,
}

impl Space {
    pub fn of_kind(kind: FileKind) -> Space {
        if kind == FileKind::Directory {
            Space::Metadata
        } else {
            Space::Data
        }
    }

    pub fn of_mode(mode: u32) -> Space {
        if mode & libc::S_IFMT == libc::S_IFDIR {
            Space::Metadata
        } else {
            Space::Data
        }
    }
}

/// What one charge reserved in one space, and how much the inodes it measured grew.
#[derive(Default)]
struct Ledger {
    reserved: u64,
    grown: i64,
}

/// Blocks reserved for one operation, settled against what it measurably took when
/// dropped (so every error path gives its reservation back), in each space apart.
pub struct Charge<'a> {
    usage: &'a Usage,
    data: Ledger,
    metadata: Ledger,
}

impl<'a> Charge<'a> {
    /// Reserves exactly `blocks` of data, or fails with ENOSPC.
    pub fn reserve(usage: &'a Usage, blocks: u64) -> Result<Charge<'a>> {
        Charge::reserve_in(usage, Space::Data, blocks)
    }

    /// Reserves exactly `blocks` of metadata (a directory's blocks: a full volume still
    /// gets new entries), or ENOSPC.
    pub fn reserve_metadata(usage: &'a Usage, blocks: u64) -> Result<Charge<'a>> {
        Charge::reserve_in(usage, Space::Metadata, blocks)
    }

    /// Reserves exactly `blocks` in `space`, or fails with ENOSPC.
    pub fn reserve_in(usage: &'a Usage, space: Space, blocks: u64) -> Result<Charge<'a>> {
        let mut charge = Charge::none(usage);
        charge.reserve_more(space, blocks)?;
        Ok(charge)
    }

    /// Reserves exactly `blocks` more in `space`, or fails with ENOSPC (what this charge
    /// reserved before stays reserved).
    pub fn reserve_more(&mut self, space: Space, blocks: u64) -> Result<()> {
        let granted = match space {
            Space::Data => self.usage.reserve_blocks(blocks),
            Space::Metadata => self.usage.reserve_metadata_blocks(blocks),
        };
        if blocks > 0 && !granted {
            return Err(Errno::ENOSPC);
        }
        self.ledger(space).reserved += blocks;
        Ok(())
    }

    /// Reserves `blocks` of metadata if they are free, else nothing: for changes that
    /// usually take no space and must not fail on a full volume (a rename), whose growth
    /// is then counted after the fact.
    pub fn reserve_metadata_if_free(usage: &'a Usage, blocks: u64) -> Charge<'a> {
        let mut charge = Charge::none(usage);
        let _ = charge.reserve_more(Space::Metadata, blocks);
        charge
    }

    /// A charge with nothing reserved, for changes that only measure.
    pub fn none(usage: &'a Usage) -> Charge<'a> {
        Charge {
            usage,
            data: Ledger::default(),
            metadata: Ledger::default(),
        }
    }

    fn ledger(&mut self, space: Space) -> &mut Ledger {
        match space {
            Space::Data => &mut self.data,
            Space::Metadata => &mut self.metadata,
        }
    }

    /// Records that a file (data) counted as `*charged` blocks now holds `now`.
    pub fn measured(&mut self, charged: &mut u64, now: u64) {
        self.measured_in(Space::Data, charged, now);
    }

    /// Records that an inode whose blocks are `space`, counted as `*charged` blocks, now
    /// holds `now`.
    pub fn measured_in(&mut self, space: Space, charged: &mut u64, now: u64) {
        self.ledger(space).grown += now as i64 - *charged as i64;
        *charged = now;
    }

    /// Records `blocks` of `space` that left the volume (an inode deleted).
    pub fn freed(&mut self, space: Space, blocks: u64) {
        self.ledger(space).grown -= blocks as i64;
    }

    /// Records `blocks` of `space` that joined the volume (a new inode).
    pub fn added(&mut self, space: Space, blocks: u64) {
        self.ledger(space).grown += blocks as i64;
    }
}

impl Drop for Charge<'_> {
    fn drop(&mut self) {
        for space in [Space::Data, Space::Metadata] {
            let usage = self.usage;
            let l = self.ledger(space);
            let reserved = l.reserved as i64;
            let (more, less) = if l.grown > reserved {
                ((l.grown - reserved) as u64, 0)
            } else {
                (0, (reserved - l.grown) as u64)
            };
            match space {
                Space::Data if more > 0 => usage.force_add_blocks(more),
                Space::Data => usage.release_blocks(less),
                Space::Metadata if more > 0 => usage.force_add_metadata_blocks(more),
                Space::Metadata => usage.release_metadata_blocks(less),
            }
        }
    }
}

/// Block ranges `[start, end)` (in 4 KiB blocks) of `fd` that hold space within blocks
/// `[first, end)`: from `FIEMAP`, which sees fallocated (unwritten) extents, where the
/// filesystem has it, else from SEEK_DATA/SEEK_HOLE (tmpfs, where fallocated pages
/// count as data).
fn data_blocks(fd: BorrowedFd<'_>, first: u64, end: u64) -> Result<Vec<(u64, u64)>> {
    let to_blocks = |(s, e): (u64, u64)| (s / BLOCK_SIZE, e.div_ceil(BLOCK_SIZE));
    match sys::extents(fd, first * BLOCK_SIZE, end * BLOCK_SIZE) {
        Ok(ranges) => return Ok(ranges.into_iter().map(to_blocks).collect()),
        Err(e) if e == Errno::EOPNOTSUPP => {}
        Err(e) => return Err(e),
    }
    let mut ranges = Vec::new();
    let (mut pos, stop) = (first * BLOCK_SIZE, end * BLOCK_SIZE);
    while pos < stop {
        let data = match sys::lseek(fd, pos as i64, libc::SEEK_DATA) {
            Ok(d) => d as u64,
            Err(e) if e == Errno::ENXIO => break,
            Err(e) => return Err(e),
        };
        if data >= stop {
            break;
        }
        let hole = sys::lseek(fd, data as i64, libc::SEEK_HOLE)? as u64;
        ranges.push(to_blocks((data, hole.min(stop))));
        pos = hole;
    }
    Ok(ranges)
}

/// Blocks in `[first, end)` that are holes of `fd`.
pub fn hole_blocks(fd: BorrowedFd<'_>, first: u64, end: u64) -> Result<u64> {
    Ok((end - first).saturating_sub(covered(&data_blocks(fd, first, end)?)))
}

/// Blocks covered by sorted ranges that may touch or overlap at block edges.
fn covered(ranges: &[(u64, u64)]) -> u64 {
    let mut total = 0;
    let mut reached = 0;
    for &(s, e) in ranges {
        let s = s.max(reached);
        if e > s {
            total += e - s;
            reached = e;
        }
    }
    total
}

/// Reserves space for writing `len` bytes at `offset` of `fd`: all of it when the whole
/// range fits even if it were all holes, else as much of it as the free space covers,
/// counting its holes exactly. Returns the charge and how many bytes may be written;
/// ENOSPC when not one byte fits.
pub fn reserve_write<'a>(
    usage: &'a Usage,
    fd: BorrowedFd<'_>,
    offset: u64,
    len: u64,
) -> Result<(Charge<'a>, u64)> {
    let (first, end) = (offset / BLOCK_SIZE, (offset + len).div_ceil(BLOCK_SIZE));
    if let Ok(c) = Charge::reserve(usage, end - first) {
        return Ok((c, len));
    }
    let data = data_blocks(fd, first, end)?;
    let holes = (end - first).saturating_sub(covered(&data));
    let granted = usage.reserve_blocks_upto(holes);
    let mut charge = Charge::none(usage);
    charge.data.reserved = granted;
    if granted == holes {
        return Ok((charge, len));
    }
    // Cut the write before the first hole block that no longer fits.
    let mut holes_left = granted;
    let mut block = first;
    let mut ranges = data.iter().peekable();
    let cut = loop {
        match ranges.peek() {
            Some(&&(s, e)) if block >= s => {
                block = block.max(e);
                ranges.next();
            }
            _ if holes_left == 0 => break block,
            _ => {
                holes_left -= 1;
                block += 1;
            }
        }
    };
    let allowed = (cut * BLOCK_SIZE).saturating_sub(offset).min(len);
    if allowed == 0 {
        return Err(Errno::ENOSPC);
    }
    Ok((charge, allowed))
}

/// What a backing tree holds, counted as the volume counts it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Blocks of every inode but directories.
    pub data_blocks: u64,
    /// Blocks of the directories.
    pub metadata_blocks: u64,
    pub inodes: u64,
}

impl Tally {
    fn count(&mut self, st: &libc::stat) {
        let blocks = super::nodes::blocks_of(st);
        match Space::of_mode(st.st_mode) {
            Space::Data => self.data_blocks += blocks,
            Space::Metadata => self.metadata_blocks += blocks,
        }
        self.inodes += 1;
    }
}

/// Counts the tree under `root` (included): blocks as `du` counts them and inodes, on the
/// device `dev` only. Holds one descriptor per directory level, never one per directory.
pub fn scan(root: BorrowedFd<'_>, dev: u64) -> Result<Tally> {
    let mut tally = Tally::default();
    tally.count(&sys::fstat(root)?);
    let mut seen = HashSet::new();
    let top = sys::openat(root, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let subdirs = scan_dir(top.as_fd(), dev, &mut tally, &mut seen)?;
    let mut stack: Vec<(OwnedFd, Vec<CString>)> = vec![(top, subdirs)];
    while let Some((dir, pending)) = stack.last_mut() {
        let Some(name) = pending.pop() else {
            stack.pop();
            continue;
        };
        let child = match sys::openat(dir.as_fd(), &name, libc::O_RDONLY | libc::O_DIRECTORY, 0) {
            Ok(fd) => fd,
            Err(e) if e == Errno::ENOENT => continue,
            Err(e) => return Err(e),
        };
        let subdirs = scan_dir(child.as_fd(), dev, &mut tally, &mut seen)?;
        stack.push((child, subdirs));
    }
    Ok(tally)
}

/// Counts the entries of one directory; returns the names of its subdirectories.
fn scan_dir(
    dir: BorrowedFd<'_>,
    dev: u64,
    tally: &mut Tally,
    seen: &mut HashSet<u64>,
) -> Result<Vec<CString>> {
    let mut subdirs = Vec::new();
    let mut buf = vec![0u8; 32 << 10];
    let mut offset = 0;
    loop {
        let n = sys::getdents(dir, offset, &mut buf)?;
        if n == 0 {
            return Ok(subdirs);
        }
        for e in sys::dirents(&buf[..n]) {
            offset = e.next_offset;
            if e.name == b"." || e.name == b".." {
                continue;
            }
            let name = CString::new(e.name).map_err(|_| Errno::EIO)?;
            let st = match sys::fstatat(dir, &name) {
                Ok(st) => st,
                Err(e) if e == Errno::ENOENT => continue,
                Err(e) => return Err(e),
            };
            if st.st_dev != dev || (st.st_nlink > 1 && !seen.insert(st.st_ino)) {
                continue;
            }
            tally.count(&st);
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                subdirs.push(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn tmpfile() -> OwnedFd {
        let dir = std::env::temp_dir();
        let c = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        let d = sys::openat(
            // SAFETY: AT_FDCWD names the working directory for *at calls (never closed); it
            // only goes to openat.
            unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) },
            &c,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )
        .unwrap();
        sys::openat(d.as_fd(), c".", libc::O_TMPFILE | libc::O_RDWR, 0o600).unwrap()
    }

    #[test]
    fn fallocated_space_is_not_a_hole() {
        let f = tmpfile();
        sys::fallocate(f.as_fd(), 0, 0, 8 * 4096).unwrap();
        assert_eq!(hole_blocks(f.as_fd(), 0, 10).unwrap(), 2);
        let usage = Usage::new(10 * BLOCK_SIZE, 10);
        assert!(usage.reserve_blocks(10)); // full
        let (_c, n) = reserve_write(&usage, f.as_fd(), 0, 8 * 4096).unwrap();
        assert_eq!(
            n,
            8 * 4096,
            "writing into fallocated space needs no free space"
        );
    }

    #[test]
    fn a_write_near_the_limit_is_cut_before_the_first_hole_that_does_not_fit() {
        let f = tmpfile();
        // Data in blocks 0..2 and 4..5; holes at 2, 3 and from 5 on.
        sys::pwrite(f.as_fd(), &[1u8; 8192], 0).unwrap();
        sys::pwrite(f.as_fd(), &[1u8; 4096], 4 * 4096).unwrap();
        assert_eq!(
            hole_blocks(f.as_fd(), 0, 8).unwrap(),
            5,
            "fd {}",
            f.as_raw_fd()
        );
        let usage = Usage::new(10 * BLOCK_SIZE, 10);
        assert!(usage.reserve_blocks(8)); // 2 blocks free
        let (c, n) = reserve_write(&usage, f.as_fd(), 0, 8 * 4096).unwrap();
        assert_eq!(n, 5 * 4096, "blocks 0..5 need the two holes at 2 and 3");
        drop(c);
        assert_eq!(usage.blocks_used(), 8, "nothing measured: all given back");
        assert!(usage.reserve_blocks(2));
        assert_eq!(
            reserve_write(&usage, f.as_fd(), 2 * 4096, 10).err(),
            Some(Errno::ENOSPC)
        );
        let (_c, n) = reserve_write(&usage, f.as_fd(), 4096, 4096).unwrap();
        assert_eq!(n, 4096, "an overwrite needs no free space");
    }
}
