//! Where kubelet keeps an emptyDir volume, and which names may go there.
//!
//! ```text
//! <root>/pods/<UID>/volumes/kubernetes.io~empty-dir/<NAME>       the volume (a mount point)
//! <root>/pods/<UID>/plugins/kubernetes.io~empty-dir/<NAME>/      its meta dir:
//!     ready          written last by setup, removed first by teardown (as kubelet does)
//!     volume.conf    what setup was asked for (see `volume/spec.rs`)
//!     daemon.log     the daemon's log
//!     control.sock   the daemon's control socket (hand-offs, status; root only)
//!     data/          a disk volume's backing directory
//! <root>/pods/<UID>/plugins/kubernetes.io~empty-dir/<NAME>.deleting~   a meta dir being deleted
//! ```
//!
//! Every path is built from a checked kubelet root (canonical: no symlink on the way) and
//! two checked single components, so no input can point outside the pod's directory. A
//! volume name is a DNS-1123 label and so never contains `.` or `~`: `<NAME>.deleting~`
//! cannot be another volume's meta dir.

pub use crate::control::volume::names::{check_kubelet_root, check_pod_uid, check_volume_name};
use std::path::PathBuf;

/// The plugin's name as kubelet escapes it into a path component.
pub const PLUGIN_DIR: &str = "kubernetes.io~empty-dir";
const DELETING_SUFFIX: &str = ".deleting~";

/// The paths of one volume.
#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
    pub pod_uid: String,
    pub name: String,
}

impl Layout {
    /// `root` from [`check_kubelet_root`], `pod_uid` and `name` from the checks above.
    pub fn new(root: PathBuf, pod_uid: String, name: String) -> Layout {
        Layout {
            root,
            pod_uid,
            name,
        }
    }

    pub fn pods_dir(&self) -> PathBuf {
        self.root.join("pods")
    }
    pub fn pod_dir(&self) -> PathBuf {
        self.pods_dir().join(&self.pod_uid)
    }
    /// `<pod>/volumes/kubernetes.io~empty-dir`
    pub fn volumes_dir(&self) -> PathBuf {
        self.pod_dir().join("volumes").join(PLUGIN_DIR)
    }
    /// `<pod>/plugins/kubernetes.io~empty-dir`
    pub fn plugins_dir(&self) -> PathBuf {
        self.pod_dir().join("plugins").join(PLUGIN_DIR)
    }
    /// Where the volume is mounted for the pod.
    pub fn volume_dir(&self) -> PathBuf {
        self.volumes_dir().join(&self.name)
    }
    pub fn meta_dir(&self) -> PathBuf {
        self.plugins_dir().join(&self.name)
    }
    pub fn ready_file(&self) -> PathBuf {
        self.meta_dir().join("ready")
    }
    pub fn config_file(&self) -> PathBuf {
        self.meta_dir().join("volume.conf")
    }
    pub fn log_file(&self) -> PathBuf {
        self.meta_dir().join("daemon.log")
    }
    /// The daemon's control socket (hand-offs, status).
    pub fn control_socket(&self) -> PathBuf {
        self.meta_dir().join("control.sock")
    }
    /// A disk volume's backing directory.
    pub fn data_dir(&self) -> PathBuf {
        self.meta_dir().join("data")
    }
    /// Every directory of the layout from `pods` down to the meta dir, outermost first.
    pub fn directories(&self) -> Vec<PathBuf> {
        vec![
            self.pods_dir(),
            self.pod_dir(),
            self.pod_dir().join("volumes"),
            self.volumes_dir(),
            self.pod_dir().join("plugins"),
            self.plugins_dir(),
            self.meta_dir(),
        ]
    }

    /// Where teardown moves the meta dir before deleting it.
    pub fn deleting_dir(&self) -> PathBuf {
        self.plugins_dir()
            .join(format!("{}{DELETING_SUFFIX}", self.name))
    }
}

/// The volume name of a meta dir being deleted (`<NAME>.deleting~`), if it is one.
pub fn deleting_name(entry: &str) -> Option<&str> {
    entry.strip_suffix(DELETING_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn layout_is_kubelets() {
        let l = Layout::new("/k".into(), "u".into(), "v".into());
        assert_eq!(
            l.volume_dir(),
            Path::new("/k/pods/u/volumes/kubernetes.io~empty-dir/v")
        );
        assert_eq!(
            l.ready_file(),
            Path::new("/k/pods/u/plugins/kubernetes.io~empty-dir/v/ready")
        );
        assert_eq!(deleting_name("v.deleting~"), Some("v"));
    }
}
