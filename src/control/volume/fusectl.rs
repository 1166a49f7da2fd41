//! The kernel's FUSE control filesystem (`/sys/fs/fuse/connections/<N>/`, N the minor
//! device number of a FUSE mount): how many requests the kernel holds for a volume's
//! daemon (`waiting`), and ending a connection whose daemon is dead or wedged (`abort`).
//! Reading or writing these never enters the volume, so it never waits for its daemon.
//!
//! Aborting a connection fails every request of it at once (`ECONNABORTED` for those a
//! daemon had read, `ENOTCONN` for the rest and for everything after): the pod's
//! processes see errors instead of hanging, and a Memory volume's data is gone with it.

use crate::mounts;
use std::ffi::CString;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Once;

const DIR: &str = "/sys/fs/fuse/connections";

/// Mounts fusectl where the kernel expects it, if nothing is there yet (a node's init
/// system usually has; a container or a bare machine may not).
fn ensure_mounted() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let dir = Path::new(DIR);
        match mounts::mounted_at(dir) {
            Ok(Some(_)) => {}
            Ok(None) if dir.is_dir() => {
                if let Err(e) = mounts::mount("fusectl", dir, "fusectl", "") {
                    log::warn!(
                        "mounting fusectl on {DIR}: {e}; requests waiting for a daemon are not counted"
                    );
                }
            }
            Ok(None) => log::warn!("{DIR} is missing: the kernel has no fusectl"),
            Err(e) => log::warn!("reading the mount table: {e}"),
        }
    });
}

fn connection(dev: (u32, u32)) -> PathBuf {
    ensure_mounted();
    Path::new(DIR).join(dev.1.to_string())
}

/// Requests sent to the daemon of the FUSE mount with device numbers `dev` and not yet
/// answered (queued and being worked on); `None` if unknown.
pub fn waiting(dev: (u32, u32)) -> Option<u64> {
    std::fs::read_to_string(connection(dev).join("waiting"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// One FUSE connection's control directory, held open: it names that connection alone
/// even after its device number is reused (a connection's directory goes with its
/// filesystem, and a new connection with the same number gets a new directory). Open it
/// while a mount of the volume is known to exist.
pub struct Connection(OwnedFd);

impl Connection {
    /// The connection of the FUSE mount with device numbers `dev`, if fusectl shows it.
    pub fn open(dev: (u32, u32)) -> Option<Connection> {
        let path = CString::new(connection(dev).as_os_str().as_bytes()).ok()?;
        // SAFETY: `path` is a valid C string; the result is checked.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        // SAFETY: open returned a new descriptor that nothing else owns.
        (fd >= 0).then(|| Connection(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Ends the connection (see the module's comment for what it costs the pod). A
    /// connection already gone is no error.
    pub fn abort(&self) -> io::Result<()> {
        // SAFETY: `self.0` is an open directory descriptor; the name is a C string.
        let fd = unsafe {
            libc::openat(
                self.0.as_raw_fd(),
                c"abort".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            };
        }
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        match f.write_all(b"1") {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(()),
            r => r,
        }
    }
}
