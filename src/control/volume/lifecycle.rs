//! The life of one volume, whichever front end laid it out (`setup` in kubelet's emptyDir
//! layout, or the CSI node service at kubelet's target path): find out what is at its
//! mount point, clear what a dead instance left, start it, set its root, stop it.
//!
//! A front end decides where things go ([`Placement`]) and what to record (`ready`, a
//! state record); this module decides how a volume runs. It never deletes data: the
//! front end owns the directories that hold it.

use super::daemon;
use super::dirs::{Created, unmount_all};
use super::probe::{Health, probe};
use super::spec::{VolumeMedium, VolumeSpec};
use super::{fusectl, hugepages};
use crate::common::FSTYPE;
use crate::common::serve_args::{Medium, ServeArgs};
use crate::error::{Failure, failed, invalid};
use crate::mounts;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a new daemon may take to mount: a disk volume's daemon first counts the
/// usage of the data it finds (a restart over many files), so be generous.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a stale daemon gets to exit on SIGTERM before SIGKILL.
const STALE_GRACE: Duration = Duration::from_secs(5);

/// Where one volume's pieces are.
#[derive(Clone, Debug)]
pub struct Placement {
    /// Where it is mounted for the pod (canonical).
    pub mount_point: PathBuf,
    /// A disk volume's backing directory (created on start if missing).
    pub data_dir: PathBuf,
    /// The daemon's log.
    pub log_file: PathBuf,
    /// The daemon's control socket (hand-offs, status).
    pub control_socket: PathBuf,
    /// How the daemon is started: its cgroup, its OOM score.
    pub launch: daemon::Launch,
}

/// What is at a volume's mount point.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// Mounted with the medium's filesystem and answering.
    Serving,
    /// Not mounted, or a dead mount: it can be (re)started.
    Down,
}

/// The filesystem type a volume of `medium` is mounted with.
pub fn fstype(medium: VolumeMedium) -> &'static str {
    match medium {
        VolumeMedium::HugePages(_) => hugepages::FSTYPE,
        _ => crate::common::FSTYPE,
    }
}

/// Looks at the mount point (from outside: see `probe.rs`), the daemon asked on
/// `control`. Refused: another filesystem mounted there (never touched), and a daemon
/// that is alive but does not answer (stopped, stuck: never killed here, since its data
/// would go with it).
pub fn examine(mount_point: &Path, control: &Path, medium: VolumeMedium) -> Result<Found, Failure> {
    let want = fstype(medium);
    match probe(mount_point, control).health {
        Health::Serving(fstype, _) if fstype != want => Err(invalid(format!(
            "{} is already a mount point of {fstype}, not of this volume; refusing to touch it",
            mount_point.display()
        ))),
        Health::Serving(..) => Ok(Found::Serving),
        h @ (Health::NotAnswering(_) | Health::Failing(_)) => Err(failed(format!(
            "volume {} is mounted but {}; not touching it (its daemon: {:?})",
            mount_point.display(),
            h.describe(),
            daemon::find(mount_point)
        ))),
        Health::DeadMount | Health::NotMounted => Ok(Found::Down),
    }
}

/// Clears what a dead instance left at the mount point: a daemon still around (stopped
/// with SIGTERM, then SIGKILL), and every mount stacked there.
pub fn clear(mount_point: &Path) -> Result<(), Failure> {
    let errors = stop(mount_point, STALE_GRACE);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(failed(errors.join("; ")))
    }
}

/// Mounts the volume at its (existing, empty) mount point: hugetlbfs once the pool has
/// room for the limit, or a daemon, started detached and waited for until it serves.
/// A disk volume's data directory is created if missing (recorded in `created`). On
/// failure nothing started is left running or mounted.
pub fn start(p: &Placement, spec: &VolumeSpec, created: &mut Created) -> Result<(), Failure> {
    let r = start_inner(p, spec, created);
    if r.is_err() {
        stop_now(&p.mount_point);
    }
    r
}

fn start_inner(p: &Placement, spec: &VolumeSpec, created: &mut Created) -> Result<(), Failure> {
    let medium = match spec.medium {
        // The pool was checked by the front end, before it created anything.
        VolumeMedium::HugePages(page) => {
            return hugepages::mount(&p.mount_point, page, spec.size_limit, spec.inode_limit)
                .and_then(|()| set_root(&p.mount_point, spec))
                .map_err(|e| {
                    failed(format!(
                        "mounting hugetlbfs on {}: {e}",
                        p.mount_point.display()
                    ))
                });
        }
        VolumeMedium::Memory => Medium::Memory,
        VolumeMedium::Disk => Medium::Disk,
    };
    let mut args = ServeArgs::new(medium, p.mount_point.clone());
    if medium == Medium::Disk {
        created.dir(&p.data_dir, 0o700, true)?;
        args.backing = Some(p.data_dir.clone());
    }
    args.size_limit = spec.size_limit;
    args.inode_limit = spec.inode_limit;
    // The daemon sets its root before it mounts: nothing here enters the volume.
    args.root_mode = spec.root_mode();
    args.root_group = spec.fs_group;
    args.control_socket = Some(p.control_socket.clone());
    daemon::spawn(&args, &p.log_file, &p.launch)?.wait_ready(START_TIMEOUT, &p.log_file)?;
    Ok(())
}

/// Finishes a start that was interrupted after the mount: a daemon set its root before
/// it mounted, a hugetlbfs root gets its mode and group now (the kernel serves it, so
/// this never waits for a daemon).
pub fn finish_root(path: &Path, spec: &VolumeSpec) -> Result<(), Failure> {
    match spec.medium {
        VolumeMedium::HugePages(_) => set_root(path, spec)
            .map_err(|e| failed(format!("setting the root of {}: {e}", path.display()))),
        _ => Ok(()),
    }
}

/// A hugetlbfs root's mode and group, as kubelet sets them (group first: chown may clear
/// setgid).
fn set_root(path: &Path, spec: &VolumeSpec) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(gid) = spec.fs_group {
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(spec.root_mode()))
}

/// Stops the volume: its daemon (SIGTERM; SIGKILL after `grace`), its FUSE connection
/// (aborted: anything of the pod still waiting on the volume gets an error instead of
/// waiting for ever; a daemon that exited has ended it already), every mount at the
/// mount point (lazily if busy), then every other mount of the same filesystem (bind
/// mounts of the volume elsewhere). A daemon that SIGKILL does not end is blocked in the
/// kernel (on its backing disk): it is reported, and the rest goes on. Every step runs
/// even when one before it failed; returns what went wrong. Nothing here enters the
/// volume.
pub fn stop(mount_point: &Path, grace: Duration) -> Vec<String> {
    let mut errors = Vec::new();
    // Learnt while the volume is mounted here: its filesystem lives (and its device
    // number and connection stay its own) as long as a mount of it does.
    let mounted = mounts::mounted_at(mount_point).ok().flatten();
    let connection = mounted
        .as_ref()
        .filter(|m| m.fstype == FSTYPE)
        .and_then(|m| fusectl::Connection::open(m.dev));
    let elsewhere: Vec<mounts::MountEntry> = match &mounted {
        Some(m) => mounts::mounts_of(m.dev)
            .unwrap_or_default()
            .into_iter()
            .filter(|o| o.id != m.id)
            .collect(),
        None => Vec::new(),
    };
    let stuck = daemon::stop(mount_point, grace);
    if !stuck.is_empty() {
        errors.push(format!(
            "daemon {stuck:?} would not die (blocked in the kernel, on its backing filesystem)"
        ));
    }
    if let Some(c) = connection
        && let Err(e) = c.abort()
    {
        errors.push(format!(
            "aborting the connection of {}: {e}",
            mount_point.display()
        ));
    }
    if let Err(e) = unmount_all(mount_point) {
        errors.push(e.to_string());
    }
    errors.extend(detach_elsewhere(&elsewhere, mount_point));
    errors
}

/// Detaches the mounts of the volume at `mount_point` found elsewhere (deepest first),
/// each only if it is still that mount (same mount id at the same place: a mount keeps
/// its id while it exists); returns those that would not go.
fn detach_elsewhere(others: &[mounts::MountEntry], mount_point: &Path) -> Vec<String> {
    let mut others = others.to_vec();
    others.sort_by_key(|m| std::cmp::Reverse(m.mount_point.as_os_str().len()));
    let mut errors = Vec::new();
    for m in others {
        let still = mounts::list()
            .unwrap_or_default()
            .into_iter()
            .any(|now| now.id == m.id && now.dev == m.dev && now.mount_point == m.mount_point);
        if !still {
            continue;
        }
        log::warn!(
            "{} is another mount of the volume at {}: detaching it",
            m.mount_point.display(),
            mount_point.display()
        );
        if let Err(e) = mounts::unmount(&m.mount_point) {
            errors.push(format!(
                "a mount of the volume at {} is left: {e}",
                m.mount_point.display()
            ));
        }
    }
    errors
}

/// What an upgrade did.
#[derive(Debug, PartialEq, Eq)]
pub enum Upgraded {
    /// A new daemon (this pid) serves the volume; the old one exited.
    HandedOff(u32),
    /// Nothing to hand on: the kernel serves a hugetlbfs volume.
    KernelServed,
}

/// Replaces the volume's daemon with one running this program, through a hand-off: the
/// new daemon (started detached, in the old one's cgroups, with its OOM score and its
/// command line) takes the live connection and the state over; the pod sees no error. On
/// failure the old daemon serves on, and the error says why with the new one's log.
pub fn upgrade(p: &Placement, medium: VolumeMedium) -> Result<Upgraded, Failure> {
    if let VolumeMedium::HugePages(_) = medium {
        return Ok(Upgraded::KernelServed);
    }
    match probe(&p.mount_point, &p.control_socket).health {
        Health::Serving(..) => {}
        h => {
            return Err(failed(format!(
                "volume {} is {}: there is no serving daemon to hand off from",
                p.mount_point.display(),
                h.describe()
            )));
        }
    }
    let pids = daemon::find(&p.mount_point);
    let [old] = pids[..] else {
        return Err(failed(format!(
            "volume {} has daemons {pids:?}; a hand-off needs exactly one",
            p.mount_point.display()
        )));
    };
    let args = daemon::serve_args(old)
        .map_err(|e| failed(format!("reading the command line of daemon {old}: {e}")))?;
    if args.control_socket.is_none() {
        return Err(failed(format!(
            "daemon {old} was started without a control socket (by an older build): it cannot hand off; it serves until its volume goes"
        )));
    }
    let successor = args.successor(p.control_socket.clone());
    let launch = daemon::Launch {
        cgroup_procs: crate::control::cgroup::procs_files_of(old).unwrap_or_else(|e| {
            log::warn!("the cgroups of daemon {old}: {e}; its successor stays in ours");
            Vec::new()
        }),
        // Set only where it differs from the one the successor would inherit.
        oom_score_adj: daemon::oom_score_adj(old)
            .filter(|&a| Some(a) != daemon::oom_score_adj(std::process::id())),
    };
    let pid =
        daemon::spawn(&successor, &p.log_file, &launch)?.wait_ready(START_TIMEOUT, &p.log_file)?;
    if !daemon::wait_exited(old, Duration::from_secs(10)) {
        log::warn!("daemon {old} still runs 10 s after its hand-off to {pid}");
    }
    Ok(Upgraded::HandedOff(pid))
}

/// Undoes a start that failed half way.
fn stop_now(mount_point: &Path) {
    for e in stop(mount_point, Duration::from_secs(1)) {
        log::warn!("undoing a start of {}: {e}", mount_point.display());
    }
}
