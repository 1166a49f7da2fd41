//! What only the disk medium has: data that outlives the daemon, and a backing tree far
//! larger than the daemon's descriptor limit.

use crate::harness::*;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};

/// Files, a hard link, a sparse file, an xattr and a symlink, as a listing to compare.
fn populate(v: &Volume) -> String {
    fs::create_dir_all(v.path("a/b")).unwrap();
    fs::write(v.path("a/b/data"), vec![3u8; 300_000]).unwrap();
    fs::hard_link(v.path("a/b/data"), v.path("a/hard")).unwrap();
    let f = fs::File::create(v.path("sparse")).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"tail", 50 << 20).unwrap();
    std::os::unix::fs::symlink("a/b/data", v.path("link")).unwrap();
    sh(&format!(
        "setfattr -n user.k -v kept {}",
        v.path("a/b/data").display()
    ));
    listing(v)
}

fn listing(v: &Volume) -> String {
    sh(&format!(
        "cd {} && find . -printf '%p %y %s %b %n %m %u %T@ %l\\n' | sort && getfattr -d a/b/data && md5sum a/b/data sparse",
        v.mnt.display()
    ))
}

#[test]
fn a_restarted_daemon_serves_the_same_data_and_usage() {
    let mut v = Volume::start(
        Medium::Disk,
        &["--size-limit", "2Mi", "--inode-limit", "100"],
    );
    let before = populate(&v);
    let (used, inodes) = (v.used(), v.inodes_used());
    v.assert_counters_match_backing();
    v.restart();
    assert_eq!(listing(&v), before);
    assert_eq!(
        (v.used(), v.inodes_used()),
        (used, inodes),
        "usage counted again at start"
    );
    // The limit still holds across the restart: only what was left fits.
    let mut f = open_rw(v.path("fill"));
    let err = loop {
        if let Err(e) = f.write(&[1u8; 65536]) {
            break e;
        }
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    assert_eq!(v.used(), 2 << 20, "df: full");
    assert_eq!(
        du_bytes(&v.backing) - directory_bytes(&v.backing),
        2 << 20,
        "data has the whole limit; directories take the metadata allowance"
    );
    v.assert_counters_match_backing();
}

/// A daemon started again on the backing directory reaches it through a private mount
/// of its own again: its walk at start leaves access times alone, and the new mount's
/// options decide them (relatime, then noatime after a remount).
#[test]
fn a_restarted_daemon_follows_its_new_mount_options() {
    use crate::posix::atime::*;
    let mut v = Volume::start(Medium::Disk, &[]);
    fs::create_dir(v.path("d")).unwrap();
    fs::write(v.path("d/f"), b"data").unwrap();
    v.restart_after(|backing| set_atime(&backing.join("d"), Y2020));
    assert_eq!(
        atime(&v.backing.join("d")).0,
        Y2020,
        "the walk at start left it"
    );
    let f = v.path("d/f");
    set_atime(&f, Y2020);
    read_all(&f);
    assert!(is_now(&f), "relatime, a new mount's default");
    remount(&v.mnt, "noatime");
    eventually("reads under noatime to leave the atime", SOON, || {
        set_atime(&f, Y2020);
        read_all(&f);
        atime(&f).0 == Y2020
    });
}

#[test]
fn a_daemon_started_over_too_much_data_refuses_more() {
    let mut v = Volume::start(Medium::Disk, &["--size-limit", "1Mi"]);
    v.restart_after(|backing| {
        fs::write(backing.join("big"), vec![1u8; 3 << 20]).unwrap();
    });
    assert_eq!(v.statvfs().f_bfree, 0, "df shows it full");
    assert_eq!(errno(fs::write(v.path("more"), b"x")), libc::ENOSPC);
    assert_eq!(
        fs::read(v.path("big")).unwrap().len(),
        3 << 20,
        "served unchanged"
    );
    fs::remove_file(v.path("big")).unwrap();
    fs::write(v.path("more"), b"x").unwrap();
    v.assert_counters_match_backing();
}

/// Open descriptors of a process.
fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

#[test]
fn a_hundred_thousand_files_within_a_small_descriptor_limit() {
    const NOFILE: u64 = 1024;
    const DIRS: usize = 100;
    const PER_DIR: usize = 1000;
    let t0 = std::time::Instant::now();
    let mut v = Volume::start_with(Medium::Disk, &["--size-limit", "2Gi"], Some(NOFILE));
    v.restart_after(|backing| {
        // On a tmpfs: this test is about descriptors, and ext4 here creates 100,000
        // files slowly (the limits tests cover ext4).
        run(std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "mode=0777", "backing"])
            .arg(backing));
        for d in 0..DIRS {
            let dir = backing.join(format!("d{d:03}"));
            fs::create_dir(&dir).unwrap();
            for f in 0..PER_DIR {
                fs::write(dir.join(format!("f{f:04}")), format!("{d}/{f}\n")).unwrap();
            }
        }
    });
    let total = DIRS * PER_DIR;
    eprintln!("populated+restarted {:?}", t0.elapsed());
    assert_eq!(v.inodes_used(), (total + DIRS + 1) as u64);
    let mnt = v.mnt.display();
    // Every file looked up, twice over, as people do it.
    let lines = sh(&format!("ls -lR {mnt} | grep -c '^-rw'"));
    assert_eq!(lines.trim().parse::<usize>().unwrap(), total);
    eprintln!("ls -lR {:?}", t0.elapsed());
    let sizes = sh(&format!(
        "find {mnt} -type f -print0 | xargs -0 stat -c %s | sort -u | wc -l"
    ));
    assert!(sizes.trim().parse::<usize>().unwrap() > 1);
    assert!(
        open_fds(v.pid()) < NOFILE as usize,
        "descriptors bounded after lookups"
    );
    eprintln!("find+stat {:?}", t0.elapsed());
    // Then every file read and written.
    for d in 0..DIRS {
        for f in 0..PER_DIR {
            let p = v.path(&format!("d{d:03}/f{f:04}"));
            let mut file = OpenOptions::new().read(true).write(true).open(&p).unwrap();
            let mut s = String::new();
            file.read_to_string(&mut s).unwrap();
            assert_eq!(s, format!("{d}/{f}\n"));
            file.seek(SeekFrom::End(0)).unwrap();
            file.write_all(b"again\n").unwrap();
        }
    }
    assert!(
        open_fds(v.pid()) < NOFILE as usize,
        "descriptors bounded after I/O"
    );
    eprintln!("read+write {:?}", t0.elapsed());
    let sample = fs::read_to_string(v.path("d042/f0420")).unwrap();
    assert_eq!(sample, "42/420\nagain\n");
    assert_eq!(v.inodes_used(), (total + DIRS + 1) as u64);
    v.assert_counters_match_backing();
    assert!(
        !v.log_text().contains("Too many open files"),
        "{}",
        v.log_text()
    );
}

#[test]
fn without_a_limit_df_shows_what_the_volume_holds_not_the_node_disk() {
    let v = Volume::start_exact(Medium::Disk, &[]);
    v.assert_counters_match_backing();
    let empty = v.used();
    assert!(empty <= 16 * 4096, "an empty volume uses {empty} bytes");
    fs::write(v.path("f"), vec![1u8; 3 << 20]).unwrap();
    assert_eq!(v.used() - empty, 3 << 20, "Used grew by what was written");
    v.assert_counters_match_backing();
    // Size is what it holds plus what the node's disk has left.
    let st = v.statvfs();
    let node = statvfs(&v.backing);
    let free = |s: &libc::statvfs| s.f_bavail * s.f_frsize;
    assert_eq!(st.f_blocks * st.f_frsize, v.used() + free(&st));
    assert!(
        free(&st).abs_diff(free(&node)) < 1 << 20,
        "Avail is the node's"
    );
    assert_eq!(st.f_ffree, node.f_ffree, "free inodes are the node's");
}

/// Pages of the first `len` bytes of `path` that are in the page cache.
fn cached_pages(path: &std::path::Path, len: usize) -> usize {
    let f = fs::File::open(path).unwrap();
    let page = 4096;
    // SAFETY: A new read-only shared mapping of `len` bytes of the open file `f`, at an
    // address the kernel chooses; MAP_FAILED is checked below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&f),
            0,
        )
    };
    assert_ne!(addr, libc::MAP_FAILED);
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: `addr` is the live mapping of `len` bytes made above, and `vec` holds one
    // byte per page of it, as mincore writes.
    let rc = unsafe { libc::mincore(addr, len, vec.as_mut_ptr()) };
    // SAFETY: `addr` and `len` are the mapping made above, unmapped once here; nothing
    // refers to it afterwards.
    unsafe { libc::munmap(addr, len) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    vec.iter().filter(|&&b| b & 1 == 1).count()
}

/// A file opened `O_DIRECT` on a disk volume reaches the backing file without going
/// through the node's page cache (a file written without it does), unaligned direct
/// writes (which FUSE accepts) still land, and every reader sees the same bytes.
#[test]
fn o_direct_bypasses_the_backing_page_cache() {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    const MIB: usize = 1 << 20;
    let v = Volume::start(Medium::Disk, &[]);
    // Page-aligned, as O_DIRECT users' buffers are (the kernel splits a request where
    // the buffer crosses a page, so an unaligned buffer makes unaligned requests).
    let mut raw = vec![0u8; MIB + 4096];
    let skip = raw.as_ptr().align_offset(4096);
    let data = &mut raw[skip..skip + MIB];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let data = &*data;
    let direct = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_DIRECT)
            .open(v.path("direct"))
            .unwrap()
    };
    let f = direct();
    f.write_all_at(data, 0).unwrap();
    f.write_all_at(b"tail", MIB as u64 + 100).unwrap();
    drop(f);
    fs::write(v.path("buffered"), data).unwrap();
    // tmpfs keeps every page in memory, O_DIRECT or not: nothing to tell apart there.
    // SAFETY: libc::statfs is plain integers, for which all-zero bytes are a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    assert_eq!(
        // SAFETY: The path is a NUL-terminated CString alive for the call, and `st` a live,
        // writable statfs.
        unsafe { libc::statfs(cpath(&v.backing).as_ptr(), &mut st) },
        0
    );
    let on_tmpfs = st.f_type == libc::TMPFS_MAGIC;
    if !on_tmpfs {
        assert_eq!(cached_pages(&v.backing.join("direct"), MIB), 0);
        assert_eq!(cached_pages(&v.backing.join("buffered"), MIB), MIB / 4096);
    }
    let mut back = vec![0u8; 4096];
    direct().read_exact_at(&mut back, 4096).unwrap();
    assert_eq!(back, data[4096..8192]);
    let all = fs::read(v.path("direct")).unwrap();
    assert_eq!(
        (all.len(), &all[..MIB], &all[MIB + 100..]),
        (MIB + 104, data, &b"tail"[..])
    );
    assert!(all[MIB..MIB + 100].iter().all(|&b| b == 0));
    v.assert_counters_match_backing();
}

/// Writes `len` bytes to a new file `name` in the volume, 64 KiB at a time, and returns
/// the errno that stopped it (0 if none did).
fn write_until_refused(v: &Volume, name: &str, len: usize) -> i32 {
    let mut f = fs::File::create(v.path(name)).unwrap();
    let chunk = vec![7u8; 64 << 10];
    for _ in 0..len / chunk.len() {
        if let Err(e) = f.write_all(&chunk) {
            return e.raw_os_error().unwrap_or(-1);
        }
    }
    0
}

/// The node's disk failing a pod's write (here: full, a 1 MiB tmpfs under a 64 MiB
/// volume) is in the daemon's log, with the call and the error, at most once per 10 s
/// however often it happens; the volume's own limit is the pod's business and is not.
#[test]
fn errors_of_the_backing_filesystem_are_logged_the_volumes_limit_is_not() {
    const LINE: &str = "backing filesystem: pwrite failed: No space left on device";
    let mut v = Volume::start(Medium::Disk, &["--size-limit", "64Mi"]);
    v.restart_after(|backing| {
        run(std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1M,mode=0777", "backing"])
            .arg(backing));
    });
    for i in 0..5 {
        let name = format!("big{i}");
        assert_eq!(write_until_refused(&v, &name, 4 << 20), libc::ENOSPC);
        fs::remove_file(v.path(&name)).unwrap();
    }
    eventually(
        "the daemon logs the backing filesystem's ENOSPC",
        SOON,
        || v.log_text().contains(LINE),
    );
    let log = v.log_text();
    assert_eq!(log.matches(LINE).count(), 1, "rate-limited: {log}");
    drop(v);

    // At the volume's own limit, on a backing filesystem with room: nothing logged.
    let v = Volume::start(Medium::Disk, &["--size-limit", "1Mi"]);
    assert_eq!(write_until_refused(&v, "big", 4 << 20), libc::ENOSPC);
    // (Logged before the write was answered, had it been.)
    let log = v.log_text();
    assert!(!log.contains("backing filesystem: "), "{log}");
}
