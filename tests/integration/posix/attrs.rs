//! Attributes: modes, owners, times, xattrs, permissions.

use super::*;
use crate::harness::*;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

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
    // SAFETY: `c` is a NUL-terminated CString and `times` the two timespecs utimensat
    // reads, both alive for the call.
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

fn xattr_set(p: &Path, name: &str, value: &[u8], flags: i32) -> std::io::Result<i64> {
    let (c, n) = (cpath(p), std::ffi::CString::new(name).unwrap());
    // SAFETY: `c` and `n` are NUL-terminated CStrings, and the kernel reads `value.len()`
    // bytes from `value`, a live slice.
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
        // SAFETY: `c` and `n` are NUL-terminated CStrings, and the kernel writes at most
        // `size` bytes to `buf`, a live Vec of that length.
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
        // SAFETY: `c` is a NUL-terminated CString, and the kernel writes at most
        // `buf.len()` bytes to `buf`, a live Vec of that length.
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
    // SAFETY: `c` and `n` are NUL-terminated CStrings alive for the call.
    cvt(unsafe { libc::lremovexattr(c.as_ptr(), n.as_ptr()) } as i64).unwrap();
    assert_eq!(xattr_list(&p), ["security.c", "trusted.b"]);
    // Directories carry xattrs too.
    xattr_set(&v.mnt, "user.dir", b"yes", 0).unwrap();
    assert_eq!(xattr_get(&v.mnt, "user.dir", 10).unwrap(), b"yes");
}

/// A value of 64 KiB (`XATTR_SIZE_MAX`) and a name of 255 bytes, as tmpfs takes them,
/// charged to the volume. A disk volume answers as its backing filesystem does: ext4
/// without `ea_inode` refuses a value that does not fit in one block (ENOSPC).
fn xattr_values_of_64_kib(m: Medium) {
    let v = Volume::start(m, &[]);
    let p = v.path("f");
    write_file(&p, b"");
    let big = vec![b'a'; 65536];
    let before = v.used();
    let got = xattr_set(&p, "user.long_attr", &big, 0);
    let accepted = match m {
        Medium::Memory => {
            got.expect("a 64 KiB value");
            true
        }
        Medium::Disk => {
            let probe = v.backing.parent().unwrap().join("xattr-probe");
            write_file(&probe, b"");
            let backing = xattr_set(&probe, "user.long_attr", &big, 0);
            assert_eq!(
                got.as_ref().map_err(|e| e.raw_os_error()).map(drop),
                backing.as_ref().map_err(|e| e.raw_os_error()).map(drop),
                "as the backing filesystem answers"
            );
            got.is_ok()
        }
    };
    if accepted {
        assert_eq!(xattr_get(&p, "user.long_attr", 65536).unwrap(), big);
        assert!(v.used() >= before + 65536, "charged to the volume");
        let (c, n) = (cpath(&p), std::ffi::CString::new("user.long_attr").unwrap());
        // SAFETY: both are NUL-terminated strings that outlive the call.
        cvt(unsafe { libc::lremovexattr(c.as_ptr(), n.as_ptr()) } as i64).unwrap();
        assert_eq!(v.used(), before, "given back");
    }
    let longest = format!("user.{}", "n".repeat(250));
    xattr_set(&p, &longest, b"v", 0).expect("a name of 255 bytes");
    assert_eq!(xattr_get(&p, &longest, 10).unwrap(), b"v");
    assert_eq!(
        errno(xattr_set(&p, &format!("{longest}n"), b"v", 0)),
        libc::ERANGE
    );
    assert_eq!(errno(xattr_set(&p, "user.b", &[0; 65537], 0)), libc::E2BIG);
}

/// POSIX ACLs are refused, as by a filesystem mounted without ACL support (the kernel
/// would not honour them): setting, reading or removing `system.posix_acl_*` gets
/// EOPNOTSUPP; `setfacl` says so for a named entry, and turns an ACL that only restates
/// the mode into a `chmod`; `getfacl` shows the mode. An ACL a disk volume's backing file
/// already had is not listed.
fn posix_acls_are_refused(m: Medium) {
    let v = Volume::start(m, &[]);
    let (f, d) = (v.path("f"), v.path("d"));
    write_file(&f, b"");
    fs::create_dir(&d).unwrap();
    // user::rw- user:1000:r-- group::r-- mask::r-- other::r-- (xattr version 2).
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 6u16, u32::MAX),
        (2, 4, 1000),
        (4, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 4, u32::MAX),
    ] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    let mode = meta(&f).mode();
    for (p, name) in [
        (&f, "system.posix_acl_access"),
        (&d, "system.posix_acl_default"),
    ] {
        assert_eq!(
            errno(xattr_set(p, name, &acl, 0)),
            libc::EOPNOTSUPP,
            "{name}"
        );
        assert_eq!(errno(xattr_get(p, name, 100)), libc::EOPNOTSUPP, "{name}");
    }
    assert_eq!(meta(&f).mode(), mode, "the mode is untouched");

    let out = Command::new("setfacl")
        .args(["-m", "u:1000:r"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success(), "setfacl of a named user must fail");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not supported"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run(Command::new("setfacl")
        .args(["-m", "u::rwx,g::rwx,o::rwx"])
        .arg(&f));
    assert_eq!(meta(&f).mode() & 0o777, 0o777, "a mode-only ACL is a chmod");
    let shown = run(Command::new("getfacl")
        .args(["--omit-header", "--"])
        .arg(&f));
    assert_eq!(shown.trim(), "user::rwx\ngroup::rwx\nother::rwx");
    assert_eq!(xattr_list(&f), Vec::<String>::new());

    if m == Medium::Disk {
        let backing = v.backing.join("f");
        run(Command::new("setfacl")
            .args(["-m", "u:1000:r"])
            .arg(&backing));
        assert_eq!(
            xattr_list(&f),
            Vec::<String>::new(),
            "not listed through the volume"
        );
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

/// A file capability (`security.capability`, revision 2: effective, CAP_NET_RAW
/// permitted) set after the file was already written to: the next write must drop it,
/// as on tmpfs, even though the volume answered "no capability" for the earlier writes.
fn a_write_drops_file_capabilities(m: Medium) {
    let v = Volume::start(m, &[]);
    let p = v.path("tool");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .unwrap();
    for _ in 0..3 {
        f.write_all(b"#!/bin/sh\n").unwrap();
    }
    let mut cap = Vec::new();
    // magic (revision 2, effective), permitted: bit 13 (CAP_NET_RAW), inheritable, ...
    for word in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
        cap.extend_from_slice(&word.to_le_bytes());
    }
    xattr_set(&p, "security.capability", &cap, 0).unwrap();
    assert_eq!(xattr_get(&p, "security.capability", 64).unwrap(), cap);
    f.write_all(b"exit 0\n").unwrap();
    assert_eq!(
        errno(xattr_get(&p, "security.capability", 64)),
        libc::ENODATA,
        "the write dropped the capability"
    );
    // And again, now that the volume has seen it removed.
    xattr_set(&p, "security.capability", &cap, 0).unwrap();
    f.write_all(b"\n").unwrap();
    assert_eq!(
        errno(xattr_get(&p, "security.capability", 64)),
        libc::ENODATA
    );
}

/// A new file's mode is what the caller asked masked by the caller's umask alone: not by
/// the daemon's (the test's, 022, which it inherited), nor by any other thread's.
fn modes_follow_the_callers_umask_alone(m: Medium) {
    let v = Volume::start(m, &[]);
    for (umask, file, dir) in [
        ("000", 0o666, 0o777),
        ("077", 0o600, 0o700),
        ("027", 0o640, 0o750),
    ] {
        sh(&format!(
            "umask {umask}; cd {}; echo x > f{umask}; mkdir d{umask}; mkfifo p{umask}",
            v.mnt.display()
        ));
        for (name, want) in [("f", file), ("d", dir), ("p", file)] {
            let name = format!("{name}{umask}");
            let got = meta(&v.path(&name)).mode() & 0o7777;
            assert_eq!(got, want, "{name}: {got:o}, not {want:o}");
            if m == Medium::Disk {
                let backing = meta(&v.backing.join(&name)).mode() & 0o7777;
                assert_eq!(
                    backing, want,
                    "{name} in the backing directory: {backing:o}"
                );
            }
        }
    }
}

/// What `stat -c %A` prints of `f` now (a `statx` asking for the mode only, so the kernel
/// answers from its cache while it holds the mode as valid).
fn shown_mode(f: &Path) -> String {
    sh(&format!("stat -c %A {}", f.display()))
        .trim()
        .to_string()
}

/// Root makes `f` setuid and setgid and gives it to another user, who appends to it (and
/// writes it `O_DIRECT`, and opens it `O_TRUNC`): `stat` run at once, by the writer and by root, shows setuid gone
/// and setgid kept (the file is not group-executable and the writer is in its group), as
/// on tmpfs. The daemon clears the bits; the kernel must not keep showing its old mode.
fn a_write_clears_setuid_at_once(m: Medium) {
    let tmpfs = crate::conformance::Tmpfs::new("16m");
    let v = Volume::start(m, &[]);
    let writes = [
        ("appended", "echo more >> F"),
        (
            "direct",
            "dd if=/dev/zero of=F bs=4096 count=1 oflag=direct conv=notrunc status=none",
        ),
        // Truncated by the OPEN itself (FUSE_ATOMIC_O_TRUNC), after which the kernel
        // drops only its cached size and times.
        ("truncated", ": > F"),
    ];
    for dir in [&tmpfs.path, &v.mnt] {
        for (name, op) in writes {
            let f = dir.join(name);
            write_file(&f, &[b'x'; 4096]);
            std::os::unix::fs::chown(&f, Some(1000), Some(1000)).unwrap();
            fs::set_permissions(&f, fs::Permissions::from_mode(0o6644)).unwrap();
            assert_eq!(shown_mode(&f), "-rwSr-Sr--");
            let script = format!(
                "{} && stat -c %A {}",
                op.replace('F', &f.display().to_string()),
                f.display()
            );
            let out = sh_as(1000, 1000, &script);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                text.trim(),
                "-rw-r-Sr--",
                "the writer's stat of {}",
                f.display()
            );
            assert_eq!(
                shown_mode(&f),
                "-rw-r-Sr--",
                "root's stat of {}",
                f.display()
            );
        }
    }
}

/// A regular file's `st_blksize`, the size programs buffer their writes by (glibc's
/// stdio, coreutils): 4 KiB on memory, as tmpfs (the kernel writes the volume's tmpfs
/// file itself), 128 KiB on disk (each `write(2)` is a request to the daemon), and what a
/// stdio writer then writes in. Directories show 4 KiB.
fn io_block_size_follows_who_writes(m: Medium) {
    let v = Volume::start(m, &[]);
    let p = v.path("f");
    write_file(&p, b"x");
    let want = match m {
        Medium::Memory => 4096,
        Medium::Disk => 128 << 10,
    };
    assert_eq!(meta(&p).blksize(), want);
    fs::create_dir(v.path("d")).unwrap();
    assert_eq!(meta(&v.path("d")).blksize(), 4096);
    // A stdio writer: what it wrote reads back, whatever its buffer.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "seq 1 200000 | sort -r -o {}",
            v.path("sorted").display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sorted = fs::read_to_string(v.path("sorted")).unwrap();
    assert_eq!(sorted.lines().count(), 200000);
    assert_eq!(sorted.lines().next(), Some("99999"));
}

on_every_medium!(
    a_write_clears_setuid_at_once,
    io_block_size_follows_who_writes,
    a_write_drops_file_capabilities,
    chmod_chown_and_ctime,
    utimensat_nanoseconds,
    xattrs,
    xattr_values_of_64_kib,
    posix_acls_are_refused,
    times_follow_changes,
    new_files_belong_to_the_caller,
    modes_follow_the_callers_umask_alone,
    permissions_are_enforced,
);
