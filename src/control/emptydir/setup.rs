//! `emptydirfs setup`: give a pod its volume, where kubelet would, idempotently.
//!
//! Order: check every input (nothing is created before); create the pod's directory and
//! lock it; compare with what the meta dir says was set up before (a different request is
//! refused); if the volume is already serving and `ready`, stop there without touching
//! it; otherwise clear what an earlier daemon left (a dead mount, a stuck daemon), lay the
//! directories out, mount (a daemon, or hugetlbfs), set the root's mode and group if the
//! root is new, and write `ready` last. A failure undoes what this run created and stops
//! what it started; data of an earlier setup is never deleted by a failed one.

use super::layout::{self, Layout};
use super::lock::{PodLock, check_layout};
use crate::control::volume::daemon::Launch;
use crate::control::volume::dirs::Created;
use crate::control::volume::hugepages;
use crate::control::volume::lifecycle::{self, Found, Placement};
use crate::control::volume::spec::{MediumArg, VolumeMedium, VolumeSpec};
use crate::error::{Failure, failed, invalid};
use std::path::PathBuf;

/// What `setup` is asked for.
#[derive(Clone, Debug)]
pub struct SetupRequest {
    pub kubelet_root: PathBuf,
    pub pod_uid: String,
    pub volume: String,
    pub medium: MediumArg,
    pub size_limit: Option<u64>,
    pub inode_limit: Option<u64>,
    pub fs_group: Option<u32>,
    pub sticky: bool,
}

/// What `setup` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It was already set up and serving: nothing was touched.
    AlreadyServing(PathBuf),
    /// Mounted now; the note says what an earlier, dead instance left (or lost).
    Started(PathBuf, Option<String>),
}

/// Checks a request and resolves its defaults, with no side effect.
pub fn resolve(req: &SetupRequest) -> Result<(Layout, VolumeSpec), Failure> {
    let root = layout::check_kubelet_root(&req.kubelet_root)?;
    let uid = layout::check_pod_uid(&req.pod_uid).map_err(invalid)?;
    let name = layout::check_volume_name(&req.volume).map_err(invalid)?;
    if req.size_limit == Some(0) || req.inode_limit == Some(0) {
        return Err(invalid("limits must be greater than zero"));
    }
    let medium = req.medium.resolve(req.size_limit)?;
    let spec = VolumeSpec {
        medium,
        size_limit: req.size_limit,
        inode_limit: req.inode_limit,
        fs_group: req.fs_group,
        sticky: req.sticky,
    };
    Ok((Layout::new(root, uid, name), spec))
}

pub fn setup(req: &SetupRequest) -> Result<Outcome, Failure> {
    let (l, spec) = resolve(req)?;
    check_layout(&l)?;
    let mut created = Created::default();
    let result = PodLock::acquire(&l, &mut created).and_then(|_lock| {
        let r = set_up_locked(&l, &spec, &mut created);
        if r.is_err() {
            // Under the lock: another setup of this pod waits, and checks after it gets
            // the lock that the pod directory it locked is still there.
            std::mem::take(&mut created).undo();
        }
        r
    });
    if result.is_err() {
        created.undo();
    }
    result
}

fn set_up_locked(l: &Layout, spec: &VolumeSpec, created: &mut Created) -> Result<Outcome, Failure> {
    check_layout(l)?; // again, now that no other setup or teardown of this pod runs
    let volume_dir = l.volume_dir();
    let before = VolumeSpec::read(&l.config_file())
        .map_err(|e| failed(format!("reading the volume's settings: {e}")))?;
    if let Some(old) = &before
        && old != spec
    {
        return Err(invalid(format!(
            "volume {} of pod {} is already set up with {}; asked for {}. Tear it down first to change it",
            l.name,
            l.pod_uid,
            old.describe(),
            spec.describe()
        )));
    }
    let placement = placement(l);
    if lifecycle::examine(&volume_dir, &placement.control_socket, spec.medium)? == Found::Serving {
        if l.ready_file().exists() {
            return Ok(Outcome::AlreadyServing(volume_dir));
        }
        // Mounted and serving, but an earlier setup stopped before `ready`: finish it.
        if before.is_some() {
            lifecycle::finish_root(&volume_dir, spec)?;
            write_ready(l)?;
            return Ok(Outcome::Started(volume_dir, None));
        }
    }

    // Not mounted, or a dead mount: (re)start, clearing what an earlier instance left.
    if let VolumeMedium::HugePages(page) = spec.medium {
        hugepages::check_pool(page, spec.size_limit)?;
    }
    let _ = std::fs::remove_file(l.ready_file());
    lifecycle::clear(&volume_dir)?;

    for (dir, mode, owns) in [
        (l.pod_dir().join("volumes"), 0o750, false),
        (l.volumes_dir(), 0o750, false),
        (volume_dir.clone(), 0o777, false),
        (l.pod_dir().join("plugins"), 0o750, false),
        (l.plugins_dir(), 0o750, false),
        (l.meta_dir(), 0o750, true),
    ] {
        created.dir(&dir, mode, owns)?;
    }
    if before.is_none() {
        created.file(&l.config_file());
        spec.write(&l.config_file())
            .map_err(|e| failed(format!("writing {}: {e}", l.config_file().display())))?;
    }
    lifecycle::start(&placement, spec, created)?;
    if let Err(e) = write_ready(l) {
        lifecycle::stop(&volume_dir, std::time::Duration::from_secs(1));
        return Err(e);
    }
    let note = before.map(|_| match spec.medium {
        VolumeMedium::Disk => "its daemon had stopped: a new one serves the same data and usage".to_string(),
        VolumeMedium::Memory => "its daemon had stopped and a memory volume's data goes with it: the volume starts empty".into(),
        VolumeMedium::HugePages(_) => "it was not mounted: a new, empty hugetlbfs is mounted".into(),
    });
    Ok(Outcome::Started(volume_dir, note))
}

/// Where `setup` puts a volume's pieces: the daemon stays in the caller's cgroup.
pub fn placement(l: &Layout) -> Placement {
    Placement {
        mount_point: l.volume_dir(),
        data_dir: l.data_dir(),
        log_file: l.log_file(),
        control_socket: l.control_socket(),
        launch: Launch::default(),
    }
}

fn write_ready(l: &Layout) -> Result<(), Failure> {
    std::fs::File::create(l.ready_file())
        .map(drop)
        .map_err(|e| failed(format!("writing {}: {e}", l.ready_file().display())))
}
