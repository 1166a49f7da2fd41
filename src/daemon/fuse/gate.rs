//! The gate every request passes: how a daemon stops taking requests for a hand-off
//! without failing one.
//!
//! fuser's worker threads each loop: read a request from `/dev/fuse`, dispatch it (our
//! handler answers it), read the next. A request a thread has read belongs to that
//! thread's `/dev/fuse` descriptor: only an answer written there ends it, and the kernel
//! fails it if that descriptor is closed first. So a daemon that hands its connection on
//! must answer everything it read and then read nothing more. Each handler holds a
//! [`Pass`] for its whole run; while the gate is [`Gate::drain`]ing, a pass dropped at the
//! end of a handler (after its answer went out) parks its thread instead of letting it
//! read again. Threads idle in `read` are woken with requests of the daemon's own
//! (`statfs` of its mount point), which they answer and then park. Once every thread is
//! parked no request is read: new ones wait in the kernel for whoever serves next.
//! [`Gate::resume`] lets the threads go on (a failed hand-off); a daemon whose hand-off
//! succeeded exits with its threads parked.

use super::inflight::{InFlight, Taken};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Gate {
    /// Read by every request without a lock; changed only under `state`'s.
    draining: AtomicBool,
    /// The requests holding a pass now, and since when.
    in_flight: InFlight,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Threads parked in a pass's drop.
    parked: usize,
}

/// Held by a handler while it runs.
pub struct Pass<'a>(&'a Gate, Taken);

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Taken first thing by every handler.
    pub fn pass(&self) -> Pass<'_> {
        Pass(self, self.in_flight.start())
    }

    /// Requests in progress now, and how long the oldest has run.
    pub fn in_flight(&self) -> (u64, Option<Duration>) {
        self.in_flight.snapshot()
    }

    /// Stops the `threads` request threads of the volume mounted at `mountpoint`, each
    /// after it answered what it had read. False (and the gate open again) if they were
    /// not all parked within `limit`: a handler is stuck, and no hand-off should wait on
    /// it.
    pub fn drain(&self, threads: usize, mountpoint: &Path, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        {
            let _s = self.lock();
            self.draining.store(true, SeqCst);
        }
        // Wakers whose request no thread has answered yet: one per unparked thread.
        let outstanding = Arc::new(AtomicUsize::new(0));
        loop {
            let parked = self.lock().parked;
            if parked >= threads {
                return true;
            }
            if outstanding.load(Relaxed) < threads - parked {
                outstanding.fetch_add(1, Relaxed);
                wake(mountpoint.to_path_buf(), outstanding.clone());
            }
            if Instant::now() >= deadline {
                self.resume();
                return false;
            }
            let s = self.lock();
            let _ = self
                .changed
                .wait_timeout(s, Duration::from_millis(1))
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Lets parked threads go on reading requests.
    pub fn resume(&self) {
        let _s = self.lock();
        self.draining.store(false, SeqCst);
        self.changed.notify_all();
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let gate = self.0;
        gate.in_flight.end(self.1);
        if !gate.draining.load(SeqCst) {
            return; // the common case: no lock
        }
        let mut s = gate.lock();
        if gate.draining.load(SeqCst) {
            s.parked += 1;
            gate.changed.notify_all();
            while gate.draining.load(SeqCst) {
                s = gate.changed.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            s.parked -= 1;
        }
    }
}

/// A request of the daemon's own, from a thread that may wait for its answer as long as
/// it takes (until a successor serves it, if all threads are parked before it is read).
fn wake(mountpoint: PathBuf, outstanding: Arc<AtomicUsize>) {
    let spawned = std::thread::Builder::new()
        .name("wake".into())
        .spawn(move || {
            use std::os::unix::ffi::OsStrExt;
            let Ok(c) = std::ffi::CString::new(mountpoint.as_os_str().as_bytes()) else {
                return;
            };
            // SAFETY: libc::statvfs is plain integers, for which all-zero bytes are a valid
            // value.
            let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
            // SAFETY: `c` is a NUL-terminated CString and `st` a live, writable statvfs,
            // both outliving the call (whose answer is not needed: it only wakes a request
            // thread).
            unsafe { libc::statvfs(c.as_ptr(), &mut st) };
            outstanding.fetch_sub(1, Relaxed);
        });
    if let Err(e) = spawned {
        log::warn!("starting a thread to wake the request threads: {e}");
    }
}
