//! The predecessor's side: the control socket's thread in every daemon. It answers
//! `STATUS` (version, build, hand-offs) and hands the volume over on `HELLO`.

use super::Common;
use crate::common::control::{DaemonStatus, kind};
use crate::common::heartbeat::Heartbeat;
use crate::common::wire;
use crate::daemon::fault::fault;
use crate::daemon::fs::Transfer;
use crate::daemon::fuse::{Connection, Gate, IoModes};
use crate::daemon::state::{FORMAT_VERSION, OLDEST_FORMAT, Writer};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long requests get to stop before a hand-off is given up.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// How long the predecessor waits for each answer of its successor.
const ANSWER_LIMIT: Duration = Duration::from_secs(60);

/// What a running daemon hands on.
pub struct Daemon<B: Transfer> {
    pub backend: Arc<B>,
    pub gate: Arc<Gate>,
    pub io: Arc<IoModes>,
    pub connection: Connection,
    pub threads: usize,
    pub mountpoint: PathBuf,
    pub handoffs: u64,
    pub listener: OwnedFd,
}

/// Serves the control socket on a thread of its own until the process ends (a hand-off
/// that succeeded ends it), beating the heartbeat at least once a second.
pub fn spawn<B: Transfer>(d: Daemon<B>) -> io::Result<()> {
    let heartbeat = Heartbeat::create()?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            loop {
                heartbeat.beat();
                match wait_readable(d.listener.as_fd(), BEAT) {
                    Ok(false) => continue,
                    Ok(true) => {}
                    Err(e) => {
                        log::error!("control socket: {e}; no more hand-offs or status");
                        return;
                    }
                }
                match wire::accept(d.listener.as_fd()) {
                    Ok((conn, uid)) => serve_one(&d, conn, uid),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        log::error!("control socket: {e}; no more hand-offs or status");
                        return;
                    }
                }
            }
        })
        .map(drop)
}

/// How often the control thread beats when nobody asks anything.
const BEAT: Duration = Duration::from_millis(500);

/// Whether `fd` became readable (a connection to accept) within `limit`.
fn wait_readable(fd: BorrowedFd<'_>, limit: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call.
    match unsafe { libc::poll(&mut pfd, 1, limit.as_millis() as i32) } {
        n if n > 0 => Ok(true),
        0 => Ok(false),
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// The daemon's answer to `STATUS`: from counters and what was last measured, never
/// from the backing filesystem or a request, so it comes at once even while every
/// request thread is stuck. A disk volume's free space on the node is refreshed on a
/// thread of its own (one at a time: a stuck one is never joined by more).
fn status<B: Transfer>(d: &Daemon<B>) -> DaemonStatus {
    static REFRESHING: AtomicBool = AtomicBool::new(false);
    if !REFRESHING.swap(true, Ordering::AcqRel) {
        let backend = d.backend.clone();
        let spawned = std::thread::Builder::new()
            .name("statfs".into())
            .spawn(move || {
                backend.statfs();
                REFRESHING.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            REFRESHING.store(false, Ordering::Release);
        }
    }
    let st = d.backend.statfs_cached();
    let bytes = |blocks: u64| blocks.saturating_mul(u64::from(st.block_size));
    let (in_flight, oldest) = d.gate.in_flight();
    DaemonStatus {
        version: env!("CARGO_PKG_VERSION").into(),
        build: crate::common::build().into(),
        pid: Some(std::process::id()),
        medium: d.backend.medium().into(),
        limit_kept_by: d.backend.limit_kept_by().into(),
        data_path: d.io.data_path(&*d.backend).into(),
        handoffs: Some(d.handoffs),
        size_bytes: Some(bytes(st.blocks)),
        used_bytes: Some(bytes(st.blocks - st.blocks_free.min(st.blocks))),
        available_bytes: Some(bytes(st.blocks_avail)),
        inodes: Some(st.files),
        inodes_used: Some(st.files - st.files_free.min(st.files)),
        inodes_free: Some(st.files_free),
        in_flight: Some(in_flight),
        oldest_request_ms: oldest.map(|a| a.as_millis() as u64),
    }
}

fn refuse(conn: &OwnedFd, why: &str) {
    log::warn!("hand-off refused: {why}");
    let _ = wire::send(conn.as_fd(), kind::REFUSED, why.as_bytes(), &[]);
}

fn serve_one<B: Transfer>(d: &Daemon<B>, conn: OwnedFd, uid: u32) {
    // The request is read first, so that a refused asker reads why, not a reset.
    let msg = match wire::recv(conn.as_fd(), Duration::from_secs(10)) {
        Ok(m) => m,
        Err(e) => return log::debug!("control connection: {e}"),
    };
    if uid != 0 {
        return refuse(
            &conn,
            &format!("uid {uid} may not ask: the control socket is root's"),
        );
    }
    match msg.kind {
        kind::STATUS => {
            let text = status(d).to_text();
            let _ = wire::send(conn.as_fd(), kind::STATUS_ANSWER, text.as_bytes(), &[]);
        }
        kind::HELLO => hand_off(d, &conn, &String::from_utf8_lossy(&msg.payload)),
        k => refuse(&conn, &format!("unknown request {:?}", k as char)),
    }
}

fn hand_off<B: Transfer>(d: &Daemon<B>, conn: &OwnedFd, hello: &str) {
    let reads: Vec<u32> = hello
        .lines()
        .filter_map(|l| l.strip_prefix("format="))
        .filter_map(|v| v.parse().ok())
        .collect();
    if !reads.contains(&FORMAT_VERSION) {
        return refuse(
            conn,
            &format!(
                "the successor reads state formats {reads:?}; this daemon writes {FORMAT_VERSION}"
            ),
        );
    }
    log::info!(
        "hand-off asked ({}): stopping requests",
        hello.replace('\n', " ").trim()
    );
    if !d.gate.drain(d.threads, &d.mountpoint, DRAIN_LIMIT) {
        return refuse(
            conn,
            "requests did not stop in time (a request is stuck); still serving",
        );
    }
    match offer(d, conn) {
        Ok(()) => {
            log::info!("the successor serves the volume now; exiting");
            // No destructor, no unmount: the connection is the successor's.
            // SAFETY: _exit ends the process at once, without destructors or atexit
            // handlers, deliberately: the connection and the mount are the successor's now,
            // and nothing of ours may unmount or close them; no memory is touched.
            unsafe { libc::_exit(0) };
        }
        Err(why) => {
            log::warn!("hand-off failed: {why}; serving again");
            d.gate.resume();
        }
    }
}

/// Sends the state; `Ok` once the successor serves (and this daemon must exit).
fn offer<B: Transfer>(d: &Daemon<B>, conn: &OwnedFd) -> Result<(), String> {
    // A state as a build from before format 2 wrote it (this daemon cached every open
    // and told the kernel generation 0 as such a build did; its usage counts metadata with
    // the data), to test taking over from one.
    let as_format_1 = fault("state-format-1");
    let version = match () {
        _ if as_format_1 => 1,
        _ if fault("state-format-newer") => FORMAT_VERSION + 1,
        _ if fault("state-format-older") => OLDEST_FORMAT - 1,
        _ => FORMAT_VERSION,
    };
    let mut w = Writer::writing(if as_format_1 { 1 } else { FORMAT_VERSION });
    Common {
        medium: d.backend.medium().to_string(),
        mountpoint: d.mountpoint.display().to_string(),
        handoffs: d.handoffs,
        init: d.connection.init.clone(),
    }
    .write(&mut w);
    let mut fds: Vec<RawFd> = Vec::new();
    d.backend
        .export(&mut w, &mut fds)
        .map_err(|e| format!("writing the state: {e}"))?;
    if w.version() >= 2 {
        d.io.export(&mut w);
    }
    let mut state = w.finish(version);
    if fault("state-damaged") {
        let mid = state.len() / 2;
        state[mid] ^= 0x55;
    }
    let memfd = sealed_memfd(&state).map_err(|e| format!("the state's memfd: {e}"))?;
    let head = [
        d.connection.device.as_raw_fd(),
        d.listener.as_raw_fd(),
        memfd.as_raw_fd(),
    ];
    let payload = format!("fds={}\nbytes={}\n", fds.len(), state.len());
    let send = |k, p: &[u8], f: &[RawFd]| {
        wire::send(conn.as_fd(), k, p, f).map_err(|e| format!("sending to the successor: {e}"))
    };
    send(kind::OFFER, payload.as_bytes(), &head)?;
    for chunk in fds.chunks(wire::FDS_PER_MESSAGE) {
        send(kind::FDS, b"", chunk)?;
    }
    log::info!(
        "state offered: {} bytes, {} descriptors",
        state.len(),
        fds.len() + head.len()
    );
    let answer = |what| {
        wire::recv(conn.as_fd(), ANSWER_LIMIT).map_err(|e| format!("waiting for {what}: {e}"))
    };
    let m = answer("READY")?;
    match m.kind {
        kind::READY => {}
        kind::REFUSED => {
            return Err(format!(
                "the successor refused: {}",
                String::from_utf8_lossy(&m.payload)
            ));
        }
        k => return Err(format!("unexpected {:?} instead of READY", k as char)),
    }
    send(kind::GO, b"", &[])?;
    // The successor holds this socket until it serves: end of file means it died first.
    match answer("SERVING")?.kind {
        kind::SERVING => Ok(()),
        k => Err(format!("unexpected {:?} instead of SERVING", k as char)),
    }
}

/// A memfd holding `data`, sealed so that it cannot change once sent.
fn sealed_memfd(data: &[u8]) -> io::Result<OwnedFd> {
    use std::os::unix::fs::FileExt;
    // SAFETY: memfd_create reads a static NUL-terminated name and takes integer flags.
    let fd = unsafe {
        libc::memfd_create(
            c"emptydirfs-state".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by a successful memfd_create: a new descriptor nothing
    // else owns.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all_at(data, 0)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: F_ADD_SEALS takes an integer; the memfd is open (`file` owns it).
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file.into())
}
