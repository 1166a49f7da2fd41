//! A handler that panics answers EIO and the volume stays mounted.
//!
//! The adapter is mounted in-process over a backend that panics on one name; everything
//! else goes to a memory backend.

use crate::harness::*;
use emptydirfs::fs::*;
use emptydirfs::memory::MemoryFs;
use std::ffi::OsStr;
use std::fs;

struct PanicsOnName(MemoryFs);

const TRIGGER: &str = "panic-here";

impl Backend for PanicsOnName {
    fn medium(&self) -> &'static str {
        "memory"
    }
    fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        assert!(name != TRIGGER, "injected panic in lookup");
        self.0.lookup(parent, name)
    }
    fn forget(&self, ino: Ino, n: u64) {
        self.0.forget(ino, n)
    }
    fn getattr(&self, ino: Ino) -> Result<Attr> {
        self.0.getattr(ino)
    }
    fn setattr(&self, ino: Ino, fh: Option<Fh>, set: &SetAttr) -> Result<Attr> {
        self.0.setattr(ino, fh, set)
    }
    fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        self.0.readlink(ino)
    }
    fn mknod(&self, w: &Caller, p: Ino, n: &OsStr, mode: u32, rdev: u32) -> Result<Attr> {
        self.0.mknod(w, p, n, mode, rdev)
    }
    fn mkdir(&self, w: &Caller, p: Ino, n: &OsStr, mode: u32) -> Result<Attr> {
        self.0.mkdir(w, p, n, mode)
    }
    fn symlink(&self, w: &Caller, p: Ino, n: &OsStr, t: &OsStr) -> Result<Attr> {
        self.0.symlink(w, p, n, t)
    }
    fn link(&self, ino: Ino, p: Ino, n: &OsStr) -> Result<Attr> {
        self.0.link(ino, p, n)
    }
    fn unlink(&self, p: Ino, n: &OsStr) -> Result<()> {
        self.0.unlink(p, n)
    }
    fn rmdir(&self, p: Ino, n: &OsStr) -> Result<()> {
        self.0.rmdir(p, n)
    }
    fn rename(&self, p: Ino, n: &OsStr, np: Ino, nn: &OsStr, f: u32) -> Result<()> {
        self.0.rename(p, n, np, nn, f)
    }
    fn open(&self, ino: Ino, f: i32) -> Result<Opened> {
        self.0.open(ino, f)
    }
    fn create(&self, w: &Caller, p: Ino, n: &OsStr, mode: u32, f: i32) -> Result<(Attr, Opened)> {
        self.0.create(w, p, n, mode, f)
    }
    fn read(&self, ino: Ino, fh: Fh, off: u64, size: u32, buf: &mut Vec<u8>) -> Result<()> {
        self.0.read(ino, fh, off, size, buf)
    }
    fn write(&self, ino: Ino, fh: Fh, off: u64, data: &[u8]) -> Result<u32> {
        self.0.write(ino, fh, off, data)
    }
    fn flush(&self, ino: Ino, fh: Fh) -> Result<()> {
        self.0.flush(ino, fh)
    }
    fn release(&self, ino: Ino, fh: Fh) -> Result<()> {
        self.0.release(ino, fh)
    }
    fn fsync(&self, ino: Ino, fh: Fh, ds: bool) -> Result<()> {
        self.0.fsync(ino, fh, ds)
    }
    fn opendir(&self, ino: Ino) -> Result<Fh> {
        self.0.opendir(ino)
    }
    fn readdir(
        &self,
        ino: Ino,
        fh: Fh,
        off: u64,
        plus: bool,
        add: &mut dyn FnMut(&DirEntry<'_>) -> bool,
    ) -> Result<()> {
        self.0.readdir(ino, fh, off, plus, add)
    }
    fn releasedir(&self, ino: Ino, fh: Fh) -> Result<()> {
        self.0.releasedir(ino, fh)
    }
    fn statfs(&self) -> StatFs {
        self.0.statfs()
    }
    fn setxattr(&self, ino: Ino, n: &OsStr, v: &[u8], f: i32) -> Result<()> {
        self.0.setxattr(ino, n, v, f)
    }
    fn getxattr(&self, ino: Ino, n: &OsStr) -> Result<Vec<u8>> {
        self.0.getxattr(ino, n)
    }
    fn listxattr(&self, ino: Ino) -> Result<Vec<u8>> {
        self.0.listxattr(ino)
    }
    fn removexattr(&self, ino: Ino, n: &OsStr) -> Result<()> {
        self.0.removexattr(ino, n)
    }
    fn fallocate(&self, ino: Ino, fh: Fh, off: u64, len: u64, mode: i32) -> Result<()> {
        self.0.fallocate(ino, fh, off, len, mode)
    }
    fn lseek(&self, ino: Ino, fh: Fh, off: i64, whence: i32) -> Result<i64> {
        self.0.lseek(ino, fh, off, whence)
    }
    fn copy_file_range(
        &self,
        i: Ino,
        fi: Fh,
        oi: u64,
        o: Ino,
        fo: Fh,
        oo: u64,
        len: u64,
    ) -> Result<u32> {
        self.0.copy_file_range(i, fi, oi, o, fo, oo, len)
    }
}

/// Unmounts the in-process volume on every path, lazily.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        lazy_unmount(&self.0);
    }
}

#[test]
fn a_panicking_handler_answers_eio_and_the_mount_stays_up() {
    let tmp = TempDir::new("panic");
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let session =
        emptydirfs::fuse::mount(PanicsOnName(MemoryFs::new(1 << 20, 100)), &mnt, 2).unwrap();
    let _unmount = Unmount(mnt.clone());
    let serving = std::thread::spawn(move || session.run());
    fs::write(mnt.join("before"), b"1").unwrap();
    assert_eq!(errno(fs::metadata(mnt.join(TRIGGER))), libc::EIO);
    assert_eq!(
        errno(fs::metadata(mnt.join(TRIGGER))),
        libc::EIO,
        "and again"
    );
    fs::write(mnt.join("after"), b"2").unwrap();
    assert_eq!(fs::read(mnt.join("before")).unwrap(), b"1");
    assert!(is_mounted(&mnt));
    lazy_unmount(&mnt);
    serving.join().unwrap().unwrap();
}
