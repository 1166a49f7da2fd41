//! The data of one regular file: a sparse map of 4 KiB blocks, each kept in a slot of
//! the volume's [`Store`].
//!
//! Holes hold no memory and no usage. A block is either data (`Some(slot)`) or allocated
//! but never written (`None`, from `fallocate`): counted against the volume like tmpfs
//! counts fallocated pages, but holding no memory until written.
//!
//! Invariant: bytes of a block past `size` are zero, so growing a file never exposes
//! old data. Every change of the block count goes through [`Usage`]: blocks are reserved
//! before they are inserted and released when removed; a removed block's slot goes back
//! to the store.

use super::store::{Slot, Store};
use crate::daemon::fs::usage::Usage;
use crate::daemon::fs::{BLOCK_SIZE, Errno, Result};
use crate::daemon::state::{Reader, Refused, Writer};
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct FileData {
    size: u64,
    blocks: BTreeMap<u64, Option<Slot>>,
}

fn block_range(offset: u64, end: u64) -> std::ops::RangeInclusive<u64> {
    offset / BLOCK_SIZE..=(end - 1) / BLOCK_SIZE
}

/// Consecutive file bytes that lie in consecutive slots: moved with one copy or call.
struct Span {
    /// Byte offset in the file, and where it is in the store.
    file: u64,
    store: u64,
    len: u64,
    /// In slots given out for this write (filled with `pwrite`).
    fresh: bool,
}

/// Splits the bytes `[offset, end)` of the blocks that have slots into spans; `fresh`
/// (sorted) lists blocks whose slots were just given out.
fn spans(
    blocks: &BTreeMap<u64, Option<Slot>>,
    offset: u64,
    end: u64,
    fresh: &[u64],
    mut each: impl FnMut(Span) -> Result<()>,
) -> Result<()> {
    let mut cur: Option<Span> = None;
    for (&idx, slot) in blocks.range(block_range(offset, end)) {
        let Some(slot) = slot else {
            if let Some(span) = cur.take() {
                each(span)?;
            }
            continue;
        };
        let start = idx * BLOCK_SIZE;
        let (from, to) = (offset.max(start), end.min(start + BLOCK_SIZE));
        let at = slot * BLOCK_SIZE + (from - start);
        let is_fresh = fresh.binary_search(&idx).is_ok();
        match &mut cur {
            Some(span)
                if span.file + span.len == from
                    && span.store + span.len == at
                    && span.fresh == is_fresh =>
            {
                span.len += to - from;
            }
            _ => {
                if let Some(span) = cur.take() {
                    each(span)?;
                }
                cur = Some(Span {
                    file: from,
                    store: at,
                    len: to - from,
                    fresh: is_fresh,
                });
            }
        }
    }
    match cur {
        Some(span) => each(span),
        None => Ok(()),
    }
}

impl FileData {
    pub fn write_state(&self, w: &mut Writer) {
        w.u64(self.size);
        w.u64(self.blocks.len() as u64);
        for (&idx, slot) in &self.blocks {
            w.u64(idx);
            match slot {
                Some(s) => {
                    w.u8(1);
                    w.u64(*s);
                }
                None => w.u8(0),
            }
        }
    }

    pub fn read_state(r: &mut Reader<'_>) -> std::result::Result<FileData, Refused> {
        let mut f = FileData {
            size: r.u64()?,
            blocks: BTreeMap::new(),
        };
        for _ in 0..r.count(9)? {
            let idx = r.u64()?;
            let slot = match r.u8()? {
                0 => None,
                1 => Some(r.u64()?),
                t => return Err(format!("block tag {t}")),
            };
            if f.blocks.insert(idx, slot).is_some() {
                return Err(format!("block {idx} twice in a file"));
            }
        }
        Ok(f)
    }

    /// The slots holding the file's data.
    pub fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.blocks.values().filter_map(|s| *s)
    }
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

    /// Reads up to `len` bytes at `offset` into `out` (replacing what it held).
    pub fn read(&self, offset: u64, len: usize, out: &mut Vec<u8>, store: &Store) -> Result<()> {
        out.clear();
        let end = self.size.min(offset.saturating_add(len as u64));
        if offset >= end {
            return Ok(());
        }
        out.resize((end - offset) as usize, 0);
        spans(&self.blocks, offset, end, &[], |s| {
            let at = (s.file - offset) as usize;
            store.read_at(&mut out[at..at + s.len as usize], s.store)
        })
    }

    /// Writes `data` at `offset`, as much as the volume has room for. Returns the bytes
    /// written; ENOSPC when not one byte fits.
    pub fn write(
        &mut self,
        offset: u64,
        data: &[u8],
        usage: &Usage,
        store: &Store,
    ) -> Result<usize> {
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
        let given = self.give_slots(block_range(offset, end), store);
        let fresh: Vec<u64> = given.iter().map(|&(idx, _)| idx).collect();
        let mut written = offset;
        let result = spans(&self.blocks, offset, end, &fresh, |s| {
            let src = &data[(s.file - offset) as usize..][..s.len as usize];
            if s.fresh {
                store.write_at(src, s.store)?;
            } else {
                store.overwrite_at(src, s.store)?;
            }
            written = s.file + s.len;
            Ok(())
        });
        self.size = self.size.max(written);
        if result.is_err() {
            self.take_back(&given, written, usage, store);
        }
        match result {
            Err(e) if written == offset => Err(e),
            _ => Ok((written - offset) as usize),
        }
    }

    /// After a write failed at `written` (a block boundary: spans end at one), takes back
    /// the slots it gave to blocks it did not reach: holes again (their usage released)
    /// or allocated-unwritten again. Bytes a failed `pwrite` left in them are punched out,
    /// so nothing past the size the file now has is ever shown.
    fn take_back(&mut self, given: &[(u64, bool)], written: u64, usage: &Usage, store: &Store) {
        let reached = written.div_ceil(BLOCK_SIZE);
        let mut slots = Vec::new();
        let mut holes = 0;
        for &(idx, was_hole) in given.iter().filter(|(idx, _)| *idx >= reached) {
            let slot = if was_hole {
                holes += 1;
                self.blocks.remove(&idx)
            } else {
                self.blocks.insert(idx, None)
            };
            slots.extend(slot.flatten());
        }
        store.free(&mut slots);
        usage.release_blocks(holes);
    }

    /// Gives a slot to every block of `range` that has none (holes were reserved by the
    /// caller), and returns those blocks, each with whether it was a hole (else it was
    /// allocated but unwritten). New slots are holes of the store: they read as zeros.
    fn give_slots(
        &mut self,
        range: std::ops::RangeInclusive<u64>,
        store: &Store,
    ) -> Vec<(u64, bool)> {
        let without: Vec<(u64, bool)> = range
            .filter_map(|i| match self.blocks.get(&i) {
                Some(Some(_)) => None,
                Some(None) => Some((i, false)),
                None => Some((i, true)),
            })
            .collect();
        let mut runs = Vec::new();
        store.alloc(without.len() as u64, &mut runs);
        let mut fresh = runs.iter().flat_map(|&(start, len)| start..start + len);
        for &(idx, _) in &without {
            self.blocks.insert(idx, fresh.next());
        }
        without
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
    /// EIO if that tail cannot be zeroed: the size is then left as it was, so the old
    /// bytes are never shown as part of the file.
    pub fn truncate(&mut self, size: u64, usage: &Usage, store: &Store) -> Result<()> {
        if size < self.size {
            self.zero_within(
                size,
                self.size.min(size.next_multiple_of(BLOCK_SIZE)),
                store,
            )?;
            let dropped = self.blocks.split_off(&size.div_ceil(BLOCK_SIZE));
            Self::drop_blocks(dropped.into_values(), usage, store);
        }
        self.size = size;
        Ok(())
    }

    /// Releases removed blocks and gives their slots back to the store.
    fn drop_blocks(removed: impl Iterator<Item = Option<Slot>>, usage: &Usage, store: &Store) {
        let mut n = 0;
        let mut slots: Vec<Slot> = removed.inspect(|_| n += 1).flatten().collect();
        store.free(&mut slots);
        usage.release_blocks(n);
    }

    /// Zeroes bytes `[from, to)`, which lie within one block.
    fn zero_within(&mut self, from: u64, to: u64, store: &Store) -> Result<()> {
        if from >= to {
            return Ok(());
        }
        let idx = from / BLOCK_SIZE;
        debug_assert_eq!(idx, (to - 1) / BLOCK_SIZE);
        match self.blocks.get(&idx) {
            Some(Some(slot)) => store.zero(slot * BLOCK_SIZE + from % BLOCK_SIZE, to - from),
            _ => Ok(()),
        }
    }

    /// Zeroes the partial blocks at the edges of `[offset, end)` and returns the range
    /// of whole blocks inside it.
    fn zero_edges(&mut self, offset: u64, end: u64, store: &Store) -> Result<std::ops::Range<u64>> {
        let first_whole = offset.div_ceil(BLOCK_SIZE);
        let end_whole = end / BLOCK_SIZE;
        if first_whole > end_whole {
            self.zero_within(offset, end, store)?; // within one block
            return Ok(first_whole..first_whole);
        }
        self.zero_within(offset, first_whole * BLOCK_SIZE, store)?;
        self.zero_within(end_whole * BLOCK_SIZE, end, store)?;
        Ok(first_whole..end_whole)
    }

    /// FALLOC_FL_PUNCH_HOLE: frees whole blocks inside the range, zeroes partial ones.
    pub fn punch_hole(
        &mut self,
        offset: u64,
        len: u64,
        usage: &Usage,
        store: &Store,
    ) -> Result<()> {
        let end = offset.checked_add(len).ok_or(Errno::EFBIG)?;
        let whole = self.zero_edges(offset, end, store)?;
        let doomed: Vec<u64> = self.blocks.range(whole).map(|(&i, _)| i).collect();
        let removed = doomed.iter().map(|i| self.blocks.remove(i).flatten());
        Self::drop_blocks(removed.collect::<Vec<_>>().into_iter(), usage, store);
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
        store: &Store,
    ) -> Result<()> {
        let end = Self::checked_end(offset, len)?;
        self.reserve_range(offset, end, usage)?;
        let whole = self.zero_edges(offset, end, store)?;
        // Frees the memory, keeps the allocation.
        let mut slots: Vec<Slot> = self
            .blocks
            .range_mut(whole)
            .filter_map(|(_, b)| b.take())
            .collect();
        store.free(&mut slots);
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
    pub fn clear(&mut self, usage: &Usage, store: &Store) -> u64 {
        let n = self.held_blocks();
        Self::drop_blocks(std::mem::take(&mut self.blocks).into_values(), usage, store);
        self.size = 0;
        n
    }
}

#[cfg(test)]
mod tests;
