//! Checks on names, symlink targets and xattr names shared by all backends.

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

/// The longest xattr name, in bytes (`XATTR_NAME_MAX`).
pub const XATTR_NAME_MAX: usize = 255;

/// Refuses an xattr name no volume stores, before a backend looks at it: empty or longer
/// than [`XATTR_NAME_MAX`] (ERANGE, as the kernel), a namespace alone (EINVAL), and any
/// namespace but `user.`, `trusted.` and `security.` (EOPNOTSUPP).
///
/// So `system.posix_acl_access` and `system.posix_acl_default` are refused on every
/// medium, to get, set and remove, as on a filesystem mounted without ACL support
/// (`setfacl` then says "Operation not supported", and falls back to `chmod` for an ACL
/// that only restates the mode). Storing them would be a lie: without `FUSE_POSIX_ACL`
/// the kernel neither checks permissions against them nor lets a default ACL replace the
/// umask; honouring them needs that flag and the umask applied by the filesystem at every
/// create, which this project does not do.
pub fn check_xattr_name(name: &OsStr) -> Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > XATTR_NAME_MAX {
        return Err(Errno::ERANGE);
    }
    let known = [&b"user."[..], b"trusted.", b"security."];
    match known.iter().find(|p| b.starts_with(p)) {
        Some(p) if b.len() > p.len() => Ok(()),
        Some(_) => Err(Errno::EINVAL),
        None => Err(Errno::EOPNOTSUPP),
    }
}

/// A `listxattr` answer (names, each followed by NUL) without the names
/// [`check_xattr_name`] refuses.
pub fn listable_xattrs(list: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(list.len());
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if check_xattr_name(OsStr::from_bytes(name)).is_ok() {
            out.extend_from_slice(name);
            out.push(0);
        }
    }
    out
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

    #[test]
    fn xattr_names_and_acls() {
        let check = |n: &str| check_xattr_name(OsStr::new(n));
        for ok in ["user.a", "trusted.b", "security.capability"] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for acl in ["system.posix_acl_access", "system.posix_acl_default"] {
            assert_eq!(check(acl), Err(Errno::EOPNOTSUPP), "{acl}");
        }
        assert_eq!(check("user."), Err(Errno::EINVAL));
        assert_eq!(check(&format!("user.{}", "n".repeat(250))), Ok(()));
        assert_eq!(
            check(&format!("user.{}", "n".repeat(251))),
            Err(Errno::ERANGE)
        );
        assert_eq!(
            listable_xattrs(b"user.a\0system.posix_acl_access\0security.selinux\0"),
            b"user.a\0security.selinux\0"
        );
    }
}
