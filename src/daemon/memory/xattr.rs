//! Extended attributes of one inode.
//!
//! Namespaces `user.`, `trusted.` and `security.` are stored; `system.` (POSIX ACLs)
//! is refused with EOPNOTSUPP, as on a filesystem mounted without ACL support
//! ([`names::check_xattr_name`], which says why). The bytes
//! held are charged to the volume by the caller, in whole blocks, so xattrs cannot be
//! used to store data past the volume's limit.
//!
//! Limits, as tmpfs and the kernel's: a name up to 255 bytes (`XATTR_NAME_MAX`, else
//! ERANGE), a value up to 64 KiB (`XATTR_SIZE_MAX`, else E2BIG; the kernel refuses
//! larger ones before asking). One more, so that `listxattr` can always list them: the
//! names of one inode, each with its NUL, take at most 64 KiB (`XATTR_LIST_MAX`), and a
//! name past that gets ENOSPC.

use crate::daemon::fs::{Errno, Result, names};
use crate::daemon::state::{Reader, Refused, Writer};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// Largest value, `XATTR_SIZE_MAX`.
pub const VALUE_MAX: usize = 64 * 1024;
/// Most bytes the names of one inode take in a listing (NULs included), `XATTR_LIST_MAX`.
pub const LIST_MAX: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct Xattrs {
    items: Vec<(OsString, Vec<u8>)>,
}

impl Xattrs {
    /// Bytes held (names and values).
    pub fn bytes(&self) -> usize {
        self.items.iter().map(|(n, v)| n.len() + v.len()).sum()
    }

    /// Bytes of the names as `listxattr` lists them.
    fn listed(&self) -> usize {
        self.items.iter().map(|(n, _)| n.len() + 1).sum()
    }

    pub fn get(&self, name: &OsStr) -> Result<&[u8]> {
        names::check_xattr_name(name)?;
        self.items
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| &v[..])
            .ok_or(Errno::ENODATA)
    }

    /// Sets `name`; `flags` are XATTR_CREATE / XATTR_REPLACE.
    pub fn set(&mut self, name: &OsStr, value: &[u8], flags: i32) -> Result<()> {
        names::check_xattr_name(name)?;
        let pos = self.items.iter().position(|(n, _)| n == name);
        match (pos, flags) {
            (Some(_), libc::XATTR_CREATE) => return Err(Errno::EEXIST),
            (None, libc::XATTR_REPLACE) => return Err(Errno::ENODATA),
            _ => {}
        }
        if value.len() > VALUE_MAX {
            return Err(Errno::E2BIG);
        }
        if pos.is_none() && self.listed() + name.len() + 1 > LIST_MAX {
            return Err(Errno::ENOSPC);
        }
        match pos {
            Some(i) => self.items[i].1 = value.to_vec(),
            None => self.items.push((name.to_owned(), value.to_vec())),
        }
        Ok(())
    }

    pub fn remove(&mut self, name: &OsStr) -> Result<()> {
        names::check_xattr_name(name)?;
        let i = self
            .items
            .iter()
            .position(|(n, _)| n == name)
            .ok_or(Errno::ENODATA)?;
        self.items.swap_remove(i);
        Ok(())
    }

    /// Names, each followed by NUL.
    pub fn list(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, _) in &self.items {
            out.extend_from_slice(n.as_bytes());
            out.push(0);
        }
        out
    }
}

impl Xattrs {
    pub fn write_state(&self, w: &mut Writer) {
        w.u64(self.items.len() as u64);
        for (n, v) in &self.items {
            w.bytes(n.as_bytes());
            w.bytes(v);
        }
    }

    pub fn read_state(r: &mut Reader<'_>) -> std::result::Result<Xattrs, Refused> {
        let mut x = Xattrs::default();
        for _ in 0..r.count(8)? {
            let name = OsStr::from_bytes(r.bytes()?).to_owned();
            names::check_xattr_name(&name).map_err(|_| format!("xattr name {name:?}"))?;
            let value = r.bytes()?.to_vec();
            x.items.push((name, value));
        }
        if x.listed() > LIST_MAX || x.items.iter().any(|(_, v)| v.len() > VALUE_MAX) {
            return Err("an inode's xattrs are over their limits".into());
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_replace_remove() {
        let mut x = Xattrs::default();
        let n = OsStr::new("user.a");
        assert_eq!(x.set(n, b"1", libc::XATTR_REPLACE), Err(Errno::ENODATA));
        x.set(n, b"1", libc::XATTR_CREATE).unwrap();
        assert_eq!(x.set(n, b"2", libc::XATTR_CREATE), Err(Errno::EEXIST));
        x.set(n, b"22", libc::XATTR_REPLACE).unwrap();
        assert_eq!(x.get(n).unwrap(), b"22");
        assert_eq!(x.list(), b"user.a\0");
        assert_eq!(
            x.get(OsStr::new("system.posix_acl_access")),
            Err(Errno::EOPNOTSUPP)
        );
        x.remove(n).unwrap();
        assert_eq!(x.remove(n), Err(Errno::ENODATA));
    }

    #[test]
    fn limits_of_names_and_values() {
        let mut x = Xattrs::default();
        for i in 0..3 {
            let name = format!("user.{i}");
            x.set(OsStr::new(&name), &vec![1; VALUE_MAX], 0).unwrap();
        }
        assert_eq!(x.bytes(), 3 * (6 + VALUE_MAX));
        assert_eq!(
            x.set(OsStr::new("user.big"), &vec![0; VALUE_MAX + 1], 0),
            Err(Errno::E2BIG)
        );
        let long = format!("user.{}", "n".repeat(250));
        x.set(OsStr::new(&long), b"", 0).unwrap();
        assert_eq!(
            x.set(OsStr::new(&format!("{long}n")), b"", 0),
            Err(Errno::ERANGE)
        );
        // Names up to 64 KiB in a listing, NULs included.
        let mut x = Xattrs::default();
        let mut i = 0;
        let refused = loop {
            let name = format!("user.{i:0250}");
            match x.set(OsStr::new(&name), b"", 0) {
                Ok(()) => i += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(refused, Errno::ENOSPC);
        assert_eq!(i, LIST_MAX / 256);
        assert!(x.list().len() <= LIST_MAX);
        // A name it has takes a new value all the same.
        let first = format!("user.{:0250}", 0);
        x.set(OsStr::new(&first), b"replaced", libc::XATTR_REPLACE)
            .unwrap();
        assert_eq!(x.get(OsStr::new(&first)).unwrap(), b"replaced");
    }
}
