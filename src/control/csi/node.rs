//! The node service's work: publish, unpublish and stats of volumes, on the shared
//! volume lifecycle, with the state dir as the only truth (a plugin killed at any point
//! and started again finds everything there).
//!
//! Calls for one volume (or one target path) never run at once: a second call while one
//! is under way is answered `ABORTED`, which kubelet retries. Calls for different volumes
//! run in parallel. Every call here blocks (it starts processes, mounts, waits): the gRPC
//! layer runs them on blocking threads, never on the runtime's.

use super::error::{Code, CsiError, CsiResult, err, invalid_argument};
use super::placement::Placer;
use super::policy::Policy;
use super::request::{Publish, check_target, check_volume_id};
use super::state::{Record, StateDir};
use crate::control::volume::dirs::{Created, remove_mount_dir};
use crate::control::volume::lifecycle::{self, Found};
use crate::control::volume::probe::{Counters, probe};
use crate::control::volume::spec::VolumeMedium;
use crate::control::volume::{daemon, hugepages};
use crate::error::Failure;
use crate::mounts;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod stats;

/// The node's settings, from the plugin's flags.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Canonical.
    pub kubelet_root: PathBuf,
    pub policy: Policy,
    /// How long a volume's daemon gets to exit on SIGTERM at unpublish before SIGKILL.
    pub stop_grace: Duration,
}

pub struct Node {
    pub settings: Settings,
    pub state: StateDir,
    pub placer: Placer,
    ready: AtomicBool,
    /// Volume ids and target paths with a call under way.
    busy: Mutex<HashSet<String>>,
    /// The last counters each volume's daemon answered, for stats of a dead one.
    last: Mutex<HashMap<String, Counters>>,
    /// When this plugin first saw each volume's daemon not answering.
    stalled: Mutex<HashMap<String, Instant>>,
}

/// A claim on volumes and targets for one call; released on drop.
pub struct Busy<'a> {
    node: &'a Node,
    keys: Vec<String>,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut busy = self.node.busy.lock().unwrap_or_else(|e| e.into_inner());
        for k in &self.keys {
            busy.remove(k);
        }
    }
}

impl Node {
    pub fn new(settings: Settings, state: StateDir, placer: Placer) -> Node {
        Node {
            settings,
            state,
            placer,
            ready: AtomicBool::new(false),
            busy: Mutex::new(HashSet::new()),
            last: Mutex::new(HashMap::new()),
            stalled: Mutex::new(HashMap::new()),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Loads the state of existing volumes (finishing interrupted deletes); then the
    /// plugin is ready, and says how each volume is doing (asking each daemon from
    /// outside its volume: a stopped one costs a timeout, never a hang).
    pub fn load(&self) -> Result<(), Failure> {
        let ids = self.state.ids()?;
        self.ready.store(true, Ordering::Release);
        for id in ids {
            match self.state.load(&id) {
                Ok(Some(r)) => log::info!(
                    "volume {id} of pod {}/{} ({}): {} at {}{}",
                    r.pod.namespace,
                    r.pod.name,
                    r.spec.medium,
                    probe(&r.target, &self.state.control_socket(&id))
                        .health
                        .describe(),
                    r.target.display(),
                    if self.state.is_published(&id) {
                        ""
                    } else {
                        " (publish unfinished)"
                    }
                ),
                Ok(None) => log::warn!("volume {id} has no record; left alone"),
                Err(e) => log::error!("volume {id}: {e}; left alone"),
            }
        }
        Ok(())
    }

    /// Hands every volume whose daemon runs another build than this plugin's to a new
    /// daemon of this build, one at a time; returns how many were handed over.
    pub fn upgrade_daemons(&self) -> usize {
        let mine = crate::common::build();
        let mut done = 0;
        for id in self.state.ids().unwrap_or_default() {
            let Ok(Some(r)) = self.state.load(&id) else {
                continue;
            };
            if matches!(r.spec.medium, VolumeMedium::HugePages(_)) || !self.state.is_published(&id)
            {
                continue;
            }
            let placement = self.state.placement(&r, Default::default());
            let theirs = match crate::common::control::status(
                &placement.control_socket,
                Duration::from_secs(2),
            ) {
                Ok(s) => s.build,
                Err(e) => {
                    log::warn!(
                        "volume {id}: its daemon does not answer status ({e}); not upgraded"
                    );
                    continue;
                }
            };
            if theirs == mine {
                continue;
            }
            let Ok(_busy) = self.claim(&id, &r.target) else {
                continue;
            };
            match lifecycle::upgrade(&placement, r.spec.medium) {
                Ok(u) => {
                    log::info!("volume {id}: daemon {theirs} handed over to {mine} ({u:?})");
                    done += 1;
                }
                Err(e) => log::warn!("volume {id}: upgrade from {theirs} failed: {e}"),
            }
        }
        done
    }

    fn check_ready(&self) -> CsiResult<()> {
        if self.is_ready() {
            Ok(())
        } else {
            Err(err(
                Code::Unavailable,
                "the plugin is still loading the state of its volumes",
            ))
        }
    }

    /// Claims `volume id` and `target` for one call, or `ABORTED`.
    pub fn claim(&self, id: &str, target: &Path) -> CsiResult<Busy<'_>> {
        let keys = vec![
            format!("volume:{id}"),
            format!("target:{}", target.display()),
        ];
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if keys.iter().any(|k| busy.contains(k)) {
            return Err(err(
                Code::Aborted,
                format!(
                    "an operation on volume {id} or {} is under way",
                    target.display()
                ),
            ));
        }
        busy.extend(keys.iter().cloned());
        Ok(Busy { node: self, keys })
    }

    /// `NodePublishVolume`.
    pub fn publish(&self, p: &Publish) -> CsiResult<()> {
        self.check_ready()?;
        let _busy = self.claim(&p.volume_id, &p.target)?;
        check_parent(&p.target)?;
        let medium = self.settings.policy.medium(&p.asked)?;
        let existing = self.state.load(&p.volume_id)?;
        match &existing {
            Some(r) if r.target != p.target => {
                return Err(err(
                    Code::FailedPrecondition,
                    format!(
                        "volume {} is already published at {}; a volume serves one target",
                        p.volume_id,
                        r.target.display()
                    ),
                ));
            }
            Some(r) if r.fingerprint != p.fingerprint => {
                return Err(err(
                    Code::AlreadyExists,
                    format!(
                        "volume {} is already published with {}; asked now for {}",
                        p.volume_id,
                        describe(&r.fingerprint),
                        describe(&p.fingerprint)
                    ),
                ));
            }
            Some(_) => {}
            None => self.check_target_is_free(&p.target)?,
        }
        let control = self.state.control_socket(&p.volume_id);
        let found = lifecycle::examine(&p.target, &control, medium).map_err(|e| match e {
            Failure::Invalid(m) => err(Code::FailedPrecondition, m),
            Failure::Failed(m) => err(Code::Unavailable, m),
        })?;
        match (existing, found) {
            // Already serving: a repeated publish (kubelet's restart, a retry after a
            // timeout) is a cheap no-op; an interrupted one is finished.
            (Some(r), Found::Serving) => {
                lifecycle::finish_root(&r.target, &r.spec)?;
                self.state.mark_published(&r.volume_id, true)?;
                Ok(())
            }
            (Some(r), Found::Down) => self.start(p, medium, Some(r)),
            (None, Found::Serving) => Err(err(
                Code::FailedPrecondition,
                format!(
                    "{} is already mounted by an emptydirfs volume this plugin has no record of",
                    p.target.display()
                ),
            )),
            (None, Found::Down) => self.start(p, medium, None),
        }
    }

    /// A new volume, or an existing one (a disk volume's data after a node reboot) whose
    /// daemon is gone. A failure leaves nothing of a new volume behind (kubelet may never
    /// unpublish it) and never deletes an existing volume's data.
    fn start(&self, p: &Publish, medium: VolumeMedium, existing: Option<Record>) -> CsiResult<()> {
        let pod = self.placer.pod(&p.pod.uid);
        let spec = self.settings.policy.spec(
            &p.asked,
            medium,
            self.placer.limits(pod.as_ref(), medium),
        )?;
        if let VolumeMedium::HugePages(page) = medium {
            hugepages::check_pool(page, spec.size_limit)
                .map_err(|e| err(Code::ResourceExhausted, e.to_string()))?;
        }
        let fresh = existing.is_none();
        let mut record = existing.unwrap_or_else(|| Record::new(p, spec.clone()));
        record.spec = spec;
        let mut created = Created::default();
        let result = (|| -> CsiResult<()> {
            self.state.mark_published(&p.volume_id, false)?;
            lifecycle::clear(&p.target)?;
            created.dir(&p.target, 0o750, false)?;
            let launch = match record.spec.medium {
                VolumeMedium::HugePages(_) => Default::default(), // the kernel serves it
                _ => self
                    .placer
                    .launch(pod.as_ref(), &mut record)
                    .map_err(|e| err(Code::Internal, format!("making the daemon's cgroup: {e}")))?,
            };
            self.state.save(&record)?;
            let placement = self.state.placement(&record, launch);
            lifecycle::start(&placement, &record.spec, &mut created)?;
            self.state.mark_published(&p.volume_id, true)?;
            Ok(())
        })();
        if let Err(e) = &result {
            log::warn!("publish of {} failed: {e}", p.volume_id);
            for left in lifecycle::stop(&p.target, Duration::from_secs(1)) {
                log::warn!("undoing the publish of {}: {left}", p.volume_id);
            }
            if let Err(e) = self.placer.remove(&record) {
                log::warn!("undoing the publish of {}: {e}", p.volume_id);
            }
            created.undo();
            if fresh && let Err(e) = self.state.delete(&p.volume_id) {
                log::warn!("undoing the publish of {}: {e}", p.volume_id);
            }
        }
        result
    }

    /// A new volume's target must not be another volume's.
    fn check_target_is_free(&self, target: &Path) -> CsiResult<()> {
        for id in self.state.ids()? {
            if let Ok(Some(r)) = self.state.load(&id)
                && r.target == target
            {
                return Err(err(
                    Code::FailedPrecondition,
                    format!("{} is the target of volume {id}", target.display()),
                ));
            }
        }
        Ok(())
    }

    /// `NodeUnpublishVolume`: stops the daemon, unmounts, deletes the data and the target
    /// directory. Succeeds when the volume is unknown, the target missing, not a mount, or
    /// a dead mount.
    pub fn unpublish(&self, id: &str, target: &str) -> CsiResult<()> {
        check_volume_id(id)?;
        check_target(&self.settings.kubelet_root, target, "target_path")?;
        self.check_ready()?;
        let target = Path::new(target);
        let _busy = self.claim(id, target)?;
        match self.state.load(id)? {
            Some(r) if r.target == target => self.tear_down(&r),
            _ => clean_target(target, self.settings.stop_grace),
        }
    }

    /// Everything of a volume goes; what cannot go is said.
    pub fn tear_down(&self, r: &Record) -> CsiResult<()> {
        let mut left = Vec::new();
        if let Err(e) = self.state.mark_published(&r.volume_id, false) {
            left.push(e.to_string());
        }
        left.extend(lifecycle::stop(&r.target, self.settings.stop_grace));
        if let Err(e) = self.placer.remove(r) {
            left.push(e.to_string());
        }
        if let Err(e) = remove_mount_dir(&r.target) {
            left.push(e.to_string());
        }
        if let Err(e) = self.state.delete(&r.volume_id) {
            left.push(e.to_string());
        }
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&r.volume_id);
        if left.is_empty() {
            log::info!("volume {} at {} is gone", r.volume_id, r.target.display());
            Ok(())
        } else {
            Err(err(
                Code::Internal,
                format!("unpublish left behind: {}", left.join("; ")),
            ))
        }
    }
}

/// The target's parent must exist (kubelet makes it) and be its real path: a symlink on
/// the way would lead the mount elsewhere.
fn check_parent(target: &Path) -> CsiResult<()> {
    let parent = target.parent().unwrap_or(target);
    match parent.canonicalize() {
        Ok(real) if real == parent => Ok(()),
        Ok(real) => Err(invalid_argument(format!(
            "target_path {} goes through a symlink (its parent is {})",
            target.display(),
            real.display()
        ))),
        Err(e) => Err(err(
            Code::FailedPrecondition,
            format!(
                "the parent of target_path {}: {e} (kubelet creates it)",
                target.display()
            ),
        )),
    }
}

/// A target with no record of ours: an emptydirfs mount there (a record lost, a publish
/// interrupted before its record) is stopped and unmounted and the directory removed;
/// anything else mounted there is left alone.
fn clean_target(target: &Path, grace: Duration) -> CsiResult<()> {
    match mounts::mounted_at(target) {
        Ok(Some(m)) if is_ours(&m) => {
            let left = lifecycle::stop(target, grace);
            if !left.is_empty() {
                return Err(err(Code::Internal, left.join("; ")));
            }
        }
        Ok(Some(m)) => {
            log::warn!(
                "{} is a mount of {} from {}, not an emptydirfs volume; left alone",
                target.display(),
                m.fstype,
                m.source
            );
            return Ok(());
        }
        Ok(None) => {}
        Err(e) => return Err(err(Code::Internal, format!("reading the mount table: {e}"))),
    }
    if daemon::find(target).is_empty() {
        remove_mount_dir(target).map_err(CsiError::from)
    } else {
        Err(err(
            Code::Internal,
            format!("a daemon still serves {}", target.display()),
        ))
    }
}

fn is_ours(m: &mounts::MountEntry) -> bool {
    m.fstype == crate::common::FSTYPE
        || (m.fstype == hugepages::FSTYPE && m.source == hugepages::SOURCE)
}

/// A fingerprint for messages: `medium=Memory, sizeLimit=1Gi`.
fn describe(f: &crate::control::volume::kv::Map) -> String {
    let parts: Vec<String> = f
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={v}", k.trim_start_matches("asked.")))
        .collect();
    if parts.is_empty() {
        "no attributes".into()
    } else {
        parts.join(", ")
    }
}
