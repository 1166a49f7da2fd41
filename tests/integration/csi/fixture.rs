//! A node for the CSI plugin: a kubelet root, a state dir, a cgroup tree shaped as
//! kubelet's (below a cgroup of the test's own in every v1 hierarchy), the plugin process,
//! and pods and volumes made as kubelet makes them (the parent of the target 0750 with
//! `vol_data.json`, `volume_id` = `csi-` + sha256(pod UID + volume name)).
//!
//! On drop, whatever happened: the plugin is killed, every daemon below the kubelet root is
//! killed and waited for, every mount detached, the cgroup tree removed, the directories
//! deleted.

use super::client::Client;
use crate::harness::*;
use crate::kubelet::{KubeletRoot, daemons_below};
use emptydirfs::control::csi::proto::{self, volume_capability};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicU32 = AtomicU32::new(0);

fn unique() -> u32 {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

const V1_ROOT: &str = "/sys/fs/cgroup";

/// A cgroup subtree of the test's own, `/<name>`, in every v1 hierarchy: the plugin's
/// `--kubelet-cgroup-root` (pods go in `kubepods/burstable/pod<UID>` below it) and its
/// fallback (`/<name>/emptydirfs`).
pub struct TestCgroups {
    pub name: String,
}

/// The v1 hierarchies of this machine (not symlinks, not the controller-less unified tree).
pub fn v1_hierarchies() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(V1_ROOT)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists() && !p.join("cgroup.controllers").exists())
        .collect();
    v.sort();
    v
}

/// mkdir of one cgroup, with a v1 cpuset given its parent's CPUs and memory nodes.
pub fn make_cgroup(dir: &Path) {
    if dir.is_dir() {
        return;
    }
    make_cgroup(dir.parent().unwrap());
    std::fs::create_dir(dir).unwrap();
    for f in ["cpuset.cpus", "cpuset.mems"] {
        if dir.join(f).exists() {
            let v = std::fs::read_to_string(dir.parent().unwrap().join(f)).unwrap();
            std::fs::write(dir.join(f), v.trim()).unwrap();
        }
    }
}

/// Removes a cgroup tree deepest first, killing whatever still runs in it.
pub fn remove_cgroup_tree(dir: &Path) {
    if let Err(e) = try_remove_cgroup_tree(dir) {
        panic!("{e}");
    }
}

/// As [`remove_cgroup_tree`], saying what could not be removed instead of panicking, so
/// that a failure in one hierarchy does not keep the others from going.
fn try_remove_cgroup_tree(dir: &Path) -> Result<(), String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(()); // gone already
    };
    let mut failed = Vec::new();
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir())
            && let Err(why) = try_remove_cgroup_tree(&e.path())
        {
            failed.push(why);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.parse::<i32>().ok()) {
            // SAFETY: kill takes integers only and touches no memory of ours; `pid` is a
            // process in this test's own cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) if Instant::now() > deadline => {
                failed.push(format!("removing cgroup {}: {e}", dir.display()));
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// Removes the cgroups of test processes that died without their `Drop` (killed by a
/// signal, or by the test runner's deadline): `emptydirfs-test-<pid>-<n>` of a pid that
/// no longer exists, in every hierarchy.
fn remove_cgroups_of_dead_runs() {
    for h in v1_hierarchies() {
        let Ok(entries) = std::fs::read_dir(&h) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(rest) = name
                .to_str()
                .and_then(|n| n.strip_prefix("emptydirfs-test-"))
            else {
                continue;
            };
            let pid = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
            if pid.is_some_and(process_is_gone) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
}

impl TestCgroups {
    pub fn new() -> TestCgroups {
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(remove_cgroups_of_dead_runs);
        TestCgroups {
            name: format!("emptydirfs-test-{}-{}", std::process::id(), unique()),
        }
    }

    /// Kubelet's cgroup of a Burstable pod, in every hierarchy, with a memory limit.
    pub fn add_pod(&self, uid: &str, memory_limit: Option<u64>) -> PathBuf {
        let rel = self.pod_path(uid);
        for h in v1_hierarchies() {
            make_cgroup(&h.join(&rel));
        }
        if let Some(n) = memory_limit {
            std::fs::write(
                self.memory(uid).join("memory.limit_in_bytes"),
                n.to_string(),
            )
            .unwrap();
        }
        rel
    }

    pub fn pod_path(&self, uid: &str) -> PathBuf {
        PathBuf::from(format!("{}/kubepods/burstable/pod{uid}", self.name))
    }

    /// The pod's cgroup in the memory hierarchy.
    pub fn memory(&self, uid: &str) -> PathBuf {
        Path::new(V1_ROOT).join("memory").join(self.pod_path(uid))
    }

    /// As kubelet's Destroy: kills the pod's processes and removes its cgroup.
    pub fn remove_pod(&self, uid: &str) {
        for h in v1_hierarchies() {
            remove_cgroup_tree(&h.join(self.pod_path(uid)));
        }
    }

    /// Removes the pod's cgroup where nothing of `keep` (a child) is: the hierarchies
    /// the daemon's cgroup holds stay.
    pub fn remove_pod_keeping(&self, uid: &str, keep: &str) {
        for h in v1_hierarchies() {
            let dir = h.join(self.pod_path(uid));
            if !dir.join(keep).exists() {
                remove_cgroup_tree(&dir);
            }
        }
    }

    pub fn flags(&self) -> Vec<String> {
        vec![
            "--kubelet-cgroup-root".into(),
            format!("/{}", self.name),
            "--fallback-cgroup".into(),
            format!("/{}/emptydirfs", self.name),
        ]
    }
}

impl Drop for TestCgroups {
    /// Every hierarchy is tried, whatever fails in one; a test that passed then fails on
    /// what was left.
    fn drop(&mut self) {
        let failed: Vec<String> = v1_hierarchies()
            .iter()
            .filter_map(|h| try_remove_cgroup_tree(&h.join(&self.name)).err())
            .collect();
        if !failed.is_empty() {
            if std::thread::panicking() {
                eprintln!("left behind: {}", failed.join("; "));
            } else {
                panic!("left behind: {}", failed.join("; "));
            }
        }
    }
}

/// A pod as kubelet knows it.
#[derive(Clone, Debug)]
pub struct Pod {
    pub uid: String,
    pub namespace: String,
    pub name: String,
}

/// One inline volume of a pod.
#[derive(Clone, Debug)]
pub struct Vol {
    pub id: String,
    pub target: PathBuf,
    pub pod: Pod,
}

/// `csi-` + hex(sha256(pod UID + volume name)), as kubelet's makeVolumeHandle.
pub fn kubelet_volume_id(uid: &str, name: &str) -> String {
    let out = sh(&format!("printf '%s' '{uid}{name}' | sha256sum"));
    format!("csi-{}", &out[..64])
}

pub struct Node {
    pub kubelet: KubeletRoot,
    pub state: TempDir,
    sock_dir: TempDir,
    pub cgroups: TestCgroups,
    plugin: Option<Child>,
    /// The plugin's flags beyond the fixture's, and its program (this build by default).
    pub extra: Vec<String>,
    pub program: PathBuf,
    pub log: PathBuf,
    pub client: Client,
}

impl Node {
    /// A node whose plugin runs with `extra` flags.
    pub fn start(extra: &[&str]) -> Node {
        let mut n = Node::new(extra);
        n.start_plugin();
        n
    }

    /// A node whose plugin is not started yet.
    pub fn new(extra: &[&str]) -> Node {
        let kubelet = KubeletRoot::new();
        let state = TempDir::new("csi-state");
        let sock_dir = TempDir::new("csi-sock");
        let log = sock_dir.path().join("plugin.log");
        let socket = sock_dir.path().join("csi.sock");
        Node {
            kubelet,
            state,
            client: Client::new(&socket),
            sock_dir,
            cgroups: TestCgroups::new(),
            plugin: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            program: PathBuf::from(BIN),
            log,
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.sock_dir.path().join("csi.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.state.path().join("state")
    }

    /// The plugin's command line.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "csi".to_string(),
            "--endpoint".into(),
            format!("unix://{}", self.socket().display()),
            "--node-id".into(),
            "node-1".into(),
            "--state-dir".into(),
            self.state_dir().display().to_string(),
            "--kubelet-root".into(),
            self.kubelet.path().display().to_string(),
        ];
        if !self.extra.iter().any(|f| f == "--orphan-grace") {
            a.extend(["--orphan-grace".into(), "3600".into()]);
        }
        if !self.extra.iter().any(|f| f == "--cgroup-fs") {
            a.extend(self.cgroups.flags());
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// Starts the plugin and waits until Probe says it is ready.
    pub fn start_plugin(&mut self) {
        assert!(self.plugin.is_none(), "the plugin runs already");
        let args = self.args();
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        self.plugin = Some(spawn_program(&self.program, &args, &self.log, None));
        let deadline = Instant::now() + Duration::from_secs(20);
        self.client = Client::new(&self.socket());
        loop {
            if let Some(status) = self.plugin.as_mut().unwrap().try_wait().unwrap() {
                panic!("the plugin exited with {status}: {}", self.log_text());
            }
            if self.socket().exists() && matches!(self.client.probe(), Ok(true)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "plugin not ready in 20 s: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the plugin with `sig` and waits for it; its daemons stay.
    pub fn kill_plugin(&mut self, sig: i32) -> std::process::ExitStatus {
        let mut child = self.plugin.take().expect("the plugin is not running");
        // SAFETY: kill takes integers only; the child is this fixture's plugin, not yet
        // reaped, so its pid is not reused.
        unsafe { libc::kill(child.id() as i32, sig) };
        wait_timeout(&mut child, Duration::from_secs(40)).expect("the plugin did not exit")
    }

    pub fn plugin_pid(&self) -> u32 {
        self.plugin.as_ref().unwrap().id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The port the plugin serves metrics on, as its log says (start it with
    /// `--metrics-address 127.0.0.1:0`: the kernel picks a free port, no race).
    pub fn metrics_port(&self) -> u16 {
        let mut port = None;
        eventually("the plugin to log its metrics address", SOON, || {
            port = self.log_text().lines().rev().find_map(|l| {
                let rest = l.split("metrics at http://127.0.0.1:").nth(1)?;
                rest.split('/').next()?.parse().ok()
            });
            port.is_some()
        });
        port.unwrap()
    }

    /// A new pod: its directory as kubelet makes it, and (unless `cgroup` is false) its
    /// cgroup, with a memory limit if given.
    pub fn pod_with(&self, cgroup: bool, memory_limit: Option<u64>) -> Pod {
        let n = unique();
        let uid = format!("{:08x}-77d0-4f3b-9e59-{:012x}", std::process::id(), n);
        std::fs::create_dir_all(self.kubelet.path().join("pods").join(&uid)).unwrap();
        if cgroup {
            self.cgroups.add_pod(&uid, memory_limit);
        }
        Pod {
            uid,
            namespace: "default".into(),
            name: format!("pod-{n}"),
        }
    }

    pub fn pod(&self) -> Pod {
        self.pod_with(true, None)
    }

    /// A volume of `pod` named `name`: its target's parent and `vol_data.json`, as
    /// kubelet writes them before it publishes.
    pub fn volume(&self, pod: &Pod, name: &str) -> Vol {
        let id = kubelet_volume_id(&pod.uid, name);
        let parent = self
            .kubelet
            .path()
            .join("pods")
            .join(&pod.uid)
            .join("volumes/kubernetes.io~csi")
            .join(name);
        std::fs::create_dir_all(&parent).unwrap();
        std::fs::set_permissions(&parent, std::os::unix::fs::PermissionsExt::from_mode(0o750))
            .unwrap();
        std::fs::write(
            parent.join("vol_data.json"),
            format!(
                "{{\"specVolID\":\"{name}\",\"volumeHandle\":\"{id}\",\"driverName\":\"csi.emptydirfs.io\",\"nodeName\":\"node-1\",\"volumeLifecycleMode\":\"Ephemeral\"}}"
            ),
        )
        .unwrap();
        Vol {
            id,
            target: parent.join("mount"),
            pod: pod.clone(),
        }
    }

    /// Kubelet's cleanup after an unpublish: the target if empty and unmounted, then
    /// `vol_data.json` and the parent (only where possible, as kubelet).
    pub fn kubelet_cleanup(&self, v: &Vol) {
        let _ = std::fs::remove_dir(&v.target);
        let parent = v.target.parent().unwrap();
        let _ = std::fs::remove_file(parent.join("vol_data.json"));
        let _ = std::fs::remove_dir(parent);
    }

    /// The daemons serving below the kubelet root.
    pub fn daemons(&self) -> Vec<u32> {
        daemons_below(self.kubelet.path())
    }

    /// Nothing of `v` is left: no daemon, mount, target, record, data or daemon cgroup.
    pub fn assert_gone(&self, v: &Vol) {
        assert!(daemons_serving(&v.target).is_empty(), "a daemon is left");
        assert!(!is_mounted(&v.target), "still mounted");
        assert!(
            std::fs::symlink_metadata(&v.target).is_err(),
            "the target is left"
        );
        let records: Vec<String> = std::fs::read_dir(self.state_dir().join("volumes"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&v.id))
            .collect();
        assert_eq!(records, Vec::<String>::new(), "the record or data is left");
        let cgroup = format!("emptydirfs-{}", v.id);
        let left = sh(&format!(
            "find {V1_ROOT}/*/{} -name '{cgroup}' 2>/dev/null || true",
            self.cgroups.name
        ));
        assert_eq!(left.trim(), "", "the daemon's cgroup is left");
    }
}

/// What a reboot (or a crash) does to a volume: its daemon killed, its mount gone.
pub fn crash(v: &Vol) {
    for pid in daemons_serving(&v.target) {
        // SAFETY: kill takes integers only; `pid` is a daemon of this test's node (found
        // serving its volume).
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    eventually("the daemon to die", SOON, || {
        daemons_serving(&v.target).is_empty()
    });
    lazy_unmount(&v.target);
}

/// Daemons whose mount point is exactly `target`.
pub fn daemons_serving(target: &Path) -> Vec<u32> {
    daemons_below(target)
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut p) = self.plugin.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.daemons();
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids {
                // SAFETY: kill takes integers only; `pid` is a daemon of this test's node
                // (found serving its volume).
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for m in mounts_below(self.kubelet.path()) {
            lazy_unmount(&m);
        }
        // Then the fields: the cgroups (now empty), the directories.
    }
}

/// A publish request as kubelet sends it for `v` with these `volumeAttributes`.
pub fn publish_request(
    v: &Vol,
    attrs: &[(&str, &str)],
    mount_group: Option<u32>,
) -> proto::NodePublishVolumeRequest {
    let mut ctx: std::collections::HashMap<String, String> = attrs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, val) in [
        ("csi.storage.k8s.io/pod.name", v.pod.name.clone()),
        ("csi.storage.k8s.io/pod.namespace", v.pod.namespace.clone()),
        ("csi.storage.k8s.io/pod.uid", v.pod.uid.clone()),
        ("csi.storage.k8s.io/serviceAccount.name", "default".into()),
        ("csi.storage.k8s.io/ephemeral", "true".into()),
    ] {
        ctx.insert(k.into(), val);
    }
    proto::NodePublishVolumeRequest {
        volume_id: v.id.clone(),
        target_path: v.target.display().to_string(),
        volume_capability: Some(proto::VolumeCapability {
            access_type: Some(volume_capability::AccessType::Mount(
                volume_capability::MountVolume {
                    fs_type: String::new(),
                    mount_flags: vec![],
                    volume_mount_group: mount_group.map(|g| g.to_string()).unwrap_or_default(),
                },
            )),
            access_mode: Some(volume_capability::AccessMode {
                mode: volume_capability::Mode::SingleNodeMultiWriter as i32,
            }),
        }),
        volume_context: ctx,
        ..Default::default()
    }
}

/// The attributes of a 64 MiB volume of a test medium.
pub fn medium_attrs(m: Medium) -> Vec<(&'static str, &'static str)> {
    sized_attrs(m, "64Mi")
}

/// The attributes of a volume of `size` of a test medium.
pub fn sized_attrs(m: Medium, size: &'static str) -> Vec<(&'static str, &'static str)> {
    match m {
        Medium::Memory => vec![("medium", "Memory"), ("sizeLimit", size)],
        Medium::Disk => vec![("sizeLimit", size)],
    }
}
