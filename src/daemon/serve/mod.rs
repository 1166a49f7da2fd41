//! `emptydirfs serve`: mount one volume and serve it until SIGTERM or SIGINT.
//!
//! Shutdown is ours, not fuser's (its unmount fails while the mount is busy): on a signal
//! the volume is unmounted, lazily if a file is open or a shell sits in it, and the
//! process exits 0. Exiting closes `/dev/fuse`, which ends a lazily detached mount too.

mod mountpoint;
mod signals;
mod takeover;

use crate::common::serve_args::{Medium, ServeArgs};
use crate::common::wire;
use crate::common::{default_inode_limit, default_size_limit};
use crate::daemon::disk::DiskFs;
use crate::daemon::fs::Transfer;
use crate::daemon::fs::usage::Usage;
use crate::daemon::fs::{BLOCK_SIZE, Backend, ROOT_INO, SetAttr};
use crate::daemon::fuse;
use crate::daemon::handoff;
use crate::daemon::memory::MemoryFs;
use crate::error::{Failure, failed, invalid};
use crate::mounts::{self, Unmounted};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::Duration;

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8)
}

enum Event {
    Signal(i32),
    Ended(std::io::Result<()>),
}

/// Names the process `emptydirfs` (`/proc/<pid>/comm`) whatever the program's file is
/// called: the control side finds daemons by that name before it reads a command line.
fn name_the_process() {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"emptydirfs".as_ptr()) };
}

/// Mounts the volume (or takes it over) and serves it; returns when it has been
/// unmounted.
pub fn serve(opts: &ServeArgs) -> Result<(), Failure> {
    name_the_process();
    // Before any thread starts, so that every thread inherits the blocked mask.
    let signals = signals::block().map_err(|e| failed(format!("blocking signals: {e}")))?;
    if opts.inode_limit == Some(0) {
        return Err(invalid(
            "--inode-limit must be at least 1 (the root directory)",
        ));
    }
    if let Some(fd) = opts.ready_fd {
        check_ready_fd(fd)?;
    }
    if let Some(control) = &opts.take_over {
        return takeover::take_over(opts, control, signals);
    }
    let mountpoint = mountpoint::check(&opts.mountpoint)?;
    let listener = match &opts.control_socket {
        Some(p) => Some(
            wire::listen(p).map_err(|e| failed(format!("control socket {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let threads = opts.threads.map_or_else(default_threads, usize::from);
    let start = |limits: String| Daemon {
        mountpoint: mountpoint.clone(),
        threads,
        limits,
        ready_fd: opts.ready_fd,
        listener,
        handoffs: 0,
    };
    match (opts.medium, &opts.backing) {
        (Medium::Memory, None) => {
            let size = opts.size_limit.unwrap_or_else(default_size_limit);
            let inodes = opts.inode_limit.unwrap_or_else(default_inode_limit);
            let fs = MemoryFs::new(size, inodes)
                .map_err(|e| failed(format!("creating the volume's memory file: {e}")))?;
            let fs = Arc::new(fs);
            set_root(&*fs, opts)?;
            crate::daemon::memory::spawn_reclaimer(&fs)
                .map_err(|e| failed(format!("starting the reclaimer: {e}")))?;
            let d = start(describe(fs.usage()));
            let mounted = mount(&fs, &d)?;
            d.run(fs, mounted, signals, || {})
        }
        (Medium::Disk, Some(backing)) => {
            let fs = Arc::new(
                DiskFs::open(backing, opts.size_limit, opts.inode_limit).map_err(invalid)?,
            );
            set_root(&*fs, opts)?;
            let d = start(describe(fs.usage()));
            let mounted = mount(&fs, &d)?;
            d.run(fs, mounted, signals, || {})
        }
        (Medium::Memory, Some(_)) => Err(invalid("--backing is only for --medium disk")),
        (Medium::Disk, None) => Err(invalid("--medium disk needs --backing DIR")),
    }
}

/// The root's mode and group as asked (kubelet's emptyDir: 0777, with the sticky bit,
/// with an fsGroup's group and setgid), set before the volume is mounted, so that nobody
/// outside the daemon ever needs to enter the volume to set them. Group first: a chown
/// may clear setgid.
fn set_root<B: Backend>(fs: &B, opts: &ServeArgs) -> Result<(), Failure> {
    let set = |what: &str, change: SetAttr| {
        fs.setattr(ROOT_INO, None, &change)
            .map(drop)
            .map_err(|e| failed(format!("setting the {what} of the volume's root: {e}")))
    };
    if let Some(gid) = opts.root_group {
        set(
            "group",
            SetAttr {
                gid: Some(gid),
                ..Default::default()
            },
        )?;
    }
    set(
        "mode",
        SetAttr {
            mode: Some(opts.root_mode),
            ..Default::default()
        },
    )
}

fn mount<B: Backend>(fs: &Arc<B>, d: &Daemon) -> Result<fuse::Mounted<B>, Failure> {
    fuse::mount(fs.clone(), &d.mountpoint, d.threads)
        .map_err(|e| failed(format!("mounting {}: {e}", d.mountpoint.display())))
}

/// The limits as they are enforced: the size in whole 4 KiB blocks, as `df` shows it
/// (`--size-limit 100m`, a tenth of a byte, is "4096 bytes (4 KiB)").
fn describe(usage: &Usage) -> String {
    let size = match usage.block_limit() {
        // No limit of its own (a disk volume without --size-limit).
        b if b >= u64::MAX.div_ceil(BLOCK_SIZE) => "the backing filesystem's size".to_string(),
        b => {
            let bytes = b * BLOCK_SIZE;
            let binary = crate::quantity::format_binary(bytes);
            let unit = binary.trim_start_matches(|c: char| c.is_ascii_digit());
            let number = &binary[..binary.len() - unit.len()];
            format!("{bytes} bytes ({number} {unit}B)")
        }
    };
    let inodes = match usage.inode_limit() {
        u64::MAX => "the backing filesystem's inodes".to_string(),
        n => format!("{n} inodes"),
    };
    format!("{size}, {inodes}")
}

/// A daemon about to serve its volume.
struct Daemon {
    mountpoint: PathBuf,
    threads: usize,
    limits: String,
    ready_fd: Option<i32>,
    listener: Option<OwnedFd>,
    /// Hand-offs the volume went through before this daemon.
    handoffs: u64,
}

impl Daemon {
    /// Serves `mounted` until a signal or an unmount; `started` runs once the session
    /// serves (a successor tells its predecessor there).
    fn run<B: Transfer>(
        self,
        backend: Arc<B>,
        mounted: fuse::Mounted<B>,
        signals: signals::Signals,
        started: impl FnOnce(),
    ) -> Result<(), Failure> {
        let mountpoint = self.mountpoint.clone();
        let fuse::Mounted {
            session,
            connection,
            gate,
            io,
        } = mounted;
        log::info!(
            "serving {} ({}, {}, {} threads{})",
            mountpoint.display(),
            backend.medium(),
            self.limits,
            self.threads,
            if self.handoffs > 0 {
                format!(", taken over: hand-off {}", self.handoffs)
            } else {
                String::new()
            }
        );
        // Before the first request: access times follow the options of this mount.
        if let Err(e) = backend.volume_mount().watch(&mountpoint) {
            log::warn!(
                "access times follow relatime: the options of {} cannot be read ({e})",
                mountpoint.display()
            );
        }
        let (tx, rx) = mpsc::channel();
        let ended = tx.clone();
        std::thread::Builder::new()
            .name("session".into())
            .spawn(move || ended.send(Event::Ended(session.run())))
            .map_err(|e| failed(format!("starting the session: {e}")))?;
        started();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || tx.send(Event::Signal(signals.wait())))
            .map_err(|e| failed(format!("starting the signal thread: {e}")))?;
        let last = backend.clone();
        if let Some(listener) = self.listener {
            handoff::server::spawn(handoff::server::Daemon {
                backend,
                gate,
                io,
                connection,
                threads: self.threads,
                mountpoint: mountpoint.clone(),
                handoffs: self.handoffs,
                listener,
            })
            .map_err(|e| failed(format!("starting the control thread: {e}")))?;
        }
        if let Some(fd) = self.ready_fd {
            say_ready(fd);
        }

        let ended = match rx.recv() {
            Ok(Event::Signal(sig)) => {
                log::info!("signal {sig}: unmounting {}", mountpoint.display());
                shut_down(&mountpoint)?;
                // A clean unmount ends the session at once; a lazy one only when the last
                // file is closed, so do not wait long: exiting aborts the connection.
                let _ = rx.recv_timeout(Duration::from_secs(1));
                Ok(())
            }
            Ok(Event::Ended(Ok(()))) | Err(_) => {
                log::info!("{} was unmounted; exiting", mountpoint.display());
                Ok(())
            }
            Ok(Event::Ended(Err(e))) => Err(failed(format!("session ended: {e}"))),
        };
        // Unmounted (a lazy unmount may still have files open): no successor will come.
        last.end();
        ended
    }
}

/// The ready fd must be an inherited pipe, not stdin/out/err or anything else we would
/// write into and close.
fn check_ready_fd(fd: i32) -> Result<(), Failure> {
    // SAFETY: libc::stat is plain integers, for which all-zero bytes are a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let is_pipe = fd >= 3
        // SAFETY: fstat writes one libc::stat to `st`, a live local; `fd` is only a number
        // here, and fstat of any number is harmless (EBADF if it is not open).
        && unsafe { libc::fstat(fd, &mut st) } == 0
        && st.st_mode & libc::S_IFMT == libc::S_IFIFO;
    if is_pipe {
        Ok(())
    } else {
        Err(invalid(format!("--ready-fd {fd} is not an inherited pipe")))
    }
}

/// Tells whoever started us (`setup`) that the volume is mounted, and closes the fd.
fn say_ready(fd: i32) {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    // SAFETY: the fd was handed to us for this alone; nothing else in the process uses it.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
    if let Err(e) = pipe.write_all(b"ready\n") {
        log::warn!("telling the ready fd {fd}: {e}");
    }
}

/// Unmounts our volume, lazily if it is busy, unless something else is mounted there now.
fn shut_down(mountpoint: &Path) -> Result<(), Failure> {
    match mounts::mounted_at(mountpoint) {
        Ok(Some(m)) if m.fstype == fuse::FSTYPE => {}
        Ok(_) => return Ok(()), // already unmounted by someone else
        Err(e) => return Err(failed(format!("reading the mount table: {e}"))),
    }
    match mounts::unmount(mountpoint) {
        Ok(Unmounted::Lazy) => {
            log::warn!(
                "{} was busy: detached lazily; open files now fail",
                mountpoint.display()
            );
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) => Err(failed(format!("unmounting {}: {e}", mountpoint.display()))),
    }
}
