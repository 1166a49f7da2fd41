//! A volume whose daemon is stopped or wedged never hangs the plugin: every RPC answers
//! within kubelet's deadline and says the volume is not answering (with how long and the
//! requests the kernel holds), the metrics too; the plugin exits within a second on
//! SIGTERM and on SIGKILL, starts again and is ready; no thread of ours is left in
//! uninterruptible sleep; and once the daemon goes on the volume serves with nothing lost.

use super::fixture::*;
use crate::harness::*;
use crate::wedged::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use tonic::Code;

/// How long the plugin may take to exit on a signal.
const EXITS_WITHIN: Duration = Duration::from_secs(1);

fn scrape(port: u16) -> String {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(c, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

fn metric(text: &str, name: &str, volume_id: &str) -> Option<u64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| l.contains(&format!("volume_id=\"{volume_id}\"")))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The condition NodeGetVolumeStats gives, asked within kubelet's deadline.
fn condition(node: &Node, v: &Vol) -> (bool, String) {
    let started = Instant::now();
    let r = node.client.stats(&v.id, &v.target).unwrap();
    assert!(
        started.elapsed() < ANSWERS_WITHIN,
        "{:?}",
        started.elapsed()
    );
    let c = r.volume_condition.unwrap();
    (c.abnormal, c.message)
}

/// Every RPC and the metrics against the wedged volume `v`, then the plugin stopped and
/// killed: nothing waits for the volume's daemon.
fn nothing_waits_for(node: &mut Node, v: &Vol, attrs: &[(&str, &str)], why: &str) {
    let port = node.metrics_port();
    let mut message = String::new();
    eventually("stats to say the daemon is not answering", SLOW, || {
        let (abnormal, m) = condition(node, v);
        message = m;
        abnormal && message.contains("not answering")
    });
    assert!(message.contains(why), "{message}");
    // A repeated publish: refused at once as not final (kubelet retries), no hang.
    let started = Instant::now();
    let r = node.client.publish(&publish_request(v, attrs, None));
    assert!(
        started.elapsed() < ANSWERS_WITHIN,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.unwrap_err().code(), Code::Unavailable);
    let text = scrape(port);
    assert_eq!(
        metric(&text, "emptydirfs_volume_daemon_up", &v.id),
        Some(0),
        "{text}"
    );
    assert!(
        metric(&text, "emptydirfs_volume_not_answering_seconds", &v.id).is_some(),
        "{text}"
    );
    assert_nothing_of_ours_is_stuck();

    // SIGTERM right after a call about the volume: the plugin exits within a second.
    node.client.stats(&v.id, &v.target).unwrap();
    let started = Instant::now();
    let status = node.kill_plugin(libc::SIGTERM);
    assert!(status.success(), "{status}: {}", node.log_text());
    assert!(
        started.elapsed() < EXITS_WITHIN,
        "SIGTERM took {:?}",
        started.elapsed()
    );
    // A new plugin is ready although the volume does not answer.
    node.start_plugin();
    node.client.stats(&v.id, &v.target).unwrap();
    let started = Instant::now();
    node.kill_plugin(libc::SIGKILL);
    assert!(
        started.elapsed() < EXITS_WITHIN,
        "SIGKILL took {:?}",
        started.elapsed()
    );
    node.start_plugin();
    assert_nothing_of_ours_is_stuck();
}

#[test]
fn a_disk_volume_on_a_stopped_backing_filesystem_hangs_no_rpc() {
    let mut node = Node::start(&["--metrics-address", "127.0.0.1:0"]);
    let v = node.volume(&node.pod(), "w");
    let src = TempDir::new("bindfs-src");
    let bindfs = Bindfs::mount(
        src.path(),
        &node.state_dir().join("volumes").join(&v.id).join("data"),
    );
    let attrs = sized_attrs(Medium::Disk, "64Mi");
    node.client
        .publish(&publish_request(&v, &attrs, None))
        .unwrap();
    write_files(&v.target, 4);

    bindfs.stop();
    let mut pod = pod_statfs(&v.target);
    nothing_waits_for(&mut node, &v, &attrs, "in progress");
    assert!(
        !pod.try_finished(),
        "the pod's statfs cannot have been answered"
    );

    bindfs.resume();
    assert!(pod.wait_within(SLOW).status.success());
    eventually("the volume to serve again", SLOW, || {
        !condition(&node, &v).0
    });
    assert_files(&v.target, 4);
    node.client.unpublish(&v.id, &v.target).unwrap();
    drop(bindfs);
    node.assert_gone(&v);
}

#[test]
fn unpublish_of_a_disk_volume_on_a_stopped_backing_filesystem_ends_and_leaves_nothing() {
    let node = Node::start(&["--stop-grace", "1"]);
    let v = node.volume(&node.pod(), "w");
    let src = TempDir::new("bindfs-src");
    let bindfs = Bindfs::mount(
        src.path(),
        &node.state_dir().join("volumes").join(&v.id).join("data"),
    );
    node.client
        .publish(&publish_request(
            &v,
            &sized_attrs(Medium::Disk, "64Mi"),
            None,
        ))
        .unwrap();
    write_files(&v.target, 2);
    bindfs.stop();
    let pod = pod_statfs(&v.target);
    eventually("stats to say the daemon is not answering", SLOW, || {
        condition(&node, &v).1.contains("not answering")
    });
    node.client.unpublish(&v.id, &v.target).unwrap();
    assert!(
        !pod.wait_within(SOON).status.success(),
        "the pod's statfs fails"
    );
    assert_nothing_of_ours_is_stuck();
    node.kubelet_cleanup(&v);
    assert!(
        !is_mounted(&bindfs.mnt),
        "bindfs was detached, never entered"
    );
    node.assert_gone(&v);
}

fn stopped_at_random_moments_under_a_workload_hangs_no_rpc(m: Medium) {
    let mut node = Node::start(&["--metrics-address", "127.0.0.1:0"]);
    let v = node.volume(&node.pod(), "w");
    let attrs = sized_attrs(m, "256Mi");
    node.client
        .publish(&publish_request(&v, &attrs, None))
        .unwrap();
    let pid = daemons_serving(&v.target)[0];
    let view = crate::kubelet::View::of(&v.target);
    let work = workload(&view.path, 300);
    let mut rng = Rng::new();
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(50 + rng.below(300)));
        stop_daemon(pid);
        if round == 0 {
            nothing_waits_for(&mut node, &v, &attrs, "stopped");
        } else {
            let (abnormal, message) = condition(&node, &v);
            assert!(abnormal && message.contains("stopped"), "{message}");
            assert_nothing_of_ours_is_stuck();
        }
        signal(pid, libc::SIGCONT);
        eventually("the volume to serve again", SLOW, || {
            !condition(&node, &v).0
        });
    }
    let out = work.wait_within(Duration::from_secs(120));
    assert!(
        out.status.success(),
        "the workload: {}{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(
        daemons_serving(&v.target),
        vec![pid],
        "the same daemon serves"
    );
    drop(view);
    // An unpublish of a stopped daemon does not wait for its grace period.
    stop_daemon(pid);
    let started = Instant::now();
    node.client.unpublish(&v.id, &v.target).unwrap();
    assert!(
        started.elapsed() < ANSWERS_WITHIN,
        "{:?}",
        started.elapsed()
    );
    node.kubelet_cleanup(&v);
    node.assert_gone(&v);
}

on_every_medium!(stopped_at_random_moments_under_a_workload_hangs_no_rpc);
