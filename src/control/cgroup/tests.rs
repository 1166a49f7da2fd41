//! Kubelet-shaped cgroup trees in temporary directories: the v2 and v1 layouts of both
//! cgroup drivers, as files (the real v1 hierarchy is tested in tests/integration/csi).

use super::*;

const UID: &str = "4c1a2b9e-77d0-4f3b-9e59-0c8f5d2a6e11";

struct Tree(PathBuf);

impl Tree {
    fn new(tag: &str) -> Tree {
        let dir = std::env::temp_dir().join(format!(
            "emptydirfs-cgroup-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Tree(dir)
    }

    fn file(&self, rel: &str, text: &str) {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn systemd_pod(qos: &str) -> String {
    let u = UID.replace('-', "_");
    match qos {
        "" => format!("kubepods.slice/kubepods-pod{u}.slice"),
        q => format!("kubepods.slice/kubepods-{q}.slice/kubepods-{q}-pod{u}.slice"),
    }
}

#[test]
fn v2_pods_of_both_drivers_and_every_qos_class_are_found() {
    for (pod, root) in [
        (systemd_pod("burstable"), "/"),
        (systemd_pod("besteffort"), "/"),
        (systemd_pod(""), "/"),
        (format!("kubepods/burstable/pod{UID}"), "/"),
        (format!("kubepods/pod{UID}"), "/"),
        (format!("kubelet/kubepods/besteffort/pod{UID}"), "/kubelet"),
    ] {
        let t = Tree::new("v2");
        t.file("cgroup.controllers", "cpuset cpu io memory hugetlb pids\n");
        t.file(&format!("{pod}/memory.max"), "536870912\n");
        t.file(&format!("{pod}/hugetlb.2MB.max"), "max\n");
        t.file(&format!("{pod}/cri-containerd-abc.scope/cgroup.procs"), "");
        // Another pod, and a container whose name holds our UID, must not be taken.
        t.file("kubepods/burstable/podother/memory.max", "1\n");
        let cg = Cgroups::discover(&t.0).unwrap();
        assert_eq!(cg.version, Version::V2);
        let found = cg
            .find_pod(Path::new(root), UID)
            .unwrap_or_else(|| panic!("{pod}"));
        assert_eq!(found.path, PathBuf::from(&pod));
        assert_eq!(found.present_in, vec![0]);
        assert_eq!(cg.memory_limit(&found), Some(512 << 20), "{pod}");
        assert_eq!(cg.hugetlb_limit(&found, 2 << 20), None, "max is no limit");
        assert_eq!(cg.find_pod(Path::new(root), "0000"), None);
    }
}

#[test]
fn v1_hierarchies_skip_symlinks_and_the_unified_tree() {
    let t = Tree::new("v1");
    for h in ["memory", "cpu,cpuacct", "pids", "systemd", "cpuset"] {
        t.file(&format!("{h}/cgroup.procs"), "");
    }
    // cpuset: the root's CPUs, and a daemon cgroup someone made and was killed before
    // giving it CPUs (a real cgroupfs makes the files on mkdir; here they are written).
    t.file("cpuset/cpuset.cpus", "0-1\n");
    t.file("cpuset/cpuset.mems", "0\n");
    t.file("cpuset/emptydirfs/cpuset.cpus", "0-1\n");
    t.file("cpuset/emptydirfs/cpuset.mems", "0\n");
    t.file("cpuset/emptydirfs/emptydirfs-v/cpuset.cpus", "");
    t.file("cpuset/emptydirfs/emptydirfs-v/cpuset.mems", "");
    t.file("unified/cgroup.procs", "");
    t.file("unified/cgroup.controllers", "");
    std::os::unix::fs::symlink("cpu,cpuacct", t.0.join("cpu")).unwrap();
    let pod = format!("kubepods/besteffort/pod{UID}");
    for h in ["memory", "cpu,cpuacct"] {
        t.file(&format!("{h}/{pod}/cgroup.procs"), "");
    }
    t.file(
        &format!("memory/{pod}/memory.limit_in_bytes"),
        "9223372036854771712\n",
    );
    let cg = Cgroups::discover(&t.0).unwrap();
    assert_eq!(cg.version, Version::V1);
    let names: Vec<String> = cg
        .hierarchies
        .iter()
        .map(|h| h.root.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["cpu,cpuacct", "cpuset", "memory", "pids", "systemd"]
    );
    let found = cg.find_pod(Path::new("/"), UID).unwrap();
    assert_eq!(
        found.present_in,
        vec![0, 2],
        "cpu,cpuacct and memory have the pod"
    );
    assert_eq!(cg.memory_limit(&found), None, "v1's unlimited");
    std::fs::write(
        t.0.join(format!("memory/{pod}/memory.limit_in_bytes")),
        "1073741824\n",
    )
    .unwrap();
    assert_eq!(cg.memory_limit(&found), Some(1 << 30));

    // The daemon leaves the starter's cgroup in every hierarchy: the pod's where it is
    // there, the driver's own elsewhere.
    let procs = cg
        .make_daemon_cgroup(&found, Path::new("/emptydirfs"), "emptydirfs-v")
        .unwrap();
    let rel: Vec<PathBuf> = procs
        .iter()
        .map(|p| p.strip_prefix(&t.0).unwrap().to_path_buf())
        .collect();
    assert_eq!(
        rel,
        [
            PathBuf::from(format!("cpu,cpuacct/{pod}/emptydirfs-v/cgroup.procs")),
            PathBuf::from("cpuset/emptydirfs/emptydirfs-v/cgroup.procs"),
            PathBuf::from(format!("memory/{pod}/emptydirfs-v/cgroup.procs")),
            PathBuf::from("pids/emptydirfs/emptydirfs-v/cgroup.procs"),
            PathBuf::from("systemd/emptydirfs/emptydirfs-v/cgroup.procs"),
        ]
    );
    assert_eq!(
        std::fs::read_to_string(t.0.join("cpuset/emptydirfs/emptydirfs-v/cpuset.cpus")).unwrap(),
        "0-1",
        "an existing cpuset cgroup without CPUs gets its parent's"
    );
    for f in ["cpuset.cpus", "cpuset.mems"] {
        std::fs::remove_file(t.0.join("cpuset/emptydirfs/emptydirfs-v").join(f)).unwrap();
    }
    cg.remove_daemon_cgroup(&found, Path::new("/emptydirfs"), "emptydirfs-v")
        .unwrap();
    assert!(!t.0.join(format!("memory/{pod}/emptydirfs-v")).exists());
    assert!(!t.0.join("pids/emptydirfs/emptydirfs-v").exists());
    // Again: already gone is fine.
    cg.remove_daemon_cgroup(&found, Path::new("/emptydirfs"), "emptydirfs-v")
        .unwrap();
}

#[test]
fn v2_fallback_enables_the_controllers_for_its_children() {
    let t = Tree::new("v2own");
    t.file("cgroup.controllers", "cpu memory pids\n");
    t.file("emptydirfs/cgroup.controllers", "cpu memory pids\n");
    let cg = Cgroups::discover(&t.0).unwrap();
    let none = cg.cgroup(PathBuf::from("kubepods/pod-missing"));
    assert!(none.present_in.is_empty());
    let procs = cg
        .make_daemon_cgroup(&none, Path::new("emptydirfs"), "vol")
        .unwrap();
    assert_eq!(procs, [t.0.join("emptydirfs/vol/cgroup.procs")]);
    assert_eq!(
        std::fs::read_to_string(t.0.join("emptydirfs/cgroup.subtree_control")).unwrap(),
        "+cpu +memory +pids"
    );
}

#[test]
fn nothing_to_discover() {
    let t = Tree::new("none");
    assert!(Cgroups::discover(&t.0).is_err());
}

#[test]
fn huge_page_names_are_the_kernels() {
    assert_eq!(hugetlb_name(2 << 20), "2MB");
    assert_eq!(hugetlb_name(1 << 30), "1GB");
    assert_eq!(hugetlb_name(64 << 10), "64KB");
}
