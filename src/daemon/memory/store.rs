//! Where a memory volume keeps file data: one anonymous memory file (`memfd`) per
//! volume, cut into 4 KiB slots.
//!
//! A file's block map ([`super::file`]) names the slot that holds each block; this store
//! hands out slots and moves bytes in and out of them with `pwrite`/`pread`. Why not heap
//! blocks: a fresh anonymous page is faulted in and zeroed by the kernel before the
//! daemon copies data over it (a fifth of all CPU time during a sequential write),
//! whereas `pwrite` of whole pages into a memfd fills new shmem pages directly, as tmpfs
//! does. Freed slots are punched out (`FALLOC_FL_PUNCH_HOLE`), so their memory goes back
//! to the system at once, with no allocator holding on to it.
//!
//! The memory is shmem owned by the daemon: charged to its memory cgroup and swappable
//! like tmpfs pages, but not part of its `VmRSS` (it is never mapped). What a volume
//! holds is [`Store::held_bytes`], and `scripts/bench.sh` adds it to the RSS it reports.
//!
//! The memfd is sealed against shrinking ([`seal`]): it is mapped, by this daemon and
//! by each successor it is handed to, and a truncate would make the mapping fault.
//!
//! The daemon maps the memfd once: reads and overwrites of pages already written are
//! plain copies through the mapping (no system call per request); fresh slots are filled
//! with `pwrite`. Pages the daemon touched through the mapping show in its `RssShmem`.
//! Slots stay below `cap` (twice the volume's size, the mapped length), which is always
//! enough: at most the volume's size is in use at once. A volume too large to map
//! (over 32 TiB) uses `pread`/`pwrite` only.
//!
//! Invariants: a slot not handed out reads as zeros (a hole in the memfd, or zeros
//! written over it if the kernel ever refused the punch), so a newly allocated slot
//! needs no zeroing, and a partial `pwrite` into it leaves zeros
//! around the data. A slot belongs to at most one block of one file; callers hold that
//! file's body lock while they read or write its slots. `slots` is a leaf lock.

use crate::daemon::fs::ratelimit::RateLimit;
use crate::daemon::fs::{BLOCK_SIZE, Errno, Result};
use crate::daemon::state::FdTable;
use crate::daemon::state::{Reader, Refused, Writer};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Mutex;
use std::time::Duration;

/// Index of a 4 KiB slot in the store.
pub type Slot = u64;

/// The data file of one memory volume and its slot allocator.
#[derive(Debug)]
pub struct Store {
    file: File,
    /// Address of the whole data file mapped shared, read-write (0: not mapped, use
    /// `pread`/`pwrite`); `cap` slots long.
    map: usize,
    cap: u64,
    slots: Mutex<FreeSlots>,
}

/// The most address space one volume maps (64 TiB).
const MAX_MAP: u64 = 1 << 46;
/// Mappings are whole 2 MiB.
const MAP_UNIT: u64 = 2 << 20;

/// Free slots: coalesced runs below `top`, and everything from `top` up.
#[derive(Debug, Default)]
struct FreeSlots {
    /// start -> length, no two runs adjacent.
    runs: BTreeMap<Slot, u64>,
    /// Slots in `runs`.
    free_below: u64,
    top: Slot,
}

/// At most one line per this long for each kind of data-file failure.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Seals the data file against shrinking, and against any further seal. It is mapped
/// (by this daemon and by every successor it is handed to), and a truncate by anyone
/// holding it would turn an access of the mapping past the new end into SIGBUS. What the
/// store does stays allowed: punching holes (`KEEP_SIZE`), growing (`set_len` of a new
/// store, an unmapped store's writes past the end), writing. `F_SEAL_SEAL` keeps anyone
/// from adding a seal that would forbid those (`F_SEAL_WRITE`, `F_SEAL_GROW`).
fn seal(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GET_SEALS takes no argument; `fd` is the open memfd `file` owns.
    let have = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    if have < 0 {
        return Err(io::Error::last_os_error());
    }
    if have & libc::F_SEAL_SHRINK != 0 {
        return Ok(());
    }
    // SAFETY: F_ADD_SEALS takes an integer; `fd` is the open memfd `file` owns.
    if unsafe {
        libc::fcntl(
            fd,
            libc::F_ADD_SEALS,
            libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `FALLOC_FL_PUNCH_HOLE` of `len` bytes at `offset` (the size stays).
fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    let (offset, len) = match (i64::try_from(offset), i64::try_from(len)) {
        (Ok(o), Ok(l)) => (o, l),
        _ => return Err(io::Error::from_raw_os_error(libc::EFBIG)),
    };
    // SAFETY: `file` is open for the call and fallocate takes only integers besides it.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, offset, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Errors of the data file as the errno a writer or reader should see.
fn errno(e: io::Error) -> Errno {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::ENOMEM | libc::EFBIG) => Errno::ENOSPC,
        _ => Errno::EIO,
    }
}

impl Store {
    /// The data file of a volume that holds at most `size` bytes of file data.
    pub fn new(size: u64) -> io::Result<Store> {
        let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        // SAFETY: memfd_create reads a static NUL-terminated name and takes integer flags.
        let fd = unsafe { libc::memfd_create(c"emptydirfs-memory".as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by a successful memfd_create: a new descriptor
        // nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        seal(&file)?;
        let len = size
            .saturating_mul(2)
            .next_multiple_of(MAP_UNIT)
            .max(MAP_UNIT);
        if len > MAX_MAP {
            // Too large to map (and `cap` must cover the volume's size): no bound.
            log::info!("a {size}-byte volume is not mapped; using pread/pwrite");
            return Ok(Store {
                file,
                map: 0,
                cap: u64::MAX / BLOCK_SIZE,
                slots: Mutex::new(FreeSlots::default()),
            });
        }
        // A sparse size: holds no memory, but the mapping must not reach past the end.
        file.set_len(len)?;
        Ok(Store::mapped_file(file, len, FreeSlots::default()))
    }

    /// The store over `file` (`len` bytes), mapped if it can be.
    fn mapped_file(file: File, len: u64, slots: FreeSlots) -> Store {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let flags = libc::MAP_SHARED | libc::MAP_NORESERVE;
        // SAFETY: A new shared mapping of `len` bytes of the open memfd at offset 0, at an
        // address the kernel chooses (no existing memory is replaced); MAP_FAILED is
        // checked below. Every caller has made the file at least `len` bytes long (`new`
        // sets it, `read_state` checks it), and it is sealed against shrinking, so no
        // access within the mapping can fault past the end.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                prot,
                flags,
                file.as_raw_fd(),
                0,
            )
        };
        let map = if addr == libc::MAP_FAILED {
            log::warn!(
                "mapping the volume's data file ({len} bytes): {}; using pread/pwrite",
                io::Error::last_os_error()
            );
            0
        } else {
            addr as usize
        };
        Store {
            file,
            map,
            cap: len / BLOCK_SIZE,
            slots: Mutex::new(slots),
        }
    }

    /// For a hand-off: the data file (its descriptor goes with the state: the data is
    /// shared, never copied) and the slot allocator.
    pub fn write_state(&self, w: &mut Writer, fds: &mut Vec<RawFd>) {
        w.u64(FdTable::push(fds, self.file.as_raw_fd()));
        w.bool(self.cap != u64::MAX / BLOCK_SIZE); // a sized (mappable) data file
        w.u64(self.cap);
        let s = self.lock();
        w.u64(s.top);
        w.u64(s.runs.len() as u64);
        for (&start, &len) in &s.runs {
            w.u64(start);
            w.u64(len);
        }
    }

    pub fn read_state(
        r: &mut Reader<'_>,
        fds: &mut FdTable,
    ) -> std::result::Result<Store, Refused> {
        let file = File::from(fds.take(r.u64()?)?);
        let sized = r.bool()?;
        let cap = r.u64()?;
        let mut slots = FreeSlots {
            top: r.u64()?,
            ..FreeSlots::default()
        };
        for _ in 0..r.count(16)? {
            let (start, len) = (r.u64()?, r.u64()?);
            if len == 0 || start.checked_add(len).is_none_or(|e| e > slots.top) {
                return Err(format!(
                    "a free run {start}+{len} past the top {}",
                    slots.top
                ));
            }
            slots.runs.insert(start, len);
            slots.free_below += len;
        }
        if slots.top > cap {
            return Err(format!("slots up to {} in a store of {cap}", slots.top));
        }
        if !sized {
            return Ok(Store {
                file,
                map: 0,
                cap,
                slots: Mutex::new(slots),
            });
        }
        if let Err(e) = seal(&file) {
            // A predecessor's memfd made without MFD_ALLOW_SEALING (before sealing was
            // added): served as it is; nothing but the daemons holds it.
            log::warn!("the volume's data file cannot be sealed against shrinking: {e}");
        }
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        if len != cap * BLOCK_SIZE {
            return Err(format!(
                "the data file is {len} bytes, its store {}",
                cap * BLOCK_SIZE
            ));
        }
        Ok(Store::mapped_file(file, len, slots))
    }

    /// Slots in use: below the top and in no free run.
    pub fn slots_in_use(&self) -> u64 {
        let s = self.lock();
        s.top - s.free_below
    }

    /// Whether `slot` is free (a hand-off's check of the block maps it receives).
    pub fn is_free(&self, slot: Slot) -> bool {
        let s = self.lock();
        slot >= s.top
            || s.runs
                .range(..=slot)
                .next_back()
                .is_some_and(|(&start, &len)| slot < start + len)
    }

    /// Hands out `n` slots as runs of consecutive slots, appended to `out`. One run when
    /// it can, so that a long write stays one `pwrite`: the lowest free run long enough,
    /// else fresh slots at the top; only when the free runs are many times larger than
    /// what is used (churn of small files) are they gathered piece by piece.
    pub fn alloc(&self, n: u64, out: &mut Vec<(Slot, u64)>) {
        if n == 0 {
            return;
        }
        let mut s = self.lock();
        let fit = s.runs.iter().take(64).find(|(_, l)| **l >= n);
        if let Some((&start, &len)) = fit {
            s.take(start, len, n);
            out.push((start, n));
            return;
        }
        let mut left = n;
        let used = s.top - s.free_below;
        if s.free_below > 4 * used.max(n) || s.top + n > self.cap {
            while left > 0 {
                let Some((&start, &len)) = s.runs.first_key_value() else {
                    break;
                };
                let took = len.min(left);
                s.take(start, len, took);
                out.push((start, took));
                left -= took;
            }
        }
        if left > 0 {
            // Cannot fail: slots in use never pass the volume's size, and `cap` is at
            // least that, so the free runs below it cover what the bump would not.
            debug_assert!(
                s.top + left <= self.cap,
                "more slots than the volume's size"
            );
            out.push((s.top, left));
            s.top += left;
        }
    }

    /// Gives slots back: their memory is punched out of the data file at once. A run that
    /// cannot be zeroed (see [`Store::zero`]) is never handed out again, since it may
    /// still hold a file's old bytes.
    pub fn free(&self, slots: &mut [Slot]) {
        if slots.is_empty() {
            return;
        }
        slots.sort_unstable();
        let mut runs: Vec<(Slot, u64)> = Vec::new();
        for &slot in slots.iter() {
            match runs.last_mut() {
                Some((start, len)) if *start + *len == slot => *len += 1,
                _ => runs.push((slot, 1)),
            }
        }
        runs.retain(|&(start, len)| self.zero(start * BLOCK_SIZE, len * BLOCK_SIZE).is_ok());
        let mut s = self.lock();
        for (start, len) in runs {
            s.insert(start, len);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FreeSlots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Zeroes `len` bytes at byte `offset` of the data file: punched out (whole pages are
    /// freed), or, should the kernel refuse that, overwritten with zeros (the memory stays
    /// held). Punching a memfd we own fails only on a kernel bug or a seal we never set;
    /// if neither works the bytes may still be a file's old data: EIO, logged (never a
    /// panic in the request path).
    pub fn zero(&self, offset: u64, len: u64) -> Result<()> {
        static PUNCH: RateLimit = RateLimit::new(LOG_INTERVAL);
        static WRITE: RateLimit = RateLimit::new(LOG_INTERVAL);
        let punched = punch_hole(&self.file, offset, len);
        let Err(e) = punched else {
            return Ok(());
        };
        if let Some(more) = PUNCH.admit_now() {
            log::error!(
                "punching {len} bytes at {offset} out of the memory volume's data file: {e}; \
                 writing zeros instead{more}"
            );
        }
        let zeros = [0u8; 64 << 10];
        let mut at = offset;
        let end = offset.saturating_add(len);
        while at < end {
            let n = (end - at).min(zeros.len() as u64) as usize;
            if let Err(e) = self.file.write_all_at(&zeros[..n], at) {
                if let Some(more) = WRITE.admit_now() {
                    log::error!(
                        "zeroing {len} bytes at {offset} of the memory volume's data file: \
                         {e}; answered EIO{more}"
                    );
                }
                return Err(Errno::EIO);
            }
            at += n as u64;
        }
        Ok(())
    }

    /// Overwrites `data` at byte `offset` of slots already written: a copy through the
    /// mapping.
    pub fn overwrite_at(&self, data: &[u8], offset: u64) -> Result<()> {
        match self.mapped(offset, data.len()) {
            Some(p) => {
                // SAFETY: `mapped` checked that `[offset, offset + len)` lies inside the
                // live mapping (which `self` keeps until its Drop), so `p` is valid for
                // `data.len()` writes; `data` is a caller's slice, never memory of the
                // mapping, so they do not overlap. No other thread touches these bytes
                // meanwhile: a slot belongs to one block of one file, and the caller holds
                // that file's body lock for writing.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
                Ok(())
            }
            None => self.write_at(data, offset),
        }
    }

    /// The mapped address of `len` bytes at byte `offset`, when mapped.
    fn mapped(&self, offset: u64, len: usize) -> Option<*mut u8> {
        let end = offset.checked_add(len as u64)?;
        (self.map != 0 && end <= self.cap * BLOCK_SIZE)
            .then(|| (self.map + offset as usize) as *mut u8)
    }

    /// Writes `data` at byte `offset` of the data file with `pwrite`: for fresh slots,
    /// whose new pages the kernel then fills without zeroing them first.
    pub fn write_at(&self, data: &[u8], offset: u64) -> Result<()> {
        self.file.write_all_at(data, offset).map_err(errno)
    }

    /// Fills `out` from byte `offset` of the data file.
    pub fn read_at(&self, mut out: &mut [u8], mut offset: u64) -> Result<()> {
        if let Some(p) = self.mapped(offset, out.len()) {
            // SAFETY: `mapped` checked that `[offset, offset + len)` lies inside the live
            // mapping (kept until Drop), so `p` is valid for `out.len()` reads, and `out`
            // is a distinct, writable slice of that length. No thread writes these bytes
            // meanwhile: the caller holds the file's body lock.
            unsafe { std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), out.len()) };
            return Ok(());
        }
        while !out.is_empty() {
            match self.file.read_at(out, offset) {
                // Past the end of the data file: never written, reads as zeros.
                Ok(0) => {
                    out.fill(0);
                    return Ok(());
                }
                Ok(n) => {
                    out = &mut out[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(errno(e)),
            }
        }
        Ok(())
    }

    /// Bytes of memory the data file holds now.
    pub fn held_bytes(&self) -> u64 {
        self.file.metadata().map_or(0, |m| m.blocks() * 512)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.map != 0 {
            // SAFETY: `map` and `cap * BLOCK_SIZE` are the address and length `mapped_file`
            // mapped (its length is a whole number of blocks), and no reference into the
            // mapping outlives `self`: data is only ever copied in and out.
            unsafe {
                libc::munmap(
                    self.map as *mut libc::c_void,
                    (self.cap * BLOCK_SIZE) as usize,
                )
            };
        }
    }
}

impl FreeSlots {
    /// Takes the first `n` slots of the free run `start..start + len`.
    fn take(&mut self, start: Slot, len: u64, n: u64) {
        self.runs.remove(&start);
        if len > n {
            self.runs.insert(start + n, len - n);
        }
        self.free_below -= n;
    }

    /// Adds a freed run, merging it with its neighbours and with the free top.
    fn insert(&mut self, mut start: Slot, mut len: u64) {
        if let Some((&prev, &plen)) = self.runs.range(..start).next_back()
            && prev + plen == start
        {
            self.runs.remove(&prev);
            self.free_below -= plen;
            start = prev;
            len += plen;
        }
        if let Some(next_len) = self.runs.remove(&(start + len)) {
            self.free_below -= next_len;
            len += next_len;
        }
        if start + len == self.top {
            self.top = start;
        } else {
            self.runs.insert(start, len);
            self.free_below += len;
        }
    }
}

#[cfg(test)]
pub(super) mod tests;
