//! `emptydirfs teardown`: take a pod's volume away with all its data, idempotently.
//!
//! Order (as kubelet's, plus what a FUSE volume needs): remove `ready`; stop the daemon
//! (SIGTERM, SIGKILL after the grace period); unmount, lazily if busy or dead; rename the
//! meta dir (with a disk volume's data) to `<NAME>.deleting~` so that a crash mid-delete
//! never leaves a half-deleted live volume, then delete it; remove the volume directory.
//! A teardown interrupted anywhere is finished by the next one. It fails only if
//! something is left, and says what.

use super::daemon;
use super::dirs::{PodLock, remove_tree};
use super::layout::{self, Layout};
use super::setup::{check_dir_if_present, unmount_all};
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
    let volume_dir = l.volume_dir();
    let stuck = if check_dir_if_present(&l.pod_dir())? {
        let _lock = PodLock::acquire(&l.pod_dir())?;
        tear_down_locked(&l, grace)?
    } else {
        // Nothing on disk; a daemon could still serve a lazily detached volume.
        daemon::stop(&volume_dir, grace)
    };
    let left = what_is_left(&l, &stuck);
    if left.is_empty() {
        Ok(())
    } else {
        Err(failed(format!("teardown left behind: {}", left.join("; "))))
    }
}

fn tear_down_locked(l: &Layout, grace: Duration) -> Result<Vec<u32>, Failure> {
    let volume_dir = l.volume_dir();
    match std::fs::remove_file(l.ready_file()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(failed(format!(
                "removing {}: {e}",
                l.ready_file().display()
            )));
        }
    }
    let stuck = daemon::stop(&volume_dir, grace);
    unmount_all(&volume_dir)?;
    let deleting = l.deleting_dir();
    remove_tree(&deleting)?; // what an interrupted teardown left
    if check_dir_if_present(&l.meta_dir())? {
        std::fs::rename(l.meta_dir(), &deleting)
            .map_err(|e| failed(format!("moving {} aside: {e}", l.meta_dir().display())))?;
    }
    if mounts::mounted_at(&volume_dir).ok().flatten().is_none() {
        remove_tree(&volume_dir)?;
    }
    remove_tree(&deleting)?;
    // The plugin's directories of the pod, once no volume of it is left.
    let _ = std::fs::remove_dir(l.volumes_dir());
    let _ = std::fs::remove_dir(l.plugins_dir());
    Ok(stuck)
}

fn what_is_left(l: &Layout, stuck: &[u32]) -> Vec<String> {
    let volume_dir = l.volume_dir();
    let mut left = Vec::new();
    let mut pids = daemon::find(&volume_dir);
    pids.extend(
        stuck
            .iter()
            .filter(|p| !pids.contains(p))
            .copied()
            .collect::<Vec<_>>(),
    );
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
        if std::fs::symlink_metadata(&p).is_ok() {
            left.push(format!("{} still exists", p.display()));
        }
    }
    left
}
