//! The data of a memory volume handed over by a build before state format 4, which kept
//! every file's data in 4 KiB slots of one memfd (shared with the successor) and a block
//! map per file in the state. Read once, copied into the successor's tmpfs, dropped: an
//! upgrade from such a build copies the volume's data once (every later hand-off passes
//! the tmpfs on without a copy). That build served every open through the page cache,
//! and so does its successor (`fuse/iomode.rs`), reading and writing the tmpfs itself.

use super::data::Data;
use crate::daemon::backing::sys;
use crate::daemon::fs::{BLOCK_SIZE, Ino};
use crate::daemon::state::{FdTable, Reader, Refused};
use std::os::fd::{AsFd, OwnedFd};

/// The memfd of the predecessor's data.
pub struct Slots(OwnedFd);

/// One file's data in the memfd: its size, and for each of its blocks (by index in the
/// file) the slot holding it, or none for a block allocated but never written.
#[derive(Default)]
pub struct BlockMap {
    size: u64,
    blocks: Vec<(u64, Option<u64>)>,
}

/// Reads the store's part of the state (the memfd; its free-slot runs are not needed).
pub fn read_slots(r: &mut Reader<'_>, fds: &mut FdTable) -> Result<Slots, Refused> {
    let file = fds.take(r.u64()?)?;
    let (_sized, _cap, _top) = (r.bool()?, r.u64()?, r.u64()?);
    for _ in 0..r.count(16)? {
        let (_start, _len) = (r.u64()?, r.u64()?);
    }
    Ok(Slots(file))
}

pub fn read_block_map(r: &mut Reader<'_>) -> Result<BlockMap, Refused> {
    let mut map = BlockMap {
        size: r.u64()?,
        blocks: Vec::new(),
    };
    for _ in 0..r.count(9)? {
        let idx = r.u64()?;
        let slot = match r.u8()? {
            0 => None,
            1 => Some(r.u64()?),
            t => return Err(format!("block tag {t}")),
        };
        if idx.checked_mul(BLOCK_SIZE).is_none() {
            return Err(format!("block {idx} past any file's end"));
        }
        map.blocks.push((idx, slot));
    }
    Ok(map)
}

/// Makes the data file of `ino` in `data` from its block map in `slots`.
pub fn copy(map: &BlockMap, slots: &Slots, data: &Data, ino: Ino) -> Result<(), Refused> {
    let why = |e: crate::daemon::fs::Errno| format!("copying the data of inode {ino}: {e}");
    data.create(ino).map_err(why)?;
    let f = data.open(ino, libc::O_WRONLY).map_err(why)?;
    let mut block = vec![0u8; BLOCK_SIZE as usize];
    for &(idx, slot) in &map.blocks {
        let at = idx * BLOCK_SIZE;
        match slot {
            Some(s) => {
                let from = s.checked_mul(BLOCK_SIZE).ok_or("a slot past the memfd")?;
                let n = sys::pread(slots.0.as_fd(), &mut block, from).map_err(why)?;
                block[n..].fill(0);
                if data.write(ino, at, &block).map_err(why)? < block.len() {
                    return Err(why(crate::daemon::fs::Errno::ENOSPC));
                }
            }
            None => data
                .fallocate(ino, at, BLOCK_SIZE, libc::FALLOC_FL_KEEP_SIZE)
                .map_err(why)?,
        }
    }
    sys::ftruncate(f.as_fd(), map.size).map_err(why)
}
