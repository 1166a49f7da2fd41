//! The plugin's state dir: one directory per volume, which is all a restarted plugin
//! needs to find, serve and remove every volume it published.
//!
//! ```text
//! <state dir>/lock                     held (flock) by the one plugin serving this node
//! <state dir>/volumes/<volume id>/     a volume's record directory:
//!     volume.conf   what was published: the spec in force, the request's fingerprint,
//!                   the target, the pod, the daemon's cgroup
//!     published     written last by publish, removed first by unpublish
//!     daemon.log    the daemon's log
//!     control.sock  the daemon's control socket (hand-offs, status; root only)
//!     data/         a disk volume's data, kept across node reboots
//! <state dir>/volumes/<volume id>.deleting~   a record being deleted
//! ```
//!
//! A record without `published` is a publish that did not finish (the plugin was killed
//! in it): kubelet repeats the publish or unpublishes, and either finishes it.

use super::request::{PodVolume, Publish};
use crate::control::volume::daemon::Launch;
use crate::control::volume::dirs::{DirLock, delete_aside};
use crate::control::volume::kv;
use crate::control::volume::lifecycle::Placement;
use crate::control::volume::spec::VolumeSpec;
use crate::error::{Failure, failed};
use std::io;
use std::path::{Path, PathBuf};

const DELETING_SUFFIX: &str = ".deleting~";

/// What the plugin published for one volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub volume_id: String,
    pub target: PathBuf,
    pub pod: PodVolume,
    /// The limits in force (after the node's caps).
    pub spec: VolumeSpec,
    /// What the publish asked for, to tell a repeated publish from another one.
    pub fingerprint: kv::Map,
    /// The daemon's cgroup parent (relative to each hierarchy's root) and the driver's
    /// own fallback parent, where the daemon's cgroup was made (empty: none).
    pub cgroup_parent: String,
    pub cgroup_fallback: String,
}

impl Record {
    pub fn new(p: &Publish, spec: VolumeSpec) -> Record {
        Record {
            volume_id: p.volume_id.clone(),
            target: p.target.clone(),
            pod: p.pod.clone(),
            spec,
            fingerprint: p.fingerprint.clone(),
            cgroup_parent: String::new(),
            cgroup_fallback: String::new(),
        }
    }

    fn to_map(&self) -> kv::Map {
        let mut m = self.spec.to_map();
        m.extend(self.fingerprint.clone());
        for (k, v) in [
            ("volume-id", self.volume_id.clone()),
            ("target", self.target.display().to_string()),
            ("pod-uid", self.pod.uid.clone()),
            ("pod-namespace", self.pod.namespace.clone()),
            ("pod-name", self.pod.name.clone()),
            ("pod-volume", self.pod.volume.clone()),
            ("cgroup-parent", self.cgroup_parent.clone()),
            ("cgroup-fallback", self.cgroup_fallback.clone()),
        ] {
            m.insert(k.into(), v);
        }
        m
    }

    fn from_map(m: &kv::Map) -> Option<Record> {
        let get = |k: &str| m.get(k).cloned();
        Some(Record {
            volume_id: get("volume-id")?,
            target: PathBuf::from(get("target")?),
            pod: PodVolume {
                uid: get("pod-uid")?,
                namespace: get("pod-namespace")?,
                name: get("pod-name")?,
                volume: get("pod-volume")?,
            },
            spec: VolumeSpec::from_map(m)?,
            fingerprint: m
                .iter()
                .filter(|(k, _)| k.starts_with("asked.") || *k == "mount-group")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            cgroup_parent: get("cgroup-parent")?,
            cgroup_fallback: get("cgroup-fallback")?,
        })
    }
}

/// The state dir.
#[derive(Clone, Debug)]
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    /// Makes the state dir's directories (0700: volume data is below).
    pub fn open(root: &Path) -> Result<StateDir, Failure> {
        use std::os::unix::fs::DirBuilderExt;
        for d in [root.to_path_buf(), root.join("volumes")] {
            match std::fs::DirBuilder::new().mode(0o700).create(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    crate::control::volume::dirs::check_is_dir(&d)?;
                }
                Err(e) => return Err(failed(format!("creating {}: {e}", d.display()))),
            }
        }
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    /// Takes the state dir for this plugin: waits while another plugin (an old pod of the
    /// DaemonSet still stopping) holds it.
    pub fn lock(&self) -> Result<DirLock, Failure> {
        loop {
            if let Some(l) = DirLock::try_lock(&self.root)? {
                return Ok(l);
            }
            log::warn!(
                "another plugin holds {}; waiting for it to exit",
                self.root.display()
            );
            if let Some(l) = DirLock::lock(&self.root)? {
                return Ok(l);
            }
        }
    }

    fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.volumes().join(id)
    }

    fn deleting(&self, id: &str) -> PathBuf {
        self.volumes().join(format!("{id}{DELETING_SUFFIX}"))
    }

    fn record_file(&self, id: &str) -> PathBuf {
        self.dir(id).join("volume.conf")
    }

    fn published_file(&self, id: &str) -> PathBuf {
        self.dir(id).join("published")
    }

    /// Where the volume's pieces are, for the shared lifecycle.
    /// Where volume `id`'s daemon listens.
    pub fn control_socket(&self, id: &str) -> PathBuf {
        self.dir(id).join("control.sock")
    }

    pub fn placement(&self, r: &Record, launch: Launch) -> Placement {
        Placement {
            mount_point: r.target.clone(),
            data_dir: self.dir(&r.volume_id).join("data"),
            log_file: self.dir(&r.volume_id).join("daemon.log"),
            control_socket: self.control_socket(&r.volume_id),
            launch,
        }
    }

    /// The record of `id`; `Ok(None)` if there is none.
    pub fn load(&self, id: &str) -> Result<Option<Record>, Failure> {
        let path = self.record_file(id);
        match kv::read(&path) {
            Ok(None) => Ok(None),
            Ok(Some(m)) => match Record::from_map(&m) {
                Some(r) if r.volume_id == id => Ok(Some(r)),
                _ => Err(failed(format!("{} is malformed", path.display()))),
            },
            Err(e) => Err(failed(format!("reading {}: {e}", path.display()))),
        }
    }

    /// Whether the publish of `id` finished.
    pub fn is_published(&self, id: &str) -> bool {
        self.published_file(id).exists()
    }

    /// Makes the record directory (if new) and writes the record; not yet published.
    pub fn save(&self, r: &Record) -> Result<(), Failure> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = self.dir(&r.volume_id);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(failed(format!("creating {}: {e}", dir.display()))),
        }
        kv::write(
            &self.record_file(&r.volume_id),
            "emptydirfs csi: what was published",
            &r.to_map(),
        )
        .map_err(|e| failed(format!("writing the record of {}: {e}", r.volume_id)))
    }

    pub fn mark_published(&self, id: &str, published: bool) -> Result<(), Failure> {
        let path = self.published_file(id);
        let r = if published {
            std::fs::File::create(&path).map(drop)
        } else {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                r => r,
            }
        };
        r.map_err(|e| failed(format!("{}: {e}", path.display())))
    }

    /// Deletes a record with its data (moved aside first, so an interrupted delete is
    /// never mistaken for a volume).
    pub fn delete(&self, id: &str) -> Result<(), Failure> {
        delete_aside(&self.dir(id), &self.deleting(id))
    }

    /// The ids of every record, after finishing the deletes an earlier plugin did not.
    pub fn ids(&self) -> Result<Vec<String>, Failure> {
        let dir = self.volumes();
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| failed(format!("reading {}: {e}", dir.display())))?;
        let mut ids = Vec::new();
        for e in entries.flatten() {
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if let Some(id) = name.strip_suffix(DELETING_SUFFIX) {
                log::info!("finishing the delete of volume {id}");
                if let Err(err) = crate::control::volume::dirs::remove_tree(&e.path()) {
                    log::warn!("deleting {}: {err}", e.path().display());
                }
            } else if super::request::check_volume_id(&name).is_ok() {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }
}
