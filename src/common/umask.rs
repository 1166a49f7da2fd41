//! A umask of one thread's own, so that no file creation ever sees another thread's.
//!
//! The umask belongs to a process's filesystem state (the kernel's `fs_struct`: umask,
//! working directory, root), which all its threads share: a thread that sets the umask
//! for one creation changes it for every thread creating files at that moment.
//! `unshare(CLONE_FS)` gives the calling thread a copy of its own, after which its
//! `umask` calls touch no other thread. Nothing else of the copy matters here: the
//! program never changes its working directory or root while it runs threads.
//!
//! - [`with_umask`]: runs a function on a short-lived thread with its own umask (a socket
//!   that must be mode 0600 from its first moment);
//! - [`own_umask`]: gives the calling thread its own umask for good (a request thread of
//!   the disk medium, which creates files with modes the kernel has already masked).
//!
//! Nothing in the program changes the process-wide umask.

use std::cell::Cell;
use std::io;

thread_local! {
    /// The umask this thread set on its own filesystem state, once it has one.
    static OWN: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Sets the calling thread's umask to `mask` without touching any other thread's: the
/// first call gives the thread its own filesystem state (`unshare(CLONE_FS)`), later
/// calls with the same mask make no system call.
pub fn own_umask(mask: u32) -> io::Result<()> {
    let mask = mask & 0o777;
    match OWN.get() {
        Some(m) if m == mask => return Ok(()),
        Some(_) => {}
        None => {
            // SAFETY: unshare takes no pointers; CLONE_FS only gives this thread a copy of
            // the fs_struct it shared (no other thread, memory or descriptor is affected).
            if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    // SAFETY: umask takes no pointers and cannot fail; after the unshare above it sets
    // this thread's own mask only.
    unsafe { libc::umask(mask as libc::mode_t) };
    OWN.set(Some(mask));
    Ok(())
}

/// Runs `f` on a thread of its own whose umask is `mask`, and returns what it returned;
/// the calling thread's umask, and every other thread's, stay as they were.
pub fn with_umask<R: Send>(mask: u32, f: impl FnOnce() -> R + Send) -> io::Result<R> {
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("umask".into())
            .spawn_scoped(s, move || own_umask(mask).map(|()| f()))?;
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A thread's umask, as the kernel shows it (reading it with umask(2) would set it).
    fn umask_of_this_thread() -> u32 {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
    }

    #[test]
    fn a_thread_umask_applies_to_that_thread_only() {
        let dir = std::env::temp_dir().join(format!("emptydirfs-umask-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let before = umask_of_this_thread();
        let made = with_umask(0o077, || {
            let f = dir.join("private");
            std::fs::write(&f, b"x").map(|()| (umask_of_this_thread(), f))
        });
        let (inside, f) = made.unwrap().unwrap();
        assert_eq!(inside, 0o077);
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "created with the thread's own umask");
        assert_eq!(
            umask_of_this_thread(),
            before,
            "the caller's umask is untouched"
        );
        // Another thread may keep a different one for good, the caller still untouched.
        let other = std::thread::spawn(|| {
            own_umask(0).unwrap();
            own_umask(0).unwrap();
            umask_of_this_thread()
        });
        assert_eq!(other.join().unwrap(), 0);
        assert_eq!(umask_of_this_thread(), before);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
