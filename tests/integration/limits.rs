//! Hard limits, end to end: exact fill, ENOSPC from write(2), `df`, concurrent writers,
//! the inode limit, and space given back.

use crate::harness::*;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

/// `df -B1` numbers of a volume: (size, used, avail).
fn df(v: &Volume) -> (u64, u64, u64) {
    let out = run(Command::new("df")
        .args(["-B1", "--output=size,used,avail"])
        .arg(&v.mnt));
    let nums: Vec<u64> = out
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    (nums[0], nums[1], nums[2])
}

/// `df -i` numbers of a volume: (inodes, used, free).
fn df_inodes(v: &Volume) -> (u64, u64, u64) {
    let out = run(Command::new("df")
        .args(["--output=itotal,iused,iavail"])
        .arg(&v.mnt));
    let nums: Vec<u64> = out
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    (nums[0], nums[1], nums[2])
}

fn fill_to_the_limit_exactly(m: Medium) {
    let v = Volume::start(m, &["--size-limit", "1Mi"]);
    // A disk volume's root directory holds a block, as `du` counts it; memory's none.
    // It comes from the metadata allowance: data has the whole limit (Avail), and `df`
    // counts the directory in Used.
    let base = v.used();
    assert_eq!(base, if m == Medium::Disk { 4096 } else { 0 });
    assert_eq!(df(&v), (1 << 20, base, 1 << 20));
    let mut f = open_rw(v.path("fill"));
    let chunk = vec![0x5A; 100_000];
    let mut written = 0u64;
    let err = loop {
        match f.write(&chunk) {
            Ok(n) => written += n as u64,
            Err(e) => break e,
        }
    };
    assert_eq!(
        err.raw_os_error(),
        Some(libc::ENOSPC),
        "the write(2) that finds no room fails"
    );
    assert_eq!(written, 1 << 20, "a volume of 1 MiB holds exactly 1 MiB");
    f.sync_all()
        .expect("fsync after ENOSPC succeeds: nothing is pending");
    drop(f);
    assert_eq!(df(&v), (1 << 20, 1 << 20, 0), "full: Used is Size");
    v.assert_counters_match_backing();
    assert!(fs::read(v.path("fill")).unwrap().iter().all(|&b| b == 0x5A));
    assert_eq!(errno(fs::write(v.path("more"), b"x")), libc::ENOSPC);
    fs::remove_file(v.path("fill")).unwrap();
    fs::remove_file(v.path("more")).ok();
    assert_eq!(
        df(&v),
        (1 << 20, base, 1 << 20),
        "deleting gives the space back at once"
    );
    v.assert_counters_match_backing();
}

fn concurrent_writers_never_pass_the_limit(m: Medium) {
    let v = Volume::start(m, &["--size-limit", "8Mi"]);
    let base = v.used();
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let bs = [4096, 65536, 1000, 131072, 12345, 1 << 20, 512, 77777][i];
            Command::new("dd")
                .args([
                    "if=/dev/zero",
                    &format!("of={}/w{i}", v.mnt.display()),
                    &format!("bs={bs}"),
                ])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for w in writers {
        let out = w.wait_with_output().unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("No space left on device"));
    }
    let held: u64 = (0..8)
        .map(|i| fs::metadata(v.path(&format!("w{i}"))).unwrap().blocks() * 512)
        .sum();
    assert_eq!(held, 8 << 20, "the writers together hold exactly the limit");
    assert_eq!(df(&v), (8 << 20, 8 << 20, 0));
    v.assert_counters_match_backing();
    for i in 0..8 {
        fs::remove_file(v.path(&format!("w{i}"))).unwrap();
    }
    assert_eq!(df(&v).1, base);
    v.assert_counters_match_backing();
}

fn inode_limit(m: Medium) {
    let v = Volume::start(m, &["--inode-limit", "10"]);
    assert_eq!(df_inodes(&v), (10, 1, 9), "the root directory is an inode");
    for i in 0..9 {
        fs::write(v.path(&format!("f{i}")), b"").unwrap();
    }
    assert_eq!(errno(fs::write(v.path("one-more"), b"")), libc::ENOSPC);
    assert_eq!(errno(fs::create_dir(v.path("dir"))), libc::ENOSPC);
    assert_eq!(
        errno(std::os::unix::fs::symlink("x", v.path("link"))),
        libc::ENOSPC
    );
    fs::hard_link(v.path("f0"), v.path("hard")).expect("a hard link takes no inode");
    assert_eq!(df_inodes(&v), (10, 10, 0));
    fs::remove_file(v.path("f1")).unwrap();
    fs::create_dir(v.path("dir")).unwrap();
}

fn deleting_a_tree_returns_everything(m: Medium) {
    let v = Volume::start(m, &[]);
    let base = v.used();
    for d in 0..5 {
        fs::create_dir_all(v.path(&format!("t/d{d}"))).unwrap();
        for f in 0..20 {
            fs::write(v.path(&format!("t/d{d}/f{f}")), vec![1; 10_000 * f]).unwrap();
        }
    }
    assert!(df(&v).1 > base);
    v.assert_counters_match_backing();
    fs::remove_dir_all(v.path("t")).unwrap();
    assert_eq!(df(&v).1, base);
    assert_eq!(df_inodes(&v).1, 1);
    v.assert_counters_match_backing();
}

/// Metadata that holds bytes is charged too, so it cannot smuggle data past the limit.
fn symlinks_and_xattrs_are_charged(m: Medium) {
    let v = Volume::start(m, &["--size-limit", "64Ki"]);
    let base = v.used();
    let used = |v: &Volume| df(v).1 - base;
    std::os::unix::fs::symlink("short", v.path("s")).unwrap();
    assert_eq!(used(&v), 0, "a short symlink is stored inline");
    std::os::unix::fs::symlink("l".repeat(300), v.path("l")).unwrap();
    assert_eq!(used(&v), 4096, "a long symlink takes a block");
    fs::write(v.path("f"), b"").unwrap();
    let set = |name: &str, len: usize| {
        let (p, n) = (cpath(&v.path("f")), std::ffi::CString::new(name).unwrap());
        let value = vec![7u8; len];
        // SAFETY: `p` and `n` are NUL-terminated CStrings, and the kernel reads `len` bytes
        // from `value`, a live Vec of that length.
        cvt(unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), len, 0) } as i64)
    };
    // Memory keeps 10 KB of xattrs in three blocks; ext4 under a disk volume keeps an
    // inode's xattrs that do not fit in the inode in one block of its own (at most 4 KiB).
    let (len, blocks) = if m == Medium::Memory {
        (10_000, 3)
    } else {
        (3000, 1)
    };
    set("user.a", len).unwrap();
    assert_eq!(used(&v), (1 + blocks) * 4096, "xattrs take their blocks");
    v.assert_counters_match_backing();
    let rest = (64 << 10) - used(&v);
    fs::write(v.path("fill"), vec![1; rest as usize]).unwrap();
    assert_eq!(df(&v), (64 << 10, 64 << 10, 0));
    assert_eq!(errno(set("user.b", 3000)), libc::ENOSPC);
    let (p, n) = (
        cpath(&v.path("f")),
        std::ffi::CString::new("user.a").unwrap(),
    );
    // SAFETY: `p` and `n` are NUL-terminated CStrings alive for the call.
    cvt(unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) } as i64).unwrap();
    assert_eq!(
        df(&v).1,
        (64 << 10) + base - blocks * 4096,
        "removing an xattr gives its blocks back"
    );
    v.assert_counters_match_backing();
}

on_every_medium!(
    symlinks_and_xattrs_are_charged,
    fill_to_the_limit_exactly,
    concurrent_writers_never_pass_the_limit,
    inode_limit,
    deleting_a_tree_returns_everything,
    mixed_writers_at_the_limit_never_pass_it,
);

/// Without limits a memory volume is sized as a tmpfs mounted with no options.
#[test]
fn memory_defaults_match_tmpfs() {
    let tmp = TempDir::new("tmpfs");
    run(Command::new("mount")
        .args(["-t", "tmpfs", "none"])
        .arg(tmp.path()));
    let tmpfs = statvfs(tmp.path());
    lazy_unmount(tmp.path());
    let v = Volume::start_exact(Medium::Memory, &[]);
    let ours = v.statvfs();
    assert_eq!(
        ours.f_blocks * ours.f_frsize,
        tmpfs.f_blocks * tmpfs.f_frsize
    );
    assert_eq!(ours.f_files, tmpfs.f_files);
}

/// A small xorshift generator: reproducible randomness without a crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Eight writers mixing sparse writes, overwrites, punched holes, truncates and unlinks
/// of open files at the limit: usage never passes it (on disk, `du` of the backing
/// directory too, sampled while they run), and the counters agree with the data after.
fn mixed_writers_at_the_limit_never_pass_it(m: Medium) {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    const LIMIT: u64 = 4 << 20;
    let v = Volume::start(m, &["--size-limit", "4Mi"]);
    // Re-creating a file on a full disk volume reserves a block of the metadata
    // allowance for the moment it runs (see full.rs): data alone never passes LIMIT.
    let ceiling = match m {
        Medium::Disk => {
            LIMIT + emptydirfs::daemon::testing::metadata_allowance(LIMIT / 4096) * 4096
        }
        Medium::Memory => LIMIT,
    };
    let stop = AtomicBool::new(false);
    let max_du = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let (mut max, mut max_used) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                let used = v.used();
                assert!(used <= ceiling, "usage {used} over {ceiling}");
                max_used = max_used.max(used);
                if m == Medium::Disk {
                    // Files come and go while du walks: take what it could count.
                    let du = sh(&format!(
                        "du -s --block-size=1 {} 2>/dev/null; true",
                        v.backing.display()
                    ));
                    max = max.max(du.split_whitespace().next().unwrap().parse().unwrap());
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            eprintln!("usage peaked at {max_used} of {LIMIT}");
            max
        });
        let writers: Vec<_> = (0..8u64)
            .map(|w| {
                let v = &v;
                s.spawn(move || {
                    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w + 1));
                    let path = v.path(&format!("w{w}"));
                    let open = || {
                        OpenOptions::new()
                            .read(true)
                            .write(true)
                            .create(true)
                            .truncate(false)
                            .open(&path)
                    };
                    let mut f = open().unwrap();
                    let mut kept = Vec::new();
                    let end = std::time::Instant::now() + std::time::Duration::from_secs(3);
                    while std::time::Instant::now() < end {
                        let off = rng.below(4 << 20);
                        let len = 1 + rng.below(256 << 10);
                        let r = match rng.below(20) {
                            0..=13 => f.write_all_at(&vec![w as u8; len as usize], off),
                            // SAFETY: `f` is open for the call; fallocate takes integers
                            // otherwise.
                            14..=16 => cvt(unsafe {
                                libc::fallocate(
                                    f.as_raw_fd(),
                                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                                    off as i64,
                                    len as i64,
                                )
                            } as i64)
                            .map(drop),
                            17 => f.set_len(rng.below(4 << 20)),
                            18 => {
                                // Unlink while open: the space stays held until the close.
                                let _ = fs::remove_file(&path);
                                open().map(|new| {
                                    kept.push(std::mem::replace(&mut f, new));
                                    if kept.len() > 2 {
                                        kept.remove(0);
                                    }
                                })
                            }
                            _ => f.write_all_at(&vec![w as u8; len as usize], off / 2),
                        };
                        if let Err(e) = r {
                            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                        }
                    }
                })
            })
            .collect();
        let results: Vec<_> = writers.into_iter().map(|w| w.join()).collect();
        stop.store(true, Ordering::Relaxed); // before any panic goes on, or the sampler spins
        for r in results {
            if let Err(panic) = r {
                std::panic::resume_unwind(panic);
            }
        }
        sampler.join().unwrap()
    });
    assert!(v.used() <= ceiling);
    if m == Medium::Disk {
        eprintln!("du of the backing directory peaked at {max_du} for a limit of {LIMIT}");
        assert!(
            max_du <= LIMIT + 16 * 4096,
            "du of the backing directory reached {max_du}, {} over the limit",
            max_du as i64 - LIMIT as i64
        );
        v.assert_counters_match_backing();
    }
}
