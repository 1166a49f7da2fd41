//! `emptydirfs teardown`: take a pod's volume away with all its data, idempotently.
//!
//! Order (as kubelet's, plus what a FUSE volume needs): remove `ready`; stop the daemon
//! (SIGTERM and SIGCONT, SIGKILL after the grace period) and abort its connection;
//! unmount, lazily if busy or dead, with every other mount of the volume; rename the
//! meta dir (with a disk volume's data) to `<NAME>.deleting~` so that a crash mid-delete
//! never leaves a half-deleted live volume, then delete it; remove the volume directory.
//! A teardown interrupted anywhere is finished by the next one. It fails only if
//! something is left, and says what.

use super::layout::{self, Layout};
use super::lock::{PodLock, check_layout};
use crate::control::volume::daemon;
use crate::control::volume::dirs::{Created, delete_aside, is_mount_point, remove_mount_dir};
use crate::control::volume::lifecycle;
use crate::error::{Failure, failed, invalid};
use crate::mounts;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn teardown(
    kubelet_root: &Path,
    pod_uid: &str,
    volume: &str,
    grace: Duration,
) -> Result<(), Failure> {
    let root = layout::check_kubelet_root(kubelet_root)?;
    let uid = layout::check_pod_uid(pod_uid).map_err(invalid)?;
    let name = layout::check_volume_name(volume).map_err(invalid)?;
    let l = Layout::new(root, uid, name);
    check_layout(&l)?;
    if std::fs::symlink_metadata(l.pod_dir()).is_err() {
        return Ok(()); // nothing of the pod, so nothing of the volume
    }
    let mut created = Created::default(); // only if the pod directory vanishes meanwhile
    let lock = PodLock::acquire(&l, &mut created)?;
    check_layout(&l)?;
    let mut errors = tear_down_locked(&l, grace);
    created.undo();
    drop(lock);
    errors.extend(what_is_left(&l));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(failed(format!(
            "teardown left behind: {}",
            errors.join("; ")
        )))
    }
}

/// Every step runs even when one before it failed; returns what went wrong.
fn tear_down_locked(l: &Layout, grace: Duration) -> Vec<String> {
    let volume_dir = l.volume_dir();
    let deleting = l.deleting_dir();
    let mut errors = Vec::new();
    match std::fs::remove_file(l.ready_file()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            errors.push(format!("removing {}: {e}", l.ready_file().display()))
        }
        _ => {}
    }
    errors.extend(lifecycle::stop(&volume_dir, grace));
    // Data of the volume first: the meta dir moves aside whole, then goes.
    if let Err(e) = delete_aside(&l.meta_dir(), &deleting) {
        errors.push(e.to_string());
    }
    if let Err(e) = remove_mount_dir(&volume_dir) {
        errors.push(e.to_string());
    }
    // The plugin's directories of the pod, once no volume of it is left.
    let _ = std::fs::remove_dir(l.volumes_dir());
    let _ = std::fs::remove_dir(l.plugins_dir());
    errors
}

fn what_is_left(l: &Layout) -> Vec<String> {
    let volume_dir = l.volume_dir();
    let mut left = Vec::new();
    let pids = daemon::find(&volume_dir);
    if !pids.is_empty() {
        left.push(format!("daemon {pids:?} still running"));
    }
    if let Ok(Some(m)) = mounts::mounted_at(&volume_dir) {
        left.push(format!(
            "{} still mounted ({})",
            volume_dir.display(),
            m.fstype
        ));
    }
    let paths: [PathBuf; 3] = [volume_dir, l.meta_dir(), l.deleting_dir()];
    for p in paths {
        // A path still mounted is reported above and never looked into.
        if !is_mount_point(&p) && std::fs::symlink_metadata(&p).is_ok() {
            left.push(format!("{} still exists", p.display()));
        }
    }
    left
}
