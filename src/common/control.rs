//! What the control side asks a daemon over its control socket, the answer's one format
//! ([`DaemonStatus`]: the daemon writes it, the control side reads it), and the kinds of
//! every message on that socket (the hand-off's too, see `daemon/handoff`).
//!
//! A query over a unix socket with a timeout can always be given up on: unlike a request
//! through the volume's mount, it never leaves a thread the kernel will not let go. The
//! daemon answers from its counters, never from its backing filesystem, so a daemon whose
//! request threads are stuck (a wedged backing disk) still says so.

use super::wire;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

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

/// Why a daemon refused, from its `REFUSED` message.
pub fn refused(m: &wire::Message) -> String {
    format!("refused: {}", String::from_utf8_lossy(&m.payload))
}

/// A daemon's answer to `STATUS`: who it is, the volume's counters, and how its requests
/// are doing. Sent as `key=value` lines; unknown keys are ignored and missing ones are
/// `None`, so older and newer builds read each other's answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DaemonStatus {
    pub version: String,
    /// `0.1.0+<hash of the executable>`.
    pub build: String,
    pub pid: Option<u32>,
    /// `memory` or `disk`.
    pub medium: String,
    /// What refuses the write that would cross the size limit: `tmpfs` (a memory
    /// volume's own tmpfs, in the kernel, at `write(2)`) or `daemon` (each write reaches
    /// the daemon, which reserves its blocks first). Both answer ENOSPC. Empty: an older
    /// daemon that does not say.
    pub limit_kept_by: String,
    /// Who moves file data: `kernel` (FUSE passthrough for reads, writes and mappings),
    /// `kernel reads` (passthrough for reads, writes through the daemon) or `daemon`
    /// (the kernel refused passthrough: every read and write is a request). Empty: an
    /// older daemon.
    pub data_path: String,
    /// Hand-offs the volume went through before this daemon.
    pub handoffs: Option<u64>,
    /// Bytes: the volume's size as `df` shows it (its limit, or without one what it
    /// holds plus what the node's disk has left as last measured).
    pub size_bytes: Option<u64>,
    pub used_bytes: Option<u64>,
    pub available_bytes: Option<u64>,
    pub inodes: Option<u64>,
    pub inodes_used: Option<u64>,
    pub inodes_free: Option<u64>,
    /// Requests the daemon is working on now.
    pub in_flight: Option<u64>,
    /// How long the oldest of them has been running (milliseconds); `None` when idle.
    pub oldest_request_ms: Option<u64>,
}

impl DaemonStatus {
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut put = |k: &str, v: String| out.push_str(&format!("{k}={v}\n"));
        put("version", self.version.clone());
        put("build", self.build.clone());
        put("medium", self.medium.clone());
        for (k, v) in [
            ("limit_kept_by", &self.limit_kept_by),
            ("data_path", &self.data_path),
        ] {
            if !v.is_empty() {
                put(k, v.clone());
            }
        }
        let nums = [
            ("pid", self.pid.map(u64::from)),
            ("handoffs", self.handoffs),
            ("size_bytes", self.size_bytes),
            ("used_bytes", self.used_bytes),
            ("available_bytes", self.available_bytes),
            ("inodes", self.inodes),
            ("inodes_used", self.inodes_used),
            ("inodes_free", self.inodes_free),
            ("in_flight", self.in_flight),
            ("oldest_request_ms", self.oldest_request_ms),
        ];
        for (k, v) in nums {
            if let Some(v) = v {
                put(k, v.to_string());
            }
        }
        out
    }

    pub fn parse(text: &str) -> DaemonStatus {
        let get = |k: &str| field(text, k).map(str::to_string);
        let num = |k: &str| field(text, k).and_then(|v| v.parse::<u64>().ok());
        DaemonStatus {
            version: get("version").unwrap_or_default(),
            build: get("build").unwrap_or_default(),
            pid: field(text, "pid").and_then(|v| v.parse().ok()),
            medium: get("medium").unwrap_or_default(),
            limit_kept_by: get("limit_kept_by").unwrap_or_default(),
            data_path: get("data_path").unwrap_or_default(),
            handoffs: num("handoffs"),
            size_bytes: num("size_bytes"),
            used_bytes: num("used_bytes"),
            available_bytes: num("available_bytes"),
            inodes: num("inodes"),
            inodes_used: num("inodes_used"),
            inodes_free: num("inodes_free"),
            in_flight: num("in_flight"),
            oldest_request_ms: num("oldest_request_ms"),
        }
    }
}

/// Why a status query got no answer.
#[derive(Debug)]
pub enum NoAnswer {
    /// Nobody listens on the socket (no such socket, or its daemon is gone).
    NoListener(std::io::Error),
    /// Something listens but did not answer in time (a stopped or stuck daemon).
    Silent(String),
    /// It answered something else (a refusal), or the socket is not one of ours.
    Other(String),
}

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoAnswer::NoListener(e) => write!(f, "nobody listens on its control socket ({e})"),
            NoAnswer::Silent(e) => write!(f, "its control socket does not answer ({e})"),
            NoAnswer::Other(e) => f.write_str(e),
        }
    }
}

/// Asks the daemon behind `control` for its [`DaemonStatus`], giving up after `timeout`
/// in all (connecting included: a stopped daemon's full backlog never blocks us).
pub fn status(control: &Path, timeout: Duration) -> Result<DaemonStatus, NoAnswer> {
    use std::io::ErrorKind::{ConnectionRefused, NotFound};
    let conn = wire::connect(control, timeout).map_err(|e| match e.kind() {
        ConnectionRefused | NotFound => NoAnswer::NoListener(e),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            NoAnswer::Silent(e.to_string())
        }
        _ => NoAnswer::Other(e.to_string()),
    })?;
    wire::send(conn.as_fd(), kind::STATUS, b"", &[])
        .map_err(|e| NoAnswer::Silent(e.to_string()))?;
    let m = wire::recv(conn.as_fd(), timeout).map_err(|e| match e.kind() {
        // The daemon died between accept and answer.
        std::io::ErrorKind::UnexpectedEof => NoAnswer::NoListener(e),
        _ => NoAnswer::Silent(e.to_string()),
    })?;
    match m.kind {
        kind::STATUS_ANSWER => Ok(DaemonStatus::parse(&String::from_utf8_lossy(&m.payload))),
        _ => Err(NoAnswer::Other(refused(&m))),
    }
}

/// One field of a `key=value` answer.
pub fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_reads_back_as_itself() {
        let s = DaemonStatus {
            version: "0.1.0".into(),
            build: "0.1.0+abc".into(),
            pid: Some(42),
            medium: "disk".into(),
            limit_kept_by: "daemon".into(),
            data_path: "kernel reads".into(),
            handoffs: Some(2),
            size_bytes: Some(64 << 20),
            used_bytes: Some(4096),
            available_bytes: None,
            inodes: None,
            inodes_used: Some(1),
            inodes_free: None,
            in_flight: Some(0),
            oldest_request_ms: None,
        };
        assert_eq!(DaemonStatus::parse(&s.to_text()), s);
        // An older daemon's answer: what it does not say is unknown.
        let old = DaemonStatus::parse("version=0.1.0\nbuild=x\nhandoffs=1\npid=7\nmedium=memory\n");
        assert_eq!(
            (
                old.handoffs,
                old.pid,
                old.used_bytes,
                old.limit_kept_by.as_str()
            ),
            (Some(1), Some(7), None, "")
        );
    }
}
