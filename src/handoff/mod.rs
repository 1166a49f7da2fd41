//! Handing a live volume from its daemon (the predecessor) to a new `emptydirfs serve`
//! process (the successor), so an upgrade or a restart costs the pod nothing: no request
//! fails, the data stays (a memory volume's memfd is shared, not copied), and every
//! descriptor the pod holds keeps working.
//!
//! The kernel keeps a FUSE connection while any process holds a `/dev/fuse` descriptor
//! of it, and queues requests while nobody reads them. So, over the daemon's control
//! socket (`wire.rs`, mode 0600, root only):
//!
//! ```text
//! successor                         predecessor
//! HELLO (format it reads)    ---->  checks the asker is root and the format;
//!                                   stops taking requests: every thread answers what
//!                                   it read and parks (fuse/gate.rs); writes its state
//!                                   (format.rs) into a sealed memfd
//!                            <----  OFFER: /dev/fuse, the control socket, the state;
//!                                   FDS: the backend's descriptors, 250 a message
//! checks and rebuilds the state,
//! replays INIT (fuse/handshake.rs)
//! READY                      ---->
//!                            <----  GO: from here the connection is the successor's
//! serves; SERVING            ---->  exits, its threads still parked
//! ```
//!
//! Before GO, anything that goes wrong on either side (a refusal, a state the successor
//! cannot read, the successor dying: end of file on the socket) ends with the
//! predecessor resuming: its parked threads read on, the queued requests are served, and
//! none has failed. After GO the predecessor waits for SERVING; end of file instead
//! means the successor died (it holds the socket until it serves), and the predecessor
//! resumes then too.
//!
//! # Layout
//! - [`format`]: the versioned, checksummed state container;
//! - [`wire`]: the control socket and its messages with descriptors;
//! - [`server`]: the predecessor's side (and `STATUS` answers);
//! - [`client`]: the successor's side, and status queries.

pub mod client;
pub mod format;
pub mod server;
pub mod wire;

use format::{Reader, Refused, Writer};
use std::os::fd::{OwnedFd, RawFd};
use std::sync::OnceLock;

/// Message kinds.
pub mod kind {
    pub const HELLO: u8 = b'H';
    pub const STATUS: u8 = b'S';
    pub const STATUS_ANSWER: u8 = b's';
    pub const OFFER: u8 = b'O';
    pub const FDS: u8 = b'F';
    pub const READY: u8 = b'R';
    pub const GO: u8 = b'G';
    pub const SERVING: u8 = b'D';
    pub const REFUSED: u8 = b'X';
}

/// A backend whose whole state can be written out and read back into a new process.
pub trait Transfer: crate::fs::Backend + Sized {
    /// Writes the state; descriptors it needs are pushed to `fds`, and the state records
    /// their positions. Called with no request running.
    fn export(&self, w: &mut Writer, fds: &mut Vec<RawFd>) -> std::io::Result<()>;
    /// Rebuilds the backend from what [`Transfer::export`] wrote.
    fn import(r: &mut Reader<'_>, fds: &mut FdTable) -> Result<Self, Refused>;
}

/// Descriptors received, taken by position (each once).
pub struct FdTable(Vec<Option<OwnedFd>>);

impl FdTable {
    pub fn new(fds: Vec<OwnedFd>) -> FdTable {
        FdTable(fds.into_iter().map(Some).collect())
    }

    pub fn take(&mut self, i: u64) -> Result<OwnedFd, Refused> {
        self.0
            .get_mut(i as usize)
            .and_then(Option::take)
            .ok_or_else(|| format!("descriptor {i} of the state is missing or taken twice"))
    }

    /// The position a descriptor will have when pushed.
    pub fn push(fds: &mut Vec<RawFd>, fd: RawFd) -> u64 {
        fds.push(fd);
        (fds.len() - 1) as u64
    }
}

/// What every daemon's state starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Common {
    pub medium: String,
    pub mountpoint: String,
    /// Hand-offs this volume went through before this one.
    pub handoffs: u64,
    pub init: crate::fuse::InitExchange,
}

impl Common {
    pub fn write(&self, w: &mut Writer) {
        w.str(&self.medium);
        w.str(&self.mountpoint);
        w.u64(self.handoffs);
        w.bytes(&self.init.request);
        w.bytes(&self.init.reply);
    }

    pub fn read(r: &mut Reader<'_>) -> Result<Common, Refused> {
        Ok(Common {
            medium: r.str()?.to_string(),
            mountpoint: r.str()?.to_string(),
            handoffs: r.u64()?,
            init: crate::fuse::InitExchange {
                request: r.bytes()?.to_vec(),
                reply: r.bytes()?.to_vec(),
            },
        })
    }
}

/// This program's version and build: `0.1.0+<hash of the executable>`, so that two
/// builds of one version are told apart.
pub fn build() -> &'static str {
    static BUILD: OnceLock<String> = OnceLock::new();
    BUILD.get_or_init(|| {
        let hash = std::fs::read("/proc/self/exe")
            .map(|b| format!("{:016x}", format::checksum(&b)))
            .unwrap_or_else(|_| "unknown".into());
        format!(
            "{}+{}",
            env!("CARGO_PKG_VERSION"),
            &hash[..12.min(hash.len())]
        )
    })
}

/// Test-only fault injection (`EMPTYDIRFS_TEST_FAULT=<name>`): whether fault `name` is
/// asked for. Used by the tests that kill a successor at each step of a hand-off, or
/// make a predecessor write a state to refuse; never set in production.
pub fn fault(name: &str) -> bool {
    static FAULT: OnceLock<Option<String>> = OnceLock::new();
    FAULT
        .get_or_init(|| std::env::var("EMPTYDIRFS_TEST_FAULT").ok())
        .as_deref()
        == Some(name)
}

/// Dies at a step of a hand-off if the tests ask for it, as a kill there would.
pub fn die_at(step: &str) {
    if fault(&format!("kill-successor-{step}")) {
        log::warn!("test fault: killed at {step}");
        unsafe { libc::raise(libc::SIGKILL) };
    }
}
