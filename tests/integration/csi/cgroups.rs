//! Where daemons run: in a cgroup of their own below the pod's (kubelet-shaped, in a
//! tree of the test's own), charged to the pod as tmpfs pages would be; below the
//! driver's own cgroup when the pod's is not found; never in the plugin's.

use super::fixture::*;
use crate::harness::*;
use std::path::Path;

/// The cgroup of `pid` in the hierarchy named `h` (v1), or the v2 one (`""`).
fn cgroup_of(pid: u32, h: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            controllers
                .split(',')
                .any(|c| c == h)
                .then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no {h} line in {text}"))
}

fn read_u64(p: &Path) -> u64 {
    std::fs::read_to_string(p).unwrap().trim().parse().unwrap()
}

#[test]
fn a_memory_volume_is_charged_to_its_pod() {
    let node = Node::start(&[]);
    let pod = node.pod();
    let v = node.volume(&pod, "scratch");
    node.client
        .publish(&publish_request(
            &v,
            &[("medium", "Memory"), ("sizeLimit", "256Mi")],
            None,
        ))
        .unwrap();
    let daemon = daemons_serving(&v.target)[0];
    let own = format!(
        "/{}/emptydirfs-{}",
        node.cgroups.pod_path(&pod.uid).display(),
        v.id
    );
    for h in ["memory", "cpu", "pids", "cpuset", "freezer"] {
        assert_eq!(cgroup_of(daemon, h), own, "{h}");
    }
    // A process of the pod (in a container's cgroup below the pod's) writes 128 MiB:
    // the kernel writes the volume's tmpfs for it, and charges the pages to it.
    let container = node.cgroups.memory(&pod.uid).join("container");
    make_cgroup(&container);
    let usage = node.cgroups.memory(&pod.uid).join("memory.usage_in_bytes");
    let before = read_u64(&usage);
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec head -c {} /dev/urandom > {}/data",
        container.display(),
        128 << 20,
        v.target.display()
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .bounded_output();
    assert!(out.status.success(), "the writer: {out:?}");
    let after = read_u64(&usage);
    assert!(
        after >= before + (120 << 20),
        "the pod's memory grew by {} MiB for 128 MiB of data",
        (after - before) >> 20
    );
    let charged = read_u64(&container.join("memory.usage_in_bytes"));
    assert!(
        charged >= 120 << 20,
        "charged to the writer's cgroup: {} MiB",
        charged >> 20
    );
    let oom: i32 = std::fs::read_to_string(format!("/proc/{daemon}/oom_score_adj"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if has_cap_sys_resource() {
        assert_eq!(oom, -999, "below every pod process");
    } else {
        assert!(
            node.log_text().contains("no CAP_SYS_RESOURCE"),
            "the plugin says why not"
        );
    }
    node.client.unpublish(&v.id, &v.target).unwrap();
    node.assert_gone(&v);
    assert!(
        node.cgroups.memory(&pod.uid).is_dir(),
        "the pod's own cgroup stays kubelet's"
    );
}

fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap();
    u64::from_str_radix(eff.trim(), 16).unwrap() & (1 << 24) != 0
}

#[test]
fn a_memory_volume_is_no_larger_than_its_pods_memory_limit() {
    let node = Node::start(&[]);
    let pod = node.pod_with(true, Some(48 << 20));
    let v = node.volume(&pod, "scratch");
    node.client
        .publish(&publish_request(
            &v,
            &[("medium", "Memory"), ("sizeLimit", "1Gi")],
            None,
        ))
        .unwrap();
    let st = statvfs(&v.target);
    assert_eq!(
        st.f_blocks * st.f_frsize,
        48 << 20,
        "df shows the pod's limit"
    );
    node.client.unpublish(&v.id, &v.target).unwrap();
    node.assert_gone(&v);
}

/// Without a cgroup of its pod, the daemon goes below the driver's own cgroup, in every
/// hierarchy: never the plugin's, which a restart of its container empties.
fn without_a_pod_cgroup_the_daemon_goes_below_the_drivers_own(m: Medium) {
    let node = Node::start(&[]);
    let pod = node.pod_with(false, None);
    let v = node.volume(&pod, "scratch");
    node.client
        .publish(&publish_request(&v, &medium_attrs(m), None))
        .unwrap();
    let daemon = daemons_serving(&v.target)[0];
    let own = format!("/{}/emptydirfs/emptydirfs-{}", node.cgroups.name, v.id);
    for h in ["memory", "cpu", "pids", "devices"] {
        assert_eq!(cgroup_of(daemon, h), own, "{h}");
        assert_ne!(cgroup_of(daemon, h), cgroup_of(node.plugin_pid(), h));
    }
    assert!(
        node.log_text().contains("no cgroup of pod"),
        "the plugin says so"
    );
    node.client.unpublish(&v.id, &v.target).unwrap();
    node.assert_gone(&v);
}

on_every_medium!(without_a_pod_cgroup_the_daemon_goes_below_the_drivers_own);

/// Where the cgroup2 hierarchy is mounted (`/sys/fs/cgroup` on a v2 host,
/// `/sys/fs/cgroup/unified` on a hybrid one); where it is not, it is mounted for the test
/// (there is always one cgroup2 hierarchy; root may mount it anywhere).
fn cgroup2() -> (std::path::PathBuf, Option<TempDir>) {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounted = table.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split(' ').next()? == "cgroup2").then(|| left.split(' ').nth(4).map(Into::into))?
    });
    if let Some(p) = mounted {
        return (p, None);
    }
    let dir = TempDir::new("cgroup2");
    run(std::process::Command::new("mount")
        .args(["-t", "cgroup2", "cgroup2"])
        .arg(dir.path()));
    (dir.path().to_path_buf(), Some(dir))
}

/// cgroup v2 (this machine's unified tree has no controllers, but it places processes):
/// a systemd-driver pod slice is found and the daemon put below it.
#[test]
fn on_cgroup_v2_the_daemon_goes_below_the_pods_slice() {
    let (unified, _mounted) = cgroup2();
    let unified = unified.as_path();
    let root = TestCgroups::new();
    let tree = unified.join(&root.name);
    let _cleanup = RemoveOnDrop(tree.clone());
    let node = Node::start(&[
        "--cgroup-fs",
        unified.to_str().unwrap(),
        "--kubelet-cgroup-root",
        &format!("/{}", root.name),
        "--fallback-cgroup",
        &format!("/{}/emptydirfs", root.name),
    ]);
    let pod = node.pod_with(false, None);
    let u = pod.uid.replace('-', "_");
    let slice = format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice");
    std::fs::create_dir_all(tree.join(&slice)).unwrap();
    let v = node.volume(&pod, "scratch");
    node.client
        .publish(&publish_request(&v, &[("medium", "Memory")], None))
        .unwrap();
    let daemon = daemons_serving(&v.target)[0];
    assert_eq!(
        cgroup_of(daemon, ""),
        format!("/{}/{slice}/emptydirfs-{}", root.name, v.id)
    );
    node.client.unpublish(&v.id, &v.target).unwrap();
    node.assert_gone(&v);
    assert!(
        !tree
            .join(&slice)
            .join(format!("emptydirfs-{}", v.id))
            .exists()
    );
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        remove_cgroup_tree(&self.0);
    }
}
