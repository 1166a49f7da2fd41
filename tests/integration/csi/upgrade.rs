//! A new plugin build started with `--upgrade-daemons` hands every volume whose daemon
//! runs another build to a daemon of its own, while the pod keeps writing.

use super::fixture::*;
use crate::handoff::Appender;
use crate::harness::*;
use std::time::Duration;

/// Another build: this binary with a byte more (another hash, the same program).
fn older_build(dir: &std::path::Path) -> std::path::PathBuf {
    let old = dir.join("emptydirfs-old");
    let mut bytes = std::fs::read(BIN).unwrap();
    bytes.push(0);
    std::fs::write(&old, bytes).unwrap();
    std::fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    old
}

fn exe_of(pid: u32) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default()
}

fn a_new_plugin_hands_old_daemons_over(m: Medium) {
    let bin = TempDir::new("old-build");
    let mut node = Node::new(&[]);
    node.program = older_build(bin.path());
    node.start_plugin();
    let pod = node.pod();
    let v = node.volume(&pod, "scratch");
    node.client
        .publish(&publish_request(&v, &medium_attrs(m), None))
        .unwrap();
    std::fs::write(v.target.join("kept"), b"from the old build").unwrap();
    let old = daemons_serving(&v.target)[0];
    assert_eq!(exe_of(old), node.program);
    let writer = Appender::start(v.target.join("records"));

    // The DaemonSet rolls out the new build.
    node.kill_plugin(libc::SIGTERM);
    node.program = std::path::PathBuf::from(BIN);
    node.extra.push("--upgrade-daemons".into());
    node.start_plugin();
    eventually("the new build to serve the volume", SLOW, || {
        daemons_serving(&v.target)
            .first()
            .is_some_and(|&p| exe_of(p) == std::path::Path::new(BIN))
    });
    writer.finish();
    assert_eq!(
        std::fs::read(v.target.join("kept")).unwrap(),
        b"from the old build"
    );
    let new = daemons_serving(&v.target)[0];
    assert_ne!(new, old);
    let cgroup = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cgroup(new).contains(&format!("pod{}/emptydirfs-{}", pod.uid, v.id)),
        "still the pod's"
    );
    // Logged once every hand-off has returned, which is after the new daemon serves.
    let handed = "1 volumes handed to daemons of this build";
    eventually(
        &format!("{handed:?} in the log"),
        Duration::from_secs(10),
        || node.log_text().contains(handed),
    );
    node.client.unpublish(&v.id, &v.target).unwrap();
    node.assert_gone(&v);
}

on_every_medium!(a_new_plugin_hands_old_daemons_over);
