//! File handles (`name_to_handle_at`, `open_by_handle_at`: NFS export, fanotify,
//! container tools): each case runs on a tmpfs first, then on the volume, with the same
//! expectations, and most after `drop_caches`, when the kernel has forgotten the inodes
//! and must ask the daemon for them by number.

use super::*;
use crate::harness::*;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

fn contents(mut f: &fs::File) -> Vec<u8> {
    let mut v = Vec::new();
    f.read_to_end(&mut v).unwrap();
    v
}

/// `openat(dir, "..")`'s inode number.
fn parent_ino(dir: &fs::File) -> u64 {
    // SAFETY: `dir` is an open descriptor and the name is NUL-terminated.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c"..".as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0, "openat ..: {}", std::io::Error::last_os_error());
    // SAFETY: a descriptor just opened, owned by nothing else.
    let f = unsafe { <fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    f.metadata().unwrap().ino()
}

/// Every daemon log line that says a handler panicked (a lookup count gone wrong trips a
/// debug assertion in `forget`).
fn panics(v: &Volume) -> Vec<String> {
    v.log_text()
        .lines()
        .filter(|l| l.contains("panicked"))
        .map(str::to_string)
        .collect()
}

/// Handles of a file and of a directory three levels down open after the kernel forgot
/// both: the file reads and writes as itself, the directory is reconnected to its path
/// (the kernel climbs with `..` and finds each name in a listing) and its `..` is its
/// parent; and again while cached.
fn a_handle_opens_after_the_kernel_forgot(m: Medium) {
    let tmpfs = crate::conformance::Tmpfs::new("16m");
    let v = Volume::start(m, &[]);
    for root in [&tmpfs.path, &v.mnt] {
        let (f, d3) = (root.join("d1/d2/f"), root.join("d1/d2/d3"));
        fs::create_dir_all(&d3).unwrap();
        write_file(&f, b"kept");
        let (fh, dh) = (FileHandle::of(&f).unwrap(), FileHandle::of(&d3).unwrap());
        let want = (
            meta(&f).ino(),
            meta(&d3).ino(),
            meta(&root.join("d1/d2")).ino(),
        );
        for (round, before) in [("forgotten", "kept"), ("cached", "kept+")] {
            if round == "forgotten" {
                drop_caches();
            }
            let file = fh
                .open(root, libc::O_RDWR | libc::O_APPEND)
                .unwrap_or_else(|e| panic!("{round}: opening {} by handle: {e}", f.display()));
            assert_eq!(file.metadata().unwrap().ino(), want.0, "{round}");
            assert_eq!(contents(&file), before.as_bytes(), "{round}");
            (&file).write_all(b"+").unwrap();
            drop(file);
            let dir = dh
                .open(root, libc::O_RDONLY | libc::O_DIRECTORY)
                .unwrap_or_else(|e| panic!("{round}: opening {} by handle: {e}", d3.display()));
            assert_eq!(dir.metadata().unwrap().ino(), want.1, "{round}");
            assert_eq!(path_of(&dir), d3, "{round}: the directory has its path");
            assert_eq!(parent_ino(&dir), want.2, "{round}: its ..");
        }
        assert_eq!(
            fs::read(&f).unwrap(),
            b"kept++",
            "written through the handles"
        );
    }
    assert_eq!(panics(&v), Vec::<String>::new());
}

/// A deleted file's handle gets ESTALE, at once and after the kernel forgot it, and
/// never opens the files made after it (on disk, one of them likely takes the deleted
/// inode's number).
fn a_deleted_files_handle_is_stale(m: Medium) {
    let tmpfs = crate::conformance::Tmpfs::new("16m");
    let v = Volume::start(m, &[]);
    for root in [&tmpfs.path, &v.mnt] {
        let d = root.join("d");
        fs::create_dir(&d).unwrap();
        write_file(&d.join("old"), b"old");
        let h = FileHandle::of(&d.join("old")).unwrap();
        fs::remove_file(d.join("old")).unwrap();
        let stale = |when: &str| {
            let r = h.open(root, libc::O_RDONLY).map(|f| contents(&f));
            assert_eq!(errno(r), libc::ESTALE, "{when}, on {}", root.display());
        };
        stale("deleted");
        for i in 0..32 {
            write_file(&d.join(format!("new{i}")), b"new");
        }
        stale("new files made");
        drop_caches();
        stale("forgotten");
        // A directory's handle too.
        fs::create_dir(d.join("sub")).unwrap();
        let h = FileHandle::of(&d.join("sub")).unwrap();
        fs::remove_dir(d.join("sub")).unwrap();
        drop_caches();
        let r = h.open(root, libc::O_RDONLY | libc::O_DIRECTORY);
        assert_eq!(errno(r), libc::ESTALE, "a removed directory");
    }
    assert_eq!(panics(&v), Vec::<String>::new());
}

/// Another user makes a private directory and file and takes their handles (anyone may);
/// opening by handle needs `CAP_DAC_READ_SEARCH`, so that user gets EPERM, and root,
/// after the kernel forgot them, opens both (the daemon finds them whoever owns them).
fn handles_of_another_users_private_files(m: Medium) {
    let tmpfs = crate::conformance::Tmpfs::new("16m");
    let v = Volume::start(m, &[]);
    for root in [&tmpfs.path, &v.mnt] {
        fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let p = root.join("private");
        let out = sh_as(
            1000,
            1000,
            &format!(
                "mkdir -m 700 {0} && echo secret > {0}/s && chmod 600 {0}/s",
                p.display()
            ),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (pp, r) = (p.clone(), root.to_path_buf());
        let (fh, dh, theirs) = as_fs_user(1000, 1000, move || {
            let fh = FileHandle::of(&pp.join("s")).unwrap();
            let dh = FileHandle::of(&pp).unwrap();
            let theirs = fh.open(&r, libc::O_RDONLY).map(|_| ());
            (fh, dh, theirs)
        });
        assert_eq!(errno(theirs), libc::EPERM, "the user's open_by_handle_at");
        let cannot_read = sh_as(1001, 1001, &format!("cat {}/s", p.display()));
        assert!(!cannot_read.status.success(), "another user cannot read it");
        drop_caches();
        let file = fh.open(root, libc::O_RDONLY).unwrap();
        assert_eq!(contents(&file), b"secret\n");
        let dir = dh.open(root, libc::O_RDONLY | libc::O_DIRECTORY).unwrap();
        assert_eq!(path_of(&dir), p);
        assert_eq!(parent_ino(&dir), meta(root).ino());
    }
    assert_eq!(panics(&v), Vec::<String>::new());
}

/// The root's handle opens the root, and a handle of a directory just below it climbs
/// to it (its `..` is the root).
fn the_roots_handle_and_its_children(m: Medium) {
    let v = Volume::start(m, &[]);
    fs::create_dir(v.path("top")).unwrap();
    let (rh, th) = (
        FileHandle::of(&v.mnt).unwrap(),
        FileHandle::of(&v.path("top")).unwrap(),
    );
    drop_caches();
    let root = rh.open(&v.mnt, libc::O_RDONLY | libc::O_DIRECTORY).unwrap();
    assert_eq!(root.metadata().unwrap().ino(), 1);
    let top = th.open(&v.mnt, libc::O_RDONLY | libc::O_DIRECTORY).unwrap();
    assert_eq!(path_of(&top), v.path("top"));
    assert_eq!(parent_ino(&top), 1);
    assert_eq!(panics(&v), Vec::<String>::new());
}

/// A handle made before the daemon restarts (no hand-off: a new mount). A memory volume
/// starts empty, as a tmpfs mounted again: the file made anew at the same path, with the
/// same inode number, is not the handle's, which gets ESTALE. A disk volume serves the
/// same files; its new daemon knows no inode by number until it is looked up by name
/// (ESTALE until then), and then the handle opens it (same generation as before).
fn a_handle_across_a_restart(m: Medium) {
    let mut v = Volume::start(m, &[]);
    write_file(&v.path("f"), b"before");
    let (h, ino) = (
        FileHandle::of(&v.path("f")).unwrap(),
        meta(&v.path("f")).ino(),
    );
    v.restart();
    let open = || h.open(&v.mnt, libc::O_RDONLY).map(|f| contents(&f));
    if m == Medium::Disk {
        assert_eq!(errno(open()), libc::ESTALE, "not looked up yet");
    } else {
        write_file(&v.path("f"), b"after");
    }
    assert_eq!(meta(&v.path("f")).ino(), ino, "the same number");
    match m {
        Medium::Memory => assert_eq!(errno(open()), libc::ESTALE),
        Medium::Disk => assert_eq!(open().unwrap(), b"before"),
    }
    assert_eq!(panics(&v), Vec::<String>::new());
}

on_every_medium!(
    a_handle_across_a_restart,
    a_handle_opens_after_the_kernel_forgot,
    a_deleted_files_handle_is_stale,
    handles_of_another_users_private_files,
    the_roots_handle_and_its_children,
);
