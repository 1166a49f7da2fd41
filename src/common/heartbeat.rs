//! A daemon's heartbeat: when its control thread last ran, readable by the control side
//! while the daemon cannot answer anything (stopped by SIGSTOP, frozen, its control
//! thread stuck), so that `status` and the plugin can say for how long it has not.
//!
//! The daemon keeps 8 bytes in a memfd of its own, mapped shared: the `CLOCK_BOOTTIME`
//! milliseconds of its control thread's last round (at least one a second). The control
//! side finds the memfd among the daemon's descriptors (`/proc/<pid>/fd`, by its name)
//! and reads it: no file on any disk is written, nothing in the volume is touched.

use super::shared_map::SharedMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The memfd's name, as `/proc/<pid>/fd/<n>` links show it (`/memfd:<name> (deleted)`).
const NAME: &std::ffi::CStr = c"emptydirfs-heartbeat";
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
pub struct Heartbeat(SharedMap);

impl Heartbeat {
    pub fn create() -> io::Result<Heartbeat> {
        let hb = Heartbeat(SharedMap::create(NAME, LEN)?);
        hb.beat();
        Ok(hb)
    }

    /// Says "alive now".
    pub fn beat(&self) {
        // SAFETY: the mapping is LEN (8) page-aligned bytes for as long as `self` lives,
        // used only as this one AtomicU64: a valid, aligned atomic.
        let at = unsafe { &*self.0.as_ptr().cast::<AtomicU64>() };
        at.store(boottime_ms(), Ordering::Relaxed);
    }
}

/// How long ago daemon `pid`'s control thread last ran; `None` if it keeps no heartbeat
/// (an older build, no control socket) or is gone.
pub fn silent_for(pid: u32) -> Option<Duration> {
    let dir = format!("/proc/{pid}/fd");
    let wanted = format!("/memfd:{}", NAME.to_string_lossy());
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
