//! A hand-off that fails at each of its steps, or is asked for by someone who may not:
//! the predecessor serves on, and a writer running throughout sees no error.

use super::*;
use crate::harness::*;
use crate::kubelet::*;

/// The successor killed at each step before it has the connection, then given a state
/// it must refuse (a newer or older format, damaged): every time the upgrade fails, the
/// old daemon serves on, and the writer's every fsync'ed record is there, in order. A
/// last upgrade, with no fault, succeeds.
fn a_failed_handoff_costs_the_pod_nothing(m: Medium) {
    let k = KubeletRoot::new();
    let v = k.setup(
        "scratch",
        &["--medium", k8s_medium(m), "--size-limit", "64Mi"],
    );
    std::fs::write(v.join("kept"), b"before").unwrap();
    let writer = Appender::start(v.join("records"));
    let old = daemon_of(&k, "scratch");
    for step in ["after-hello", "after-offer", "after-import", "after-ready"] {
        let fault = format!("kill-successor-{step}");
        let out = upgrade_with(&k, "scratch", &[("EMPTYDIRFS_TEST_FAULT", &fault)]);
        assert_eq!(out.status.code(), Some(1), "{step}: {}", stderr(&out));
        assert_eq!(
            daemon_of(&k, "scratch"),
            old,
            "{step}: the old daemon serves on"
        );
        assert_eq!(std::fs::read(v.join("kept")).unwrap(), b"before", "{step}");
    }
    writer.finish();
    upgrade(&k, "scratch");
    assert_eq!(std::fs::read(v.join("kept")).unwrap(), b"before");
}

/// A predecessor writing a state its successor must refuse.
fn a_state_to_refuse_is_refused_and_the_old_daemon_serves_on(m: Medium) {
    for (fault, says) in [
        ("state-format-newer", "newer"),
        ("state-format-older", "older"),
        ("state-damaged", "checksum"),
    ] {
        let k = KubeletRoot::new();
        // The predecessor is the one told to write the bad state.
        let out = std::process::Command::new(BIN)
            .args([
                "setup",
                "--pod-uid",
                POD,
                "--volume",
                "v",
                "--medium",
                k8s_medium(m),
            ])
            .arg("--kubelet-root")
            .arg(k.path())
            .env("EMPTYDIRFS_TEST_FAULT", fault)
            .bounded_output();
        assert_success(&out, "setup");
        let v = k.volume_dir("v");
        let writer = Appender::start(v.join("records"));
        let old = daemon_of(&k, "v");
        let out = upgrade_with(&k, "v", &[]);
        assert_eq!(out.status.code(), Some(1), "{fault}");
        assert!(
            stderr(&out).contains(says),
            "{fault}: the reason is told: {}",
            stderr(&out)
        );
        assert_eq!(daemon_of(&k, "v"), old, "{fault}: the old daemon serves on");
        writer.finish();
        assert_success(&k.teardown("v"), "teardown");
    }
}

on_every_medium!(
    a_failed_handoff_costs_the_pod_nothing,
    a_state_to_refuse_is_refused_and_the_old_daemon_serves_on,
);

/// Only root may ask, and only through the socket itself, never a symlink to it.
#[test]
fn a_handoff_by_another_uid_or_through_a_symlink_is_refused() {
    let dir = TempDir::new("control");
    let control = dir.path().join("control.sock");
    let c = control.display().to_string();
    let v = Volume::start(Medium::Memory, &["--control-socket", &c]);
    std::fs::write(v.path("f"), b"x").unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&control).unwrap().permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o600,
        "the control socket is private from the start"
    );
    let take_over = |sock: &std::path::Path| {
        let mut a = vec![
            "serve".to_string(),
            "--take-over".into(),
            sock.display().to_string(),
        ];
        a.extend([
            "--medium".into(),
            "memory".into(),
            v.mnt.display().to_string(),
        ]);
        a
    };
    // Another uid, even with the socket opened to it.
    std::fs::set_permissions(
        &control,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=1000", "--regid=1000", "--clear-groups", BIN])
        .args(take_over(&control))
        .bounded_output();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("uid 1000 may not ask"),
        "{}",
        stderr(&out)
    );
    // A symlink to the socket.
    let link = dir.path().join("link.sock");
    std::os::unix::fs::symlink(&control, &link).unwrap();
    let out = std::process::Command::new(BIN)
        .args(take_over(&link))
        .bounded_output();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("symlink"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(v.path("f")).unwrap(),
        b"x",
        "the daemon serves on"
    );
    assert_eq!(daemons_below(&v.mnt).len(), 1);
}

/// `status` tells each daemon's build and how many hand-offs its volume went through.
#[test]
fn status_shows_each_daemons_build_and_handoffs() {
    let k = KubeletRoot::new();
    k.setup("a", &["--medium", "Memory"]);
    let build = |obj: &str| json_str(obj, "daemon_version");
    let first = k.status_json("a");
    assert!(
        build(&first).starts_with(env!("CARGO_PKG_VERSION")),
        "{first}"
    );
    assert_eq!(json_u64(&first, "handoffs"), Some(0));
    upgrade(&k, "a");
    upgrade(&k, "a");
    let now = k.status_json("a");
    assert_eq!(json_u64(&now, "handoffs"), Some(2), "{now}");
    assert_eq!(build(&now), build(&first), "the same build");
    let table = k.run(&["status"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains(&build(&now)));
}
