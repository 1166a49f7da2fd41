//! What a disk volume promises across a crash of the node: what `fsync` of a file, and of
//! a directory, acknowledged is on the node's disk. The backing directory is an ext4 on a
//! loop device that commits its journal only when asked (`commit=600`), "crashed" with
//! `EXT4_IOC_SHUTDOWN` without flushing its log (what is not committed is lost, as in a
//! power cut), then mounted again.

use crate::harness::*;
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `_IOR('X', 125, __u32)`, and its flag to go down without writing the journal.
const EXT4_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587D;
const EXT4_GOING_FLAGS_NOLOGFLUSH: u32 = 2;

/// A 64 MiB ext4 on a loop device, mounted below a temporary directory.
struct CrashableExt4 {
    img: PathBuf,
    mnt: PathBuf,
    _dir: TempDir,
}

impl CrashableExt4 {
    fn new() -> CrashableExt4 {
        let dir = TempDir::new("ext4");
        let img = dir.path().join("img");
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        run(Command::new("truncate").args(["-s", "64M"]).arg(&img));
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img));
        let fs = CrashableExt4 {
            img,
            mnt,
            _dir: dir,
        };
        fs.mount();
        fs
    }

    fn mount(&self) {
        run(Command::new("mount")
            .args(["-t", "ext4", "-o", "loop,commit=600"])
            .arg(&self.img)
            .arg(&self.mnt));
    }

    /// The crash: everything not yet committed to the journal is gone.
    fn crash(&self) {
        let root = fs::File::open(&self.mnt).unwrap();
        let mut flags = EXT4_GOING_FLAGS_NOLOGFLUSH;
        // SAFETY: `root` is open for the call, and EXT4_IOC_SHUTDOWN reads one u32 through
        // the pointer, `flags`, a live u32.
        let rc = unsafe { libc::ioctl(root.as_raw_fd(), EXT4_IOC_SHUTDOWN as _, &mut flags) };
        assert_eq!(
            rc,
            0,
            "EXT4_IOC_SHUTDOWN: {}",
            std::io::Error::last_os_error()
        );
    }

    /// After the crash: unmounted and mounted again (the journal is replayed).
    fn reboot(&self) {
        run(Command::new("umount").arg(&self.mnt));
        self.mount();
    }
}

impl Drop for CrashableExt4 {
    fn drop(&mut self) {
        lazy_unmount(&self.mnt); // the loop device goes with its last user
    }
}

/// A disk volume's daemon serving `backing` at `mnt`, killed on drop.
fn serve(backing: &Path, mnt: &Path, log: &Path) -> std::process::Child {
    let args: Vec<&std::ffi::OsStr> = vec![
        "serve".as_ref(),
        "--medium".as_ref(),
        "disk".as_ref(),
        "--backing".as_ref(),
        backing.as_os_str(),
        mnt.as_os_str(),
    ];
    let child = spawn_daemon(&args, log, None);
    eventually("the volume to mount", SOON, || is_mounted(mnt));
    child
}

#[test]
fn fsync_of_a_file_and_of_its_directory_survive_a_crash() {
    let ext4 = CrashableExt4::new();
    let backing = ext4.mnt.join("data");
    fs::create_dir(&backing).unwrap();
    let dir = TempDir::new("crash");
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let mut daemon = serve(&backing, &mnt, &dir.path().join("log"));

    // The atomic-rename writer: write a temporary file, fsync it, rename it into place,
    // fsync the directory. Then a rename nobody synced, which the crash must take.
    let mut f = fs::File::create(mnt.join("new")).unwrap();
    f.write_all(b"committed").unwrap();
    f.sync_all().unwrap();
    drop(f);
    fs::rename(mnt.join("new"), mnt.join("final")).unwrap();
    fs::File::open(&mnt).unwrap().sync_all().unwrap();
    fs::rename(mnt.join("final"), mnt.join("unsynced")).unwrap();

    ext4.crash();
    let _ = daemon.kill();
    let _ = daemon.wait();
    lazy_unmount(&mnt);
    ext4.reboot();

    let names: Vec<String> = fs::read_dir(&backing)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.contains(&"unsynced".to_string()),
        "the crash took what was not synced (else this test shows nothing): {names:?}"
    );
    assert_eq!(
        names,
        ["final"],
        "the rename fsync of the directory acknowledged is on the disk"
    );
    assert_eq!(fs::read(backing.join("final")).unwrap(), b"committed");
}

/// `FIEMAP` flags of the extents of a file, or `None` where the filesystem has no FIEMAP.
fn extent_flags(path: &std::path::Path) -> Option<Vec<u32>> {
    use std::os::fd::AsRawFd;
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
        extents: [Extent; 32],
    }
    let f = fs::File::open(path).unwrap();
    let mut m = Fiemap {
        start: 0,
        length: u64::MAX,
        flags: 0,
        mapped: 0,
        count: 32,
        reserved: 0,
        extents: [Extent::default(); 32],
    };
    // SAFETY: `f` is open for the call and `m` is a live, writable Fiemap laid out as the
    // kernel's `struct fiemap` (repr(C), 32-byte header, `count` = 32 extents of 56 bytes),
    // so FS_IOC_FIEMAP writes no more than it holds.
    if unsafe { libc::ioctl(f.as_raw_fd(), 0xC020_660B, &mut m as *mut Fiemap) } < 0 {
        return None;
    }
    Some(
        m.extents[..m.mapped as usize]
            .iter()
            .map(|e| e.flags)
            .collect(),
    )
}

/// `fsync` and `fdatasync` of a file reach the backing file: on an ext4 (which delays
/// allocation: FIEMAP shows `DELALLOC` extents after a write) the data is allocated on
/// the disk when the call returns.
#[test]
fn fsync_and_fdatasync_reach_the_backing_file() {
    const DELALLOC: u32 = 0x4;
    let ext4 = CrashableExt4::new();
    let backing_dir = ext4.mnt.join("data");
    fs::create_dir(&backing_dir).unwrap();
    let dir = TempDir::new("fsync");
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let mut daemon = serve(&backing_dir, &mnt, &dir.path().join("log"));
    for (name, datasync) in [("synced", false), ("datasynced", true)] {
        let mut f = fs::File::create(mnt.join(name)).unwrap();
        f.write_all(&vec![7u8; 1 << 20]).unwrap();
        let backing = backing_dir.join(name);
        let before = extent_flags(&backing).expect("ext4 answers FIEMAP");
        assert!(
            before.iter().any(|f| f & DELALLOC != 0),
            "ext4 delays allocation, else this test shows nothing: {before:x?}"
        );
        if datasync {
            f.sync_data().unwrap()
        } else {
            f.sync_all().unwrap()
        }
        let after = extent_flags(&backing).unwrap();
        assert!(
            !after.is_empty() && after.iter().all(|f| f & DELALLOC == 0),
            "{name}: the data reached the backing disk ({before:x?} -> {after:x?})"
        );
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    lazy_unmount(&mnt);
}
