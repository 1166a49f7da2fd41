//! A daemon's heartbeat: when its control thread last ran, readable by the control side
//! while the daemon cannot answer anything (stopped by SIGSTOP, frozen, its control
//! thread stuck), so that `status` and the plugin can say for how long it has not.
//!
//! The daemon keeps 8 bytes in a memfd of its own, mapped shared: the `CLOCK_BOOTTIME`
//! milliseconds of its control thread's last round (at least one a second). The control
//! side finds the memfd among the daemon's descriptors (`/proc/<pid>/fd`, by its name)
//! and reads it: no file on any disk is written, nothing in the volume is touched.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The memfd's name, as `/proc/<pid>/fd/<n>` links show it (`/memfd:<name> (deleted)`).
const NAME: &str = "emptydirfs-heartbeat";
const LEN: usize = 8;

/// Milliseconds of `CLOCK_BOOTTIME`: the same clock in every process of the node, never
/// set back, counting suspend.
pub fn boottime_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_BOOTTIME always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}

/// The daemon's side: the mapped memfd.
pub struct Heartbeat {
    _fd: OwnedFd,
    map: *mut AtomicU64,
}

// SAFETY: the mapping is only ever accessed through the `AtomicU64` it holds, and lives
// as long as the `Heartbeat` (unmapped in drop).
unsafe impl Send for Heartbeat {}
// SAFETY: as above; atomic stores from several threads are sound.
unsafe impl Sync for Heartbeat {}

impl Heartbeat {
    pub fn create() -> io::Result<Heartbeat> {
        let name = std::ffi::CString::new(NAME).map_err(io::Error::other)?;
        // SAFETY: `name` is a valid C string; the flags are valid.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: memfd_create returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: `fd` is an open memfd we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), LEN as libc::off_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: mapping LEN bytes of a memfd of at least that size, shared; the result
        // is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let hb = Heartbeat {
            _fd: fd,
            map: p.cast(),
        };
        hb.beat();
        Ok(hb)
    }

    /// Says "alive now".
    pub fn beat(&self) {
        // SAFETY: `map` points at LEN (8) mapped, page-aligned bytes for as long as
        // `self` lives: a valid, aligned AtomicU64.
        unsafe { (*self.map).store(boottime_ms(), Ordering::Relaxed) };
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `create` mapped; nothing uses it afterwards.
        unsafe { libc::munmap(self.map.cast(), LEN) };
    }
}

/// How long ago daemon `pid`'s control thread last ran; `None` if it keeps no heartbeat
/// (an older build, no control socket) or is gone.
pub fn silent_for(pid: u32) -> Option<Duration> {
    let dir = format!("/proc/{pid}/fd");
    let wanted = format!("/memfd:{NAME}");
    for entry in std::fs::read_dir(&dir).ok()?.flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !target.to_string_lossy().starts_with(&wanted) {
            continue;
        }
        let mut buf = [0u8; LEN];
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(entry.path()).ok()?;
        f.read_exact_at(&mut buf, 0).ok()?;
        let last = u64::from_ne_bytes(buf);
        return Some(Duration::from_millis(boottime_ms().saturating_sub(last)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beat_is_seen_from_proc() {
        let hb = Heartbeat::create().unwrap();
        hb.beat();
        let age = silent_for(std::process::id()).expect("our own heartbeat");
        assert!(age < Duration::from_secs(1), "{age:?}");
    }
}
