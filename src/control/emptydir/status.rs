//! `emptydirfs status`: every emptyDir volume under a kubelet root, from the mount table,
//! the meta dirs and each daemon's answer on its control socket (its counters), never
//! from a walk and never by entering a volume (see `volume/probe.rs`): a stopped or stuck
//! daemon costs one answer timeout (the volumes are asked at once), never a hang.

use super::layout::{self, Layout};
use crate::common::control::DaemonStatus;
use crate::control::volume::daemon;
use crate::control::volume::probe::{Counters, Health, Probed, probe};
use crate::control::volume::spec::{VolumeMedium, VolumeSpec};
use crate::error::{Failure, invalid};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug)]
pub struct VolumeStatus {
    pub pod_uid: String,
    pub name: String,
    pub path: PathBuf,
    /// What setup was asked for (`None`: no readable `volume.conf`).
    pub spec: Option<VolumeSpec>,
    pub ready: bool,
    /// A teardown of it was interrupted.
    pub deleting: bool,
    pub pids: Vec<u32>,
    pub health: Health,
    /// Its daemon's answer to `STATUS` (version, build, hand-offs), if it gave one.
    pub daemon: Option<DaemonStatus>,
    /// Requests the kernel holds for its daemon (sent, not answered), if known.
    pub waiting: Option<u64>,
}

impl VolumeStatus {
    fn counters(&self) -> Option<&Counters> {
        match &self.health {
            Health::Serving(_, c) => Some(c),
            _ => None,
        }
    }

    /// The size limit in force: the one asked for, or a memory volume's default.
    pub fn size_limit(&self) -> Option<u64> {
        let spec = self.spec.as_ref()?;
        match spec.medium {
            VolumeMedium::Memory => spec.size_limit.or(self.counters()?.size),
            _ => spec.size_limit,
        }
    }

    pub fn inode_limit(&self) -> Option<u64> {
        let spec = self.spec.as_ref()?;
        match spec.medium {
            VolumeMedium::Memory => spec.inode_limit.or(self.counters()?.inodes),
            _ => spec.inode_limit,
        }
    }

    pub fn used_bytes(&self) -> Option<u64> {
        self.counters()?.used_bytes
    }

    pub fn inodes_used(&self) -> Option<u64> {
        self.counters()?.inodes_used
    }

    /// The daemon's version and build (`0.1.0+<hash>`).
    pub fn daemon_build(&self) -> Option<&str> {
        Some(self.daemon.as_ref()?.build.as_str()).filter(|b| !b.is_empty())
    }

    /// What refuses the write that would cross the size limit: `hugetlbfs`, `tmpfs` (a
    /// memory volume's own, in the kernel) or `daemon` (a disk volume's daemon reserves
    /// each write); `None` while its daemon does not say.
    pub fn limit_kept_by(&self) -> Option<&str> {
        if let Some(VolumeMedium::HugePages(_)) = self.spec.as_ref().map(|s| s.medium) {
            return Some("hugetlbfs");
        }
        Some(self.daemon.as_ref()?.limit_kept_by.as_str()).filter(|k| !k.is_empty())
    }

    /// Who moves file data: `kernel` (hugetlbfs, or FUSE passthrough for everything),
    /// `kernel reads` (writes through the daemon) or `daemon`.
    pub fn data_path(&self) -> Option<&str> {
        if let Some(VolumeMedium::HugePages(_)) = self.spec.as_ref().map(|s| s.medium) {
            return Some("kernel");
        }
        Some(self.daemon.as_ref()?.data_path.as_str()).filter(|k| !k.is_empty())
    }

    /// Hand-offs the volume went through.
    pub fn handoffs(&self) -> Option<u64> {
        self.daemon.as_ref()?.handoffs
    }

    /// How long its daemon has not answered, if it is alive and does not.
    pub fn not_answering_for(&self) -> Option<Duration> {
        match &self.health {
            Health::NotAnswering(s) => s.since,
            _ => None,
        }
    }

    /// `serving`, `dead mount`, `not answering for 12 s (...)`, ..., with `(not ready)`
    /// or `(deleting)` when so.
    pub fn health_label(&self) -> String {
        let mut s = self.health.describe();
        if self.deleting {
            s += " (deleting)";
        } else if !self.ready {
            s += " (not ready)";
        }
        s
    }
}

/// The volumes of one pod (`pod_uid`) or of every pod, sorted by pod and name.
pub fn status(kubelet_root: &Path, pod_uid: Option<&str>) -> Result<Vec<VolumeStatus>, Failure> {
    let root = layout::check_kubelet_root(kubelet_root)?;
    let pods: Vec<String> = match pod_uid {
        Some(uid) => vec![layout::check_pod_uid(uid).map_err(invalid)?],
        None => names_in(&root.join("pods"))
            .into_iter()
            .filter(|n| layout::check_pod_uid(n).is_ok())
            .collect(),
    };
    let daemons = daemon::all();
    let mut found: Vec<(Layout, bool)> = Vec::new();
    for uid in pods {
        let l = Layout::new(root.clone(), uid.clone(), String::new());
        let mut names = BTreeSet::new();
        let mut deleting = BTreeSet::new();
        for n in names_in(&l.volumes_dir()) {
            names.insert(n);
        }
        for n in names_in(&l.plugins_dir()) {
            match layout::deleting_name(&n) {
                Some(v) => deleting.insert(v.to_string()),
                None => names.insert(n),
            };
        }
        names.extend(deleting.iter().cloned());
        for name in names
            .into_iter()
            .filter(|n| layout::check_volume_name(n).is_ok())
        {
            let is_deleting = deleting.contains(&name);
            found.push((Layout::new(root.clone(), uid.clone(), name), is_deleting));
        }
    }
    // Every daemon asked at once: stopped ones cost one answer timeout in all.
    let probed: Vec<Probed> = std::thread::scope(|s| {
        let handles: Vec<_> = found
            .iter()
            .map(|(l, _)| s.spawn(move || probe(&l.volume_dir(), &l.control_socket())))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Health::Failing("probing it panicked".into()).into())
            })
            .collect()
    });
    let mut out = Vec::new();
    for ((l, deleting), p) in found.into_iter().zip(probed) {
        let path = l.volume_dir();
        out.push(VolumeStatus {
            pod_uid: l.pod_uid.clone(),
            spec: VolumeSpec::read(&l.config_file()).ok().flatten(),
            ready: l.ready_file().exists(),
            deleting,
            pids: daemons
                .iter()
                .filter(|(_, m)| *m == path)
                .map(|(p, _)| *p)
                .collect(),
            health: p.health,
            daemon: p.daemon,
            waiting: p.waiting,
            name: l.name.clone(),
            path,
        });
    }
    Ok(out)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort();
    v
}

/// `1.5Gi`, `12.0Mi`, `512` (bytes; `-` for unknown).
fn human(n: Option<u64>) -> String {
    let Some(n) = n else { return "-".into() };
    let units = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let mut value = n as f64;
    let mut unit = "";
    for u in units {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    if unit.is_empty() {
        n.to_string()
    } else {
        format!("{value:.1}{unit}")
    }
}

/// A table for people.
pub fn render_table(volumes: &[VolumeStatus]) -> String {
    let mut rows = vec![
        [
            "POD UID", "VOLUME", "MEDIUM", "LIMIT", "KEPT BY", "USED", "INODES", "PID", "DAEMON",
            "HANDOFFS", "HEALTH",
        ]
        .map(String::from),
    ];
    for v in volumes {
        let medium = v.spec.as_ref().map_or("?".into(), |s| match s.medium {
            VolumeMedium::Disk => "disk".into(),
            m => m.kubernetes_name(),
        });
        let memory = v
            .spec
            .as_ref()
            .is_some_and(|s| s.medium == VolumeMedium::Memory);
        let limit = match v.size_limit() {
            Some(n) => human(Some(n)),
            // A memory volume always has one (half of RAM), known only from its daemon.
            None if v.spec.is_some() && !memory => "none".into(),
            None => "-".into(),
        };
        let inodes = match (v.inodes_used(), v.inode_limit()) {
            (Some(u), Some(l)) => format!("{u}/{l}"),
            (Some(u), None) => u.to_string(),
            (None, _) => "-".into(),
        };
        let pids = if v.pids.is_empty() {
            "-".into()
        } else {
            v.pids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        rows.push([
            v.pod_uid.clone(),
            v.name.clone(),
            medium,
            limit,
            v.limit_kept_by().unwrap_or("-").to_string(),
            human(v.used_bytes()),
            inodes,
            pids,
            v.daemon_build().unwrap_or("-").to_string(),
            v.handoffs().map_or("-".into(), |n| n.to_string()),
            v.health_label(),
        ]);
    }
    let widths: Vec<usize> = (0..11)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out += cells.join("  ").trim_end();
        out.push('\n');
    }
    out
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            c if (c as u32) < 0x20 => out += &format!("\\u{:04x}", c as u32),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_num(n: Option<u64>) -> String {
    n.map_or("null".into(), |n| n.to_string())
}

/// A JSON array for machines: one object per volume; unknown numbers are `null`.
pub fn render_json(volumes: &[VolumeStatus]) -> String {
    let objects: Vec<String> = volumes
        .iter()
        .map(|v| {
            let medium = v.spec.as_ref().map_or("null".into(), |s| json_str(&s.medium.kubernetes_name()));
            let pid = v.pids.first().map(|p| u64::from(*p));
            format!(
                "{{\"pod_uid\":{},\"volume\":{},\"path\":{},\"medium\":{},\"size_limit\":{},\"limit_kept_by\":{},\"data_path\":{},\"used_bytes\":{},\"inode_limit\":{},\"inodes_used\":{},\"pid\":{},\"daemon_version\":{},\"handoffs\":{},\"health\":{},\"health_detail\":{},\"not_answering_seconds\":{},\"requests_waiting\":{},\"ready\":{},\"deleting\":{}}}",
                json_str(&v.pod_uid),
                json_str(&v.name),
                json_str(&v.path.to_string_lossy()),
                medium,
                json_num(v.size_limit()),
                v.limit_kept_by().map_or("null".into(), json_str),
                v.data_path().map_or("null".into(), json_str),
                json_num(v.used_bytes()),
                json_num(v.inode_limit()),
                json_num(v.inodes_used()),
                json_num(pid),
                v.daemon_build().map_or("null".into(), json_str),
                json_num(v.handoffs()),
                json_str(v.health.label()),
                json_str(&v.health.describe()),
                json_num(v.not_answering_for().map(|d| d.as_secs())),
                json_num(v.waiting),
                v.ready,
                v.deleting
            )
        })
        .collect();
    format!("[{}]\n", objects.join(",\n "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_for_people() {
        assert_eq!(human(Some(512)), "512");
        assert_eq!(human(Some(64 << 20)), "64.0Mi");
        assert_eq!(human(Some(1536 << 20)), "1.5Gi");
        assert_eq!(human(None), "-");
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
