//! Backends mounted inside the test process, so a test can look at the backend itself:
//! panics answered with EIO, inodes freed when the kernel forgets them, usage counters
//! that agree with a walk of the data.

use crate::harness::*;
use emptydirfs::daemon::testing::MemoryFs;
use emptydirfs::daemon::testing::*;
use std::ffi::OsStr;
use std::fs;
use std::sync::Arc;

struct PanicsOnName(MemoryFs);

const TRIGGER: &str = "panic-here";

impl Backend for PanicsOnName {
    fn medium(&self) -> &'static str {
        "memory"
    }
    fn usage(&self) -> &usage::Usage {
        self.0.usage()
    }
    fn volume_mount(&self) -> &mount_options::VolumeMount {
        self.0.volume_mount()
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
    fn write(
        &self,
        ino: Ino,
        fh: Fh,
        off: u64,
        data: &[u8],
        clear: killpriv::Clear,
    ) -> Result<Written> {
        self.0.write(ino, fh, off, data, clear)
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
    fn opendir(&self, ino: Ino, f: i32) -> Result<Fh> {
        self.0.opendir(ino, f)
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
    fn fsyncdir(&self, ino: Ino, fh: Fh, ds: bool) -> Result<()> {
        self.0.fsyncdir(ino, fh, ds)
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

/// A volume served by threads of this process; unmounted (lazily) on every path.
struct InProcess {
    mnt: std::path::PathBuf,
    serving: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    _tmp: TempDir,
}

impl InProcess {
    fn mount<B: Backend>(backend: Arc<B>) -> InProcess {
        let tmp = TempDir::new("inproc");
        let mnt = tmp.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        let session = emptydirfs::daemon::testing::mount(backend, &mnt, 2)
            .unwrap()
            .session;
        let serving = Some(std::thread::spawn(move || session.run()));
        InProcess {
            mnt,
            serving,
            _tmp: tmp,
        }
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.mnt.join(rel)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        lazy_unmount(&self.mnt);
        if let Some(t) = self.serving.take() {
            let _ = t.join();
        }
    }
}

fn drop_kernel_caches() {
    fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
}

#[test]
fn a_panicking_handler_answers_eio_and_the_mount_stays_up() {
    let v = InProcess::mount(Arc::new(PanicsOnName(MemoryFs::new(1 << 20, 100).unwrap())));
    fs::write(v.path("before"), b"1").unwrap();
    assert_eq!(errno(fs::metadata(v.path(TRIGGER))), libc::EIO);
    assert_eq!(errno(fs::metadata(v.path(TRIGGER))), libc::EIO, "and again");
    fs::write(v.path("after"), b"2").unwrap();
    assert_eq!(fs::read(v.path("before")).unwrap(), b"1");
    assert!(is_mounted(&v.mnt));
}

#[test]
fn inodes_leave_the_table_when_the_kernel_forgets_them() {
    let fs_ = Arc::new(MemoryFs::new(64 << 20, 100_000).unwrap());
    let v = InProcess::mount(fs_.clone());
    fs::create_dir(v.path("d")).unwrap();
    for i in 0..2000 {
        fs::write(v.path(&format!("d/f{i}")), b"x").unwrap();
    }
    assert!(fs_.inodes_in_table() >= 2002);
    // Linked inodes the kernel forgets stay: they are still reachable by name.
    drop_kernel_caches();
    assert_eq!(fs::read(v.path("d/f1999")).unwrap(), b"x");
    assert_eq!(fs_.inodes_in_table(), 2002);
    fs::remove_dir_all(v.path("d")).unwrap();
    drop_kernel_caches();
    eventually(
        "every removed inode to be forgotten and freed",
        SOON,
        || fs_.inodes_in_table() == 1,
    );
    assert_eq!(fs_.usage().inodes_used(), 1);
}

/// The kernel's LOOKUPs of `.` and `..` (file handles decoded after it forgot the
/// inodes) count as references exactly: once it forgets them again and the files are
/// removed, every inode leaves the table (one reference too many would keep it).
#[test]
fn lookups_of_dot_and_dotdot_are_counted_exactly() {
    let fs_ = Arc::new(MemoryFs::new(64 << 20, 1000).unwrap());
    let v = InProcess::mount(fs_.clone());
    let mut handles = Vec::new();
    for i in 0..50 {
        let (dir, file) = (v.path(&format!("d{i}/e")), v.path(&format!("d{i}/e/f")));
        fs::create_dir_all(&dir).unwrap();
        fs::write(&file, b"x").unwrap();
        handles.push((FileHandle::of(&file).unwrap(), file));
        handles.push((FileHandle::of(&dir).unwrap(), dir));
    }
    for _ in 0..3 {
        drop_kernel_caches();
        for (h, path) in &handles {
            let f = h.open(&v.mnt, libc::O_RDONLY).unwrap();
            if f.metadata().unwrap().is_dir() {
                assert_eq!(&path_of(&f), path);
            } else {
                assert_eq!(std::io::read_to_string(f).unwrap(), "x");
            }
        }
    }
    assert_eq!(fs_.inodes_in_table(), 151);
    for i in 0..50 {
        fs::remove_dir_all(v.path(&format!("d{i}"))).unwrap();
    }
    drop_kernel_caches();
    eventually(
        "every removed inode to be forgotten and freed",
        SOON,
        || fs_.inodes_in_table() == 1,
    );
}

#[test]
fn usage_counters_agree_with_a_walk_of_the_data() {
    let fs_ = Arc::new(MemoryFs::new(8 << 20, 1000).unwrap());
    let v = InProcess::mount(fs_.clone());
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let dir = v.mnt.clone();
            std::thread::spawn(move || mixed_workload(&dir, w))
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert!(fs_.blocks_used() <= 2048);
    assert_eq!(fs_.walk_blocks(), fs_.blocks_used());
    // Memory is held only by written blocks, and none once every file is gone.
    assert!(fs_.data_bytes_held() <= fs_.blocks_used() * 4096);
    for e in fs::read_dir(&v.mnt).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    assert_eq!(fs_.data_bytes_held(), 0);
}

/// The memory of file data follows the data at once: truncating or deleting a file (at
/// its last close when unlinked while open) gives its pages back, with no delay.
#[test]
fn memory_of_file_data_comes_back_at_once() {
    const MIB: u64 = 1 << 20;
    let fs_ = Arc::new(MemoryFs::new(64 * MIB, 100).unwrap());
    let v = InProcess::mount(fs_.clone());
    let data: Vec<u8> = (0..16 * MIB).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(v.path("f"), &data).unwrap();
    assert_eq!(fs_.data_bytes_held(), 16 * MIB);
    let f = fs::OpenOptions::new()
        .write(true)
        .open(v.path("f"))
        .unwrap();
    f.set_len(MIB + 1).unwrap();
    assert_eq!(fs_.data_bytes_held(), MIB + 4096);
    fs::remove_file(v.path("f")).unwrap();
    assert_eq!(fs_.data_bytes_held(), MIB + 4096, "still open");
    drop(f);
    eventually("the last close to give the pages back", SOON, || {
        fs_.data_bytes_held() == 0
    });
    assert_eq!(fs_.blocks_used(), 0);
}

/// Writes, overwrites, truncates, punches and unlinks (some while open), ignoring ENOSPC.
fn mixed_workload(dir: &std::path::Path, worker: u64) {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let mut seed = worker * 7919 + 1;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for i in 0..400 {
        let p = dir.join(format!("w{worker}-{}", rnd(8)));
        let f = open_rw(&p);
        let _ = f.write_at(&vec![i as u8; rnd(300_000) as usize + 1], rnd(2 << 20));
        match rnd(5) {
            0 => f.set_len(rnd(1 << 20)).unwrap(),
            // SAFETY: `f` is open for the call; fallocate takes integers otherwise.
            1 => unsafe {
                libc::fallocate(
                    f.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    rnd(1 << 20) as i64,
                    rnd(1 << 19) as i64 + 1,
                );
            },
            2 => {
                let _ = fs::remove_file(&p); // while still open
                let _ = f.write_at(b"after unlink", rnd(1 << 20));
            }
            3 => {
                let _ = fs::write(dir.join(format!("small-{worker}-{i}")), b"s");
            }
            _ => {}
        }
    }
}
