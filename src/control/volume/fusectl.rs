//! The kernel's FUSE control filesystem (`/sys/fs/fuse/connections/<N>/`, N the minor
//! device number of a FUSE mount): how many requests the kernel holds for a volume's
//! daemon (`waiting`), and ending a connection whose daemon is dead or wedged (`abort`).
//! Reading or writing these never enters the volume, so it never waits for its daemon.
//! The control side reaches them through a fusectl of its own, mounted nowhere: the
//! node's mount table is left as it was found.
//!
//! Aborting a connection fails every request of it at once (`ECONNABORTED` for those a
//! daemon had read, `ENOTCONN` for the rest and for everything after): the pod's
//! processes see errors instead of hanging, and a Memory volume's data is gone with it.

use crate::fscontext::FsContext;
use crate::mounts;
use std::ffi::{CStr, CString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;

/// Where a node's init system mounts fusectl.
const DIR: &str = "/sys/fs/fuse/connections";

/// fusectl's root for this process: a fusectl mounted nowhere (made once), so that
/// nothing is added to the node's mount table; where the kernel refuses one, the node's
/// own mount at [`DIR`] if there is one. `None`: no fusectl at all (requests waiting are
/// not counted, connections cannot be aborted).
fn root() -> Option<BorrowedFd<'static>> {
    static ROOT: OnceLock<Option<OwnedFd>> = OnceLock::new();
    let attrs = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC;
    ROOT.get_or_init(|| {
        let private = FsContext::open(c"fusectl").and_then(|fs| fs.mount(attrs));
        match private {
            Ok(fd) => Some(fd),
            Err(e) if matches!(mounts::mounted_at(Path::new(DIR)), Ok(Some(_))) => {
                log::debug!("a fusectl of our own: {e}; using {DIR}");
                std::fs::File::open(DIR).ok().map(OwnedFd::from)
            }
            Err(e) => {
                log::warn!("no fusectl ({e}): requests waiting for a daemon are not counted");
                None
            }
        }
    })
    .as_ref()
    .map(|fd| fd.as_fd())
}

/// Opens `path` below fusectl's root with `flags`.
fn open_below(path: &str, flags: i32) -> Option<OwnedFd> {
    let root = root()?;
    let c = CString::new(path).ok()?;
    open_at(root, &c, flags)
}

fn open_at(dir: BorrowedFd<'_>, name: &CStr, flags: i32) -> Option<OwnedFd> {
    // SAFETY: `dir` is an open directory descriptor; `name` is a NUL-terminated string
    // that outlives the call; the result is checked.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) };
    // SAFETY: openat returned a new descriptor that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Requests sent to the daemon of the FUSE mount with device numbers `dev` and not yet
/// answered (queued and being worked on); `None` if unknown.
pub fn waiting(dev: (u32, u32)) -> Option<u64> {
    let fd = open_below(&format!("{}/waiting", dev.1), libc::O_RDONLY)?;
    let mut text = String::new();
    std::fs::File::from(fd).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// One FUSE connection's control directory, held open: it names that connection alone
/// even after its device number is reused (a connection's directory goes with its
/// filesystem, and a new connection with the same number gets a new directory). Open it
/// while a mount of the volume is known to exist.
pub struct Connection(OwnedFd);

impl Connection {
    /// The connection of the FUSE mount with device numbers `dev`, if fusectl shows it.
    pub fn open(dev: (u32, u32)) -> Option<Connection> {
        open_below(&dev.1.to_string(), libc::O_PATH | libc::O_DIRECTORY).map(Connection)
    }

    /// Ends the connection (see the module's comment for what it costs the pod). A
    /// connection already gone is no error.
    pub fn abort(&self) -> io::Result<()> {
        let Some(fd) = open_at(self.0.as_fd(), c"abort", libc::O_WRONLY) else {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            };
        };
        let mut f = std::fs::File::from(fd);
        match f.write_all(b"1") {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(()),
            r => r,
        }
    }
}
