//! Programs running across hand-offs: fio verifying every block, fsx, a writer that
//! truncates and fsyncs; and a Memory volume of 1 GiB in 100,000 files handed over with
//! every byte and attribute as it was.

use super::*;
use crate::harness::*;
use crate::kubelet::*;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::process::Command;
use std::time::Duration;

/// fio (crc32c verification of every block, random writes with fsyncs, O_DIRECT, as uid
/// 1000 through a bind mount) and a writer that truncates (by an `O_TRUNC` open),
/// rewrites and fsyncs its file (reading it back each time), across 20 hand-offs in a
/// row: no error, no verify failure.
fn fio_and_a_truncating_writer_across_twenty_handoffs(m: Medium) {
    let k = KubeletRoot::new();
    let v = k.setup(
        "scratch",
        &["--medium", k8s_medium(m), "--size-limit", "512Mi"],
    );
    let view = View::of(&v);
    let mut fio = Guarded::spawn(
        Command::new("setpriv")
            .args(["--reuid=1000", "--regid=1000", "--clear-groups", "fio"])
            .args([
                // Each loop writes the file at random then reads every block back and
                // checks it; O_DIRECT, so both reach the daemon, not the page cache.
                "--name=verify",
                "--ioengine=psync",
                "--direct=1",
                "--rw=randwrite",
                "--bsrange=4k-64k",
                "--size=16m",
                "--numjobs=2",
                // Until a minute has passed: a memory volume (passthrough) ends 120
                // loops before twenty hand-offs.
                "--loops=100000",
                "--runtime=60",
                "--fsync=32",
                "--verify=crc32c",
                "--do_verify=1",
                "--verify_fatal=1",
                "--verify_state_save=0",
            ])
            .arg(format!("--directory={}", view.path.display()))
            .current_dir(&view.path),
        "fio",
    );
    // The truncating writer: its file is always `len` bytes of the byte `round`.
    let stop = Arc::new(AtomicBool::new(false));
    let (s, path) = (stop.clone(), v.join("truncated"));
    let writer = std::thread::spawn(move || -> Result<u64, String> {
        let f = open_rw(&path);
        let mut round = 0u64;
        while !s.load(Ordering::Relaxed) {
            round += 1;
            let len = (round * 7919) % (1 << 20);
            let byte = (round % 251) as u8;
            let step = || -> std::io::Result<()> {
                // Emptied by an O_TRUNC open: with FUSE_ATOMIC_O_TRUNC the OPEN itself
                // truncates, and so must every successor.
                drop(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .truncate(true)
                        .open(&path)?,
                );
                let left = f.metadata()?.len();
                if left != 0 {
                    return Err(std::io::Error::other(format!(
                        "round {round}: an O_TRUNC open left {left} bytes"
                    )));
                }
                f.write_all_at(&vec![byte; len as usize], 0)?;
                f.set_len(len + 4096)?; // a hole at the end
                f.sync_all()?;
                let mut back = vec![0u8; (len + 4096) as usize];
                f.read_exact_at(&mut back, 0)?;
                if back[..len as usize].iter().any(|&b| b != byte)
                    || back[len as usize..].iter().any(|&b| b != 0)
                {
                    return Err(std::io::Error::other(format!(
                        "round {round}: read back other bytes"
                    )));
                }
                Ok(())
            };
            step().map_err(|e| format!("round {round}: {e}"))?;
        }
        Ok(round)
    });
    // The hand-offs land in the middle of fio's I/O: once its files hold data.
    eventually("fio to write", SLOW, || du_bytes(&view.path) > 1 << 20);
    for i in 0..20 {
        assert!(!fio.try_finished(), "fio ended before hand-off {i}");
        upgrade(&k, "scratch");
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = writer
        .join()
        .unwrap()
        .expect("the truncating writer saw no error");
    assert!(rounds > 20, "the writer kept going ({rounds} rounds)");
    let out = fio.wait_within(Duration::from_secs(600));
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(out.status.success(), "fio: {text}");
    assert!(
        text.contains("err= 0") && !text.contains("verify failed") && !text.contains("bad magic"),
        "{text}"
    );
    let obj = k.status_json("scratch");
    assert_eq!(json_u64(&obj, "handoffs"), Some(20));
}

/// fsx (every operation, its own verification) across hand-offs.
fn fsx_across_handoffs(m: Medium) {
    let k = KubeletRoot::new();
    let v = k.setup(
        "scratch",
        &["--medium", k8s_medium(m), "--size-limit", "256Mi"],
    );
    let dir = v.clone();
    let fsx = std::thread::spawn(move || crate::conformance::run_fsx(&dir, 7, 30_000));
    let mut handoffs = 0;
    while !fsx.is_finished() && handoffs < 20 {
        upgrade(&k, "scratch");
        handoffs += 1;
    }
    let verdict = fsx.join().expect("fsx found no miscompare");
    assert!(
        handoffs >= 3,
        "fsx ran across {handoffs} hand-offs only: {verdict}"
    );
}

/// What can be seen of every file: its bytes (a checksum), mode, owner, times, xattrs,
/// symlink target, link count and inode number, and the holes of sparse files.
fn manifest(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let mut line = format!(
                "{} ino={} mode={:o} uid={} gid={} nlink={} size={} blocks={} mtime={}.{} ctime={}.{}",
                p.strip_prefix(root).unwrap().display(),
                md.ino(),
                md.mode(),
                md.uid(),
                md.gid(),
                md.nlink(),
                md.size(),
                md.blocks(),
                md.mtime(),
                md.mtime_nsec(),
                md.ctime(),
                md.ctime_nsec()
            );
            if md.file_type().is_symlink() {
                line += &format!(" -> {}", std::fs::read_link(&p).unwrap().display());
            } else if md.is_file() {
                let data = std::fs::read(&p).unwrap();
                line += &format!(" sum={:016x}", emptydirfs::common::checksum(&data));
                line += &format!(" xattrs={:?}", xattrs(&p));
            } else if md.is_dir() {
                stack.push(p);
            }
            out.push(line);
        }
    }
    out.sort();
    out
}

/// Every xattr of `p`, name and value.
fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let c = cpath(p);
    let mut names = vec![0u8; 4096];
    // SAFETY: `c` is a NUL-terminated CString, and the kernel writes at most `names.len()`
    // bytes to `names`, a live Vec of that length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(n >= 0, "listxattr {}", p.display());
    names.truncate(n as usize);
    names
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|name| {
            let cname = std::ffi::CString::new(name).unwrap();
            let mut v = vec![0u8; 65536];
            // SAFETY: `c` and `cname` are NUL-terminated CStrings, and the kernel writes at
            // most `v.len()` bytes to `v`, a live Vec of that length.
            let len = unsafe {
                libc::lgetxattr(c.as_ptr(), cname.as_ptr(), v.as_mut_ptr().cast(), v.len())
            };
            assert!(len >= 0);
            v.truncate(len as usize);
            (String::from_utf8_lossy(name).into_owned(), v)
        })
        .collect()
}

/// A Memory volume holding 1 GiB in 100,000 files (with modes, owners, times, xattrs,
/// symlinks, hard links, sparse holes) handed over: every checksum and attribute is what
/// it was, and `df` and `df -i` are unchanged.
#[test]
fn a_memory_volume_of_a_gigabyte_in_100000_files_is_handed_over_unchanged() {
    let k = KubeletRoot::new();
    let v = k.setup("big", &["--medium", "Memory", "--size-limit", "2Gi"]);
    // 100 directories of 1,000 files of 10 KiB to 11 KiB: 1 GiB and a bit.
    let mut block = vec![0u8; 11 << 10];
    for d in 0..100u32 {
        let dir = v.join(format!("d{d:02}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..1000u32 {
            let n = d * 1000 + f;
            let len = (10 << 10) + (n as usize % 1024);
            for (i, b) in block[..len].iter_mut().enumerate() {
                *b = (i as u32 ^ n).wrapping_mul(2_654_435_761) as u8;
            }
            std::fs::write(dir.join(format!("f{f:03}")), &block[..len]).unwrap();
        }
    }
    // The odd ones: modes, owners, xattrs, symlinks, hard links, a sparse file.
    let p = |s: &str| v.join(s);
    std::fs::set_permissions(
        p("d00/f000"),
        std::os::unix::fs::PermissionsExt::from_mode(0o4750),
    )
    .unwrap();
    std::os::unix::fs::chown(p("d00/f001"), Some(1234), Some(5678)).unwrap();
    sh(&format!(
        "setfattr -n user.k -v value {}",
        p("d00/f002").display()
    ));
    std::os::unix::fs::symlink("d00/f003", p("short-link")).unwrap();
    std::os::unix::fs::symlink("x".repeat(300), p("long-link")).unwrap();
    std::fs::hard_link(p("d00/f004"), p("hard")).unwrap();
    let sparse = open_rw(p("sparse"));
    sparse.write_all_at(b"head", 0).unwrap();
    sparse.write_all_at(b"tail", 100 << 20).unwrap();
    drop(sparse);
    let before = manifest(&v);
    let df = (
        statvfs(&v).f_bfree,
        statvfs(&v).f_ffree,
        statvfs(&v).f_blocks,
    );
    assert!(before.len() > 100_000, "{} entries", before.len());

    let started = std::time::Instant::now();
    upgrade(&k, "big");
    eprintln!(
        "hand-off of 1 GiB in 100,000 files: {:?} (upgrade command, wall)",
        started.elapsed()
    );

    assert_eq!(
        (
            statvfs(&v).f_bfree,
            statvfs(&v).f_ffree,
            statvfs(&v).f_blocks
        ),
        df,
        "df and df -i"
    );
    // Every byte read again from the new daemon, not from the kernel's page cache.
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    let after = manifest(&v);
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a);
    }
    let sparse = std::fs::File::open(p("sparse")).unwrap();
    assert_eq!(
        // SAFETY: `sparse` is open for the call; lseek takes integers otherwise.
        crate::harness::cvt(unsafe {
            libc::lseek(
                std::os::fd::AsRawFd::as_raw_fd(&sparse),
                4096,
                libc::SEEK_DATA,
            )
        })
        .unwrap(),
        100 << 20,
        "the hole is still a hole"
    );
}

on_every_medium!(
    fio_and_a_truncating_writer_across_twenty_handoffs,
    fsx_across_handoffs
);
