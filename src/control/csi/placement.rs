//! Where a CSI volume's daemon runs: in a cgroup of its own below the pod's cgroup (found
//! from the pod's UID), or below the driver's own cgroup where the pod's is not found;
//! never in the plugin's, which a restart of the plugin's container empties. And what the
//! pod's cgroup says of its limits.

use super::policy::PodLimits;
use super::state::Record;
use crate::control::cgroup::{Cgroup, Cgroups, relative};
use crate::control::volume::daemon::Launch;
use crate::control::volume::spec::VolumeMedium;
use std::path::{Path, PathBuf};

/// Below every pod's processes (kubelet gives -997 to Guaranteed pods and -998 to their
/// sandbox): the OOM killer picks the pod's own processes first, as it would if the
/// volume were tmpfs, whose pages it cannot free by killing anyone.
pub const DAEMON_OOM_SCORE_ADJ: i32 = -999;

/// The node's cgroups and where kubelet keeps pods in them.
#[derive(Clone, Debug)]
pub struct Placer {
    pub cgroups: Cgroups,
    /// Kubelet's `--cgroup-root`, a cgroup path.
    pub kubelet_root: PathBuf,
    /// The driver's own cgroup (a cgroup path), for daemons whose pod is not found.
    pub fallback: PathBuf,
    /// The daemons' `oom_score_adj` ([`DAEMON_OOM_SCORE_ADJ`] where the plugin may lower
    /// it, see [`oom_score_adj`]).
    pub oom_score_adj: Option<i32>,
}

/// [`DAEMON_OOM_SCORE_ADJ`] if this process may give it (lowering a score takes
/// CAP_SYS_RESOURCE); otherwise daemons keep the plugin's, and the plugin says so.
pub fn oom_score_adj() -> Option<i32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_SYS_RESOURCE: u32 = 24; // linux/capability.h
    if eff & (1 << CAP_SYS_RESOURCE) != 0 {
        Some(DAEMON_OOM_SCORE_ADJ)
    } else {
        log::warn!(
            "no CAP_SYS_RESOURCE: volume daemons keep the plugin's oom_score_adj instead of {DAEMON_OOM_SCORE_ADJ}"
        );
        None
    }
}

/// The name of a volume's daemon cgroup.
pub fn cgroup_name(volume_id: &str) -> String {
    format!("emptydirfs-{volume_id}")
}

impl Placer {
    /// The pod's cgroup, if kubelet made one.
    pub fn pod(&self, uid: &str) -> Option<Cgroup> {
        self.cgroups.find_pod(&self.kubelet_root, uid)
    }

    /// Whether kubelet keeps pods' cgroups where we look for them.
    pub fn kubelet_keeps_pods(&self) -> bool {
        self.cgroups.has_pods_tree(&self.kubelet_root)
    }

    /// The pod's limits for a volume of `medium`.
    pub fn limits(&self, pod: Option<&Cgroup>, medium: VolumeMedium) -> PodLimits {
        let Some(pod) = pod else {
            return PodLimits::default();
        };
        PodLimits {
            memory: self.cgroups.memory_limit(pod),
            hugepages: match medium {
                VolumeMedium::HugePages(page) => self.cgroups.hugetlb_limit(pod, page),
                _ => None,
            },
        }
    }

    /// Makes the daemon's cgroup and says how to start the daemon in it; records where,
    /// so that unpublish (maybe by another plugin process) removes it.
    pub fn launch(&self, pod: Option<&Cgroup>, record: &mut Record) -> std::io::Result<Launch> {
        let parent = match pod {
            Some(p) => p.clone(),
            None => self.cgroups.cgroup(relative(&self.fallback)),
        };
        if pod.is_none() {
            log::warn!(
                "no cgroup of pod {} below {}: volume {}'s daemon goes below {}",
                record.pod.uid,
                self.kubelet_root.display(),
                record.volume_id,
                self.fallback.display()
            );
        }
        record.cgroup_parent = parent.path.display().to_string();
        record.cgroup_fallback = relative(&self.fallback).display().to_string();
        let procs = self.cgroups.make_daemon_cgroup(
            &parent,
            &self.fallback,
            &cgroup_name(&record.volume_id),
        )?;
        Ok(Launch {
            cgroup_procs: procs,
            oom_score_adj: self.oom_score_adj,
        })
    }

    /// Removes the daemon's cgroup (its daemon has exited), and the fallback parent once
    /// no daemon is left in it.
    pub fn remove(&self, record: &Record) -> std::io::Result<()> {
        if record.cgroup_parent.is_empty() {
            return Ok(());
        }
        let parent = self.cgroups.cgroup(PathBuf::from(&record.cgroup_parent));
        let fallback = Path::new(&record.cgroup_fallback);
        self.cgroups
            .remove_daemon_cgroup(&parent, fallback, &cgroup_name(&record.volume_id))?;
        for h in &self.cgroups.hierarchies {
            let _ = std::fs::remove_dir(h.root.join(fallback)); // busy while others use it
        }
        Ok(())
    }
}
