//! How a volume is doing, learnt without ever entering it: from the mount table, from its
//! daemon over the daemon's control socket (which can always be given up on), from the
//! daemon's heartbeat and process state, and from the kernel's count of requests it holds
//! for the daemon (fusectl). Never a `statfs`, `stat` or `open` of anything inside a FUSE
//! volume, on any thread: a request a daemon has read cannot be interrupted, so a caller
//! that sent one to a stopped or stuck daemon could never exit.
//!
//! hugetlbfs volumes are the kernel's own: a `statfs` of one always answers.

use super::{daemon, fusectl, hugepages};
use crate::common::control::{self, DaemonStatus, NoAnswer};
use crate::common::{FSTYPE, heartbeat};
use crate::mounts;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// How long a daemon gets to answer its control socket.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// A request running longer than this means the daemon is not answering (stuck on its
/// backing disk, deadlocked), even though its control thread still answers.
pub const STALL_AFTER: Duration = Duration::from_secs(5);

/// Usage as the daemon's counters (or a kernel filesystem's `statfs`) report it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Size in bytes (`None` when the filesystem reports none, as hugetlbfs without `size=`).
    pub size: Option<u64>,
    pub used_bytes: Option<u64>,
    /// What an unprivileged writer may still use (`f_bavail`).
    pub available_bytes: Option<u64>,
    pub inodes: Option<u64>,
    pub inodes_used: Option<u64>,
    pub inodes_free: Option<u64>,
}

/// A daemon alive but not answering: what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stall {
    /// How long it has not answered, as far as known.
    pub since: Option<Duration>,
    /// Requests the kernel holds for it (sent, not yet answered); `None` if unknown.
    pub waiting: Option<u64>,
    /// What is known of why: stopped, a request running for long, a silent control socket.
    pub why: String,
}

impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not answering")?;
        if let Some(d) = self.since {
            write!(f, " for {} s", d.as_secs())?;
        }
        write!(f, " ({}", self.why)?;
        if let Some(n) = self.waiting {
            write!(f, "; {n} requests waiting in the kernel")?;
        }
        f.write_str(")")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Mounted (with this filesystem type) and answering.
    Serving(String, Counters),
    /// A FUSE mount whose daemon is gone: every access fails with `ENOTCONN`.
    DeadMount,
    /// Mounted, its daemon alive but not answering (stopped, stuck).
    NotAnswering(Stall),
    /// Mounted, and asking failed otherwise.
    Failing(String),
    NotMounted,
}

impl Health {
    pub fn label(&self) -> &'static str {
        match self {
            Health::Serving(..) => "serving",
            Health::DeadMount => "dead mount",
            Health::NotAnswering(_) => "not answering",
            Health::Failing(_) => "failing",
            Health::NotMounted => "not mounted",
        }
    }

    /// The label with what is known beyond it (how long, why, requests waiting).
    pub fn describe(&self) -> String {
        match self {
            Health::NotAnswering(s) => s.to_string(),
            Health::Failing(e) => format!("failing: {e}"),
            h => h.label().to_string(),
        }
    }
}

/// What a probe found: the health, the daemon's own answer when it gave one, and the
/// requests the kernel holds for a FUSE volume's daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probed {
    pub health: Health,
    pub daemon: Option<DaemonStatus>,
    pub waiting: Option<u64>,
}

impl From<Health> for Probed {
    fn from(health: Health) -> Probed {
        Probed {
            health,
            daemon: None,
            waiting: None,
        }
    }
}

/// The health of whatever is mounted at `path` (a canonical path), whose daemon (if a
/// FUSE volume of ours) listens on `control`.
pub fn probe(path: &Path, control: &Path) -> Probed {
    let m = match mounts::mounted_at(path) {
        Ok(Some(m)) => m,
        Ok(None) => return Health::NotMounted.into(),
        Err(e) => return Health::Failing(format!("reading the mount table: {e}")).into(),
    };
    if m.fstype == hugepages::FSTYPE {
        return kernel_counters(path, m.fstype).into();
    }
    if m.fstype != FSTYPE {
        // Another filesystem (another FUSE daemon, a network filesystem): not ours to
        // trust to answer, so never asked. Its type is enough to refuse it.
        return Health::Serving(m.fstype, Counters::default()).into();
    }
    let answer = control::status(control, ANSWER_TIMEOUT);
    let waiting = fusectl::waiting(m.dev);
    match answer {
        Ok(st) => {
            let health = match st.oldest_request_ms.map(Duration::from_millis) {
                Some(age) if age >= STALL_AFTER => Health::NotAnswering(Stall {
                    since: Some(age),
                    waiting,
                    why: format!(
                        "a request has been in progress for {} s: its backing disk or the daemon is stuck",
                        age.as_secs()
                    ),
                }),
                _ => Health::Serving(m.fstype, counters(&st)),
            };
            Probed {
                health,
                daemon: Some(st),
                waiting,
            }
        }
        Err(no) => Probed {
            health: silent(path, waiting, no),
            daemon: None,
            waiting,
        },
    }
}

/// A FUSE volume of ours whose control socket gave no answer.
fn silent(path: &Path, waiting: Option<u64>, no: NoAnswer) -> Health {
    let pids = daemon::find(path);
    let Some(&pid) = pids.first() else {
        return Health::DeadMount;
    };
    if let NoAnswer::NoListener(e) = &no {
        return Health::Failing(format!(
            "its daemon {pid} runs but listens on no control socket ({e})"
        ));
    }
    let why = match daemon::state(pid) {
        Some('T') | Some('t') => "its daemon is stopped (SIGSTOP, or a debugger)".to_string(),
        Some('D') => format!("its daemon is blocked in the kernel; {no}"),
        _ => no.to_string(),
    };
    Health::NotAnswering(Stall {
        since: heartbeat::silent_for(pid),
        waiting,
        why,
    })
}

fn counters(st: &DaemonStatus) -> Counters {
    Counters {
        size: st.size_bytes,
        used_bytes: st.used_bytes,
        available_bytes: st.available_bytes,
        inodes: st.inodes,
        inodes_used: st.inodes_used,
        inodes_free: st.inodes_free,
    }
}

/// A kernel filesystem's usage (hugetlbfs): its `statfs` is the kernel's own and always
/// answers.
fn kernel_counters(path: &Path, fstype: String) -> Health {
    match statvfs(path) {
        Ok(st) => Health::Serving(fstype, from_statvfs(&st)),
        Err(e) => Health::Failing(std::io::Error::from_raw_os_error(e).to_string()),
    }
}

fn statvfs(path: &Path) -> Result<libc::statvfs, i32> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)?;
    // SAFETY: libc::statvfs is plain integers, for which all-zero bytes are a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated CString and `st` a live, writable statvfs, both
    // outliving the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0 {
        Ok(st)
    } else {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    }
}

fn from_statvfs(st: &libc::statvfs) -> Counters {
    // hugetlbfs without size= or nr_inodes= reports -1 (or 0) for what it does not bound.
    let known = |n: u64| n != 0 && n != u64::MAX;
    let bytes = |n: u64| n.saturating_mul(st.f_frsize);
    let sized = known(st.f_blocks);
    let counted = known(st.f_files);
    Counters {
        size: sized.then(|| bytes(st.f_blocks)),
        used_bytes: sized.then(|| bytes(st.f_blocks - st.f_bfree.min(st.f_blocks))),
        available_bytes: sized.then(|| bytes(st.f_bavail.min(st.f_blocks))),
        inodes: counted.then_some(st.f_files),
        inodes_used: counted.then(|| st.f_files - st.f_ffree.min(st.f_files)),
        inodes_free: counted.then(|| st.f_ffree.min(st.f_files)),
    }
}
