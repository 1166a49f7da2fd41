//! An append-only log in a memfd that outlives the process writing it: what a successor
//! reads after the daemon dies at any instruction (docs/RECOVERY.md, part 2). The keeper
//! holds the memfd; the daemon maps it and appends a record before each answer.
//!
//! # Layout of the memfd
//! - bytes 0..[`HEADER`]: `MAGIC` (u64), the layout's version (u32), padding (u32), the
//!   record area's size in bytes (u64), `end` (u64, atomic: bytes of the record area
//!   committed), `next` (u64: the sequence number the next record gets);
//! - from [`HEADER`] on, records, each: the payload's length in bytes (u32), `kind`
//!   (u16), `RECORD_MAGIC` (u16), `seq` (u64), the payload, zero padding to 8 bytes.
//!
//! # The commit rule
//! A record is written whole past `end`; then `end` moves past it with one `Release`
//! store. A reader loads `end` (`Acquire`) and reads below it only. The memfd's pages are
//! the kernel's, so every store the writer made before it died is seen by whoever maps
//! the memfd after: a SIGKILL at any instruction leaves the log as of its last commit,
//! never a torn record. One writer at a time (`&mut self`).

use crate::common::shared_map::SharedMap;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: u64 = u64::from_le_bytes(*b"EDFSJRNL");
const VERSION: u32 = 1;
const RECORD_MAGIC: u16 = 0x4a52;
/// The header's size: one cache line, so records start aligned.
pub const HEADER: usize = 64;
const RECORD_HEADER: usize = 16;
const OFF_SIZE: usize = 16;
const OFF_END: usize = 24;
const OFF_NEXT: usize = 32;

/// The record area has no room for a record: the log must be compacted first.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// One committed record.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: u16,
    pub seq: u64,
    pub payload: &'a [u8],
}

/// A mapped log: [`HEADER`] plus the record area. Appends need `&mut self`; reads of
/// committed bytes never race a writer of the same bytes.
pub struct Journal {
    map: SharedMap,
}

fn round8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

impl Journal {
    /// A new, empty log with room for `capacity` bytes of records, in a memfd of its own.
    pub fn create(capacity: usize) -> io::Result<Journal> {
        let len = HEADER + round8(capacity);
        let map = SharedMap::create(c"emptydirfs-journal", len)?;
        let j = Journal { map };
        j.put_u64(0, MAGIC);
        j.put_u64(8, u64::from(VERSION));
        j.put_u64(OFF_SIZE, (len - HEADER) as u64);
        j.put_u64(OFF_NEXT, 0);
        j.end().store(0, Ordering::Release);
        Ok(j)
    }

    /// The log in `fd` (a memfd a predecessor wrote), checked.
    pub fn open(fd: OwnedFd) -> io::Result<Journal> {
        let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("journal: {why}"));
        let map = SharedMap::map(fd)?;
        let len = map.bytes();
        if len < HEADER || !len.is_multiple_of(8) {
            return Err(bad("the memfd is not a journal's size"));
        }
        let j = Journal { map };
        if j.get_u64(0) != MAGIC || j.get_u64(8) != u64::from(VERSION) {
            return Err(bad("not a journal of this layout"));
        }
        if j.get_u64(OFF_SIZE) != (len - HEADER) as u64 {
            return Err(bad("its size disagrees with its memfd's"));
        }
        if j.end().load(Ordering::Acquire) > (len - HEADER) as u64 {
            return Err(bad("its end is past its record area"));
        }
        Ok(j)
    }

    /// The memfd, for the keeper and for a successor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.map.fd()
    }

    fn end(&self) -> &AtomicU64 {
        // SAFETY: OFF_END is 8-aligned inside the page-aligned mapping of at least HEADER
        // bytes, which lives as long as `self`; the word is only used as an atomic.
        unsafe { &*self.map.as_ptr().add(OFF_END).cast::<AtomicU64>() }
    }

    fn get_u64(&self, at: usize) -> u64 {
        // SAFETY: `at + 8 <= len` at every call site (header fields, or record headers
        // checked against `end`, which is within the area); the read is unaligned-safe.
        unsafe { self.map.as_ptr().add(at).cast::<u64>().read_unaligned() }
    }

    fn put_u64(&self, at: usize, v: u64) {
        // SAFETY: as in `get_u64`; the bytes written are past `end` (not yet committed,
        // so no reader looks at them) or header fields only this writer changes.
        unsafe { self.map.as_ptr().add(at).cast::<u64>().write_unaligned(v) }
    }

    /// Bytes of the record area committed.
    pub fn committed(&self) -> u64 {
        self.end().load(Ordering::Acquire)
    }

    /// Appends a record of `kind` carrying `payload` and commits it; returns its sequence
    /// number. Allocates nothing.
    pub fn append(&mut self, kind: u16, payload: &[u8]) -> Result<u64, Full> {
        let end = self.end().load(Ordering::Relaxed) as usize;
        let size = round8(RECORD_HEADER + payload.len());
        if size > u32::MAX as usize || HEADER + end + size > self.map.bytes() {
            return Err(Full);
        }
        let seq = self.get_u64(OFF_NEXT);
        let at = HEADER + end;
        let head = payload.len() as u64 | u64::from(kind) << 32 | u64::from(RECORD_MAGIC) << 48;
        self.put_u64(at, head);
        self.put_u64(at + 8, seq);
        // SAFETY: `at + RECORD_HEADER + payload.len() <= at + size <= len` (checked
        // above): the copy stays inside the mapping, past the committed end; source and
        // destination cannot overlap (the payload is not in the record area past `end`).
        unsafe {
            std::ptr::copy_nonoverlapping(
                payload.as_ptr(),
                self.map.as_ptr().add(at + RECORD_HEADER),
                payload.len(),
            );
            std::ptr::write_bytes(
                self.map.as_ptr().add(at + RECORD_HEADER + payload.len()),
                0,
                size - RECORD_HEADER - payload.len(),
            );
        }
        self.put_u64(OFF_NEXT, seq + 1);
        self.end().store((end + size) as u64, Ordering::Release);
        Ok(seq)
    }

    /// Forgets every record (after a new base was written elsewhere). Sequence numbers
    /// go on from where they were.
    pub fn clear(&mut self) {
        self.end().store(0, Ordering::Release);
    }

    /// The committed records, oldest first; an error at the first that does not read as
    /// one (a bug, never a crash: see the commit rule).
    pub fn records(&self) -> impl Iterator<Item = Result<Record<'_>, String>> + '_ {
        let end = self.committed() as usize;
        let mut at = 0usize;
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed || at >= end {
                return None;
            }
            let head = self.get_u64(HEADER + at);
            let len = (head & 0xffff_ffff) as usize;
            let size = round8(RECORD_HEADER + len);
            let kind = (head >> 32) as u16;
            if (head >> 48) as u16 != RECORD_MAGIC || at + size > end {
                failed = true;
                return Some(Err(format!("journal: no record at offset {at}")));
            }
            let seq = self.get_u64(HEADER + at + 8);
            // SAFETY: the record lies within the committed area (checked above), inside
            // the mapping, and committed bytes are never written again until `clear`,
            // which needs `&mut self` while this borrow of `self` lives.
            let payload = unsafe {
                std::slice::from_raw_parts(self.map.as_ptr().add(HEADER + at + RECORD_HEADER), len)
            };
            at += size;
            Some(Ok(Record { kind, seq, payload }))
        })
    }
}

#[cfg(test)]
mod tests;
