//! POSIX behaviour every backend must show, compared with what tmpfs does.

use crate::harness::*;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::Path;

fn meta(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()))
}

fn write_file(p: &Path, data: &[u8]) {
    fs::write(p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

fn sleep_tick() {
    std::thread::sleep(std::time::Duration::from_millis(20));
}

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

fn hard_links_share_an_inode(m: Medium) {
    let v = Volume::start(m, &[]);
    write_file(&v.path("a"), b"x");
    fs::create_dir(v.path("d")).unwrap();
    fs::hard_link(v.path("a"), v.path("d/b")).unwrap();
    let (a, b) = (meta(&v.path("a")), meta(&v.path("d/b")));
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    fs::remove_file(v.path("a")).unwrap();
    assert_eq!(meta(&v.path("d/b")).nlink(), 1);
    assert_eq!(fs::read(v.path("d/b")).unwrap(), b"x");
    assert_eq!(errno(fs::hard_link(v.path("d"), v.path("d2"))), libc::EPERM);
    assert_eq!(
        errno(fs::hard_link(v.path("d/b"), v.path("d/b"))),
        libc::EEXIST
    );
}

fn symlinks(m: Medium) {
    let v = Volume::start(m, &[]);
    write_file(&v.path("target"), b"data");
    symlink("target", v.path("s")).unwrap();
    let long = "x/".repeat(1000) + "end";
    symlink(&long, v.path("long")).unwrap();
    assert!(meta(&v.path("s")).file_type().is_symlink());
    assert_eq!(fs::read_link(v.path("s")).unwrap(), Path::new("target"));
    assert_eq!(fs::read_link(v.path("long")).unwrap(), Path::new(&long));
    assert_eq!(meta(&v.path("long")).len(), long.len() as u64);
    assert_eq!(fs::read(v.path("s")).unwrap(), b"data");
    let too_long = "y".repeat(4096);
    assert_eq!(errno(symlink(&too_long, v.path("t"))), libc::ENAMETOOLONG);
    symlink("/etc/passwd-not-here", v.path("dangling")).unwrap();
    assert_eq!(errno(fs::read(v.path("dangling"))), libc::ENOENT);
}

fn special_files(m: Medium) {
    let v = Volume::start(m, &[]);
    let mk = |name: &str, mode: u32, dev: u64| {
        let c = cpath(&v.path(name));
        cvt(unsafe { libc::mknod(c.as_ptr(), mode, dev) } as i64).map(|_| ())
    };
    mk("fifo", libc::S_IFIFO | 0o644, 0).unwrap();
    mk("sock", libc::S_IFSOCK | 0o644, 0).unwrap();
    mk("chr", libc::S_IFCHR | 0o600, libc::makedev(1, 3)).unwrap();
    mk("blk", libc::S_IFBLK | 0o600, libc::makedev(7, 0)).unwrap();
    mk("reg", libc::S_IFREG | 0o600, 0).unwrap();
    assert!(meta(&v.path("fifo")).file_type().is_fifo());
    assert!(meta(&v.path("sock")).file_type().is_socket());
    assert!(meta(&v.path("chr")).file_type().is_char_device());
    assert_eq!(meta(&v.path("chr")).rdev(), libc::makedev(1, 3));
    assert!(meta(&v.path("blk")).file_type().is_block_device());
    assert!(meta(&v.path("reg")).file_type().is_file());
    assert_eq!(
        mk("fifo", libc::S_IFIFO | 0o644, 0).map_err(|e| e.raw_os_error()),
        Err(Some(libc::EEXIST))
    );
    // A FIFO passes data between a writer and a reader through the volume.
    let fifo = v.path("fifo");
    let writer = std::thread::spawn(move || fs::write(fifo, b"through the pipe").unwrap());
    assert_eq!(fs::read(v.path("fifo")).unwrap(), b"through the pipe");
    writer.join().unwrap();
}

fn directories_and_link_counts(m: Medium) {
    let v = Volume::start(m, &[]);
    let root_links = meta(&v.mnt).nlink();
    fs::create_dir(v.path("a")).unwrap();
    fs::create_dir(v.path("a/b")).unwrap();
    assert_eq!(meta(&v.mnt).nlink(), root_links + 1);
    assert_eq!(meta(&v.path("a")).nlink(), 3);
    assert_eq!(errno(fs::create_dir(v.path("a"))), libc::EEXIST);
    assert_eq!(errno(fs::remove_dir(v.path("a"))), libc::ENOTEMPTY);
    write_file(&v.path("a/f"), b"");
    assert_eq!(errno(fs::remove_dir(v.path("a/f"))), libc::ENOTDIR);
    assert_eq!(errno(fs::remove_file(v.path("a/b"))), libc::EISDIR);
    fs::remove_dir(v.path("a/b")).unwrap();
    assert_eq!(meta(&v.path("a")).nlink(), 2);
    let mut names: Vec<_> = fs::read_dir(v.path("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["f"]);
    assert_eq!(errno(fs::read_dir(v.path("nope"))), libc::ENOENT);
}

fn rename_replaces_and_moves(m: Medium) {
    let v = Volume::start(m, &[]);
    write_file(&v.path("a"), b"A");
    write_file(&v.path("b"), b"B");
    let b_ino = meta(&v.path("b")).ino();
    fs::rename(v.path("a"), v.path("b")).unwrap();
    assert_eq!(fs::read(v.path("b")).unwrap(), b"A");
    assert_ne!(meta(&v.path("b")).ino(), b_ino);
    assert_eq!(errno(fs::metadata(v.path("a"))), libc::ENOENT);
    fs::create_dir_all(v.path("d1/sub")).unwrap();
    fs::create_dir(v.path("d2")).unwrap();
    fs::rename(v.path("d1/sub"), v.path("d2/sub")).unwrap();
    assert_eq!(
        (meta(&v.path("d1")).nlink(), meta(&v.path("d2")).nlink()),
        (2, 3)
    );
    // A directory cannot move below itself, nor replace a non-empty directory or a file.
    assert_eq!(
        errno(fs::rename(v.path("d2"), v.path("d2/sub/x"))),
        libc::EINVAL
    );
    fs::create_dir(v.path("d1/full")).unwrap();
    write_file(&v.path("d1/full/f"), b"");
    assert_eq!(
        errno(fs::rename(v.path("d2/sub"), v.path("d1/full"))),
        libc::ENOTEMPTY
    );
    assert_eq!(
        errno(fs::rename(v.path("d2/sub"), v.path("b"))),
        libc::ENOTDIR
    );
    assert_eq!(
        errno(fs::rename(v.path("b"), v.path("d2/sub"))),
        libc::EISDIR
    );
    // Replacing an empty directory works.
    fs::create_dir(v.path("d1/empty")).unwrap();
    fs::rename(v.path("d2/sub"), v.path("d1/empty")).unwrap();
    assert_eq!(
        (meta(&v.path("d1")).nlink(), meta(&v.path("d2")).nlink()),
        (4, 2)
    );
}

fn renameat2(from: &Path, to: &Path, flags: u32) -> std::io::Result<i64> {
    let (a, b) = (cpath(from), cpath(to));
    cvt(unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    })
}

fn rename_noreplace_and_exchange(m: Medium) {
    let v = Volume::start(m, &[]);
    write_file(&v.path("a"), b"A");
    write_file(&v.path("b"), b"B");
    assert_eq!(
        errno(renameat2(
            &v.path("a"),
            &v.path("b"),
            libc::RENAME_NOREPLACE
        )),
        libc::EEXIST
    );
    renameat2(&v.path("a"), &v.path("c"), libc::RENAME_NOREPLACE).unwrap();
    renameat2(&v.path("c"), &v.path("b"), libc::RENAME_EXCHANGE).unwrap();
    assert_eq!(
        (
            fs::read(v.path("b")).unwrap(),
            fs::read(v.path("c")).unwrap()
        ),
        (b"A".to_vec(), b"B".to_vec())
    );
    // Exchange a file with a directory in another directory: link counts follow.
    fs::create_dir_all(v.path("d/sub")).unwrap();
    renameat2(&v.path("c"), &v.path("d/sub"), libc::RENAME_EXCHANGE).unwrap();
    assert!(meta(&v.path("c")).is_dir());
    assert_eq!(fs::read(v.path("d/sub")).unwrap(), b"B");
    assert_eq!(meta(&v.path("d")).nlink(), 2);
    assert_eq!(
        errno(renameat2(&v.path("x"), &v.path("b"), libc::RENAME_EXCHANGE)),
        libc::ENOENT
    );
    assert_eq!(
        errno(renameat2(&v.path("b"), &v.path("y"), libc::RENAME_EXCHANGE)),
        libc::ENOENT
    );
}

fn chmod_chown_and_ctime(m: Medium) {
    let v = Volume::start(m, &[]);
    let p = v.path("f");
    write_file(&p, b"");
    let before = meta(&p);
    sleep_tick();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o4751)).unwrap();
    let after = meta(&p);
    assert_eq!(after.mode() & 0o7777, 0o4751);
    assert!(after.ctime_nsec() != before.ctime_nsec() || after.ctime() != before.ctime());
    assert_eq!(after.mtime_nsec(), before.mtime_nsec());
    std::os::unix::fs::chown(&p, Some(1000), Some(2000)).unwrap();
    let md = meta(&p);
    assert_eq!((md.uid(), md.gid()), (1000, 2000));
    // chown drops setuid (the kernel asks the filesystem to, as on tmpfs).
    assert_eq!(md.mode() & 0o7000, 0);
    std::os::unix::fs::lchown(&p, Some(0), None).unwrap();
    assert_eq!(meta(&p).uid(), 0);
}

fn utimens(p: &Path, times: [libc::timespec; 2]) -> std::io::Result<i64> {
    let c = cpath(p);
    cvt(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } as i64)
}

fn utimensat_nanoseconds(m: Medium) {
    let v = Volume::start(m, &[]);
    let p = v.path("f");
    write_file(&p, b"");
    let ts = |sec, nsec| libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    utimens(
        &p,
        [
            ts(1_000_000_000, 123_456_789),
            ts(1_500_000_000, 987_654_321),
        ],
    )
    .unwrap();
    let md = meta(&p);
    assert_eq!((md.atime(), md.atime_nsec()), (1_000_000_000, 123_456_789));
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_500_000_000, 987_654_321));
    // UTIME_OMIT leaves a time alone; UTIME_NOW sets it to now.
    utimens(&p, [ts(0, libc::UTIME_OMIT), ts(0, libc::UTIME_NOW)]).unwrap();
    let md = meta(&p);
    assert_eq!((md.atime(), md.atime_nsec()), (1_000_000_000, 123_456_789));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (md.mtime() - now).abs() <= 2,
        "mtime {} vs now {now}",
        md.mtime()
    );
    // Times before 1970 survive too.
    utimens(&p, [ts(-1_000, 5), ts(-86_400, 0)]).unwrap();
    assert_eq!((meta(&p).atime(), meta(&p).mtime()), (-1_000, -86_400));
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
    assert_eq!(
        errno(OpenOptions::new().write(true).open(&v.mnt).map(|_| ())),
        libc::EISDIR
    );
}

fn xattr_set(p: &Path, name: &str, value: &[u8], flags: i32) -> std::io::Result<i64> {
    let (c, n) = (cpath(p), std::ffi::CString::new(name).unwrap());
    cvt(unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    } as i64)
}

fn xattr_get(p: &Path, name: &str, size: usize) -> std::io::Result<Vec<u8>> {
    let (c, n) = (cpath(p), std::ffi::CString::new(name).unwrap());
    let mut buf = vec![0u8; size];
    let len = cvt(
        unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), size) } as i64,
    )?;
    buf.truncate(if size == 0 { 0 } else { len as usize });
    if size == 0 {
        Ok(vec![0; len as usize])
    } else {
        Ok(buf)
    }
}

fn xattr_list(p: &Path) -> Vec<String> {
    let c = cpath(p);
    let mut buf = vec![0u8; 4096];
    let len =
        cvt(unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) } as i64)
            .unwrap();
    let mut names: Vec<String> = buf[..len as usize]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect();
    names.sort();
    names
}

fn xattrs(m: Medium) {
    let v = Volume::start(m, &[]);
    let p = v.path("f");
    write_file(&p, b"");
    for ns in ["user.a", "trusted.b", "security.c"] {
        xattr_set(&p, ns, ns.as_bytes(), 0).unwrap();
    }
    assert_eq!(xattr_list(&p), ["security.c", "trusted.b", "user.a"]);
    assert_eq!(xattr_get(&p, "user.a", 100).unwrap(), b"user.a");
    assert_eq!(xattr_get(&p, "user.a", 0).unwrap().len(), 6, "size query");
    assert_eq!(errno(xattr_get(&p, "user.a", 2)), libc::ERANGE);
    assert_eq!(errno(xattr_get(&p, "user.none", 10)), libc::ENODATA);
    assert_eq!(
        errno(xattr_set(&p, "user.a", b"x", libc::XATTR_CREATE)),
        libc::EEXIST
    );
    assert_eq!(
        errno(xattr_set(&p, "user.z", b"x", libc::XATTR_REPLACE)),
        libc::ENODATA
    );
    // Values up to 3000 bytes: ext4 under a disk volume keeps an inode's xattrs in at
    // most one 4 KiB block.
    xattr_set(&p, "user.a", &[1; 3000], libc::XATTR_REPLACE).unwrap();
    assert_eq!(xattr_get(&p, "user.a", 10_000).unwrap(), vec![1; 3000]);
    let (c, n) = (cpath(&p), std::ffi::CString::new("user.a").unwrap());
    cvt(unsafe { libc::lremovexattr(c.as_ptr(), n.as_ptr()) } as i64).unwrap();
    assert_eq!(xattr_list(&p), ["security.c", "trusted.b"]);
    // Directories carry xattrs too.
    xattr_set(&v.mnt, "user.dir", b"yes", 0).unwrap();
    assert_eq!(xattr_get(&v.mnt, "user.dir", 10).unwrap(), b"yes");
}

fn fallocate(f: &File, mode: i32, off: i64, len: i64) -> std::io::Result<i64> {
    cvt(unsafe { libc::fallocate(f.as_raw_fd(), mode, off, len) } as i64)
}

fn fallocate_modes(m: Medium) {
    let v = Volume::start(m, &[]);
    let p = v.path("f");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&p)
        .unwrap();
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
    assert_eq!(used(&v), base);
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
    cvt(unsafe { libc::lseek(f.as_raw_fd(), off, whence) })
}

fn seek_data_and_hole(m: Medium) {
    let v = Volume::start(m, &[]);
    let p = v.path("sparse");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&p)
        .unwrap();
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
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&p)
        .unwrap();
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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while used(&v) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "space not returned after close: {}",
            used(&v)
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn times_follow_changes(m: Medium) {
    let v = Volume::start(m, &[]);
    fs::create_dir(v.path("d")).unwrap();
    let d0 = meta(&v.path("d"));
    sleep_tick();
    write_file(&v.path("d/f"), b"1");
    let d1 = meta(&v.path("d"));
    assert!(
        (d1.mtime(), d1.mtime_nsec()) > (d0.mtime(), d0.mtime_nsec()),
        "create updates dir mtime"
    );
    let f0 = meta(&v.path("d/f"));
    sleep_tick();
    OpenOptions::new()
        .append(true)
        .open(v.path("d/f"))
        .unwrap()
        .write_all(b"2")
        .unwrap();
    let f1 = meta(&v.path("d/f"));
    assert!(
        (f1.mtime(), f1.mtime_nsec()) > (f0.mtime(), f0.mtime_nsec()),
        "write updates mtime"
    );
    assert!(
        (f1.ctime(), f1.ctime_nsec()) > (f0.ctime(), f0.ctime_nsec()),
        "write updates ctime"
    );
    sleep_tick();
    fs::hard_link(v.path("d/f"), v.path("d/g")).unwrap();
    let f2 = meta(&v.path("d/f"));
    assert!(
        (f2.ctime(), f2.ctime_nsec()) > (f1.ctime(), f1.ctime_nsec()),
        "link updates ctime"
    );
    sleep_tick();
    fs::remove_file(v.path("d/g")).unwrap();
    let d2 = meta(&v.path("d"));
    assert!(
        (d2.mtime(), d2.mtime_nsec()) > (d1.mtime(), d1.mtime_nsec()),
        "unlink updates dir mtime"
    );
}

fn new_files_belong_to_the_caller(m: Medium) {
    let v = Volume::start(m, &[]);
    let out = sh_as(
        1000,
        1000,
        &format!(
            "umask 022; echo hi > {0}/u && mkdir {0}/ud",
            v.mnt.display()
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = meta(&v.path("u"));
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o777), (1000, 1000, 0o644));
    // A setgid directory passes its group on, and its setgid bit to subdirectories.
    fs::create_dir(v.path("shared")).unwrap();
    std::os::unix::fs::chown(v.path("shared"), None, Some(3000)).unwrap();
    fs::set_permissions(v.path("shared"), fs::Permissions::from_mode(0o2777)).unwrap();
    let out = sh_as(
        1000,
        1000,
        &format!(
            "echo x > {0}/shared/f && mkdir {0}/shared/sub",
            v.mnt.display()
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        (
            meta(&v.path("shared/f")).uid(),
            meta(&v.path("shared/f")).gid()
        ),
        (1000, 3000)
    );
    let sub = meta(&v.path("shared/sub"));
    assert_eq!((sub.gid(), sub.mode() & 0o2000), (3000, 0o2000));
}

fn permissions_are_enforced(m: Medium) {
    let v = Volume::start(m, &[]);
    write_file(&v.path("secret"), b"root only");
    fs::set_permissions(v.path("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    let out = sh_as(1000, 1000, &format!("cat {}/secret", v.mnt.display()));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    let out = sh_as(1000, 1000, &format!("echo x >> {}/secret", v.mnt.display()));
    assert!(!out.status.success());
    assert_eq!(fs::read(v.path("secret")).unwrap(), b"root only");
}

fn names_at_the_limit(m: Medium) {
    let v = Volume::start(m, &[]);
    write_file(&v.path(&"n".repeat(255)), b"ok");
    assert_eq!(fs::read(v.path(&"n".repeat(255))).unwrap(), b"ok");
    assert_eq!(
        errno(fs::write(v.path(&"n".repeat(256)), b"")),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        errno(fs::metadata(v.path(&"n".repeat(256)))),
        libc::ENAMETOOLONG
    );
}

fn readdir_while_changing(m: Medium) {
    let v = Volume::start(m, &[]);
    let d = v.path("d");
    fs::create_dir(&d).unwrap();
    for i in 0..2000 {
        write_file(&d.join(format!("keep{i}")), b"");
        write_file(&d.join(format!("drop{i}")), b"");
    }
    let mut seen = std::collections::HashSet::new();
    let it = fs::read_dir(&d).unwrap();
    for (n, e) in it.enumerate() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(seen.insert(name.clone()), "{name} listed twice");
        // Change the directory while the listing runs.
        if n < 2000 {
            let _ = fs::remove_file(d.join(format!("drop{n}")));
            write_file(&d.join(format!("new{n}")), b"");
        }
    }
    for i in 0..2000 {
        assert!(
            seen.contains(&format!("keep{i}")),
            "keep{i} missing from the listing"
        );
    }
}

fn mmap_read_and_shared_write(m: Medium) {
    let v = Volume::start(m, &[]);
    let p = v.path("mapped");
    write_file(&p, &[1; 3 * 4096]);
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    let len = 3 * 4096;
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

fn inode_numbers_are_distinct_and_stable(m: Medium) {
    let v = Volume::start(m, &[]);
    let mut inos = std::collections::HashSet::new();
    for i in 0..100 {
        write_file(&v.path(&format!("f{i}")), b"");
        assert!(inos.insert(meta(&v.path(&format!("f{i}"))).ino()));
    }
    let ino = meta(&v.path("f7")).ino();
    fs::rename(v.path("f7"), v.path("renamed")).unwrap();
    assert_eq!(meta(&v.path("renamed")).ino(), ino);
    assert_eq!(meta(&v.mnt).ino(), 1);
}

on_every_medium!(
    create_write_read,
    hard_links_share_an_inode,
    symlinks,
    special_files,
    directories_and_link_counts,
    rename_replaces_and_moves,
    rename_noreplace_and_exchange,
    chmod_chown_and_ctime,
    utimensat_nanoseconds,
    truncate_up_and_down,
    xattrs,
    fallocate_modes,
    seek_data_and_hole,
    sparse_files_hold_no_space,
    unlinked_open_file_stays_readable,
    times_follow_changes,
    new_files_belong_to_the_caller,
    permissions_are_enforced,
    names_at_the_limit,
    readdir_while_changing,
    mmap_read_and_shared_write,
    copy_file_range_copies,
    inode_numbers_are_distinct_and_stable,
);
