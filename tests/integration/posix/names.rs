//! Names: links, symlinks, special files, directories, rename, long names, readdir, inode numbers.

use super::*;
use crate::harness::*;
use std::fs::{self};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, symlink};
use std::path::Path;

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
        // SAFETY: `c` is a NUL-terminated CString alive for the call; the mode and device
        // are integers.
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
    // SAFETY: AT_FDCWD resolves the paths against the working directory; `a` and `b` are
    // NUL-terminated CStrings alive for the call.
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

/// Names of `dir`, read one entry per `getdents64` call (so each call is a request that
/// resumes at the last entry's offset), calling `each` after each name; stops after
/// `limit` names.
fn list_one_by_one(dir: &Path, limit: usize, mut each: impl FnMut(&str)) -> Vec<String> {
    let f = fs::File::open(dir).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    let mut names = Vec::new();
    // Room for one entry with a name of up to 7 bytes (19-byte header, aligned to 8).
    let mut buf = [0u64; 4];
    while names.len() < limit {
        // SAFETY: `buf` is 32 writable bytes, as the length says; `fd` is open.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), 32) };
        assert!(n >= 0, "getdents64: {}", std::io::Error::last_os_error());
        if n == 0 {
            break;
        }
        // SAFETY: the kernel wrote `n` (at most 32) bytes of `buf`.
        let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
        let name = std::ffi::CStr::from_bytes_until_nul(&bytes[19..]).unwrap();
        let name = name.to_str().unwrap().to_string();
        if name != "." && name != ".." {
            each(&name);
            names.push(name);
        }
    }
    names
}

/// A listing ends, even when each entry it meets is renamed away and back (a renamed
/// entry is inserted again, after the others): tmpfs lists each once. Entries created
/// after the directory was opened may be left out, but `rewinddir` sees them (POSIX: as
/// a new `opendir` would).
fn a_listing_ends_when_its_entries_are_renamed_during_it(m: Medium) {
    let v = Volume::start(m, &[]);
    let d = v.path("d");
    fs::create_dir(&d).unwrap();
    for n in ["f0", "f1", "f2"] {
        write_file(&d.join(n), b"");
    }
    let away_and_back = |name: &str| {
        fs::rename(d.join(name), d.join(format!("{name}.x"))).unwrap();
        fs::rename(d.join(format!("{name}.x")), d.join(name)).unwrap();
    };
    // As scandir does it (the C library reads many entries per call).
    let mut seen = Vec::new();
    for e in fs::read_dir(&d).unwrap().take(30) {
        let name = e.unwrap().file_name().into_string().unwrap();
        away_and_back(&name);
        seen.push(name);
    }
    seen.sort();
    assert_eq!(seen, ["f0", "f1", "f2"], "each entry once");
    // One entry per call: every call resumes after entries renamed since.
    let mut seen = list_one_by_one(&d, 30, away_and_back);
    seen.sort();
    assert_eq!(seen, ["f0", "f1", "f2"], "each entry once, one per call");

    let c = cpath(&d);
    // SAFETY: `c` is a NUL-terminated path; the stream is closed below, and used only
    // until then.
    let dir = unsafe { libc::opendir(c.as_ptr()) };
    assert!(!dir.is_null());
    let count = |dir| {
        let mut n = 0;
        // SAFETY: `dir` is the open stream.
        while !unsafe { libc::readdir(dir) }.is_null() {
            n += 1;
        }
        n
    };
    assert_eq!(count(dir), 5, ". .. f0 f1 f2");
    write_file(&d.join("new"), b"");
    // SAFETY: `dir` is the open stream.
    unsafe { libc::rewinddir(dir) };
    assert_eq!(count(dir), 6, "rewinddir sees the entry created since");
    // SAFETY: `dir` is the open stream, not used after this.
    unsafe { libc::closedir(dir) };
}

/// `open(dir, O_TMPFILE)` gets EOPNOTSUPP (tmpfs makes the file): fuser 0.18 does not
/// know the kernel's `FUSE_TMPFILE` and answers it with ENOSYS itself, which the kernel
/// turns into EOPNOTSUPP, as for any filesystem without it. A change here must change
/// the README ("O_TMPFILE") too.
fn o_tmpfile_is_not_supported(m: Medium) {
    let v = Volume::start(m, &[]);
    let open_tmpfile = || {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o600)
            .open(&v.mnt)
    };
    assert_eq!(errno(open_tmpfile()), libc::EOPNOTSUPP);
    assert_eq!(errno(open_tmpfile()), libc::EOPNOTSUPP, "and again");
    assert_eq!(fs::read_dir(&v.mnt).unwrap().count(), 0, "nothing was made");
    // A named temporary file, the usual fallback, works.
    write_file(&v.path("tmp"), b"x");
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

/// Every entry of directory `dir` as `getdents64` returns it, `(name, d_ino)`, read
/// with a buffer of `size` bytes per call.
fn getdents(dir: &Path, size: usize) -> Vec<(String, u64)> {
    let f = fs::File::open(dir).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    let mut buf = vec![0u8; size];
    let mut out = Vec::new();
    loop {
        // SAFETY: `fd` is open for the loop's life and `buf` has room for `size` bytes.
        let n = cvt(unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), size) })
            .unwrap_or_else(|e| panic!("getdents64 of {} ({size} bytes): {e}", dir.display()));
        if n == 0 {
            return out;
        }
        let mut pos = 0;
        while pos < n as usize {
            let ino = u64::from_ne_bytes(buf[pos..pos + 8].try_into().unwrap());
            let reclen = u16::from_ne_bytes(buf[pos + 16..pos + 18].try_into().unwrap()) as usize;
            let name = &buf[pos + 19..pos + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap()];
            out.push((String::from_utf8(name.to_vec()).unwrap(), ino));
            pos += reclen;
        }
    }
}

/// `.` and `..` in a listing carry the numbers `stat` shows for the directory and its
/// parent (the root's `..` is the root), whether the listing is read whole or one entry
/// per call (each call then resumes at the previous entry's offset).
fn dot_and_dotdot_in_a_listing(m: Medium) {
    let v = Volume::start(m, &[]);
    fs::create_dir_all(v.path("a/b")).unwrap();
    write_file(&v.path("a/b/f"), b"");
    for (dir, parent) in [
        (v.mnt.clone(), v.mnt.clone()),
        (v.path("a"), v.mnt.clone()),
        (v.path("a/b"), v.path("a")),
    ] {
        let want = [(".", meta(&dir).ino()), ("..", meta(&parent).ino())];
        // 24 bytes hold one entry of a name up to 4 bytes long, never two.
        for size in [24, 32 << 10] {
            let got = getdents(&dir, size);
            for (name, ino) in want {
                let shown: Vec<u64> = got.iter().filter(|e| e.0 == name).map(|e| e.1).collect();
                assert_eq!(
                    shown,
                    [ino],
                    "{name} in {} read {size} bytes at a time: {got:?}",
                    dir.display()
                );
            }
        }
    }
}

/// The atomic-rename writer's steps, each as tmpfs answers them: `fsync` and `fdatasync`
/// of a directory (opened read-only, as programs do) succeed, before and after a rename
/// into it, and the entries are there. (That a disk volume's directory fsync reaches the
/// node's disk is `durability.rs`.)
fn fsync_of_a_directory(m: Medium) {
    let v = Volume::start(m, &[]);
    fs::create_dir(v.path("d")).unwrap();
    let mut f = fs::File::create(v.path("d/tmp")).unwrap();
    std::io::Write::write_all(&mut f, b"data").unwrap();
    f.sync_all().unwrap();
    let dir = fs::File::open(v.path("d")).unwrap();
    dir.sync_all().expect("fsync of a directory");
    fs::rename(v.path("d/tmp"), v.path("d/final")).unwrap();
    dir.sync_all().expect("fsync after a rename");
    dir.sync_data().expect("fdatasync of a directory");
    fs::File::open(v.mnt.clone())
        .unwrap()
        .sync_all()
        .expect("fsync of the root");
    assert_eq!(fs::read(v.path("d/final")).unwrap(), b"data");
    assert!(!v.path("d/tmp").exists());
}

on_every_medium!(
    fsync_of_a_directory,
    hard_links_share_an_inode,
    symlinks,
    special_files,
    directories_and_link_counts,
    rename_replaces_and_moves,
    rename_noreplace_and_exchange,
    names_at_the_limit,
    readdir_while_changing,
    a_listing_ends_when_its_entries_are_renamed_during_it,
    o_tmpfile_is_not_supported,
    inode_numbers_are_distinct_and_stable,
    dot_and_dotdot_in_a_listing,
);
