//! The kernel's new mount API (`fsopen`, `fspick`, `fsconfig`, `fsmount`; Linux 5.2): a
//! filesystem configured and mounted nowhere, reached only through the descriptor of its
//! mount, or an existing mount reconfigured. Nothing is attached to any path, so nothing
//! is left in the node's mount table: a memory volume's own tmpfs, and the control
//! side's view of fusectl.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `fsconfig` commands (`linux/mount.h`).
const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_CMD_CREATE: u32 = 6;
const FSCONFIG_CMD_RECONFIGURE: u32 = 7;

/// A filesystem context being configured.
pub struct FsContext(OwnedFd);

/// The descriptor a successful syscall returned, owned; or its error.
fn owned(fd: libc::c_long) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor the syscall just returned, owned here alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

impl FsContext {
    /// A context for a new filesystem of type `fstype`.
    pub fn open(fstype: &CStr) -> io::Result<FsContext> {
        // SAFETY: fsopen reads the NUL-terminated name and returns a new descriptor or -1.
        owned(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), libc::FSOPEN_CLOEXEC) })
            .map(FsContext)
    }

    /// A context for reconfiguring the filesystem of the mount `mount`.
    pub fn pick(mount: BorrowedFd<'_>) -> io::Result<FsContext> {
        // SAFETY: fspick reads the NUL-terminated empty path and returns a new descriptor
        // or -1; `mount` is open for the call.
        owned(unsafe {
            libc::syscall(
                libc::SYS_fspick,
                mount.as_raw_fd(),
                c"".as_ptr(),
                libc::FSPICK_EMPTY_PATH | libc::FSPICK_CLOEXEC,
            )
        })
        .map(FsContext)
    }

    fn config(&self, cmd: u32, key: Option<&CStr>, value: Option<&CStr>) -> io::Result<()> {
        // SAFETY: the context is open; `key` and `value` are NUL-terminated strings that
        // outlive the call (or null for a command), which only reads them.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.0.as_raw_fd(),
                cmd,
                key.map_or(std::ptr::null(), CStr::as_ptr),
                value.map_or(std::ptr::null(), CStr::as_ptr),
                0,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sets option `key` to `value` (as `-o key=value` would).
    pub fn set(&self, key: &CStr, value: &str) -> io::Result<&Self> {
        let value = CString::new(value).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        self.config(FSCONFIG_SET_STRING, Some(key), Some(&value))?;
        Ok(self)
    }

    /// Applies the options set to a picked filesystem.
    pub fn reconfigure(&self) -> io::Result<()> {
        self.config(FSCONFIG_CMD_RECONFIGURE, None, None)
    }

    /// Creates the filesystem and mounts it nowhere, with mount attributes `attrs`
    /// (`MOUNT_ATTR_*`): the descriptor of its mount.
    pub fn mount(self, attrs: u64) -> io::Result<OwnedFd> {
        self.config(FSCONFIG_CMD_CREATE, None, None)?;
        // SAFETY: the context is open and created; fsmount returns a new descriptor or -1.
        owned(unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                self.0.as_raw_fd(),
                libc::FSMOUNT_CLOEXEC,
                attrs,
            )
        })
    }
}
