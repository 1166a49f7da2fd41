//! What the control side asks a daemon over its control socket, and the kinds of every
//! message on that socket (the hand-off's too, see `daemon/handoff`).
//!
//! A query over a unix socket with a timeout can always be given up on: unlike a request
//! through the volume's mount, it never leaves a thread the kernel will not let go.

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

/// A daemon's `STATUS`: `key=value` lines (`version`, `build`, `handoffs`, `pid`,
/// `medium`), or why not.
pub fn status(control: &Path, timeout: Duration) -> Result<String, String> {
    let conn = wire::connect(control).map_err(|e| e.to_string())?;
    wire::send(conn.as_fd(), kind::STATUS, b"", &[]).map_err(|e| e.to_string())?;
    let m = wire::recv(conn.as_fd(), timeout).map_err(|e| e.to_string())?;
    match m.kind {
        kind::STATUS_ANSWER => Ok(String::from_utf8_lossy(&m.payload).into_owned()),
        _ => Err(refused(&m)),
    }
}

/// One field of a status answer.
pub fn field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}
