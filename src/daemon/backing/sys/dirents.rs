//! Directory entries: `getdents64` and the parsing of its buffer. Safety as in
//! `sys.rs`.

use super::*;

/// Reads directory entries from `fd` starting at `offset` (a `d_off` cookie from an
/// earlier entry, or 0) into `buf`; returns the bytes filled (0 at the end).
pub fn getdents(fd: BorrowedFd<'_>, offset: i64, buf: &mut [u8]) -> Result<usize> {
    lseek(fd, offset, libc::SEEK_SET)?;
    // SAFETY: `fd` is borrowed (open), and the kernel writes at most `buf.len()` bytes to
    // `buf`, a live `&mut [u8]` of that length.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            fd.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    if rc < 0 {
        Err(trouble::last("getdents64"))
    } else {
        Ok(rc as usize)
    }
}

/// One entry of a `getdents64` buffer.
pub struct RawDirent<'a> {
    pub ino: u64,
    pub next_offset: i64,
    pub dtype: u8,
    pub name: &'a [u8],
}

/// Parses a `getdents64` buffer: `struct linux_dirent64` records (`d_ino`, `d_off`,
/// `d_reclen`, `d_type`, the name up to a NUL). A record that does not fit the buffer
/// (never from the kernel) ends the parse instead of a panic or an endless loop.
pub fn dirents(buf: &[u8]) -> impl Iterator<Item = RawDirent<'_>> {
    const HEAD: usize = 19;
    let mut rest = buf;
    std::iter::from_fn(move || {
        let (head, _) = rest.split_first_chunk::<HEAD>()?;
        let reclen = usize::from(u16::from_ne_bytes([head[16], head[17]]));
        let record = rest.get(HEAD..reclen)?;
        let ino = u64::from_ne_bytes(*head.first_chunk::<8>()?);
        let next_offset = i64::from_ne_bytes(*head[8..].first_chunk::<8>()?);
        let name = record.split(|&b| b == 0).next().unwrap_or(record);
        rest = &rest[reclen..];
        Some(RawDirent {
            ino,
            next_offset,
            dtype: head[18],
            name,
        })
    })
}

/// Byte ranges `[start, end)` of `fd` within `[from, to)` that hold allocated space,
/// unwritten (fallocated) and delayed-allocation extents included, from `FIEMAP`.
/// EOPNOTSUPP where the filesystem has no `FIEMAP` (tmpfs).
pub fn extents(fd: BorrowedFd<'_>, from: u64, to: u64) -> Result<Vec<(u64, u64)>> {
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    const FIEMAP_EXTENT_LAST: u32 = 1;
    const BATCH: usize = 64;
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Extent {
        logical: u64,
        physical: u64,
        length: u64,
        reserved64: [u64; 2],
        flags: u32,
        reserved: [u32; 3],
    }
    #[repr(C)]
    struct Fiemap {
        start: u64,
        length: u64,
        flags: u32,
        mapped: u32,
        count: u32,
        reserved: u32,
        extents: [Extent; BATCH],
    }
    let mut ranges = Vec::new();
    let mut pos = from;
    while pos < to {
        let mut m = Fiemap {
            start: pos,
            length: to - pos,
            flags: 0,
            mapped: 0,
            count: BATCH as u32,
            reserved: 0,
            extents: [Extent::default(); BATCH],
        };
        // SAFETY: `fd` is borrowed (open) and `m` is a live, writable Fiemap laid out as
        // the kernel's `struct fiemap` (repr(C), 32-byte header, `count` 56-byte extents),
        // so the kernel writes no more than it holds.
        if unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FIEMAP, &mut m as *mut Fiemap) } < 0 {
            let e = trouble::last("FIEMAP");
            return Err(if e.0 == libc::ENOTTY {
                Errno::EOPNOTSUPP
            } else {
                e
            });
        }
        // The kernel fills at most `count` extents; anything else ends the walk.
        let found = m.extents.get(..m.mapped as usize).unwrap_or_default();
        let end = |e: &Extent| e.logical.saturating_add(e.length);
        for e in found {
            ranges.push((e.logical.max(from), end(e).min(to)));
        }
        match found.last() {
            Some(last) if last.flags & FIEMAP_EXTENT_LAST == 0 && end(last) > pos => {
                pos = end(last)
            }
            _ => break,
        }
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ino: u64, off: i64, reclen: u16, name: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&ino.to_ne_bytes());
        r.extend_from_slice(&off.to_ne_bytes());
        r.extend_from_slice(&reclen.to_ne_bytes());
        r.push(libc::DT_REG);
        r.extend_from_slice(name);
        r.resize(r.len().max(usize::from(reclen)), 0);
        r
    }

    #[test]
    fn dirents_parse_records_and_stop_at_a_broken_one() {
        let mut buf = record(7, 1, 24, b"ab\0");
        buf.extend(record(8, 2, 32, b"longer\0"));
        let got: Vec<_> = dirents(&buf)
            .map(|e| (e.ino, e.next_offset, e.name))
            .collect();
        assert_eq!(got, [(7, 1, &b"ab"[..]), (8, 2, &b"longer"[..])]);
        // A record length of 0, one shorter than a header, one past the end: no panic,
        // no endless loop, the records before it are still read.
        for bad in [0u16, 10, 200] {
            let mut b = record(7, 1, 24, b"ab\0");
            b.extend(record(9, 3, bad, b"x\0"));
            b.truncate(24 + 24);
            assert_eq!(dirents(&b).count(), 1, "reclen {bad}");
        }
    }
}
