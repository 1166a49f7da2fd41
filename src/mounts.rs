//! The mount table, mounting and unmounting: what is mounted where, read from
//! `/proc/self/mountinfo`, `mount(2)`, and an unmount that falls back to a lazy detach.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount's id (unique among the mounts that exist; reused once it is gone).
    pub id: u32,
    /// The device numbers of its filesystem (`major:minor`; a FUSE mount's minor names
    /// its connection in `/sys/fs/fuse/connections`).
    pub dev: (u32, u32),
    /// The directory of its filesystem that is mounted (`/` for the whole).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
    pub options: String,
    /// The filesystem's own options (a v1 cgroup hierarchy's controllers are there).
    pub super_options: String,
}

/// Undoes the octal escapes (`\040` for a space) of mountinfo fields.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && let Ok(v) = u8::from_str_radix(&field[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split(' ').collect();
    let right: Vec<&str> = right.split(' ').collect();
    let (major, minor) = left.get(2)?.split_once(':')?;
    Some(MountEntry {
        id: left.first()?.parse().ok()?,
        dev: (major.parse().ok()?, minor.parse().ok()?),
        root: PathBuf::from(unescape(left.get(3)?)),
        mount_point: PathBuf::from(unescape(left.get(4)?)),
        options: left.get(5)?.to_string(),
        fstype: right.first()?.to_string(),
        source: unescape(right.get(1)?),
        super_options: right.get(2).unwrap_or(&"").to_string(),
    })
}

/// All current mounts, in mount order.
pub fn list() -> io::Result<Vec<MountEntry>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text.lines().filter_map(parse_line).collect())
}

/// The topmost mount at exactly `path` (which should be canonical), if any.
pub fn mounted_at(path: &Path) -> io::Result<Option<MountEntry>> {
    Ok(list()?.into_iter().rev().find(|m| m.mount_point == path))
}

/// Every mount of the filesystem with device numbers `dev` (a volume and the bind
/// mounts of it, wherever they are). Device numbers of a FUSE or other anonymous
/// filesystem are reused once it is gone: ask only while a mount of it is known to
/// exist (it keeps the number its own).
pub fn mounts_of(dev: (u32, u32)) -> io::Result<Vec<MountEntry>> {
    Ok(list()?.into_iter().filter(|m| m.dev == dev).collect())
}

/// How an unmount went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmounted {
    /// The mount is gone.
    Clean,
    /// It was busy and was detached lazily: gone from the namespace, freed once unused.
    Lazy,
    /// Nothing was mounted there.
    NotMounted,
}

/// `mount(2)` of a `fstype` filesystem from `source` at `target`, `nosuid,nodev` (pods
/// are not trusted), with filesystem-specific `data`.
pub fn mount(source: &str, target: &Path, fstype: &str, data: &str) -> io::Result<()> {
    let c = |b: &[u8]| {
        CString::new(b)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a mount argument"))
    };
    let (source, target) = (c(source.as_bytes())?, c(target.as_os_str().as_bytes())?);
    let (fstype, data) = (c(fstype.as_bytes())?, c(data.as_bytes())?);
    let flags = libc::MS_NOSUID | libc::MS_NODEV;
    // SAFETY: The four pointers are NUL-terminated CStrings that outlive the call (`data`
    // is a string, as FUSE and hugetlbfs read it); the flags are integers.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn umount2(path: &Path, flags: i32) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `c` is a NUL-terminated CString that outlives the call; the flags are
    // integers.
    if unsafe { libc::umount2(c.as_ptr(), flags | libc::UMOUNT_NOFOLLOW) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Unmounts `path`; a busy mount is detached lazily, so this never leaves it mounted.
pub fn unmount(path: &Path) -> io::Result<Unmounted> {
    match umount2(path, 0) {
        Ok(()) => Ok(Unmounted::Clean),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(Unmounted::NotMounted),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::ENOTCONN)) => {
            umount2(path, libc::MNT_DETACH).map(|()| Unmounted::Lazy)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_escaped_mountinfo_lines() {
        let line = "36 35 0:42 / /mnt/a\\040b rw,nosuid,nodev - fuse.emptydirfs emptydirfs-memory rw,user_id=0";
        let m = parse_line(line).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/mnt/a b"));
        assert_eq!((m.id, m.dev), (36, (0, 42)));
        assert_eq!(
            (m.fstype.as_str(), m.source.as_str()),
            ("fuse.emptydirfs", "emptydirfs-memory")
        );
        assert_eq!(m.options, "rw,nosuid,nodev");
        assert_eq!(
            (m.root.as_path(), m.super_options.as_str()),
            (Path::new("/"), "rw,user_id=0")
        );
    }
}
