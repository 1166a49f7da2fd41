//! `emptydirfs upgrade`: hand a volume from its daemon to a new daemon of the program
//! being run, with no error for the pod (see [`crate::daemon::handoff`]).

use super::layout::{self, Layout};
use super::lock::{PodLock, check_layout};
use super::setup::placement;
use crate::control::volume::dirs::Created;
use crate::control::volume::lifecycle::{self, Upgraded};
use crate::control::volume::spec::VolumeSpec;
use crate::error::{Failure, failed, invalid};
use std::path::Path;

pub fn upgrade(kubelet_root: &Path, pod_uid: &str, volume: &str) -> Result<Upgraded, Failure> {
    let root = layout::check_kubelet_root(kubelet_root)?;
    let uid = layout::check_pod_uid(pod_uid).map_err(invalid)?;
    let name = layout::check_volume_name(volume).map_err(invalid)?;
    let l = Layout::new(root, uid, name);
    check_layout(&l)?;
    if std::fs::symlink_metadata(l.pod_dir()).is_err() {
        return Err(invalid(format!("pod {} has no volumes here", l.pod_uid)));
    }
    let mut created = Created::default();
    let lock = PodLock::acquire(&l, &mut created)?;
    let spec = VolumeSpec::read(&l.config_file())
        .map_err(|e| failed(format!("reading the volume's settings: {e}")))?
        .ok_or_else(|| {
            invalid(format!(
                "volume {} of pod {} is not set up",
                l.name, l.pod_uid
            ))
        })?;
    let r = lifecycle::upgrade(&placement(&l), spec.medium);
    drop(lock);
    r
}
