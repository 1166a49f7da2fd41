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
