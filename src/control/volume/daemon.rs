//! The daemon of a FUSE volume: started detached, waited for, found, stopped.
//!
//! `setup` starts `emptydirfs serve` in a session of its own (no terminal, no signal from
//! the caller's shell reaches it), stdin from `/dev/null`, stdout and stderr appended to
//! the log in the meta dir, and a pipe on fd 3 (`--ready-fd 3`) on which the daemon says
//! `ready` once the volume is mounted. End of file on that pipe without `ready` means the
//! daemon failed, and its log says why.
//!
//! No pid file: the daemon of a volume is the process whose command line is
//! `emptydirfs serve ... <volume dir>`, found in `/proc`, so a stale pid can never name a
//! stranger (a pid reused by another program has another command line).

use crate::common::serve_args::ServeArgs;
use crate::error::{Failure, failed};
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The fd on which the daemon reports that it is mounted.
const READY_FD: i32 = 3;
const READY: &[u8] = b"ready\n";

/// How a daemon is started, beyond its arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Launch {
    /// `cgroup.procs` files (one per cgroup hierarchy) the daemon moves itself into
    /// before it runs, so that everything it ever allocates is charged there (charges do
    /// not follow a process that moves later).
    pub cgroup_procs: Vec<PathBuf>,
    /// Its `oom_score_adj` (-1000 to 1000), if not inherited.
    pub oom_score_adj: Option<i32>,
}

/// A daemon just started by this process.
pub struct Started {
    pub child: Child,
    ready: OwnedFd,
}

/// Starts `emptydirfs serve <args>`, detached, logging to `log`, in the cgroups and with
/// the OOM score `launch` says, telling on fd 3 when it serves.
pub fn spawn(args: &ServeArgs, log: &Path, launch: &Launch) -> Result<Started, Failure> {
    let exe = std::env::current_exe().map_err(|e| failed(format!("finding this program: {e}")))?;
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| failed(format!("opening the daemon's log {}: {e}", log.display())))?;
    let err_file = log_file
        .try_clone()
        .map_err(|e| failed(format!("opening the daemon's log: {e}")))?;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors to `fds`, a live array of two c_ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(failed(format!("pipe: {}", io::Error::last_os_error())));
    }
    let (ready, write_end) =
        // SAFETY: `fds` holds the two new descriptors of the successful pipe2 above, each
        // owned by nothing else and wrapped once.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let w = write_end.as_raw_fd();
    // Everything the child writes is made before fork: only syscalls run after it.
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).ok();
    let cgroup_procs: Vec<std::ffi::CString> = launch
        .cgroup_procs
        .iter()
        .map(|p| c(p).ok_or_else(|| failed(format!("bad cgroup path {}", p.display()))))
        .collect::<Result<_, _>>()?;
    let oom_adj = launch.oom_score_adj.map(|n| n.to_string().into_bytes());
    let mut cmd = Command::new(exe);
    let args = ServeArgs {
        ready_fd: Some(READY_FD),
        ..args.clone()
    };
    cmd.arg("serve")
        .args(args.to_args())
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .current_dir("/") // never pin the caller's directory (and its filesystem)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file);
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed (another thread may have held a lock at the
    // fork): it makes system calls only (setsid, signal, open, write, close, fcntl, dup2,
    // close_range), builds io::Errors from errno (no allocation), and reads what was made
    // before the fork (`cgroup_procs`, `oom_adj`, `w`); it allocates, locks and frees
    // nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // A caller that ignores these (nohup, some supervisors) must not make the
            // daemon deaf to the signals teardown stops it with.
            for sig in [libc::SIGTERM, libc::SIGINT] {
                libc::signal(sig, libc::SIG_DFL);
            }
            for procs in &cgroup_procs {
                write_file(procs, b"0")?; // "0": the writing process itself
            }
            if let Some(adj) = &oom_adj {
                write_file(c"/proc/self/oom_score_adj", adj)?;
            }
            // dup2 leaves the new fd without O_CLOEXEC; if w already is 3, clear it.
            if w == READY_FD {
                libc::fcntl(w, libc::F_SETFD, 0);
            } else if libc::dup2(w, READY_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            // Nothing else of the caller's survives exec: a pipe the caller reads to its
            // end, or a lock it holds, must not live as long as the daemon.
            let first = (READY_FD + 1) as libc::c_uint;
            if libc::syscall(
                libc::SYS_close_range,
                first,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        let how = if launch == &Launch::default() {
            String::new()
        } else {
            format!(
                " (in cgroups {:?}, oom_score_adj {:?})",
                launch.cgroup_procs, launch.oom_score_adj
            )
        };
        failed(format!("starting the daemon{how}: {e}"))
    })?;
    drop(write_end); // only the daemon holds it now: its exit means end of file
    Ok(Started { child, ready })
}

/// open, write, close, with nothing allocated (it runs between fork and exec).
fn write_file(path: &std::ffi::CStr, data: &[u8]) -> io::Result<()> {
    // SAFETY: `path` is a NUL-terminated CStr that outlives the call; open takes integer
    // flags.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is the descriptor just opened above, and the kernel reads `data.len()`
    // bytes from `data`, a live slice.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    let e = io::Error::last_os_error();
    // SAFETY: `fd` was opened above, is owned by this function alone, and is closed once
    // here.
    unsafe { libc::close(fd) };
    if n == data.len() as isize {
        Ok(())
    } else {
        Err(e)
    }
}

impl Started {
    /// Waits until the daemon says it is mounted. On failure or timeout the daemon is
    /// killed and reaped, and the error carries the end of its log.
    pub fn wait_ready(mut self, timeout: Duration, log: &Path) -> Result<u32, Failure> {
        let mut got = Vec::new();
        let deadline = Instant::now() + timeout;
        let mut pipe =
            std::fs::File::from(self.ready.try_clone().map_err(|e| failed(e.to_string()))?);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd: pipe.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let n =
                // SAFETY: `pfd` is a live pollfd and the count is 1; its descriptor is
                // `pipe`'s, open for the call.
                unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if n <= 0 {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(failed(format!(
                    "the daemon did not mount the volume within {} s; its log ends:\n{}",
                    timeout.as_secs(),
                    log_tail(log)
                )));
            }
            let mut buf = [0u8; 16];
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => got.extend_from_slice(&buf[..k]),
            }
            if got.starts_with(READY) {
                // The daemon closes the pipe right after `ready`: waiting for that end
                // means that when we return, it holds nothing of ours (a caller looking
                // at its descriptors at once finds no pipe).
                let left = deadline.saturating_duration_since(Instant::now());
                let mut pfd = libc::pollfd {
                    fd: pipe.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the duration of the call.
                unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as i32) };
                let pid = self.child.id();
                CHILDREN
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(self.child);
                return Ok(pid);
            }
        }
        let status = self.child.wait().map_err(|e| failed(e.to_string()))?;
        Err(failed(format!(
            "the daemon failed to start ({status}):\n{}",
            log_tail(log)
        )))
    }
}

/// Daemons this process started and has not reaped: a long-running starter (the CSI
/// plugin) must not collect zombies. Reaped by [`reap`].
static CHILDREN: std::sync::Mutex<Vec<Child>> = std::sync::Mutex::new(Vec::new());

/// Reaps the daemons this process started that have exited.
pub fn reap() {
    let mut children = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    children.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
}

/// The last lines of a log, for error messages.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// Every live `emptydirfs serve` process of ours, with the mount point it serves.
pub fn all() -> Vec<(u32, PathBuf)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, serving(pid)?)))
        .collect()
}

/// The pids of live `emptydirfs serve` processes serving `mountpoint`.
pub fn find(mountpoint: &Path) -> Vec<u32> {
    all()
        .into_iter()
        .filter(|(_, m)| m == mountpoint)
        .map(|(p, _)| p)
        .collect()
}

/// The process name every daemon gives itself (`serve` sets it, whatever the program's
/// file is called), so that daemons are found without reading other processes' memory.
pub const PROCESS_NAME: &str = "emptydirfs";

/// What `pid` serves, if it is `<program> serve ... <mountpoint>` running as our user (a
/// process of another user can put anything in its command line). A zombie has an empty
/// command line and serves nothing.
///
/// The command line is read only of processes named [`PROCESS_NAME`]: reading another
/// process's command line takes its memory map's lock, which a pod's process faulting on
/// a wedged volume can hold for as long as the volume does not answer.
fn serving(pid: u32) -> Option<PathBuf> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    if !comm.starts_with(PROCESS_NAME) {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // SAFETY: geteuid takes nothing and cannot fail.
    if uid != unsafe { libc::geteuid() } {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.strip_suffix(b"\0")?.split(|&b| b == 0).collect();
    if args.get(1) != Some(&&b"serve"[..]) || args.len() < 3 {
        return None;
    }
    Some(PathBuf::from(OsStr::from_bytes(args.last()?)))
}

/// The scheduler state of process `pid` (`R`, `S`, `D`, `T`, `Z`, ...), from
/// `/proc/<pid>/stat`.
pub fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may hold anything: the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The command line daemon `pid` runs with (what its successor is started with).
pub fn serve_args(pid: u32) -> Result<ServeArgs, String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).map_err(|e| e.to_string())?;
    let args: Vec<&OsStr> = cmdline
        .strip_suffix(b"\0")
        .unwrap_or(&cmdline)
        .split(|&b| b == 0)
        .map(OsStr::from_bytes)
        .collect();
    match args.get(1) {
        Some(a) if *a == "serve" => ServeArgs::parse(&args[2..]),
        _ => Err("it is not an emptydirfs serve process".into()),
    }
}

/// The `oom_score_adj` of process `pid`.
pub fn oom_score_adj(pid: u32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A process held by a pidfd: signals reach it and no other process, even after its pid
/// is reused, and it polls readable once all its threads have exited (and so closed
/// `/dev/fuse`).
struct Process {
    pid: u32,
    fd: OwnedFd,
}

impl Process {
    /// Opens `pid` if it still serves `mountpoint` (checked after opening, so the pidfd
    /// is known to name that daemon).
    fn open(pid: u32, mountpoint: &Path) -> Option<Process> {
        // SAFETY: pidfd_open takes a pid and flags, integers only.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` is the descriptor the successful pidfd_open above returned: new,
        // owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        (serving(pid).as_deref() == Some(mountpoint)).then_some(Process { pid, fd })
    }

    fn signal(&self, sig: i32) {
        // SAFETY: `self.fd` is an open pidfd we own; a null siginfo pointer is allowed (the
        // kernel then fills one as kill does), the rest are integers.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
    }

    fn exited(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is a live pollfd and the count is 1; its descriptor is `self.fd`,
        // open for the call.
        unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
    }
}

/// Waits until `pid` has exited with all its threads; false after `limit`.
pub fn wait_exited(pid: u32, limit: Duration) -> bool {
    // SAFETY: pidfd_open takes a pid and flags, integers only.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return true; // no such process
    }
    let p = Process {
        pid,
        // SAFETY: `fd` is the descriptor the successful pidfd_open above returned: new,
        // owned by nothing else.
        fd: unsafe { OwnedFd::from_raw_fd(fd as i32) },
    };
    wait_all(&[&p], limit).is_empty()
}

/// Stops the daemons serving `mountpoint`: SIGTERM (the daemon unmounts and exits), then
/// SIGKILL for any still there after `grace`. Returns the pids that would not die.
pub fn stop(mountpoint: &Path, grace: Duration) -> Vec<u32> {
    let procs: Vec<Process> = find(mountpoint)
        .into_iter()
        .filter_map(|p| Process::open(p, mountpoint))
        .collect();
    if procs.is_empty() {
        return Vec::new();
    }
    // SIGCONT too: a stopped daemon handles its SIGTERM (unmounts, exits) at once instead
    // of being killed after the grace period.
    procs.iter().for_each(|p| {
        p.signal(libc::SIGTERM);
        p.signal(libc::SIGCONT);
    });
    let alive = wait_all(&procs.iter().collect::<Vec<_>>(), grace);
    if alive.is_empty() {
        reap();
        return Vec::new();
    }
    log::warn!(
        "daemon {:?} still running {} s after SIGTERM: killing it",
        alive.iter().map(|p| p.pid).collect::<Vec<_>>(),
        grace.as_secs()
    );
    alive.iter().for_each(|p| p.signal(libc::SIGKILL));
    let left = wait_all(&alive, Duration::from_secs(5))
        .iter()
        .map(|p| p.pid)
        .collect();
    reap();
    left
}

/// Waits up to `limit` for the processes to exit; returns those that did not.
fn wait_all<'a>(procs: &[&'a Process], limit: Duration) -> Vec<&'a Process> {
    let deadline = Instant::now() + limit;
    loop {
        let alive: Vec<&Process> = procs.iter().copied().filter(|p| !p.exited()).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
