//! The data of one regular file: a sparse map of 4 KiB blocks.
//!
//! Holes hold no memory and no usage. A block is either data (`Some`) or allocated but
//! never written (`None`, from `fallocate`): counted against the volume like tmpfs counts
//! fallocated pages, but holding no memory until written.
//!
//! Invariant: bytes of a block past `size` are zero, so growing a file never exposes
//! old data. Every change of the block count goes through [`Usage`]: blocks are reserved
//! before they are inserted and released when removed.

use crate::fs::usage::Usage;
use crate::fs::{BLOCK_SIZE, Errno, Result};
use std::collections::BTreeMap;

const BS: usize = BLOCK_SIZE as usize;
type Block = Box<[u8; BS]>;

#[derive(Debug, Default)]
pub struct FileData {
    size: u64,
    blocks: BTreeMap<u64, Option<Block>>,
}

fn zeroed_block() -> Block {
    // Box::new_zeroed uses calloc, which skips the memset for fresh pages.
    unsafe { Box::<[u8; BS]>::new_zeroed().assume_init() }
}

fn block_range(offset: u64, end: u64) -> std::ops::RangeInclusive<u64> {
    offset / BLOCK_SIZE..=(end - 1) / BLOCK_SIZE
}

impl FileData {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Blocks held (data and allocated-unwritten), the file's share of usage.
    pub fn held_blocks(&self) -> u64 {
        self.blocks.len() as u64
    }

    fn missing_in(&self, range: std::ops::RangeInclusive<u64>) -> u64 {
        let total = range.end() - range.start() + 1;
        total - self.blocks.range(range).count() as u64
    }

    /// Reads up to `len` bytes at `offset` into `out` (cleared first).
    pub fn read(&self, offset: u64, len: usize, out: &mut Vec<u8>) {
        out.clear();
        let end = self.size.min(offset.saturating_add(len as u64));
        if offset >= end {
            return;
        }
        out.reserve((end - offset) as usize);
        let mut pos = offset;
        for (&idx, block) in self.blocks.range(block_range(offset, end)) {
            let start = idx * BLOCK_SIZE;
            if start > pos {
                out.resize(out.len() + (start - pos) as usize, 0);
                pos = start;
            }
            let stop = end.min(start + BLOCK_SIZE);
            let (from, to) = ((pos - start) as usize, (stop - start) as usize);
            match block {
                Some(b) => out.extend_from_slice(&b[from..to]),
                None => out.resize(out.len() + to - from, 0),
            }
            pos = stop;
        }
        out.resize((end - offset) as usize, 0);
    }

    /// Writes `data` at `offset`, as much as the volume has room for. Returns the bytes
    /// written; ENOSPC when not one byte fits.
    pub fn write(&mut self, offset: u64, data: &[u8], usage: &Usage) -> Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let end = offset.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        if end > i64::MAX as u64 {
            return Err(Errno::EFBIG);
        }
        let range = block_range(offset, end);
        let missing = self.missing_in(range.clone());
        let granted = usage.reserve_blocks_upto(missing);
        let end = if granted < missing {
            self.cut_after_new_blocks(range, granted)
        } else {
            end
        };
        if end <= offset {
            return Err(Errno::ENOSPC);
        }
        let mut pos = offset;
        while pos < end {
            let idx = pos / BLOCK_SIZE;
            let start = idx * BLOCK_SIZE;
            let stop = end.min(start + BLOCK_SIZE);
            let src = &data[(pos - offset) as usize..(stop - offset) as usize];
            let whole = pos == start && stop == start + BLOCK_SIZE;
            let slot = self.blocks.entry(idx).or_insert(None);
            let block = slot.get_or_insert_with(|| {
                if whole {
                    // Fully overwritten below: no need to zero it first.
                    unsafe { Box::<[u8; BS]>::new_uninit().assume_init() }
                } else {
                    zeroed_block()
                }
            });
            block[(pos - start) as usize..(stop - start) as usize].copy_from_slice(src);
            pos = stop;
        }
        self.size = self.size.max(end);
        Ok((end - offset) as usize)
    }

    /// The offset where a write over `range` must stop when only `granted` new blocks
    /// could be reserved: the start of the first missing block past them.
    fn cut_after_new_blocks(&self, range: std::ops::RangeInclusive<u64>, granted: u64) -> u64 {
        let mut new = 0;
        for idx in range.clone() {
            if !self.blocks.contains_key(&idx) {
                if new == granted {
                    return idx * BLOCK_SIZE;
                }
                new += 1;
            }
        }
        (range.end() + 1) * BLOCK_SIZE
    }

    /// Sets the size; shrinking frees the blocks past it and zeroes the tail of the last.
    pub fn truncate(&mut self, size: u64, usage: &Usage) {
        if size < self.size {
            let dropped = self.blocks.split_off(&size.div_ceil(BLOCK_SIZE));
            usage.release_blocks(dropped.len() as u64);
            self.zero_within(size, self.size.min(size.next_multiple_of(BLOCK_SIZE)));
        }
        self.size = size;
    }

    /// Zeroes bytes `[from, to)`, which lie within one block.
    fn zero_within(&mut self, from: u64, to: u64) {
        if from >= to {
            return;
        }
        let idx = from / BLOCK_SIZE;
        debug_assert_eq!(idx, (to - 1) / BLOCK_SIZE);
        if let Some(Some(b)) = self.blocks.get_mut(&idx) {
            let start = idx * BLOCK_SIZE;
            b[(from - start) as usize..(to - start) as usize].fill(0);
        }
    }

    /// Zeroes the partial blocks at the edges of `[offset, end)` and returns the range
    /// of whole blocks inside it.
    fn zero_edges(&mut self, offset: u64, end: u64) -> std::ops::Range<u64> {
        let first_whole = offset.div_ceil(BLOCK_SIZE);
        let end_whole = end / BLOCK_SIZE;
        if first_whole > end_whole {
            self.zero_within(offset, end); // within one block
            return first_whole..first_whole;
        }
        self.zero_within(offset, first_whole * BLOCK_SIZE);
        self.zero_within(end_whole * BLOCK_SIZE, end);
        first_whole..end_whole
    }

    /// FALLOC_FL_PUNCH_HOLE: frees whole blocks inside the range, zeroes partial ones.
    pub fn punch_hole(&mut self, offset: u64, len: u64, usage: &Usage) -> Result<()> {
        let end = offset.checked_add(len).ok_or(Errno::EFBIG)?;
        let whole = self.zero_edges(offset, end);
        let doomed: Vec<u64> = self.blocks.range(whole).map(|(&i, _)| i).collect();
        for idx in &doomed {
            self.blocks.remove(idx);
        }
        usage.release_blocks(doomed.len() as u64);
        Ok(())
    }

    /// Reserves every missing block of `[offset, end)` or nothing (ENOSPC).
    fn reserve_range(&mut self, offset: u64, end: u64, usage: &Usage) -> Result<()> {
        let range = block_range(offset, end);
        if !usage.reserve_blocks(self.missing_in(range.clone())) {
            return Err(Errno::ENOSPC);
        }
        for idx in range {
            self.blocks.entry(idx).or_insert(None);
        }
        Ok(())
    }

    fn checked_end(offset: u64, len: u64) -> Result<u64> {
        match offset.checked_add(len) {
            _ if len == 0 => Err(Errno::EINVAL),
            Some(end) if end <= i64::MAX as u64 => Ok(end),
            _ => Err(Errno::EFBIG),
        }
    }

    /// Plain fallocate: allocates the range (all of it or nothing).
    pub fn allocate(
        &mut self,
        offset: u64,
        len: u64,
        keep_size: bool,
        usage: &Usage,
    ) -> Result<()> {
        let end = Self::checked_end(offset, len)?;
        self.reserve_range(offset, end, usage)?;
        if !keep_size {
            self.size = self.size.max(end);
        }
        Ok(())
    }

    /// FALLOC_FL_ZERO_RANGE: the range reads as zeros and stays allocated.
    pub fn zero_range(
        &mut self,
        offset: u64,
        len: u64,
        keep_size: bool,
        usage: &Usage,
    ) -> Result<()> {
        let end = Self::checked_end(offset, len)?;
        self.reserve_range(offset, end, usage)?;
        let whole = self.zero_edges(offset, end);
        for (_, block) in self.blocks.range_mut(whole) {
            *block = None; // frees the memory, keeps the allocation
        }
        if !keep_size {
            self.size = self.size.max(end);
        }
        Ok(())
    }

    /// SEEK_DATA: the first offset at or after `offset` inside an allocated block.
    pub fn seek_data(&self, offset: u64) -> Result<u64> {
        if offset >= self.size {
            return Err(Errno::ENXIO);
        }
        let (&idx, _) = self
            .blocks
            .range(offset / BLOCK_SIZE..)
            .next()
            .ok_or(Errno::ENXIO)?;
        let pos = offset.max(idx * BLOCK_SIZE);
        if pos >= self.size {
            Err(Errno::ENXIO)
        } else {
            Ok(pos)
        }
    }

    /// SEEK_HOLE: the first offset at or after `offset` in a hole (EOF counts as one).
    pub fn seek_hole(&self, offset: u64) -> Result<u64> {
        if offset >= self.size {
            return Err(Errno::ENXIO);
        }
        let mut idx = offset / BLOCK_SIZE;
        for (&i, _) in self.blocks.range(idx..) {
            if i != idx {
                break;
            }
            idx += 1;
        }
        Ok(offset.max(idx * BLOCK_SIZE).min(self.size))
    }

    /// Frees everything; returns the blocks given back.
    pub fn clear(&mut self, usage: &Usage) -> u64 {
        let n = self.held_blocks();
        self.blocks = BTreeMap::new();
        self.size = 0;
        usage.release_blocks(n);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const B: u64 = BLOCK_SIZE;

    fn read(f: &FileData, off: u64, len: usize) -> Vec<u8> {
        let mut v = Vec::new();
        f.read(off, len, &mut v);
        v
    }

    #[test]
    fn sparse_write_read_and_holes() {
        let u = Usage::new(100 * B, 10);
        let mut f = FileData::default();
        assert_eq!(f.write(10 * B + 5, b"hello", &u), Ok(5));
        assert_eq!(
            (f.size(), f.held_blocks(), u.blocks_used()),
            (10 * B + 10, 1, 1)
        );
        assert_eq!(read(&f, 10 * B, 10), b"\0\0\0\0\0hello");
        assert!(read(&f, 0, 4096).iter().all(|&b| b == 0));
        assert_eq!(f.seek_data(0), Ok(10 * B));
        assert_eq!(f.seek_hole(0), Ok(0));
        assert_eq!(f.seek_hole(10 * B + 1), Ok(10 * B + 10));
        assert_eq!(f.seek_data(10 * B + 10), Err(Errno::ENXIO));
    }

    #[test]
    fn write_stops_at_the_limit() {
        let u = Usage::new(3 * B, 10);
        let mut f = FileData::default();
        assert_eq!(f.write(0, &vec![1; 10_000], &u), Ok(10_000));
        // 3 blocks held; the rest of block 2 can still be written, nothing past it.
        assert_eq!(
            f.write(10_000, &vec![2; 10_000], &u),
            Ok(3 * B as usize - 10_000)
        );
        assert_eq!(f.write(3 * B, b"x", &u), Err(Errno::ENOSPC));
        assert_eq!(u.blocks_used(), 3);
        f.truncate(B + 1, &u);
        assert_eq!(u.blocks_used(), 2);
        assert_eq!(read(&f, B, 10), [1]);
        f.truncate(3 * B, &u);
        assert_eq!(read(&f, B, 3), [1, 0, 0]);
    }

    #[test]
    fn punch_zero_and_allocate() {
        let u = Usage::new(10 * B, 10);
        let mut f = FileData::default();
        f.write(0, &vec![7; 4 * B as usize], &u).unwrap();
        f.punch_hole(100, 2 * B, &u).unwrap();
        assert_eq!(u.blocks_used(), 3);
        assert_eq!(read(&f, 99, 2), [7, 0]);
        assert_eq!(read(&f, 2 * B + 99, 2), [0, 7]);
        f.zero_range(2 * B, 2 * B, false, &u).unwrap();
        assert_eq!((u.blocks_used(), f.size()), (3, 4 * B));
        assert!(read(&f, 2 * B, 2 * B as usize).iter().all(|&b| b == 0));
        f.allocate(4 * B, 2 * B, true, &u).unwrap();
        assert_eq!((u.blocks_used(), f.size()), (5, 4 * B));
        assert_eq!(f.allocate(0, 20 * B, false, &u), Err(Errno::ENOSPC));
        assert_eq!(u.blocks_used(), 5);
        assert_eq!(f.clear(&u), 5);
        assert_eq!(u.blocks_used(), 0);
    }
}
