//! `emptydirfs setup`: give a pod its volume, where kubelet would, idempotently.
//!
//! Order: check every input (nothing is created before); create the pod's directory and
//! lock it; compare with what the meta dir says was set up before (a different request is
//! refused); if the volume is already serving and `ready`, stop there without touching
//! it; otherwise clear what an earlier daemon left (a dead mount, a stuck daemon), lay the
//! directories out, mount (a daemon, or hugetlbfs), set the root's mode and group if the
//! root is new, and write `ready` last. A failure undoes what this run created and stops
//! what it started; data of an earlier setup is never deleted by a failed one.

use super::daemon;
use super::dirs::{Created, PodLock, check_layout, unmount_all};
use super::hugepages;
use super::layout::{self, Layout};
use super::probe::{Health, probe};
use super::spec::{MediumArg, VolumeMedium, VolumeSpec};
use crate::error::{Failure, failed, invalid};
use crate::fuse;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a new daemon may take to mount: a disk volume's daemon first counts the
/// usage of the data it finds (a restart over many files), so be generous.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a stale daemon gets to exit on SIGTERM before SIGKILL.
const STALE_GRACE: Duration = Duration::from_secs(5);

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
    let medium = match req.medium {
        MediumArg::Disk => VolumeMedium::Disk,
        MediumArg::Memory => VolumeMedium::Memory,
        MediumArg::HugePages(page) => {
            VolumeMedium::HugePages(hugepages::resolve(page, req.size_limit)?)
        }
    };
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
    let want_fstype = match spec.medium {
        VolumeMedium::HugePages(_) => hugepages::FSTYPE,
        _ => fuse::FSTYPE,
    };
    match probe(&volume_dir) {
        Health::Serving(fstype, _) if fstype != want_fstype => {
            return Err(invalid(format!(
                "{} is already a mount point of {fstype}, not of this volume; refusing to touch it",
                volume_dir.display()
            )));
        }
        Health::Serving(..) if l.ready_file().exists() => {
            return Ok(Outcome::AlreadyServing(volume_dir));
        }
        // Mounted and serving, but an earlier setup stopped before `ready`: finish it.
        Health::Serving(..) if before.is_some() => {
            finish(l, spec)?;
            return Ok(Outcome::Started(volume_dir, None));
        }
        // A daemon that is stopped or slow is alive: never kill it, its data with it.
        h @ (Health::NotAnswering | Health::Failing(_)) => {
            return Err(failed(format!(
                "volume {} is mounted but {}; not touching it (its daemon: {:?})",
                volume_dir.display(),
                h.label(),
                daemon::find(&volume_dir)
            )));
        }
        _ => {}
    }

    // Not mounted, or a dead mount: (re)start, clearing what an earlier instance left.
    let _ = std::fs::remove_file(l.ready_file());
    let stuck = daemon::stop(&volume_dir, STALE_GRACE);
    if !stuck.is_empty() {
        return Err(failed(format!(
            "the old daemon {stuck:?} of this volume would not stop"
        )));
    }
    unmount_all(&volume_dir)?;

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
    if let Err(e) = start(l, spec, created).and_then(|()| finish(l, spec)) {
        stop_what_started(&volume_dir);
        return Err(e);
    }
    let note = before.map(|_| match spec.medium {
        VolumeMedium::Disk => "its daemon had stopped: a new one serves the same data and usage".to_string(),
        VolumeMedium::Memory => "its daemon had stopped and a memory volume's data goes with it: the volume starts empty".into(),
        VolumeMedium::HugePages(_) => "it was not mounted: a new, empty hugetlbfs is mounted".into(),
    });
    Ok(Outcome::Started(volume_dir, note))
}

/// Checks the new mount answers, sets the root's mode and group (on every start, as
/// kubelet does on every SetUp), and writes `ready`.
fn finish(l: &Layout, spec: &VolumeSpec) -> Result<(), Failure> {
    let volume_dir = l.volume_dir();
    match probe(&volume_dir) {
        Health::Serving(..) => {}
        h => return Err(failed(format!("the new mount is {}", h.label()))),
    }
    set_root(&volume_dir, spec)?;
    std::fs::File::create(l.ready_file())
        .map_err(|e| failed(format!("writing {}: {e}", l.ready_file().display())))?;
    Ok(())
}

/// Mounts the volume: a daemon, or hugetlbfs once the pool has room for the limit.
fn start(l: &Layout, spec: &VolumeSpec, created: &mut Created) -> Result<(), Failure> {
    let volume_dir = l.volume_dir();
    let mut args: Vec<String> = Vec::new();
    match spec.medium {
        VolumeMedium::HugePages(page) => {
            hugepages::check_pool(page, spec.size_limit)?;
            return hugepages::mount(&volume_dir, page, spec.size_limit, spec.inode_limit).map_err(
                |e| {
                    failed(format!(
                        "mounting hugetlbfs on {}: {e}",
                        volume_dir.display()
                    ))
                },
            );
        }
        VolumeMedium::Memory => args.extend(["--medium".into(), "memory".into()]),
        VolumeMedium::Disk => {
            let data = l.data_dir();
            created.dir(&data, 0o700, true)?;
            args.extend([
                "--medium".into(),
                "disk".into(),
                "--backing".into(),
                data.display().to_string(),
            ]);
        }
    }
    if let Some(n) = spec.size_limit {
        args.extend(["--size-limit".into(), n.to_string()]);
    }
    if let Some(n) = spec.inode_limit {
        args.extend(["--inode-limit".into(), n.to_string()]);
    }
    daemon::spawn(&args, &volume_dir, &l.log_file())?.wait_ready(START_TIMEOUT, &l.log_file())?;
    Ok(())
}

/// The root's mode and group, as kubelet sets them (group first: chown may clear setgid).
fn set_root(path: &Path, spec: &VolumeSpec) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(gid) = spec.fs_group {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| {
            failed(format!(
                "setting the group of {} to {gid}: {e}",
                path.display()
            ))
        })?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(spec.root_mode())).map_err(|e| {
        failed(format!(
            "chmod {:o} {}: {e}",
            spec.root_mode(),
            path.display()
        ))
    })
}

fn stop_what_started(volume_dir: &Path) {
    daemon::stop(volume_dir, Duration::from_secs(1));
    let _ = unmount_all(volume_dir);
}
