//! Test fixtures: temporary directories and mounted volumes that clean up on every path.
//!
//! A [`Volume`] runs the real `emptydirfs serve` binary. Its daemon gets SIGTERM when the
//! test thread that started it ends (`PR_SET_PDEATHSIG`), and `Drop` stops it, falls back
//! to SIGKILL and a lazy unmount, then removes the temporary directory: a failing or
//! panicking test leaves no mount, daemon or directory behind; what a test binary
//! killed by a signal leaves, the next one removes ([`TempDir`], in `harness/tempdir.rs`).

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

mod guard;
mod handles;
mod tempdir;
pub use guard::*;
pub use handles::*;
pub use tempdir::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_emptydirfs");

/// The media a volume can be served from, each a configuration the shared cases run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Medium {
    Memory,
    /// A disk volume whose backing directory is `backing` next to the mount point.
    Disk,
}

impl Medium {
    pub fn name(self) -> &'static str {
        match self {
            Medium::Memory => "memory",
            Medium::Disk => "disk",
        }
    }
}

/// A mounted volume served by its own daemon.
pub struct Volume {
    pub mnt: PathBuf,
    /// The backing directory of a disk volume (absent for other media).
    pub backing: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    args: Vec<std::ffi::OsString>,
    /// RLIMIT_NOFILE of the daemon, when a test lowers it.
    nofile: Option<u64>,
    _dir: TempDir,
}

/// Starts `emptydirfs` with `args`, its daemon tied to the calling thread's life, with
/// RLIMIT_NOFILE lowered to `nofile` if given; the log is appended to.
pub fn spawn_daemon(args: &[&OsStr], log: &Path, nofile: Option<u64>) -> Child {
    spawn_program(Path::new(BIN), args, log, nofile)
}

/// As [`spawn_daemon`], with another build of the program.
pub fn spawn_program(program: &Path, args: &[&OsStr], log: &Path, nofile: Option<u64>) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file);
    // SAFETY: The closure runs in the child between fork and exec and makes only system
    // calls (prctl, setrlimit, both async-signal-safe) on values made before the fork
    // (`nofile`, a Copy), and reads errno; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            if let Some(n) = nofile {
                let lim = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn().expect("starting emptydirfs")
}

impl Volume {
    /// A volume of `medium` with extra `serve` flags; 64 MiB unless `--size-limit` is given.
    pub fn start(medium: Medium, flags: &[&str]) -> Volume {
        let mut all = flags.to_vec();
        if !flags.contains(&"--size-limit") {
            all.extend(["--size-limit", "64Mi"]);
        }
        Volume::start_exact(medium, &all)
    }

    /// A volume of `medium` with exactly these `serve` flags.
    pub fn start_exact(medium: Medium, flags: &[&str]) -> Volume {
        Volume::start_with(medium, flags, None)
    }

    /// A volume whose daemon may hold at most `nofile` descriptors (if given).
    pub fn start_with(medium: Medium, flags: &[&str], nofile: Option<u64>) -> Volume {
        let dir = TempDir::new(medium.name());
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let log = dir.path().join("daemon.log");
        let mut args: Vec<&OsStr> = vec![
            "serve".as_ref(),
            "--medium".as_ref(),
            medium.name().as_ref(),
        ];
        let backing = dir.path().join("backing");
        if medium == Medium::Disk {
            std::fs::create_dir(&backing).unwrap();
            // As `setup` lays it out: anyone may create in the volume's root.
            std::fs::set_permissions(
                &backing,
                std::os::unix::fs::PermissionsExt::from_mode(0o777),
            )
            .unwrap();
            args.extend(["--backing".as_ref(), backing.as_os_str()]);
        }
        args.extend(flags.iter().map(OsStr::new));
        args.push(mnt.as_os_str());
        let child = spawn_daemon(&args, &log, nofile);
        let args = args.iter().map(|a| a.to_os_string()).collect();
        let mut v = Volume {
            mnt,
            backing,
            log,
            child: Some(child),
            args,
            nofile,
            _dir: dir,
        };
        v.wait_mounted();
        v
    }

    pub fn memory() -> Volume {
        Volume::start(Medium::Memory, &[])
    }

    fn wait_mounted(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_mounted(&self.mnt) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited with {status}: {}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "volume not mounted after 10 s: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A path inside the volume.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Sends `sig` and waits for the daemon to exit.
    pub fn stop_with(&mut self, sig: i32) -> ExitStatus {
        let mut child = self.child.take().expect("daemon already stopped");
        // SAFETY: kill takes integers only; the child is this Volume's daemon, not yet
        // reaped, so its pid is not reused.
        unsafe { libc::kill(child.id() as i32, sig) };
        wait_timeout(&mut child, Duration::from_secs(10)).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("daemon did not exit within 10 s of signal {sig}");
        })
    }

    /// Stops the daemon with SIGTERM and serves the same volume with a new one, as after
    /// a crash and restart (a memory volume then starts empty).
    pub fn restart(&mut self) {
        self.restart_after(|_| {});
    }

    /// As [`Volume::restart`], running `between` on the backing directory while no
    /// daemon serves it.
    pub fn restart_after(&mut self, between: impl FnOnce(&Path)) {
        let status = self.stop_with(libc::SIGTERM);
        assert!(status.success(), "daemon exited with {status}");
        assert!(
            !is_mounted(&self.mnt),
            "still mounted after the daemon exited"
        );
        between(&self.backing);
        let args: Vec<&OsStr> = self.args.iter().map(|a| a.as_os_str()).collect();
        self.child = Some(spawn_daemon(&args, &self.log, self.nofile));
        self.wait_mounted();
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// Takes the daemon out of the fixture (the caller then owns its end).
    pub fn take_child(&mut self) -> Child {
        self.child.take().expect("daemon already taken")
    }

    pub fn statvfs(&self) -> libc::statvfs {
        statvfs(&self.mnt)
    }

    /// Bytes in use as `statfs` reports them (what `df` shows as Used).
    pub fn used(&self) -> u64 {
        let st = self.statvfs();
        (st.f_blocks - st.f_bfree) * st.f_frsize
    }

    /// Inodes in use as `statfs` reports them (what `df -i` shows as IUsed).
    pub fn inodes_used(&self) -> u64 {
        let st = self.statvfs();
        st.f_files - st.f_ffree
    }

    /// For a disk volume, checks that its counters equal what its backing directory
    /// really holds: `du` bytes (directories and all) and the number of inodes.
    /// The volume's counters (`df` Used and IUsed) equal `du` and the inodes of the backing
    /// directory, soon: the space of a file closed and unlinked comes back with the
    /// asynchronous RELEASE, a moment after `close(2)` returns.
    pub fn assert_counters_match_backing(&self) {
        if !self.backing.exists() {
            return;
        }
        // df's Used is all the volume holds, data and directories, up to its Size: a
        // disk volume's directories take the metadata allowance, beyond the limit.
        let mut last = String::new();
        let mut matches = || {
            let size = self.statvfs().f_blocks * self.statvfs().f_frsize;
            let (used, du) = (self.used(), du_bytes(&self.backing));
            let inodes = sh(&format!(
                "find {} -printf '%i\\n' | sort -u | wc -l",
                self.backing.display()
            ));
            let (iused, found) = (self.inodes_used(), inodes.trim().parse::<u64>().unwrap());
            last = format!(
                "df Used {used} vs du {du} of the backing directory (at most Size {size}); df IUsed {iused} vs {found} inodes in it"
            );
            used == du.min(size) && iused == found
        };
        let deadline = Instant::now() + SOON;
        while !matches() {
            assert!(Instant::now() < deadline, "the counters differ: {last}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Bytes the directories of a tree hold (their `st_blocks`, as `du` counts them): what
/// a disk volume counts as metadata.
pub fn directory_bytes(path: &Path) -> u64 {
    sh(&format!("find {} -type d -printf '%b\\n'", path.display()))
        .lines()
        .map(|l| l.trim().parse::<u64>().unwrap() * 512)
        .sum()
}

/// `du -s --block-size=1` of a tree.
pub fn du_bytes(path: &Path) -> u64 {
    let out = sh(&format!("du -s --block-size=1 {}", path.display()));
    out.split_whitespace().next().unwrap().parse().unwrap()
}

impl Drop for Volume {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill takes integers only; the child is this Volume's daemon, not yet
            // reaped, so its pid is not reused.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            if wait_timeout(&mut child, Duration::from_secs(5)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if is_mounted(&self.mnt) {
            lazy_unmount(&self.mnt);
        }
    }
}

/// Waits up to `limit` for `cond` (polled every 10 ms): the one way a test waits for
/// what happens in the background. Past the limit the test fails, saying what it was
/// waiting for.
pub fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Common limits of [`eventually`]: what the kernel or a daemon does at once, and what
/// takes a process start or a hand-off.
pub const SOON: Duration = Duration::from_secs(5);
pub const SLOW: Duration = Duration::from_secs(30);

/// Opens `path` for reading and writing, creating it if missing (never truncating).
pub fn open_rw(path: impl AsRef<Path>) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap()
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn statvfs(path: &Path) -> libc::statvfs {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: libc::statvfs is plain integers, for which all-zero bytes are a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(
        // SAFETY: `c` is a NUL-terminated CString and `st` a live, writable statvfs, both
        // alive for the call.
        unsafe { libc::statvfs(c.as_ptr(), &mut st) },
        0,
        "statvfs {}",
        path.display()
    );
    st
}

/// Runs a shell command as `uid:gid` (no supplementary groups) through setpriv.
pub fn sh_as(uid: u32, gid: u32, script: &str) -> Output {
    output_within(
        Command::new("setpriv")
            .args([
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--clear-groups".into(),
            ])
            .args(["sh", "-c", script]),
        COMMAND_LIMIT,
    )
}

/// Runs a command and returns its stdout; panics with its stderr if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = output_within(cmd, COMMAND_LIMIT);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn sh(script: &str) -> String {
    run(Command::new("sh").args(["-c", script]))
}

/// The errno of a failed io::Result, for assertions.
pub fn errno<T: std::fmt::Debug>(r: io::Result<T>) -> i32 {
    r.expect_err("expected an error")
        .raw_os_error()
        .expect("an OS error")
}

/// Turns a libc return value into an io::Result.
pub fn cvt(rc: i64) -> io::Result<i64> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// A shared mapping of a whole file, unmapped on drop.
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    /// `len` bytes of `f` from its start, shared, writable or not.
    pub fn try_of(f: &std::fs::File, len: usize, writable: bool) -> io::Result<Mapping> {
        let prot = libc::PROT_READ | if writable { libc::PROT_WRITE } else { 0 };
        let fd = std::os::fd::AsRawFd::as_raw_fd(f);
        // SAFETY: A new shared mapping of `len` bytes of the open file `f`, at an address
        // the kernel chooses; MAP_FAILED is checked below.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd, 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr as *mut u8,
            len,
        })
    }

    pub fn of(f: &std::fs::File, len: usize, writable: bool) -> Mapping {
        Mapping::try_of(f, len, writable).unwrap_or_else(|e| panic!("mmap: {e}"))
    }

    /// `msync(MS_SYNC)`: what the mapping wrote is in the file.
    pub fn sync(&self) {
        // SAFETY: `ptr` and `len` are this Mapping's live mapping (private fields, set only
        // by `try_of`).
        let r = unsafe { libc::msync(self.ptr as *mut libc::c_void, self.len, libc::MS_SYNC) };
        assert_eq!(r, 0, "msync: {}", io::Error::last_os_error());
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` is a live shared mapping of `len` readable bytes (private fields,
        // set only by `try_of`), unmapped only in Drop, so the slice cannot outlive it; the
        // file's pages are initialised. A caller must not truncate the file while it holds
        // the slice (these are tests that map files they own).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: As `bytes`, and the mapping is writable when `try_of` was asked for it;
        // `&mut self` makes this the only slice of it.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are this Mapping's live mapping, unmapped once, here.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// Pages of `f`'s own page cache (`cachestat(2)`, Linux 6.5): for a file of a volume,
/// FUSE's pages of it, not the backing file's.
pub fn cached_pages(f: &std::fs::File) -> u64 {
    let range = [0u64, 0]; // from offset 0 to the end
    let mut stat = [0u64; 5]; // nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted
    let fd = std::os::fd::AsRawFd::as_raw_fd(f);
    const SYS_CACHESTAT: libc::c_long = 451; // x86_64 (the libc crate has no name for it)
    // SAFETY: cachestat (451 on every architecture) reads the two-u64 range from `range`
    // and writes the five u64 of `struct cachestat` to `stat`, both live arrays of those
    // sizes; `fd` is `f`'s, open for the call.
    let r = unsafe { libc::syscall(SYS_CACHESTAT, fd, range.as_ptr(), stat.as_mut_ptr(), 0) };
    assert_eq!(r, 0, "cachestat: {}", io::Error::last_os_error());
    stat[0]
}
