//! Where a volume is mounted: the path resolved and checked without ever entering a
//! mount there. `stat` of a FUSE mount's root asks its daemon, which may be stopped; so
//! the parent is resolved (`realpath`), the mount table is read, and the mount point
//! itself is looked at only with `statx(AT_STATX_DONT_SYNC)`, which answers from what the
//! kernel has cached and never sends a request.

use crate::error::{Failure, invalid};
use crate::mounts;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// The real path of `path`: its parent's canonical path and its own name (a symlink
/// there is not followed: [`check`] refuses it).
pub fn resolve(path: &Path) -> Result<PathBuf, Failure> {
    let shown = path.display();
    let name = match path.components().next_back() {
        Some(Component::Normal(n)) => n,
        _ => {
            return Err(invalid(format!(
                "mount point {shown}: give a directory by its name (not /, . or ..)"
            )));
        }
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = parent.canonicalize().map_err(|e| {
        invalid(format!(
            "mount point {shown}: its parent directory {}: {e}",
            parent.display()
        ))
    })?;
    Ok(parent.join(name))
}

/// The kind of what is at `path` (`S_IFMT` bits), from the kernel's cache only.
fn kind_at(path: &Path) -> std::io::Result<u32> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: statx is plain old data; all-zero is a valid value.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a valid statx to write.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_DONT_SYNC,
            libc::STATX_TYPE,
            &mut st,
        )
    };
    if rc == 0 {
        Ok(u32::from(st.stx_mode) & libc::S_IFMT)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The real path of `path` if a volume may be mounted there: an existing directory, not
/// a symlink, not already a mount point. Whatever it holds is hidden while the volume is
/// mounted (as with any mount).
pub fn check(path: &Path) -> Result<PathBuf, Failure> {
    let shown = path.display();
    let real = resolve(path)?;
    let table =
        mounts::mounted_at(&real).map_err(|e| invalid(format!("reading the mount table: {e}")))?;
    if let Some(m) = table {
        let hint = if m.fstype.starts_with("fuse") {
            format!(" (if its daemon is gone, clear it with `umount -l {shown}`)")
        } else {
            String::new()
        };
        return Err(invalid(format!(
            "mount point {shown} is already a mount point ({} from {}){hint}",
            m.fstype, m.source
        )));
    }
    match kind_at(&real) {
        Ok(libc::S_IFDIR) => Ok(real),
        Ok(libc::S_IFLNK) => Err(invalid(format!(
            "mount point {shown} is a symlink; give the directory itself"
        ))),
        Ok(_) => Err(invalid(format!("mount point {shown} is not a directory"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(invalid(format!("mount point {shown} does not exist")))
        }
        Err(e) => Err(invalid(format!("mount point {shown}: {e}"))),
    }
}
