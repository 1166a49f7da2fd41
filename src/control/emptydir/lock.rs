//! One pod's setups and teardowns run one at a time, and never through a symlink.

use super::layout::Layout;
use crate::control::volume::dirs::{Created, DirLock, is_mount_point, not_a_directory};
use crate::error::{Failure, failed};
use std::path::Path;

/// An exclusive lock on a pod's directory: setups and teardowns of one pod's volumes run
/// one at a time, so two setups of a volume end with one daemon. Released on drop.
///
/// A failed setup may remove the pod directory it created (holding the lock), so after
/// locking, the locked directory must still be the one at the path; if not, lock again.
pub struct PodLock(#[allow(dead_code)] DirLock);

impl PodLock {
    /// Creates `pods/<UID>` if needed (recorded in `created`) and locks it.
    pub fn acquire(l: &Layout, created: &mut Created) -> Result<PodLock, Failure> {
        let pod_dir = l.pod_dir();
        for _ in 0..100 {
            created.dir(&l.pods_dir(), 0o750, false)?;
            created.dir(&pod_dir, 0o750, false)?;
            if let Some(lock) = DirLock::lock(&pod_dir)? {
                return Ok(PodLock(lock));
            }
        }
        Err(failed(format!(
            "{} keeps disappearing; cannot lock it",
            pod_dir.display()
        )))
    }
}

/// Refuses a layout with anything but a real directory on the way (a symlink would lead
/// reads, deletes and mounts elsewhere).
pub fn check_layout(l: &Layout) -> Result<(), Failure> {
    for dir in l.directories() {
        check_dir_if_present(&dir)?;
    }
    Ok(())
}

/// Refuses a layout directory that is not a real directory. A mount point (the volume's,
/// when mounted) is one and is not looked at. One look: a directory a concurrent
/// teardown removes meanwhile is absent, not an error.
fn check_dir_if_present(path: &Path) -> Result<bool, Failure> {
    if is_mount_point(path) {
        return Ok(true);
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => Err(not_a_directory(path)),
        Err(_) => Ok(false),
    }
}
