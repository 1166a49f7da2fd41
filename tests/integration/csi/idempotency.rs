//! Repeated and concurrent calls, as kubelet makes them after its restarts and timeouts.

use super::client::{Client, assert_refused};
use super::fixture::*;
use crate::harness::*;
use std::time::Duration;
use tonic::Code;

fn a_repeated_publish_changes_nothing_and_another_is_refused(m: Medium) {
    let node = Node::start(&[]);
    let pod = node.pod();
    let v = node.volume(&pod, "scratch");
    let req = publish_request(&v, &medium_attrs(m), None);
    node.client.publish(&req).unwrap();
    std::fs::write(v.target.join("kept"), b"data").unwrap();
    let daemons = daemons_serving(&v.target);
    assert_eq!(daemons.len(), 1);
    for _ in 0..3 {
        node.client.publish(&req).unwrap();
    }
    assert_eq!(daemons_serving(&v.target), daemons, "the same daemon");
    assert_eq!(std::fs::read(v.target.join("kept")).unwrap(), b"data");

    // The same volume with other attributes, or at another target.
    let mut other = req.clone();
    other
        .volume_context
        .insert("sizeLimit".into(), "32Mi".into());
    assert_refused(
        node.client.publish(&other),
        Code::AlreadyExists,
        "sizeLimit=32Mi",
    );
    let elsewhere = node.volume(&pod, "elsewhere");
    let mut moved = req.clone();
    moved.target_path = elsewhere.target.display().to_string();
    assert_refused(
        node.client.publish(&moved),
        Code::FailedPrecondition,
        &v.target.display().to_string(),
    );
    // Another volume at this target.
    let mut stranger = req.clone();
    stranger.volume_id = "csi-stranger".into();
    assert_refused(
        node.client.publish(&stranger),
        Code::FailedPrecondition,
        &v.id,
    );
    assert_eq!(node.daemons(), daemons, "no other daemon started");
    node.client.unpublish(&v.id, &v.target).unwrap();
    node.assert_gone(&v);
}

fn a_publish_that_timed_out_is_finished_and_repeated_as_a_no_op(m: Medium) {
    let node = Node::start(&[]);
    let pod = node.pod();
    let v = node.volume(&pod, "scratch");
    let req = publish_request(&v, &medium_attrs(m), None);
    // Kubelet gives up on the call; the plugin finishes the publish anyway, and the call
    // kubelet repeats finds it done (or, while it is still under way, ABORTED).
    let e = node
        .client
        .publish_within(&req, Duration::from_millis(1))
        .unwrap_err();
    assert!(
        matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{e:?}"
    );
    node.client
        .publish_retrying(&req, Duration::from_secs(30))
        .unwrap();
    assert_eq!(daemons_serving(&v.target).len(), 1);
    node.client.unpublish(&v.id, &v.target).unwrap();
    node.assert_gone(&v);
}

/// The same volume published from eight threads at once: every call ends OK after
/// kubelet's retries on ABORTED, with one daemon.
fn concurrent_publishes_of_one_volume_end_with_one_daemon(m: Medium) {
    let node = Node::start(&[]);
    let pod = node.pod();
    let v = node.volume(&pod, "scratch");
    let req = publish_request(&v, &medium_attrs(m), None);
    let socket = node.socket();
    std::thread::scope(|s| {
        let calls: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let c = Client::new(&socket);
                    c.publish_retrying(&req, Duration::from_secs(30))
                })
            })
            .collect();
        for c in calls {
            c.join().unwrap().unwrap();
        }
    });
    assert_eq!(daemons_serving(&v.target).len(), 1);
    node.client.unpublish(&v.id, &v.target).unwrap();
    node.assert_gone(&v);
}

/// Twenty pods' volumes published at once (in parallel), used, and unpublished at once.
fn twenty_publishes_at_once(m: Medium) {
    let node = Node::start(&[]);
    let vols: Vec<Vol> = (0..20)
        .map(|_| node.volume(&node.pod(), "scratch"))
        .collect();
    let socket = node.socket();
    std::thread::scope(|s| {
        for v in &vols {
            let socket = &socket;
            s.spawn(move || {
                let c = Client::new(socket);
                c.publish_retrying(
                    &publish_request(v, &medium_attrs(m), None),
                    Duration::from_secs(60),
                )
                .unwrap();
                std::fs::write(v.target.join("id"), &v.id).unwrap();
            });
        }
    });
    for v in &vols {
        assert_eq!(std::fs::read_to_string(v.target.join("id")).unwrap(), v.id);
        assert_eq!(daemons_serving(&v.target).len(), 1);
    }
    std::thread::scope(|s| {
        for v in &vols {
            let socket = &socket;
            s.spawn(move || Client::new(socket).unpublish(&v.id, &v.target).unwrap());
        }
    });
    for v in &vols {
        node.assert_gone(v);
    }
    assert_eq!(node.daemons(), Vec::<u32>::new());
}

/// A publish that fails half way (here the state dir runs out of inodes after the
/// target, the daemon's cgroup and the record were made: no inode is left for a disk
/// volume's data directory, nor for a daemon's log) leaves none of them: kubelet may
/// never unpublish it.
fn a_failed_publish_leaves_nothing(m: Medium) {
    let mut node = Node::new(&[]);
    let state = node.state_dir();
    std::fs::create_dir(&state).unwrap();
    // Its root, volumes/, the record's directory and volume.conf, and no more.
    run(std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "nr_inodes=4,size=1m", "tmpfs"])
        .arg(&state));
    node.start_plugin();
    let v = node.volume(&node.pod(), "scratch");
    let e = node
        .client
        .publish(&publish_request(&v, &medium_attrs(m), None))
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal, "{e:?}");
    assert!(e.message().contains("No space left"), "{e:?}");
    node.assert_gone(&v);
}

on_every_medium!(
    a_failed_publish_leaves_nothing,
    a_repeated_publish_changes_nothing_and_another_is_refused,
    a_publish_that_timed_out_is_finished_and_repeated_as_a_no_op,
    concurrent_publishes_of_one_volume_end_with_one_daemon,
    twenty_publishes_at_once,
);
