//! What a publish asks for, checked like hostile input: any pod author writes
//! `volumeAttributes`, so every key and value is checked, and refused with
//! `INVALID_ARGUMENT` and a message naming it, before anything is created.

use super::error::{CsiResult, invalid_argument};
use super::proto::{NodePublishVolumeRequest, VolumeCapability, volume_capability};
use crate::control::volume::kv;
use crate::control::volume::names::{check_pod_uid, check_volume_name};
use crate::control::volume::spec::{MediumArg, parse_medium};
use crate::quantity;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// Kubelet's keys in `volume_context` (with `podInfoOnMount: true` kubelet writes them
/// over whatever a pod author put there).
const KUBELET_PREFIX: &str = "csi.storage.k8s.io/";
const POD_UID: &str = "csi.storage.k8s.io/pod.uid";
const POD_NAME: &str = "csi.storage.k8s.io/pod.name";
const POD_NAMESPACE: &str = "csi.storage.k8s.io/pod.namespace";
/// The plugin directory kubelet puts CSI volumes in, escaped as a path component.
pub const CSI_PLUGIN_DIR: &str = "kubernetes.io~csi";

/// The attributes a pod may give.
pub const ATTRIBUTES: [&str; 4] = ["medium", "sizeLimit", "inodeLimit", "sticky"];

/// Which pod and volume a target path belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodVolume {
    pub uid: String,
    /// The volume's name in the pod spec.
    pub volume: String,
    pub namespace: String,
    pub name: String,
}

/// The volume the pod author asked for, before the node's caps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked {
    pub medium: MediumArg,
    pub size_limit: Option<u64>,
    pub inode_limit: Option<u64>,
    pub sticky: bool,
    /// `volume_mount_group`: the pod's fsGroup.
    pub fs_group: Option<u32>,
}

/// A checked publish.
#[derive(Clone, Debug)]
pub struct Publish {
    pub volume_id: String,
    pub target: PathBuf,
    pub pod: PodVolume,
    pub asked: Asked,
    /// What a repeated publish of the volume must ask again to be the same publish: the
    /// attributes as given, the mount group, readonly.
    pub fingerprint: kv::Map,
}

/// Checks a volume id: it names a directory of the state dir, so 1 to 128 of letters,
/// digits, `-`, `_` and `.`, not starting with `.` (kubelet's are `csi-<sha256 hex>`).
pub fn check_volume_id(id: &str) -> CsiResult<()> {
    if id.is_empty() {
        return Err(invalid_argument("volume_id is missing"));
    }
    let ok = id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(invalid_argument(format!(
            "volume_id {id:?} is not 1 to 128 letters, digits, '-', '_' and '.' (not starting with '.')"
        )))
    }
}

/// Checks that `target` is kubelet's target path of a CSI volume below `kubelet_root`:
/// `<root>/pods/<pod UID>/volumes/kubernetes.io~csi/<volume name>/mount`, as plain
/// components (no `.`, `..` or doubled `/`). Returns the pod UID and the volume name.
pub fn check_target(kubelet_root: &Path, target: &str, field: &str) -> CsiResult<(String, String)> {
    if target.is_empty() {
        return Err(invalid_argument(format!("{field} is missing")));
    }
    let shape = || {
        invalid_argument(format!(
            "{field} {target:?} is not {}/pods/<pod UID>/volumes/{CSI_PLUGIN_DIR}/<volume name>/mount",
            kubelet_root.display()
        ))
    };
    let path = Path::new(target);
    let rest = path.strip_prefix(kubelet_root).map_err(|_| shape())?;
    if !path.is_absolute() || path.as_os_str().to_str().is_none() {
        return Err(shape());
    }
    let parts: Vec<&str> = rest
        .components()
        .map(|c| match c {
            Component::Normal(s) => s.to_str().unwrap_or(".."),
            _ => "..",
        })
        .collect();
    // `components()` hides "a/./b" and "a//b": the text must be the plain join.
    let plain = format!("{}/{}", kubelet_root.display(), parts.join("/"));
    match parts.as_slice() {
        ["pods", uid, "volumes", CSI_PLUGIN_DIR, name, "mount"] if plain == target => {
            let uid = check_pod_uid(uid).map_err(|e| invalid_argument(format!("{field}: {e}")))?;
            let name =
                check_volume_name(name).map_err(|e| invalid_argument(format!("{field}: {e}")))?;
            Ok((uid, name))
        }
        _ => Err(shape()),
    }
}

/// Checks a whole publish request.
pub fn check_publish(kubelet_root: &Path, r: &NodePublishVolumeRequest) -> CsiResult<Publish> {
    check_volume_id(&r.volume_id)?;
    let (uid, volume) = check_target(kubelet_root, &r.target_path, "target_path")?;
    let fs_group = check_capability(r.volume_capability.as_ref())?;
    if r.readonly {
        return Err(invalid_argument(
            "readonly: a read-only scratch volume would stay empty; emptydirfs volumes are read-write",
        ));
    }
    let ctx = &r.volume_context;
    let pod = PodVolume {
        uid: match ctx.get(POD_UID) {
            Some(u) if *u != uid => {
                return Err(invalid_argument(format!(
                    "{POD_UID} {u:?} is not the pod of target_path {:?}",
                    r.target_path
                )));
            }
            _ => uid,
        },
        volume,
        namespace: label_value(ctx, POD_NAMESPACE)?,
        name: label_value(ctx, POD_NAME)?,
    };
    let (asked, mut fingerprint) = check_attributes(ctx, fs_group)?;
    fingerprint.insert(
        "mount-group".into(),
        fs_group.map(|g| g.to_string()).unwrap_or_default(),
    );
    Ok(Publish {
        volume_id: r.volume_id.clone(),
        target: PathBuf::from(&r.target_path),
        pod,
        asked,
        fingerprint,
    })
}

/// Checks the capability: a mount (not a block device), single-node, no fs type or mount
/// flags; returns the mount group (the pod's fsGroup).
fn check_capability(cap: Option<&VolumeCapability>) -> CsiResult<Option<u32>> {
    use volume_capability::{AccessType, Mode};
    let cap = cap.ok_or_else(|| invalid_argument("volume_capability is missing"))?;
    let mount = match &cap.access_type {
        Some(AccessType::Mount(m)) => m,
        Some(AccessType::Block(_)) => {
            return Err(invalid_argument(
                "volume_capability: block volumes are not served; emptydirfs volumes are mounted filesystems",
            ));
        }
        None => return Err(invalid_argument("volume_capability.access_type is missing")),
    };
    let mode = cap
        .access_mode
        .as_ref()
        .ok_or_else(|| invalid_argument("volume_capability.access_mode is missing"))?
        .mode;
    match Mode::try_from(mode) {
        Ok(Mode::SingleNodeWriter | Mode::SingleNodeSingleWriter | Mode::SingleNodeMultiWriter) => {
        }
        Ok(m) => {
            return Err(invalid_argument(format!(
                "access mode {m:?}: a volume of one pod on one node is single-node and writable"
            )));
        }
        Err(_) => return Err(invalid_argument(format!("unknown access mode {mode}"))),
    }
    if !mount.fs_type.is_empty() {
        return Err(invalid_argument(format!(
            "fs_type {:?}: emptydirfs volumes have no filesystem type to choose (leave csi.fsType unset)",
            mount.fs_type
        )));
    }
    if !mount.mount_flags.is_empty() {
        return Err(invalid_argument(format!(
            "mount_flags {:?}: no mount flags are accepted",
            mount.mount_flags
        )));
    }
    match mount.volume_mount_group.as_str() {
        "" => Ok(None),
        g => match g.parse::<u32>() {
            Ok(n) if n != u32::MAX => Ok(Some(n)),
            _ => Err(invalid_argument(format!(
                "volume_mount_group {g:?} is not a group id (0 to 4294967294)"
            ))),
        },
    }
}

/// The attributes, checked; and the fingerprint of those given.
fn check_attributes(
    ctx: &HashMap<String, String>,
    fs_group: Option<u32>,
) -> CsiResult<(Asked, kv::Map)> {
    let mut unknown: Vec<&String> = ctx
        .keys()
        .filter(|k| !k.starts_with(KUBELET_PREFIX) && !ATTRIBUTES.contains(&k.as_str()))
        .collect();
    if !unknown.is_empty() {
        unknown.sort();
        return Err(invalid_argument(format!(
            "unknown volumeAttributes {unknown:?}: the attributes are {}",
            ATTRIBUTES.join(", ")
        )));
    }
    let medium = match ctx.get("medium") {
        None => MediumArg::Disk,
        Some(m) => parse_medium(m).map_err(|e| invalid_argument(format!("medium: {e}")))?,
    };
    let quantity = |key: &str| -> CsiResult<Option<u64>> {
        ctx.get(key)
            .map(|v| {
                quantity::parse_positive(v).map_err(|e| invalid_argument(format!("{key}: {e}")))
            })
            .transpose()
    };
    let sticky = match ctx.get("sticky").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            return Err(invalid_argument(format!(
                "sticky {v:?}: use \"true\" or \"false\""
            )));
        }
    };
    let asked = Asked {
        medium,
        size_limit: quantity("sizeLimit")?,
        inode_limit: quantity("inodeLimit")?,
        sticky,
        fs_group,
    };
    let fingerprint = ATTRIBUTES
        .iter()
        .map(|k| {
            (
                format!("asked.{k}"),
                ctx.get(*k).cloned().unwrap_or_default(),
            )
        })
        .collect();
    Ok((asked, fingerprint))
}

/// A pod name or namespace from kubelet (a DNS subdomain or label; `-` when absent, as
/// without `podInfoOnMount`): it becomes a metrics label and a line of the record.
fn label_value(ctx: &HashMap<String, String>, key: &str) -> CsiResult<String> {
    match ctx.get(key) {
        None => Ok("-".into()),
        Some(v)
            if !v.is_empty()
                && v.len() <= 253
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.')) =>
        {
            Ok(v.clone())
        }
        Some(v) => Err(invalid_argument(format!(
            "{key} {v:?} is not a Kubernetes name"
        ))),
    }
}

#[cfg(test)]
mod tests;
