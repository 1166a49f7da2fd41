//! Volumes kubelet never unpublished, whose pod went away around a reboot: collected
//! by the plugin after the grace period; volumes of pods that still exist are kept.

use super::fixture::*;
use crate::harness::{SLOW, eventually};
use std::time::{Duration, Instant};

fn record_exists(node: &Node, v: &Vol) -> bool {
    node.state_dir().join("volumes").join(&v.id).exists()
}

/// Anything of `v` in the state dir: its record, or its record being deleted (a
/// collection renames it aside first, then deletes it).
fn anything_left(node: &Node, v: &Vol) -> bool {
    std::fs::read_dir(node.state_dir().join("volumes"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(&v.id))
}

#[test]
fn volumes_of_pods_gone_during_a_reboot_are_collected_after_the_grace_period() {
    let mut node = Node::start(&["--orphan-grace", "2"]);
    // One pod deleted with its directory, one whose directory kubelet leaked (kubernetes
    // #127229) but whose cgroup is gone, one that lives on.
    let (gone, leaked, alive) = (node.pod(), node.pod(), node.pod());
    let vols: Vec<Vol> = [&gone, &leaked, &alive]
        .iter()
        .map(|p| node.volume(p, "data"))
        .collect();
    for v in &vols {
        node.client
            .publish(&publish_request(v, &[("sizeLimit", "16Mi")], None))
            .unwrap();
        std::fs::write(v.target.join("f"), b"x").unwrap();
    }
    node.kill_plugin(libc::SIGKILL);
    vols.iter().for_each(crash);
    node.cgroups.remove_pod(&gone.uid);
    std::fs::remove_dir_all(node.kubelet.path().join("pods").join(&gone.uid)).unwrap();
    node.cgroups.remove_pod(&leaked.uid);
    // The grace counts from when the new plugin first sees them: not before it starts.
    let started = Instant::now();
    node.start_plugin();
    eventually("the orphans to go", Duration::from_secs(20), || {
        !anything_left(&node, &vols[0]) && !anything_left(&node, &vols[1])
    });
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "not before the grace period"
    );
    node.assert_gone(&vols[0]);
    node.assert_gone(&vols[1]);
    // The live pod's volume stays, and its data comes back when kubelet publishes again.
    assert!(record_exists(&node, &vols[2]));
    node.client
        .publish(&publish_request(&vols[2], &[("sizeLimit", "16Mi")], None))
        .unwrap();
    assert_eq!(std::fs::read(vols[2].target.join("f")).unwrap(), b"x");
    node.client.unpublish(&vols[2].id, &vols[2].target).unwrap();
    node.assert_gone(&vols[2]);
}

#[test]
fn a_serving_volume_is_never_collected() {
    let node = Node::start(&["--orphan-grace", "1"]);
    let pod = node.pod();
    let v = node.volume(&pod, "data");
    node.client
        .publish(&publish_request(&v, &[("medium", "Memory")], None))
        .unwrap();
    // Even with its pod's cgroup gone, a mounted volume is kubelet's to unpublish.
    node.cgroups
        .remove_pod_keeping(&pod.uid, &format!("emptydirfs-{}", v.id));
    // A true orphan beside it (unmounted, pod gone): once it is collected, the collector
    // has looked at the serving volume past the grace period too.
    let gone = node.pod();
    let orphan = node.volume(&gone, "data");
    node.client
        .publish(&publish_request(&orphan, &[("medium", "Memory")], None))
        .unwrap();
    crash(&orphan);
    node.cgroups.remove_pod(&gone.uid);
    std::fs::remove_dir_all(node.kubelet.path().join("pods").join(&gone.uid)).unwrap();
    eventually("the orphan beside it to be collected", SLOW, || {
        !anything_left(&node, &orphan)
    });
    assert!(record_exists(&node, &v));
    assert_eq!(daemons_serving(&v.target).len(), 1);
    node.client.unpublish(&v.id, &v.target).unwrap();
    node.assert_gone(&v);
}
