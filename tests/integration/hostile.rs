//! Hostile input: unprivileged users against each other and against the node, names and
//! paths at the limits, a huge directory listed while it changes.

use crate::harness::*;
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

on_every_medium!(
    users_cannot_take_what_is_not_theirs,
    setuid_bits_give_nothing,
    a_path_of_5000_bytes_through_at_calls,
    a_directory_of_100000_entries_listed_while_it_changes,
);

fn users_cannot_take_what_is_not_theirs(m: Medium) {
    let v = Volume::start(m, &[]);
    let mnt = v.mnt.display();
    fs::set_permissions(&v.mnt, fs::Permissions::from_mode(0o1777)).unwrap();
    let ok = |uid: u32, script: &str| {
        let out = sh_as(uid, uid, script);
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let refused = |uid: u32, script: &str, why: &str| {
        let out = sh_as(uid, uid, script);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(why),
            "{script}: {err}"
        );
    };
    ok(
        1000,
        &format!("echo mine > {mnt}/a && chmod 600 {mnt}/a && mkdir {mnt}/d && echo x > {mnt}/d/f"),
    );
    refused(1001, &format!("cat {mnt}/a"), "Permission denied");
    refused(1001, &format!("echo theirs > {mnt}/a"), "Permission denied");
    refused(1001, &format!("rm -f {mnt}/a"), "Operation not permitted"); // sticky root
    refused(
        1001,
        &format!("mv {mnt}/a {mnt}/b"),
        "Operation not permitted",
    );
    refused(
        1001,
        &format!("chmod 666 {mnt}/a"),
        "Operation not permitted",
    );
    refused(
        1000,
        &format!("chown 1001 {mnt}/a"),
        "Operation not permitted",
    );
    refused(1000, &format!("chgrp 0 {mnt}/a"), "Operation not permitted");
    refused(1001, &format!("rm -rf {mnt}/d"), "Permission denied");
    assert_eq!(fs::read(v.path("a")).unwrap(), b"mine\n");
    let a = fs::metadata(v.path("a")).unwrap();
    assert_eq!((a.uid(), a.gid(), a.mode() & 0o7777), (1000, 1000, 0o600));
    assert!(v.path("d/f").exists());
}

fn setuid_bits_give_nothing(m: Medium) {
    let v = Volume::start(m, &[]);
    fs::set_permissions(&v.mnt, fs::Permissions::from_mode(0o777)).unwrap();
    let mnt = v.mnt.display();
    // A root-owned setuid copy of `id` in the volume: the mount is nosuid.
    sh(&format!("cp /usr/bin/id {mnt}/id && chmod 4755 {mnt}/id"));
    assert_eq!(
        fs::metadata(v.path("id")).unwrap().mode() & 0o7777,
        0o4755,
        "the bit is kept"
    );
    let out = sh_as(1000, 1000, &format!("{mnt}/id -u"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1000",
        "setuid gave root"
    );
    // A user's setgid bit for a group they are not in does not stick.
    let out = sh_as(
        1000,
        1000,
        &format!("echo x > {mnt}/g && chgrp 1000 {mnt}/g && chmod 2755 {mnt}/g"),
    );
    assert!(out.status.success());
    sh(&format!("chgrp 0 {mnt}/g"));
    let out = sh_as(
        1000,
        1000,
        &format!("chmod 2755 {mnt}/g; stat -c %a {mnt}/g"),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "755",
        "setgid of a foreign group"
    );
    // Another user's write clears the setuid bit of a writable file.
    let out = sh_as(
        1000,
        1000,
        &format!("echo x > {mnt}/s && chmod 4777 {mnt}/s"),
    );
    assert!(out.status.success());
    let out = sh_as(1001, 1001, &format!("echo y >> {mnt}/s"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::metadata(v.path("s")).unwrap().mode() & 0o7777,
        0o777,
        "a write kept the setuid bit"
    );
}

/// 25 levels of 200-byte names: 5,000 bytes of path, past PATH_MAX, reached one
/// component at a time with `mkdirat`/`openat`.
fn a_path_of_5000_bytes_through_at_calls(m: Medium) {
    let v = Volume::start(m, &[]);
    let mut dir = fs::File::open(&v.mnt).unwrap();
    for level in 0..25 {
        let name = CString::new(format!("{level:02}{}", "d".repeat(198))).unwrap();
        use std::os::fd::{AsRawFd, FromRawFd};
        let fd = dir.as_raw_fd();
        assert_eq!(
            // SAFETY: `fd` is `dir`'s open descriptor and `name` a NUL-terminated CString,
            // both alive for the call.
            unsafe { libc::mkdirat(fd, name.as_ptr(), 0o755) },
            0,
            "level {level}"
        );
        // SAFETY: `fd` is `dir`'s open descriptor and `name` a NUL-terminated CString, both
        // alive for the call.
        let next = unsafe { libc::openat(fd, name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
        assert!(
            next >= 0,
            "level {level}: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `next` is the descriptor the successful openat above returned (asserted):
        // new, owned by nothing else.
        dir = unsafe { fs::File::from_raw_fd(next) };
    }
    use std::os::fd::{AsRawFd, FromRawFd};
    let name = CString::new("deep").unwrap();
    // SAFETY: `dir` is open and `name` a NUL-terminated CString, both alive for the call;
    // O_CREAT takes the mode argument given.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_CREAT | libc::O_RDWR,
            0o644,
        )
    };
    assert!(fd >= 0);
    // SAFETY: `fd` is the descriptor the successful openat above returned (asserted): new,
    // owned by nothing else.
    let mut f = unsafe { fs::File::from_raw_fd(fd) };
    std::io::Write::write_all(&mut f, b"at the bottom").unwrap();
    let back = fs::read(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
    assert_eq!(back, b"at the bottom");
    drop((f, dir));
    // The whole path is too long for one call, as on any filesystem.
    let full: String = (0..25)
        .map(|l| format!("/{l:02}{}", "d".repeat(198)))
        .collect();
    assert_eq!(
        errno(fs::metadata(format!("{}{full}/deep", v.mnt.display()))),
        libc::ENAMETOOLONG
    );
    sh(&format!("rm -rf {}/00*", v.mnt.display()));
    assert_eq!(fs::read_dir(&v.mnt).unwrap().count(), 0);
    v.assert_counters_match_backing();
}

fn a_directory_of_100000_entries_listed_while_it_changes(m: Medium) {
    let v = Volume::start(m, &["--size-limit", "1Gi"]);
    let d = v.path("big");
    fs::create_dir(&d).unwrap();
    for i in 0..100_000 {
        fs::File::create(d.join(format!("keep{i}"))).unwrap();
    }
    // While one thread lists it, another renames, removes and creates entries in it;
    // the listing starts once the changes are under way, and says how far they got.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let changer = {
        let (d, done) = (d.clone(), done.clone());
        std::thread::spawn(move || {
            for i in 0..3000 {
                fs::rename(
                    d.join(format!("keep{}", 99_999 - i)),
                    d.join(format!("moved{i}")),
                )
                .unwrap();
                fs::File::create(d.join(format!("new{i}"))).unwrap();
                fs::remove_file(d.join(format!("new{i}"))).unwrap();
                done.store(i + 1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    while done.load(std::sync::atomic::Ordering::Relaxed) < 50 {
        std::thread::yield_now();
    }
    let mut seen = std::collections::HashSet::new();
    for e in fs::read_dir(&d).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(seen.insert(name.clone()), "{name} listed twice");
    }
    println!(
        "the listing ended after {} of 3000 changes",
        done.load(std::sync::atomic::Ordering::Relaxed)
    );
    changer.join().unwrap();
    // Entries untouched during the listing are all there (POSIX leaves the changed ones
    // unspecified).
    for i in 0..90_000 {
        assert!(
            seen.contains(&format!("keep{i}")),
            "keep{i} missing from the listing"
        );
    }
    assert_eq!(fs::read_dir(&d).unwrap().count(), 100_000);
    for i in 0..3000 {
        assert!(d.join(format!("moved{i}")).exists(), "moved{i}");
    }
    v.assert_counters_match_backing();
}
