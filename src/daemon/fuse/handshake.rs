//! The FUSE INIT handshake, done so that a live connection can change hands.
//!
//! The kernel sends INIT once per connection. fuser 0.18's `Session::from_fd` always
//! reads an INIT from the descriptor it is given and answers it before it serves, so a
//! daemon taking over a live connection (which will never see INIT again) cannot hand it
//! the real `/dev/fuse` descriptor directly. The trick, used by every daemon alike:
//!
//! 1. the INIT request is read (the first daemon reads it from `/dev/fuse`; a successor
//!    is given the bytes its predecessor read);
//! 2. fuser gets one end of a `SOCK_SEQPACKET` socket pair (reads and writes keep their
//!    boundaries, as on `/dev/fuse`) with that INIT queued on it, and does its handshake
//!    there: our `init` chooses the features, fuser writes its reply into the pair;
//! 3. the first daemon writes that reply to `/dev/fuse` (the kernel's real handshake); a
//!    successor checks it equals its predecessor's, byte for byte (same features, same
//!    sizes: a successor adopts what the connection negotiated, see [`Negotiated`]);
//! 4. `dup2` puts the real connection on the descriptor number fuser holds, closing its
//!    end of the pair, before `Session::run` clones that descriptor for its worker
//!    threads: from then on fuser reads and answers the real connection.

use super::Adapter;
use crate::daemon::fs::Backend;
use fuser::{Config, Session, SessionACL};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// `FUSE_INIT`'s opcode.
const OPCODE_INIT: u32 = 26;
/// `fuse_in_header` and `fuse_out_header`.
const IN_HEADER: usize = 40;
const OUT_HEADER: usize = 16;

/// The INIT request of a connection and the reply that set it up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitExchange {
    pub request: Vec<u8>,
    pub reply: Vec<u8>,
}

/// A live FUSE connection: a descriptor of it (kept open, so the connection lives while
/// it is handed on) and its INIT.
pub struct Connection {
    pub device: OwnedFd,
    pub init: InitExchange,
}

/// What the INIT reply of a connection settled, which a successor asks for again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub flags: u64,
    pub max_readahead: u32,
    pub max_background: u16,
    pub congestion_threshold: u16,
    pub max_write: u32,
    pub time_gran: u32,
    pub max_stack_depth: u32,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl Negotiated {
    /// Reads a reply as fuser writes it: `fuse_out_header`, then `fuse_init_out`.
    pub fn parse(reply: &[u8]) -> Option<Negotiated> {
        let o = OUT_HEADER;
        if u32_at(reply, 4)? != 0 {
            return None; // an error reply
        }
        // fuse_init_out: major, minor, max_readahead, flags, max_background (u16),
        // congestion_threshold (u16), max_write, time_gran, max_pages (u16), unused (u16),
        // flags2, max_stack_depth.
        let (flags, flags2) = (u32_at(reply, o + 12)?, u32_at(reply, o + 32)?);
        Some(Negotiated {
            flags: u64::from(flags) | u64::from(flags2) << 32,
            max_readahead: u32_at(reply, o + 8)?,
            max_background: u16_at(reply, o + 16)?,
            congestion_threshold: u16_at(reply, o + 18)?,
            max_write: u32_at(reply, o + 20)?,
            time_gran: u32_at(reply, o + 24)?,
            max_stack_depth: u32_at(reply, o + 36)?,
        })
    }
}

/// Reads the kernel's INIT request from a freshly mounted `/dev/fuse`.
pub fn read_init(device: &OwnedFd) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 8192];
    loop {
        // SAFETY: `device` is an open descriptor we own, and the kernel writes at most
        // `buf.len()` bytes to `buf`, a live Vec of that length.
        let n = unsafe { libc::read(device.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            break;
        }
        let e = io::Error::last_os_error();
        if !matches!(
            e.raw_os_error(),
            Some(libc::EINTR | libc::ENOENT | libc::EAGAIN)
        ) {
            return Err(e);
        }
    }
    if buf.len() < IN_HEADER || u32_at(&buf, 4) != Some(OPCODE_INIT) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the first request on the connection is not INIT",
        ));
    }
    Ok(buf)
}

/// Steps 2 and 4 of the trick for a session serving `adapter` on `device`: fuser's
/// handshake over a socket pair with `init` queued, then the real connection put on
/// fuser's descriptor. Returns the session (not yet running) and fuser's reply, for the
/// caller to send to the kernel (a first daemon) or compare (a successor) before it runs
/// the session.
pub fn session_on<B: Backend>(
    adapter: Adapter<B>,
    init: &[u8],
    threads: usize,
) -> io::Result<(Session<Adapter<B>>, Vec<u8>)> {
    let mut pair = [0; 2];
    let kind = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC;
    // SAFETY: socketpair writes two descriptors to `pair`, a live array of two c_ints.
    if unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, pair.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `pair` holds the two new descriptors of the successful socketpair above, each
    // owned by nothing else and wrapped once.
    let (ours, fusers) = unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
    send(&ours, init)?;
    let mut cfg = Config::default();
    cfg.n_threads = Some(threads.max(1));
    cfg.clone_fd = true;
    let session = Session::from_fd(adapter, fusers, SessionACL::All, cfg)?;
    let mut reply = vec![0u8; 4096];
    // SAFETY: `ours` is open for the call, and the kernel writes at most `reply.len()`
    // bytes to `reply`, a live Vec of that length.
    let n = unsafe {
        libc::recv(
            ours.as_raw_fd(),
            reply.as_mut_ptr().cast(),
            reply.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::other(format!(
            "no INIT reply from the session: {}",
            io::Error::last_os_error()
        )));
    }
    reply.truncate(n as usize);
    Ok((session, reply))
}

/// Step 4: the real connection on the descriptor number the session reads.
pub fn attach<B: Backend>(session: &Session<Adapter<B>>, device: &OwnedFd) -> io::Result<()> {
    let target = session.as_fd().as_raw_fd();
    // SAFETY: Both are open descriptors: `device` ours, `target` the session's own, which
    // it keeps open. dup3 makes `target` refer to the connection in one step, before the
    // session runs, so no thread of the session uses that number meanwhile (I/O safety: the
    // session still owns it, now naming the real connection).
    if unsafe { libc::dup3(device.as_raw_fd(), target, libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Writes one whole message (a request to fuser's end, a reply to the kernel).
pub fn send(fd: &OwnedFd, data: &[u8]) -> io::Result<()> {
    // SAFETY: `fd` is open (borrowed through `&OwnedFd`), and the kernel reads `data.len()`
    // bytes from `data`, a live slice.
    let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
    if n == data.len() as isize {
        Ok(())
    } else if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Err(io::Error::other("short write of a FUSE message"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_read_as_fuser_writes_it() {
        let mut r = vec![0u8; OUT_HEADER + 64];
        r[0..4].copy_from_slice(&80u32.to_ne_bytes());
        let o = OUT_HEADER;
        r[o + 8..o + 12].copy_from_slice(&131072u32.to_ne_bytes());
        r[o + 12..o + 16].copy_from_slice(&0x8000_0001u32.to_ne_bytes());
        r[o + 16..o + 18].copy_from_slice(&64u16.to_ne_bytes());
        r[o + 18..o + 20].copy_from_slice(&48u16.to_ne_bytes());
        r[o + 20..o + 24].copy_from_slice(&(1u32 << 20).to_ne_bytes());
        r[o + 24..o + 28].copy_from_slice(&1u32.to_ne_bytes());
        r[o + 32..o + 36].copy_from_slice(&2u32.to_ne_bytes());
        let n = Negotiated::parse(&r).unwrap();
        assert_eq!(n.flags, 0x2_8000_0001);
        assert_eq!(
            (n.max_readahead, n.max_background, n.congestion_threshold),
            (131072, 64, 48)
        );
        assert_eq!(
            (n.max_write, n.time_gran, n.max_stack_depth),
            (1 << 20, 1, 0)
        );
        r[4..8].copy_from_slice(&(-22i32).to_ne_bytes());
        assert_eq!(Negotiated::parse(&r), None, "an error reply");
    }
}
