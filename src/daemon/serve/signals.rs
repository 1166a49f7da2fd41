//! SIGINT and SIGTERM, received by one thread with `sigwait`.
//!
//! [`block`] must run before any other thread starts, so every thread inherits the
//! blocked mask and the signals wait for [`wait`] instead of killing the process.

use std::io;

pub struct Signals(libc::sigset_t);

/// Blocks SIGINT and SIGTERM in the calling thread (and the threads it starts later).
pub fn block() -> io::Result<Signals> {
    // SAFETY: sigset_t is plain data, for which all-zero bytes are valid, and sigemptyset
    // initialises it before use; the calls take pointers to `set`, a live local, and a null
    // old-mask pointer, which pthread_sigmask allows. Blocking affects only the calling
    // thread (and those it starts later).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        match libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) {
            0 => Ok(Signals(set)),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }
}

impl Signals {
    /// Waits for one of the signals; returns its number.
    pub fn wait(&self) -> i32 {
        let mut sig = 0;
        // SAFETY: `self.0` is a sigset_t initialised by `block`, and `sig` a live c_int
        // sigwait writes.
        unsafe { libc::sigwait(&self.0, &mut sig) };
        sig
    }
}
