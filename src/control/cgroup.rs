//! Cgroups: the hierarchies of a node (v1 controllers, or the v2 unified tree), kubelet's
//! cgroup of a pod, and the cgroup of a volume's daemon below it.
//!
//! A volume's daemon does not stay in the cgroup of whoever started it (the CSI plugin's
//! container, which takes its processes with it when it restarts). Where the pod's cgroup
//! is found, the daemon gets a cgroup of its own inside it, so its memory (a `Memory`
//! volume's data) and CPU are the pod's, as tmpfs pages are with kubelet's Memory
//! emptyDir; elsewhere it gets one under a cgroup of the driver's own. On v1 it leaves the
//! starter's cgroup in every hierarchy (a runtime may kill a container through any of
//! them). Kubelet destroys a pod's cgroup only once the pod's volumes are unmounted, and
//! the daemon is stopped and its cgroup removed before that.
//!
//! Kubelet names pod cgroups (below its `--cgroup-root`, `/` by default):
//!
//! ```text
//! cgroupfs driver   kubepods/pod<UID>            kubepods/burstable/pod<UID>
//!                   kubepods/besteffort/pod<UID>
//! systemd driver    kubepods.slice/kubepods-pod<UID_>.slice
//!                   kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<UID_>.slice
//!                   kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<UID_>.slice
//! ```
//!
//! (`UID_`: the UID with `-` turned into `_`; a cgroup root such as `kubelet.slice`
//! prefixes each slice name). The pod is found by a search that descends only into those
//! names, so it is cheap on a node with many pods and needs no knowledge of the driver.

use std::io;
use std::path::{Path, PathBuf};

/// Which cgroup version the node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// One hierarchy: where its root is mounted and the controllers it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    pub root: PathBuf,
    pub controllers: Vec<String>,
}

/// The cgroup hierarchies under a cgroup filesystem root (`/sys/fs/cgroup`, or the host's
/// mounted elsewhere in a container).
#[derive(Clone, Debug)]
pub struct Cgroups {
    pub version: Version,
    pub hierarchies: Vec<Hierarchy>,
}

/// A cgroup by its path below each hierarchy's root, in the hierarchies that have it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    /// Relative path, such as `kubepods/burstable/pod<UID>`.
    pub path: PathBuf,
    /// Indexes into [`Cgroups::hierarchies`].
    pub present_in: Vec<usize>,
}

impl Cgroups {
    /// Reads what is mounted at `base`: a v2 root (it has `cgroup.controllers`), or a
    /// directory of v1 hierarchies (each a directory with `cgroup.procs`; symlinks such as
    /// `cpu -> cpu,cpuacct` and the controller-less `unified` tree of a hybrid node are
    /// skipped).
    pub fn discover(base: &Path) -> io::Result<Cgroups> {
        if let Ok(text) = std::fs::read_to_string(base.join("cgroup.controllers")) {
            let controllers = text.split_whitespace().map(String::from).collect();
            return Ok(Cgroups {
                version: Version::V2,
                hierarchies: vec![Hierarchy {
                    root: base.to_path_buf(),
                    controllers,
                }],
            });
        }
        let mut hierarchies = Vec::new();
        for entry in std::fs::read_dir(base)? {
            let entry = entry?;
            let path = entry.path();
            let is_dir = entry.file_type()?.is_dir(); // not following symlinks
            if !is_dir
                || !path.join("cgroup.procs").exists()
                || path.join("cgroup.controllers").exists()
            {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let controllers = name.split(',').map(String::from).collect();
            hierarchies.push(Hierarchy {
                root: path,
                controllers,
            });
        }
        if hierarchies.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no cgroup hierarchy under {}", base.display()),
            ));
        }
        hierarchies.sort_by(|a, b| a.root.cmp(&b.root));
        Ok(Cgroups {
            version: Version::V1,
            hierarchies,
        })
    }

    /// The hierarchy carrying `controller` (v2: the one tree, if it enables it).
    fn with_controller(&self, controller: &str) -> Option<usize> {
        self.hierarchies
            .iter()
            .position(|h| h.controllers.iter().any(|c| c == controller))
    }

    /// The hierarchy a pod is searched in: memory's (what matters most), else the first.
    fn primary(&self) -> usize {
        self.with_controller("memory").unwrap_or(0)
    }

    /// Kubelet's cgroup of the pod `uid`, below `kubelet_root` (a cgroup path, `/` by
    /// default), if it exists.
    pub fn find_pod(&self, kubelet_root: &Path, uid: &str) -> Option<Cgroup> {
        let primary = &self.hierarchies[self.primary()];
        let start = primary.root.join(relative(kubelet_root));
        let found = search(&start, &pod_names(uid), 3)?;
        let path = found.strip_prefix(&primary.root).ok()?.to_path_buf();
        Some(self.cgroup(path))
    }

    /// Whether kubelet keeps pods' cgroups below `kubelet_root` here (a `kubepods` tree
    /// is there): then a pod without a cgroup is not running on this node.
    pub fn has_pods_tree(&self, kubelet_root: &Path) -> bool {
        let start = self.hierarchies[self.primary()]
            .root
            .join(relative(kubelet_root));
        std::fs::read_dir(start)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains("kubepods"))
    }

    /// The cgroup at `path` (relative), with the hierarchies that have it.
    pub fn cgroup(&self, path: PathBuf) -> Cgroup {
        let present_in = (0..self.hierarchies.len())
            .filter(|&i| self.hierarchies[i].root.join(&path).is_dir())
            .collect();
        Cgroup { path, present_in }
    }

    /// The absolute directory of `cg` in hierarchy `i`.
    pub fn dir(&self, i: usize, cg: &Cgroup) -> PathBuf {
        self.hierarchies[i].root.join(&cg.path)
    }

    /// A pod's memory limit in bytes (`None`: unlimited or unknown).
    pub fn memory_limit(&self, cg: &Cgroup) -> Option<u64> {
        let (file, i) = match self.version {
            Version::V2 => ("memory.max", 0),
            Version::V1 => ("memory.limit_in_bytes", self.with_controller("memory")?),
        };
        read_limit(&self.dir(i, cg).join(file))
    }

    /// A pod's limit of huge pages of `page` bytes, in bytes (`None`: unlimited or
    /// unknown).
    pub fn hugetlb_limit(&self, cg: &Cgroup, page: u64) -> Option<u64> {
        let name = hugetlb_name(page);
        let (file, i) = match self.version {
            Version::V2 => (format!("hugetlb.{name}.max"), 0),
            Version::V1 => (
                format!("hugetlb.{name}.limit_in_bytes"),
                self.with_controller("hugetlb")?,
            ),
        };
        read_limit(&self.dir(i, cg).join(file))
    }

    /// Makes the daemon cgroup `name` below `parent` (where the parent is missing in a v1
    /// hierarchy, below `fallback` there instead, so the daemon leaves the starter's
    /// cgroup everywhere), and returns the `cgroup.procs` files to write the daemon into.
    /// `fallback` (a relative path of the driver's own) is made as needed; on v2 the
    /// controllers its parent offers are enabled for its children.
    pub fn make_daemon_cgroup(
        &self,
        parent: &Cgroup,
        fallback: &Path,
        name: &str,
    ) -> io::Result<Vec<PathBuf>> {
        let mut procs = Vec::new();
        for i in 0..self.hierarchies.len() {
            let base = if parent.present_in.contains(&i) {
                let dir = self.dir(i, parent);
                if self.version == Version::V2
                    && let Err(e) = self.enable_controllers(&dir)
                {
                    // Then the daemon's memory is charged to the parent itself: still the pod's.
                    log::warn!("enabling controllers below {}: {e}", dir.display());
                }
                dir
            } else {
                let own = self.hierarchies[i].root.join(relative(fallback));
                self.make_parent(&own)?;
                own
            };
            let dir = base.join(name);
            make_cgroup_dirs(&dir)?;
            procs.push(dir.join("cgroup.procs"));
        }
        Ok(procs)
    }

    /// A cgroup of the driver's own, with (v2) its children's controllers enabled.
    fn make_parent(&self, dir: &Path) -> io::Result<()> {
        make_cgroup_dirs(dir)?;
        if self.version == Version::V2 {
            self.enable_controllers(dir)?;
        }
        Ok(())
    }

    /// v2: enables for the children of `dir` the controllers a daemon is charged by, of
    /// those `dir` offers and does not enable yet (kubelet leaves a new pod cgroup's
    /// `subtree_control` to the runtime, which fills it with the first container).
    fn enable_controllers(&self, dir: &Path) -> io::Result<()> {
        let offered = std::fs::read_to_string(dir.join("cgroup.controllers"))?;
        let enabled =
            std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
        let enable: Vec<String> = offered
            .split_whitespace()
            .filter(|c| ["memory", "cpu", "pids", "io"].contains(c))
            .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
            .map(|c| format!("+{c}"))
            .collect();
        if enable.is_empty() {
            return Ok(());
        }
        std::fs::write(dir.join("cgroup.subtree_control"), enable.join(" "))
    }

    /// Removes every daemon cgroup `name` made by [`Cgroups::make_daemon_cgroup`] (its
    /// process must have exited; a cgroup takes a moment to empty, so EBUSY is retried
    /// for a second). A cgroup already gone is fine.
    pub fn remove_daemon_cgroup(
        &self,
        parent: &Cgroup,
        fallback: &Path,
        name: &str,
    ) -> io::Result<()> {
        for (i, h) in self.hierarchies.iter().enumerate() {
            for base in [self.dir(i, parent), h.root.join(relative(fallback))] {
                remove_cgroup_dir(&base.join(name))?;
            }
        }
        Ok(())
    }
}

/// The `cgroup.procs` files of the cgroups process `pid` is in, one per hierarchy, as
/// this process sees the cgroup filesystems mounted: a successor of a volume's daemon
/// joins its predecessor's cgroups there. Hierarchies not mounted here are skipped.
pub fn procs_files_of(pid: u32) -> io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let mounts = crate::mounts::list()?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let wanted: Vec<&str> = controllers.split(',').filter(|c| !c.is_empty()).collect();
        let found = mounts.iter().find(|m| {
            let opts: Vec<&str> = m.super_options.split(',').collect();
            let kind_ok = if wanted.is_empty() {
                m.fstype == "cgroup2"
            } else {
                m.fstype == "cgroup" && wanted.iter().all(|c| opts.contains(c))
            };
            kind_ok && Path::new(path).starts_with(&m.root)
        });
        if let Some(m) = found {
            let rel = Path::new(path)
                .strip_prefix(&m.root)
                .unwrap_or(Path::new(""));
            out.push(m.mount_point.join(rel).join("cgroup.procs"));
        }
    }
    Ok(out)
}

/// Makes a cgroup directory and its missing parents, top down. A new v1 cpuset cgroup has
/// no CPUs and no memory nodes, and refuses processes until given some: it gets its
/// parent's.
fn make_cgroup_dirs(dir: &Path) -> io::Result<()> {
    let with_path =
        |e: io::Error| io::Error::new(e.kind(), format!("creating cgroup {}: {e}", dir.display()));
    if !dir.is_dir() {
        if let Some(parent) = dir.parent() {
            make_cgroup_dirs(parent)?;
        }
        match std::fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(with_path(e)),
        }
    }
    // Also for a directory that exists: whoever made it may have been killed before this.
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = dir.join(file);
        if std::fs::read_to_string(&own).is_ok_and(|v| v.trim().is_empty()) {
            let parents = std::fs::read_to_string(dir.parent().unwrap_or(dir).join(file))
                .map_err(with_path)?;
            std::fs::write(&own, parents.trim()).map_err(with_path)?;
        }
    }
    Ok(())
}

/// `rmdir` of a cgroup, retried while it is still busy; absent is fine.
pub fn remove_cgroup_dir(dir: &Path) -> io::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("removing cgroup {}: {e}", dir.display()),
                ));
            }
        }
    }
}

/// `/a/b` as `a/b`, so that it joins below a hierarchy's root.
pub fn relative(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect()
}

/// The names kubelet may give the pod's cgroup: `pod<UID>` (cgroupfs), and
/// `...-pod<UID_>.slice` (systemd).
fn pod_names(uid: &str) -> [String; 2] {
    [
        format!("pod{uid}"),
        format!("-pod{}.slice", uid.replace('-', "_")),
    ]
}

/// Whether a directory may lead to pod cgroups: the kubepods tree and its QoS classes.
fn leads_to_pods(name: &str) -> bool {
    name.contains("kubepods") || name == "burstable" || name == "besteffort"
}

/// Breadth-first search below `dir` (at most `depth` levels) for a directory named
/// `names[0]` or ending with `names[1]`, descending only into the kubepods tree.
fn search(dir: &Path, names: &[String; 2], depth: u32) -> Option<PathBuf> {
    let mut level = vec![dir.to_path_buf()];
    for _ in 0..=depth {
        let mut next = Vec::new();
        for d in &level {
            for entry in std::fs::read_dir(d).into_iter().flatten().flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                if name == names[0] || name.ends_with(&names[1]) {
                    return Some(entry.path());
                }
                if leads_to_pods(&name) {
                    next.push(entry.path());
                }
            }
        }
        level = next;
    }
    None
}

/// A limit file: a number of bytes, or `max` (v2) / a huge number (v1) for none.
fn read_limit(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let n: u64 = text.trim().parse().ok()?;
    // v1 writes "unlimited" as PAGE_COUNTER_MAX pages, about 2^63.
    (n < 1 << 62).then_some(n)
}

/// The kernel's name of a huge page size in hugetlb files: `2MB`, `1GB`, `64KB`.
fn hugetlb_name(page: u64) -> String {
    match page {
        p if p >= 1 << 30 && p % (1 << 30) == 0 => format!("{}GB", p >> 30),
        p if p >= 1 << 20 && p % (1 << 20) == 0 => format!("{}MB", p >> 20),
        p => format!("{}KB", p >> 10),
    }
}

#[cfg(test)]
mod tests;
