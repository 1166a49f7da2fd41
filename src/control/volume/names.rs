//! The names of a volume and where kubelet keeps it, checked as hostile input, for both
//! front ends: a pod UID, a volume name, the kubelet root. A checked name is one path
//! component that cannot lead anywhere else (no `/`, no `..`).

use crate::error::{Failure, invalid};
use std::path::{Path, PathBuf};

pub const DEFAULT_KUBELET_ROOT: &str = "/var/lib/kubelet";

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
        std::io::ErrorKind::NotFound => invalid(format!(
            "kubelet root {shown} does not exist: give kubelet's directory (its --root-dir) with --kubelet-root"
        )),
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
}
