//! The plugin stopped, killed and started again, the daemon killed, the node rebooted:
//! pods see no error from what is not theirs, and every volume is found again.

use super::client::Client;
use super::fixture::*;
use crate::harness::*;
use crate::kubelet::View;
use std::process::Command;
use std::time::Duration;

fn sigterm_stops_the_plugin_and_leaves_every_volume_serving(m: Medium) {
    let mut node = Node::start(&[]);
    let v = node.volume(&node.pod(), "scratch");
    node.client
        .publish(&publish_request(&v, &medium_attrs(m), None))
        .unwrap();
    std::fs::write(v.target.join("before"), b"1").unwrap();
    let daemons = daemons_serving(&v.target);
    let status = node.kill_plugin(libc::SIGTERM);
    assert!(status.success(), "{status}: {}", node.log_text());
    assert!(!node.socket().exists(), "the socket is removed");
    assert_eq!(daemons_serving(&v.target), daemons, "the daemon stays");
    std::fs::write(v.target.join("meanwhile"), b"2").unwrap();
    assert_eq!(std::fs::read(v.target.join("before")).unwrap(), b"1");
    node.start_plugin();
    assert!(
        !node
            .client
            .stats(&v.id, &v.target)
            .unwrap()
            .volume_condition
            .unwrap()
            .abnormal
    );
    node.client.unpublish(&v.id, &v.target).unwrap();
    node.assert_gone(&v);
}

/// Whether fio has laid out all of its two 32 MiB files (it may finish its I/O early).
fn fio_done(dir: &std::path::Path) -> bool {
    du_bytes(dir) >= 64 << 20
}

/// fio with crc32c verification runs as another uid through a bind mount while the
/// plugin is killed with SIGKILL and started again: fio sees no error, and the new plugin
/// reports the volume and unpublishes it cleanly.
fn a_plugin_killed_under_fio_disturbs_no_pod(m: Medium) {
    let mut node = Node::start(&[]);
    let v = node.volume(&node.pod(), "scratch");
    node.client
        .publish(&publish_request(&v, &sized_attrs(m, "256Mi"), None))
        .unwrap();
    let view = View::of(&v.target);
    let mut fio = Command::new("setpriv");
    fio.args(["--reuid=1000", "--regid=1000", "--clear-groups", "fio"])
        .args([
            "--name=verify",
            "--ioengine=psync",
            "--rw=randwrite",
            "--bs=4k",
            "--size=32m",
            "--numjobs=2",
            "--loops=4",
            "--fsync=64",
            "--verify=crc32c",
            "--verify_fatal=1",
            "--verify_state_save=0",
        ])
        .arg(format!("--directory={}", view.path.display()))
        .current_dir(&view.path);
    let fio = Guarded::spawn(&mut fio, "fio");
    let written = || du_bytes(&view.path);
    eventually("fio to write", SLOW, || written() > 1 << 20);
    let status = node.kill_plugin(libc::SIGKILL);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    // fio goes on while no plugin runs.
    let before = written();
    eventually("fio to write with the plugin gone", SLOW, || {
        written() > before + (1 << 20) || fio_done(&view.path)
    });
    node.start_plugin();
    let out = fio.wait_within(Duration::from_secs(300));
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(out.status.success(), "fio failed: {text}");
    assert!(
        text.contains("err= 0") && !text.contains("verify failed"),
        "{text}"
    );
    let stats = node.client.stats(&v.id, &v.target).unwrap();
    assert!(stats.usage[0].used >= 64 << 20, "{stats:?}");
    drop(view);
    node.client.unpublish(&v.id, &v.target).unwrap();
    node.assert_gone(&v);
}

/// Ten publishes under way when the plugin is killed: kubelet's retries against the new
/// plugin end every one OK, with exactly one daemon and one mount per volume, and the
/// unpublishes leave nothing.
fn a_plugin_killed_mid_publish_leaves_nothing_half_done(m: Medium) {
    let mut node = Node::start(&[]);
    let vols: Vec<Vol> = (0..10)
        .map(|_| node.volume(&node.pod(), "scratch"))
        .collect();
    let socket = node.socket();
    std::thread::scope(|s| {
        let calls: Vec<_> = vols
            .iter()
            .map(|v| {
                let socket = &socket;
                s.spawn(move || {
                    Client::new(socket).publish_retrying(
                        &publish_request(v, &medium_attrs(m), None),
                        Duration::from_secs(90),
                    )
                })
            })
            .collect();
        // Killed once publishes are under way (records written, not all published).
        let records = node.state_dir().join("volumes");
        eventually("publishes to be under way", SLOW, || {
            std::fs::read_dir(&records).is_ok_and(|d| d.count() > 0)
        });
        node.kill_plugin(libc::SIGKILL);
        node.start_plugin();
        for c in calls {
            c.join().unwrap().unwrap();
        }
    });
    for v in &vols {
        assert_eq!(daemons_serving(&v.target).len(), 1, "{}", node.log_text());
        assert_eq!(mounts_below(&v.target), vec![v.target.clone()]);
    }
    assert_eq!(node.daemons().len(), vols.len(), "no stray daemon");
    for v in &vols {
        node.client.unpublish(&v.id, &v.target).unwrap();
        node.assert_gone(v);
    }
    assert_eq!(node.daemons(), Vec::<u32>::new());
}

/// A reboot clears the mounts, the daemons and the cgroups; kubelet then publishes the
/// pod's volumes again with the same ids. A disk volume comes back with its data (as a
/// disk emptyDir survives a reboot); a Memory volume comes back empty.
fn after_a_node_reboot_disk_data_comes_back_and_memory_starts_empty(m: Medium) {
    let mut node = Node::start(&[]);
    let pod = node.pod();
    let v = node.volume(&pod, "scratch");
    let req = publish_request(&v, &medium_attrs(m), None);
    node.client.publish(&req).unwrap();
    std::fs::write(v.target.join("kept"), b"survives on disk").unwrap();
    // A second volume, which kubelet unpublishes after the reboot instead.
    let other = node.volume(&pod, "other");
    node.client
        .publish(&publish_request(&other, &medium_attrs(m), None))
        .unwrap();
    // The reboot.
    node.kill_plugin(libc::SIGKILL);
    crash(&v);
    crash(&other);
    node.cgroups.remove_pod(&pod.uid);
    // Kubelet starts, makes the pod's cgroup and publishes again.
    node.start_plugin();
    node.cgroups.add_pod(&pod.uid, None);
    // Unpublish of a target that is no mount any more: success, and nothing left.
    assert!(!is_mounted(&other.target) && other.target.is_dir());
    node.client.unpublish(&other.id, &other.target).unwrap();
    node.assert_gone(&other);
    node.client.publish(&req).unwrap();
    match m {
        Medium::Disk => assert_eq!(
            std::fs::read(v.target.join("kept")).unwrap(),
            b"survives on disk"
        ),
        Medium::Memory => assert_eq!(std::fs::read_dir(&v.target).unwrap().count(), 0, "empty"),
    }
    node.client.unpublish(&v.id, &v.target).unwrap();
    node.assert_gone(&v);
}

/// A daemon killed: stats say the volume is abnormal (with the usage last seen), and
/// unpublish of the dead mount cleans everything.
fn a_dead_daemon_is_reported_and_unpublished(m: Medium) {
    let node = Node::start(&[]);
    let v = node.volume(&node.pod(), "scratch");
    node.client
        .publish(&publish_request(&v, &medium_attrs(m), None))
        .unwrap();
    std::fs::write(v.target.join("f"), vec![7u8; 1 << 20]).unwrap();
    let alive = node.client.stats(&v.id, &v.target).unwrap();
    for pid in daemons_serving(&v.target) {
        // SAFETY: kill takes integers only; `pid` is a daemon this test started (found
        // serving its volume).
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    eventually("the daemon to die", SOON, || {
        daemons_serving(&v.target).is_empty()
    });
    let dead = node.client.stats(&v.id, &v.target).unwrap();
    let cond = dead.volume_condition.unwrap();
    assert!(cond.abnormal, "{cond:?}");
    assert!(cond.message.contains("ENOTCONN"), "{cond:?}");
    assert_eq!(dead.usage[0], alive.usage[0], "the usage last seen");
    node.client.unpublish(&v.id, &v.target).unwrap();
    node.assert_gone(&v);
}

on_every_medium!(
    sigterm_stops_the_plugin_and_leaves_every_volume_serving,
    a_plugin_killed_under_fio_disturbs_no_pod,
    a_plugin_killed_mid_publish_leaves_nothing_half_done,
    after_a_node_reboot_disk_data_comes_back_and_memory_starts_empty,
    a_dead_daemon_is_reported_and_unpublished,
);
