//! Volumes whose pod is gone and which kubelet never unpublished (kubelet loses inline
//! volumes of pods deleted around a node reboot: kubernetes#127229), torn down by the
//! plugin after a grace period, data and all.
//!
//! A volume is an orphan when it is not serving (not mounted, or a dead mount: after a
//! reboot, or a daemon that died) and its pod shows no sign of life: kubelet's pod
//! directory is gone, or kubelet keeps pods' cgroups here and the pod has none (kubelet
//! makes a pod's cgroup before it publishes its volumes, and a reboot empties the
//! cgroups). It must stay so for the whole grace period, counted from when this plugin
//! process first saw it so. A serving volume is never collected: its pod's cgroup and
//! directory cannot go while it is mounted, and kubelet unpublishes it.

use super::node::Node;
use crate::control::volume::probe::Health;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Collects orphans every `every`, those orphaned for `grace`; never returns.
pub fn run(node: Arc<Node>, grace: Duration, every: Duration) {
    let mut seen: HashMap<String, Instant> = HashMap::new();
    loop {
        collect(&node, grace, &mut seen);
        crate::control::volume::daemon::reap();
        std::thread::sleep(every);
    }
}

/// One pass: notes the volumes that are orphans now, tears down those that have been for
/// `grace`, forgets the others.
pub fn collect(node: &Node, grace: Duration, seen: &mut HashMap<String, Instant>) {
    if !node.is_ready() {
        return;
    }
    let ids = node.state.ids().unwrap_or_default();
    seen.retain(|id, _| ids.contains(id));
    for id in ids {
        let Ok(Some(r)) = node.state.load(&id) else {
            continue;
        };
        // Looked at without a claim (asking a daemon may take its answer timeout, and a
        // claim held meanwhile would turn kubelet's calls away); claimed, and looked at
        // again, only to be collected.
        let is_orphan = || {
            matches!(
                node.health(&r).health,
                Health::NotMounted | Health::DeadMount
            ) && pod_is_gone(node, &r.pod.uid)
        };
        let orphan = is_orphan();
        if !orphan {
            seen.remove(&id);
            continue;
        }
        let since = *seen.entry(id.clone()).or_insert_with(Instant::now);
        if since.elapsed() < grace {
            continue;
        }
        let Ok(_busy) = node.claim(&id, &r.target) else {
            continue; // kubelet is at it
        };
        if !is_orphan() {
            continue;
        }
        log::warn!(
            "volume {id} of pod {}/{} ({}) is not mounted and its pod is gone: deleting it",
            r.pod.namespace,
            r.pod.name,
            r.pod.uid
        );
        match node.tear_down(&r) {
            Ok(()) => {
                seen.remove(&id);
            }
            Err(e) => log::warn!("collecting volume {id}: {e}"),
        }
    }
}

/// No pod directory, or no pod cgroup where kubelet keeps them.
fn pod_is_gone(node: &Node, uid: &str) -> bool {
    let pod_dir = node.settings.kubelet_root.join("pods").join(uid);
    if std::fs::symlink_metadata(pod_dir).is_err() {
        return true;
    }
    node.placer.kubelet_keeps_pods() && node.placer.pod(uid).is_none()
}
