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

            /// Its symbolic name, for the errnos backends use.
            fn name(self) -> Option<&'static str> {
                match self.0 {
                    $(libc::$name => Some(stringify!($name)),)*
                    _ => None,
                }
            }
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

/// `ENOENT`, or `errno 123` for one backends do not name: what a test failure shows.
impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "errno {}", self.0),
        }
    }
}

/// `No such file or directory (os error 2)`: what an operator reads, the number once.
impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        io::Error::from_raw_os_error(self.0).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_number_is_said_once() {
        assert_eq!(
            Errno::ENOENT.to_string(),
            "No such file or directory (os error 2)"
        );
        assert_eq!(format!("{:?}", Errno::ENOSPC), "ENOSPC");
        assert_eq!(format!("{:?}", Errno(libc::EDOM)), "errno 33");
    }
}
