//! How a volume is mounted and what the kernel is asked for: the one place that decides
//! how the kernel caches and talks to a volume.
//!
//! The mount itself is ours, not fuser's: fuser's own mount always uses type `fuse` (so
//! `mount` could not show `fuse.emptydirfs`), and its unmount fails on busy volumes. We open
//! `/dev/fuse`, call mount(2), and give fuser the connection through `handshake.rs` (so
//! that it can be handed to another daemon later).

use super::Adapter;
use super::gate::Gate;
use super::handshake::{self, Connection, InitExchange, Negotiated};
use super::iomode::IoModes;
use super::notify::Notifier;
use crate::daemon::fs::Backend;
use fuser::{InitFlags, KernelConfig, Session};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

/// Filesystem type shown by `mount` and in `/proc/self/mountinfo`.
pub use crate::common::FSTYPE;

/// Largest write request (the kernel caps it at `fs.fuse.max_pages_limit` pages: 1 MiB).
const MAX_WRITE: u32 = 1 << 20;

/// A mounted (or taken over) volume whose session is ready to run: the session, the
/// connection it serves (to hand on later) and the gate its requests pass.
pub struct Mounted<B: Backend> {
    pub session: Session<Adapter<B>>,
    pub connection: Connection,
    pub gate: Arc<Gate>,
    /// How each open file is served (to hand on later).
    pub io: Arc<IoModes>,
}

/// Mounts `backend` at `mountpoint` and completes the FUSE handshake.
///
/// Options: `allow_other` with the kernel's permission checks (`default_permissions`:
/// pods run as many uids), `nodev` and `nosuid` because pods are not trusted, source
/// `emptydirfs-<medium>` and type `fuse.emptydirfs` so that `mount` and `df` name it.
pub fn mount<B: Backend>(
    backend: Arc<B>,
    mountpoint: &Path,
    threads: usize,
) -> io::Result<Mounted<B>> {
    // SAFETY: open reads a static NUL-terminated path and takes integer flags.
    let dev = unsafe { libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if dev < 0 {
        return Err(io::Error::other(format!(
            "opening /dev/fuse: {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: `dev` was just returned by a successful open: a new descriptor nothing else
    // owns.
    let device = unsafe { OwnedFd::from_raw_fd(dev) };
    let data = format!(
        "fd={dev},rootmode=40000,user_id={},group_id={},default_permissions,allow_other",
        // SAFETY: geteuid takes nothing and cannot fail.
        unsafe { libc::geteuid() },
        // SAFETY: getegid takes nothing and cannot fail.
        unsafe { libc::getegid() }
    );
    let source = format!("emptydirfs-{}", backend.medium());
    crate::mounts::mount(&source, mountpoint, FSTYPE, &data)?;
    let handshake = || -> io::Result<Mounted<B>> {
        let request = handshake::read_init(&device)?;
        let gate = Arc::new(Gate::default());
        let io = Arc::new(IoModes::default());
        let notify = Arc::new(Notifier::default());
        let adapter = Adapter::new(
            backend.clone(),
            gate.clone(),
            io.clone(),
            notify.clone(),
            None,
        );
        let (session, reply) = handshake::session_on(adapter, &request, threads)?;
        handshake::send(&device, &reply)?;
        handshake::attach(&session, &device)?;
        notify.set(session.notifier());
        // The kernel has the reply: backing ids can be opened now, before any request.
        let negotiated = Negotiated::parse(&reply).is_some_and(|n| {
            InitFlags::from_bits_retain(n.flags).contains(InitFlags::FUSE_PASSTHROUGH)
        });
        io.probe(&*backend, &device, negotiated);
        Ok(Mounted {
            session,
            connection: Connection {
                device,
                init: InitExchange { request, reply },
            },
            gate,
            io,
        })
    };
    handshake().inspect_err(|_| {
        let _ = crate::mounts::unmount(mountpoint);
    })
}

/// Serves `backend` on a live connection handed over by its previous daemon: fuser's
/// handshake replays the connection's INIT and adopts what it negotiated, and is refused
/// unless its reply is the one the kernel got.
pub fn take_over<B: Backend>(
    backend: Arc<B>,
    connection: Connection,
    io: IoModes,
    threads: usize,
) -> io::Result<Mounted<B>> {
    let negotiated = Negotiated::parse(&connection.init.reply).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "the connection's INIT reply is malformed",
        )
    })?;
    let gate = Arc::new(Gate::default());
    let io = Arc::new(io);
    let notify = Arc::new(Notifier::default());
    let adapter = Adapter::new(
        backend,
        gate.clone(),
        io.clone(),
        notify.clone(),
        Some(negotiated),
    );
    let (session, reply) = handshake::session_on(adapter, &connection.init.request, threads)?;
    if reply != connection.init.reply {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "this daemon would answer the connection's INIT otherwise ({:?}, the connection has {negotiated:?})",
                Negotiated::parse(&reply)
            ),
        ));
    }
    handshake::attach(&session, &connection.device)?;
    notify.set(session.notifier());
    Ok(Mounted {
        session,
        connection,
        gate,
        io,
    })
}

/// Kernel features asked for at `init`; returns those in force (asked for and offered).
///
/// `HANDLE_KILLPRIV_V2`: the kernel then stops asking for `security.capability` before
/// every write (one request per write instead of two) and leaves clearing setuid and
/// setgid to the filesystem (`fs/killpriv.rs`; the SETATTR flag fuser 0.18 drops is told
/// from the request, `convert::setattr_kill`). It still removes `security.capability`
/// itself.
///
/// `ATOMIC_O_TRUNC` (with `HANDLE_KILLPRIV_V2` only): an `open(O_TRUNC)` of an existing
/// file is one OPEN carrying the flag, which the adapter answers by truncating
/// (`Adapter::truncate_opened`), instead of an OPEN and then a SETATTR of size 0: one
/// round trip less per rewritten file (a build's outputs, a shell's `>`). The kernel
/// still checks what a truncate checks and removes file capabilities itself
/// (`do_truncate`, `setattr_prepare`: a REMOVEXATTR); setid bits are ours as for any
/// truncate. Without `HANDLE_KILLPRIV_V2` the kernel would clear them by the very
/// SETATTR this flag skips.
///
/// `EXPORT_SUPPORT`: file handles (`open_by_handle_at`, NFS export, fanotify) of inodes
/// the kernel has forgotten are decoded by asking the backend for `.` and `..`
/// (`fs/mod.rs`); without it they get ESTALE once the kernel drops its cache.
///
/// Deliberately not asked for: `WRITEBACK_CACHE` (ENOSPC would surface at fsync or close
/// instead of from the write(2) that crosses the limit), and the flags fuser 0.18 mishandles
/// (`SETXATTR_EXT`, `SECURITY_CTX`, `CREATE_SUPP_GROUP`, ...).
///
/// `passthrough` (a backend with backing files): `PASSTHROUGH`, so that the kernel can
/// read and map them itself (`iomode.rs`), at stack depth 1 (the backing filesystem is
/// not itself stacked, and an overlayfs may still be mounted over the volume), and
/// `DIRECT_IO_ALLOW_MMAP`, so that files served direct can still be mapped shared.
pub fn kernel_config(
    config: &mut KernelConfig,
    adopt: Option<&Negotiated>,
    passthrough: bool,
) -> InitFlags {
    if let Some(n) = adopt {
        adopt_negotiated(config, n);
        return InitFlags::from_bits_retain(n.flags) & config.capabilities();
    }
    let wanted = [
        InitFlags::FUSE_EXPORT_SUPPORT,
        InitFlags::FUSE_DO_READDIRPLUS,
        InitFlags::FUSE_READDIRPLUS_AUTO,
        InitFlags::FUSE_PARALLEL_DIROPS,
        InitFlags::FUSE_CACHE_SYMLINKS,
        InitFlags::FUSE_BIG_WRITES,
        InitFlags::FUSE_ASYNC_READ,
        InitFlags::FUSE_HANDLE_KILLPRIV_V2,
    ];
    if passthrough {
        for flag in [
            InitFlags::FUSE_PASSTHROUGH,
            InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP,
        ] {
            if config.add_capabilities(flag).is_err() {
                log::info!("kernel does not offer {flag:?}: the page cache holds data twice");
            }
        }
        let _ = config.set_max_stack_depth(1);
    }
    let mut granted = InitFlags::empty();
    for flag in wanted {
        match config.add_capabilities(flag) {
            Ok(()) => granted |= flag,
            Err(_) => log::debug!("kernel does not offer {flag:?}"),
        }
    }
    // Without KILLPRIV_V2 the kernel clears setid bits by the SETATTR this flag skips.
    if granted.contains(InitFlags::FUSE_HANDLE_KILLPRIV_V2)
        && config
            .add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC)
            .is_ok()
    {
        granted |= InitFlags::FUSE_ATOMIC_O_TRUNC;
    }
    let _ = config.set_max_write(MAX_WRITE);
    let _ = config.set_max_background(64);
    let _ = config.set_congestion_threshold(48);
    granted
}

/// What a successor asks for: exactly what its connection negotiated, whatever this
/// build would choose on a new mount (the kernel keeps what it agreed to at INIT).
fn adopt_negotiated(config: &mut KernelConfig, n: &Negotiated) {
    let flags = InitFlags::from_bits_retain(n.flags) & !InitFlags::FUSE_INIT_EXT;
    if let Err(missing) = config.add_capabilities(flags & config.capabilities()) {
        log::warn!("cannot adopt {missing:?}");
    }
    let _ = config.set_max_readahead(n.max_readahead);
    let _ = config.set_max_write(n.max_write);
    let _ = config.set_max_background(n.max_background);
    let _ = config.set_congestion_threshold(n.congestion_threshold);
    let _ = config.set_time_granularity(std::time::Duration::from_nanos(n.time_gran.into()));
    if n.max_stack_depth > 0 {
        let _ = config.set_max_stack_depth(n.max_stack_depth);
    }
}
