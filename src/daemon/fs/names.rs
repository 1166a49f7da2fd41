//! Checks on names and symlink targets shared by all backends.

use super::{Errno, Result};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// The longest file name, in bytes (`NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// The longest symlink target, in bytes, leaving room for the NUL of `PATH_MAX`.
pub const SYMLINK_MAX: usize = 4095;

/// Refuses names the kernel would never send but a backend must not store: too long,
/// empty, `.`/`..`, or containing `/` or NUL.
pub fn check_name(name: &OsStr) -> Result<()> {
    let b = name.as_bytes();
    if b.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// Refuses a symlink target that is empty or longer than [`SYMLINK_MAX`].
pub fn check_symlink_target(target: &OsStr) -> Result<()> {
    match target.len() {
        0 => Err(Errno::ENOENT),
        n if n > SYMLINK_MAX => Err(Errno::ENAMETOOLONG),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_at_the_limits() {
        assert_eq!(check_name(OsStr::new(&"a".repeat(255))), Ok(()));
        assert_eq!(
            check_name(OsStr::new(&"a".repeat(256))),
            Err(Errno::ENAMETOOLONG)
        );
        for bad in ["", ".", "..", "a/b"] {
            assert_eq!(check_name(OsStr::new(bad)), Err(Errno::EINVAL), "{bad:?}");
        }
    }
}
