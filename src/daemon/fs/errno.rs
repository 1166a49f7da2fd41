//! The error type every backend operation returns: a plain errno.
//!
//! Backends speak POSIX errors and nothing else, so the FUSE adapter can pass them to the
//! kernel unchanged and the tests can compare them with what tmpfs answers.

use std::fmt;
use std::io;

/// A positive POSIX error number.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

/// Result of a backend operation.
pub type Result<T> = std::result::Result<T, Errno>;

macro_rules! errnos {
    ($($name:ident),* $(,)?) => {
        impl Errno {
            $(pub const $name: Errno = Errno(libc::$name);)*
        }
    };
}

errnos!(
    EPERM,
    ENOENT,
    EIO,
    EBADF,
    EACCES,
    EEXIST,
    EXDEV,
    ENOTDIR,
    EISDIR,
    EINVAL,
    EFBIG,
    ENOSPC,
    ESPIPE,
    ENAMETOOLONG,
    ENOTEMPTY,
    ENODATA,
    ERANGE,
    EOPNOTSUPP,
    ENXIO,
    ESTALE,
    E2BIG,
    EOVERFLOW,
    ENOSYS,
    EMLINK,
    ENODEV,
    ELOOP,
    EROFS,
    ETXTBSY,
    ENOMEM,
);

impl Errno {
    /// The errno of the calling thread's last failed libc call.
    pub fn last() -> Errno {
        Errno::from(io::Error::last_os_error())
    }
}

impl From<io::Error> for Errno {
    fn from(e: io::Error) -> Errno {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", io::Error::from_raw_os_error(self.0), self.0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
