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

use crate::error::{Failure, invalid};
use std::path::{Path, PathBuf};

/// The plugin's name as kubelet escapes it into a path component.
pub const PLUGIN_DIR: &str = "kubernetes.io~empty-dir";
pub const DEFAULT_KUBELET_ROOT: &str = "/var/lib/kubelet";
const DELETING_SUFFIX: &str = ".deleting~";

/// Checks a pod UID: letters, digits and `-`, 1 to 128 characters (pod UIDs are UUIDs;
/// static pods have hex hashes).
pub fn check_pod_uid(uid: &str) -> Result<String, String> {
    let ok = !uid.is_empty()
        && uid.len() <= 128
        && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(uid.to_string())
    } else {
        Err(format!(
            "invalid pod UID {uid:?}: use 1 to 128 letters, digits and '-' (a UUID)"
        ))
    }
}

/// Checks a volume name: a DNS-1123 label, as Kubernetes requires of volume names.
pub fn check_volume_name(name: &str) -> Result<String, String> {
    let b = name.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    let ends = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !b.is_empty() && b.len() <= 63 && b.iter().all(inner) && ends(b.first()) && ends(b.last()) {
        Ok(name.to_string())
    } else {
        Err(format!(
            "invalid volume name {name:?}: a volume name is a DNS-1123 label (1 to 63 of a-z, 0-9 and '-', starting and ending with a letter or digit)"
        ))
    }
}

/// Checks the kubelet root: an existing directory reached without symlinks, so that the
/// paths built below it are the ones the mount table shows.
pub fn check_kubelet_root(root: &Path) -> Result<PathBuf, Failure> {
    let shown = root.display();
    let absolute = if root.is_absolute() {
        root.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| invalid(format!("kubelet root {shown}: {e}")))?
            .join(root)
    };
    let meta = std::fs::symlink_metadata(&absolute).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => invalid(format!("kubelet root {shown} does not exist")),
        _ => invalid(format!("kubelet root {shown}: {e}")),
    })?;
    let real = absolute
        .canonicalize()
        .map_err(|e| invalid(format!("kubelet root {shown}: {e}")))?;
    if meta.file_type().is_symlink() || real != normalize(&absolute) {
        return Err(invalid(format!(
            "kubelet root {shown} is not the real path (through a symlink or '..' it is {}); give the real path",
            real.display()
        )));
    }
    if !meta.is_dir() {
        return Err(invalid(format!("kubelet root {shown} is not a directory")));
    }
    if real.to_str().is_none() {
        // The mount table is compared as text: a volume below it could never be found.
        return Err(invalid(format!("kubelet root {shown} is not valid UTF-8")));
    }
    Ok(real)
}

/// `a/./b/` as `a/b` (no `..` handling: a `..` makes the path differ from its canonical
/// form, and is refused as going elsewhere).
fn normalize(p: &Path) -> PathBuf {
    p.components().collect()
}

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

    #[test]
    fn volume_names_are_dns_labels() {
        for good in ["a", "scratch", "cache-1", "0", &"a".repeat(63)] {
            assert!(check_volume_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "..",
            ".",
            "a/b",
            "/",
            "A",
            "a_b",
            "-a",
            "a-",
            "a.b",
            "a~",
            &"a".repeat(64),
            "a b",
        ] {
            assert!(check_volume_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pod_uids_are_single_safe_components() {
        assert!(check_pod_uid("0f7e3c2a-9b1d-4e5f-8a6b-1c2d3e4f5a6b").is_ok());
        for bad in ["", "..", "a/b", "a b", "a.b", &"a".repeat(129), "x\0"] {
            assert!(check_pod_uid(bad).is_err(), "{bad:?}");
        }
    }

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
