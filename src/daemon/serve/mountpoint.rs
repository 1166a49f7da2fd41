//! Checks on a mount point before anything is mounted on it.

use crate::error::{Failure, invalid};
use crate::mounts;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The canonical path of `path` if a volume may be mounted there: an existing directory
/// that is not already a mount point.
pub fn check(path: &Path) -> Result<PathBuf, Failure> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => invalid(format!("mount point {shown} does not exist")),
        _ if e.raw_os_error() == Some(libc::ENOTCONN) => invalid(format!(
            "mount point {shown} is a dead FUSE mount (its daemon is gone); clear it with `umount -l {shown}`"
        )),
        _ => invalid(format!("mount point {shown}: {e}")),
    })?;
    if !meta.is_dir() {
        return Err(invalid(format!("mount point {shown} is not a directory")));
    }
    let real = path
        .canonicalize()
        .map_err(|e| invalid(format!("mount point {shown}: {e}")))?;
    let table =
        mounts::mounted_at(&real).map_err(|e| invalid(format!("reading the mount table: {e}")))?;
    if let Some(m) = table {
        return Err(invalid(format!(
            "mount point {shown} is already a mount point ({} from {})",
            m.fstype, m.source
        )));
    }
    Ok(real)
}
