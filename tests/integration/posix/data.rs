//! File data: reads and writes, truncate, fallocate, holes, unlinked open files, mmap, copy_file_range.

use super::*;
use crate::harness::*;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

fn create_write_read(m: Medium) {
    let v = Volume::start(m, &[]);
    let p = v.path("f");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    write_file(&p, &data);
    assert_eq!(fs::read(&p).unwrap(), data);
    let md = meta(&p);
    assert_eq!(md.len(), data.len() as u64);
    assert_eq!(md.blocks(), 300_000u64.div_ceil(4096) * 8);
    // Overwrite in the middle, append at the end.
    let mut f = OpenOptions::new().write(true).open(&p).unwrap();
    f.seek(SeekFrom::Start(1000)).unwrap();
    f.write_all(b"MIDDLE").unwrap();
    let mut f = OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(b"END").unwrap();
    let back = fs::read(&p).unwrap();
    assert_eq!(&back[1000..1006], b"MIDDLE");
    assert_eq!(&back[back.len() - 3..], b"END");
    assert_eq!(back.len(), data.len() + 3);
}

fn truncate_up_and_down(m: Medium) {
    let v = Volume::start(m, &[]);
    let p = v.path("f");
    write_file(&p, &[0xAB; 10_000]);
    let mtime = meta(&p).mtime_nsec();
    sleep_tick();
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(5000).unwrap();
    assert_ne!(meta(&p).mtime_nsec(), mtime);
    assert_eq!(meta(&p).blocks(), 16);
    f.set_len(20_000).unwrap();
    let back = fs::read(&p).unwrap();
    assert_eq!(back.len(), 20_000);
    assert!(back[..5000].iter().all(|&b| b == 0xAB));
    assert!(
        back[5000..].iter().all(|&b| b == 0),
        "data past a shrink must read as zeros"
    );
    assert_eq!(
        meta(&p).blocks(),
        16,
        "growing by truncate allocates nothing"
    );
    drop(f);
    // O_TRUNC empties the file.
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    assert_eq!((meta(&p).len(), meta(&p).blocks()), (0, 0));
    // Even of an empty file, an O_TRUNC open moves the modification and change times
    // (with FUSE_ATOMIC_O_TRUNC the daemon truncates in OPEN, and must do so too).
    let times = |p: &std::path::Path| {
        let m = meta(p);
        ((m.mtime(), m.mtime_nsec()), (m.ctime(), m.ctime_nsec()))
    };
    let before = times(&p);
    sleep_tick();
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    let after = times(&p);
    assert!(
        after.0 > before.0 && after.1 > before.1,
        "{before:?} -> {after:?}"
    );
    f.write_all(b"again").unwrap();
    drop(f);
    assert_eq!(fs::read(&p).unwrap(), b"again");
    assert_eq!(
        errno(OpenOptions::new().write(true).open(&v.mnt).map(|_| ())),
        libc::EISDIR
    );
}

fn fallocate(f: &File, mode: i32, off: i64, len: i64) -> std::io::Result<i64> {
    // SAFETY: `f` is open for the call; fallocate takes integers otherwise.
    cvt(unsafe { libc::fallocate(f.as_raw_fd(), mode, off, len) } as i64)
}

fn fallocate_modes(m: Medium) {
    let v = Volume::start(m, &[]);
    let p = v.path("f");
    let f = open_rw(&p);
    let used = |v: &Volume| v.statvfs().f_blocks - v.statvfs().f_bfree;
    let base = used(&v);
    fallocate(&f, 0, 0, 16384).unwrap();
    assert_eq!((meta(&p).len(), meta(&p).blocks()), (16384, 32));
    assert_eq!(used(&v) - base, 4);
    fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 16384, 8192).unwrap();
    assert_eq!((meta(&p).len(), meta(&p).blocks()), (16384, 48));
    // Fill with data, read it once (into the page cache), then punch and zero.
    (&f).write_all(&[9; 16384]).unwrap();
    let mut buf = vec![0; 16384];
    (&f).read_exact_at_start(&mut buf);
    fallocate(
        &f,
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        4096,
        4096,
    )
    .unwrap();
    assert_eq!(meta(&p).blocks(), 40);
    (&f).read_exact_at_start(&mut buf);
    assert!(
        buf[4096..8192].iter().all(|&b| b == 0),
        "punched range reads zeros"
    );
    assert!(buf[..4096].iter().chain(&buf[8192..]).all(|&b| b == 9));
    fallocate(&f, libc::FALLOC_FL_ZERO_RANGE, 8192, 4096).unwrap();
    (&f).read_exact_at_start(&mut buf);
    assert!(
        buf[8192..12288].iter().all(|&b| b == 0),
        "zeroed range reads zeros"
    );
    assert!(buf[12288..].iter().all(|&b| b == 9));
    assert_eq!(
        meta(&p).blocks(),
        40,
        "zero range keeps the space allocated"
    );
    assert_eq!(
        errno(fallocate(&f, libc::FALLOC_FL_PUNCH_HOLE, 0, 4096)),
        libc::EOPNOTSUPP
    );
    assert_eq!(
        errno(fallocate(&f, libc::FALLOC_FL_COLLAPSE_RANGE, 0, 4096)),
        libc::EOPNOTSUPP
    );
    drop(f);
    fs::remove_file(&p).unwrap();
    // close(2) returns before the kernel's RELEASE (sent in the background) is served, and
    // a second request thread may serve UNLINK first: the space comes back at RELEASE.
    eventually("the space of the closed, unlinked file", SOON, || {
        used(&v) == base
    });
}

trait ReadAtStart {
    fn read_exact_at_start(self, buf: &mut [u8]);
}

impl ReadAtStart for &File {
    fn read_exact_at_start(self, buf: &mut [u8]) {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, 0).unwrap();
    }
}

fn lseek(f: &File, off: i64, whence: i32) -> std::io::Result<i64> {
    // SAFETY: `f` is open for the call; lseek takes integers otherwise.
    cvt(unsafe { libc::lseek(f.as_raw_fd(), off, whence) })
}

fn seek_data_and_hole(m: Medium) {
    let v = Volume::start(m, &[]);
    let p = v.path("sparse");
    let f = open_rw(&p);
    std::os::unix::fs::FileExt::write_all_at(&f, b"data", 1 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"more", 3 << 20).unwrap();
    f.set_len(4 << 20).unwrap();
    assert_eq!(lseek(&f, 0, libc::SEEK_DATA).unwrap(), 1 << 20);
    assert_eq!(lseek(&f, 0, libc::SEEK_HOLE).unwrap(), 0);
    assert_eq!(
        lseek(&f, (1 << 20) + 1, libc::SEEK_HOLE).unwrap(),
        (1 << 20) + 4096
    );
    assert_eq!(
        lseek(&f, (1 << 20) + 4096, libc::SEEK_DATA).unwrap(),
        3 << 20
    );
    assert_eq!(
        lseek(&f, (3 << 20) + 4096, libc::SEEK_HOLE).unwrap(),
        (3 << 20) + 4096
    );
    assert_eq!(
        errno(lseek(&f, (3 << 20) + 4096, libc::SEEK_DATA)),
        libc::ENXIO
    );
    assert_eq!(errno(lseek(&f, 4 << 20, libc::SEEK_HOLE)), libc::ENXIO);
}

fn sparse_files_hold_no_space(m: Medium) {
    let v = Volume::start(m, &["--size-limit", "1Mi"]);
    let base = v.used();
    let p = v.path("sparse");
    let f = open_rw(&p);
    std::os::unix::fs::FileExt::write_all_at(&f, b"end", (100u64 << 30) - 3).unwrap();
    let md = meta(&p);
    assert_eq!(
        (md.len(), md.blocks()),
        (100 << 30, 8),
        "a 100 GiB file with one block of data"
    );
    assert_eq!(v.used() - base, 4096);
    v.assert_counters_match_backing();
    let mut tail = vec![0; 4096];
    let r = File::open(&p).unwrap();
    std::os::unix::fs::FileExt::read_exact_at(&r, &mut tail, (100u64 << 30) - 4096).unwrap();
    assert_eq!(&tail[4093..], b"end");
    assert!(tail[..4093].iter().all(|&b| b == 0));
}

fn unlinked_open_file_stays_readable(m: Medium) {
    let v = Volume::start(m, &[]);
    let p = v.path("f");
    let base = v.used() / 4096;
    write_file(&p, &[5; 1 << 20]);
    let used = |v: &Volume| v.used() / 4096 - base;
    let mut f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    fs::remove_file(&p).unwrap();
    assert_eq!(errno(fs::metadata(&p)), libc::ENOENT);
    f.write_all(b"still writable").unwrap();
    let mut back = Vec::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut back).unwrap();
    assert_eq!(&back[..14], b"still writable");
    assert_eq!(back.len(), 1 << 20);
    assert_eq!(f.metadata().unwrap().nlink(), 0);
    assert_eq!(used(&v), 256, "space held while the file is open");
    drop(f);
    // RELEASE reaches the daemon after close(2) returns.
    eventually("the space to come back after the last close", SOON, || {
        used(&v) == 0
    });
}

fn mmap_read_and_shared_write(m: Medium) {
    let v = Volume::start(m, &[]);
    let p = v.path("mapped");
    write_file(&p, &[1; 3 * 4096]);
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    let len = 3 * 4096;
    // SAFETY: mmap makes a new shared mapping of the first `len` bytes of `f`, a file of
    // exactly that length, at an address the kernel chooses (MAP_FAILED asserted against).
    // The slice covers that mapping, whose pages are the file's (initialised), and is the
    // only reference to it; msync and munmap take the same address and length, and the
    // slice is not used after the munmap. Nothing truncates the file meanwhile.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(
            addr,
            libc::MAP_FAILED,
            "{}",
            std::io::Error::last_os_error()
        );
        let s = std::slice::from_raw_parts_mut(addr as *mut u8, len);
        assert!(s.iter().all(|&b| b == 1));
        s[4096..4096 + 7].copy_from_slice(b"mmapped");
        assert_eq!(libc::msync(addr, len, libc::MS_SYNC), 0);
        libc::munmap(addr, len);
    }
    drop(f);
    let back = fs::read(&p).unwrap();
    assert_eq!(&back[4096..4096 + 7], b"mmapped");
    assert!(back[..4096].iter().all(|&b| b == 1));
}

fn copy_file_range_copies(m: Medium) {
    let v = Volume::start(m, &[]);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    write_file(&v.path("src"), &data);
    let (s, d) = (
        File::open(v.path("src")).unwrap(),
        File::create(v.path("dst")).unwrap(),
    );
    let mut copied = 0;
    while copied < data.len() {
        // SAFETY: `s` and `d` are open for the call; null offset pointers mean the files'
        // own offsets.
        let n = unsafe {
            libc::copy_file_range(
                s.as_raw_fd(),
                std::ptr::null_mut(),
                d.as_raw_fd(),
                std::ptr::null_mut(),
                data.len() - copied,
                0,
            )
        };
        assert!(
            n > 0,
            "copy_file_range: {}",
            std::io::Error::last_os_error()
        );
        copied += n as usize;
    }
    drop(d);
    assert_eq!(fs::read(v.path("dst")).unwrap(), data);
}

on_every_medium!(
    create_write_read,
    truncate_up_and_down,
    fallocate_modes,
    seek_data_and_hole,
    sparse_files_hold_no_space,
    unlinked_open_file_stays_readable,
    mmap_read_and_shared_write,
    copy_file_range_copies,
);
