//! Extended attributes of one inode.
//!
//! Namespaces `user.`, `trusted.` and `security.` are stored; `system.` (POSIX ACLs)
//! is refused with EOPNOTSUPP, as on a filesystem mounted without ACL support. The bytes
//! held are charged to the volume by the caller, in whole blocks, so xattrs cannot be
//! used to store data past the volume's limit.

use crate::daemon::fs::{Errno, Result};
use crate::daemon::state::{Reader, Refused, Writer};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// Bytes of names and values one inode may hold (as ext4 with large xattrs: 64 KiB).
pub const MAX_TOTAL: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct Xattrs {
    items: Vec<(OsString, Vec<u8>)>,
}

pub fn check_namespace(name: &OsStr) -> Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 255 {
        return Err(Errno::ERANGE);
    }
    let known = [&b"user."[..], b"trusted.", b"security."];
    match known.iter().find(|p| b.starts_with(p)) {
        Some(p) if b.len() > p.len() => Ok(()),
        Some(_) => Err(Errno::EINVAL),
        None => Err(Errno::EOPNOTSUPP),
    }
}

impl Xattrs {
    /// Bytes held (names and values).
    pub fn bytes(&self) -> usize {
        self.items.iter().map(|(n, v)| n.len() + v.len()).sum()
    }

    pub fn get(&self, name: &OsStr) -> Result<&[u8]> {
        check_namespace(name)?;
        self.items
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| &v[..])
            .ok_or(Errno::ENODATA)
    }

    /// Sets `name`; `flags` are XATTR_CREATE / XATTR_REPLACE.
    pub fn set(&mut self, name: &OsStr, value: &[u8], flags: i32) -> Result<()> {
        check_namespace(name)?;
        let pos = self.items.iter().position(|(n, _)| n == name);
        match (pos, flags) {
            (Some(_), libc::XATTR_CREATE) => return Err(Errno::EEXIST),
            (None, libc::XATTR_REPLACE) => return Err(Errno::ENODATA),
            _ => {}
        }
        let old = pos.map_or(0, |i| name.len() + self.items[i].1.len());
        if self.bytes() - old + name.len() + value.len() > MAX_TOTAL {
            return Err(Errno::ENOSPC);
        }
        match pos {
            Some(i) => self.items[i].1 = value.to_vec(),
            None => self.items.push((name.to_owned(), value.to_vec())),
        }
        Ok(())
    }

    pub fn remove(&mut self, name: &OsStr) -> Result<()> {
        check_namespace(name)?;
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
            check_namespace(&name).map_err(|_| format!("xattr name {name:?}"))?;
            let value = r.bytes()?.to_vec();
            x.items.push((name, value));
        }
        if x.bytes() > MAX_TOTAL {
            return Err("an inode's xattrs are over their limit".into());
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
        assert_eq!(
            x.set(OsStr::new("user.big"), &vec![0; MAX_TOTAL], 0),
            Err(Errno::ENOSPC)
        );
    }
}
