//! The setup helper: `setup`, `teardown` and `status` against a kubelet root, on every
//! FUSE medium (HugePages is in `hugepages.rs`).

use crate::harness::*;
use crate::kubelet::*;
use crate::wedged::{ANSWERS_WITHIN, run_within, signal, status_within, stop_daemon};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

on_every_medium!(
    setup_serves_a_volume_and_teardown_leaves_nothing,
    setup_again_changes_nothing_and_a_different_request_is_refused,
    a_killed_daemon_is_cleared_by_teardown,
    a_killed_daemon_is_replaced_by_setup,
    fs_group_makes_new_files_inherit_the_group,
    sticky_root_keeps_users_from_deleting_each_others_files,
    concurrent_setups_end_with_one_volume_and_one_daemon,
    teardown_of_a_busy_volume_succeeds_and_the_user_gets_errors,
    a_stopped_daemon_is_never_killed_by_setup,
    teardown_leaves_no_mount_of_the_volume_anywhere,
    an_interrupted_teardown_is_finished_by_the_next,
    the_daemon_keeps_none_of_the_callers_descriptors,
);

fn setup_serves_a_volume_and_teardown_leaves_nothing(m: Medium) {
    let k = KubeletRoot::new();
    let v = k.setup(
        "scratch",
        &[
            "--medium",
            k8s_medium(m),
            "--size-limit",
            "8Mi",
            "--inode-limit",
            "50",
        ],
    );
    assert!(
        k.meta_dir("scratch").join("ready").is_file(),
        "ready written"
    );
    let st = statvfs(&v);
    assert_eq!(st.f_blocks * st.f_frsize, 8 << 20, "df shows the limit");
    assert_eq!(st.f_files, 50);
    assert_eq!(
        fs::metadata(&v).unwrap().mode() & 0o7777,
        0o777,
        "root mode"
    );
    fs::write(v.join("f"), vec![7u8; 3 << 20]).unwrap();
    assert_eq!(fs::read(v.join("f")).unwrap(), vec![7u8; 3 << 20]);
    let err = fs::write(v.join("big"), vec![1u8; 6 << 20]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "the limit is hard");
    fs::remove_file(v.join("big")).unwrap();

    let s = k.status_json("scratch");
    assert_eq!(json_str(&s, "health"), "serving");
    assert_eq!(json_str(&s, "medium"), k8s_medium(m));
    assert_eq!(json_u64(&s, "size_limit"), Some(8 << 20));
    assert_eq!(json_u64(&s, "inode_limit"), Some(50));
    let used = json_u64(&s, "used_bytes").unwrap();
    assert!(
        (3 << 20..(3 << 20) + 16 * 4096).contains(&used),
        "used {used}"
    );
    assert_eq!(json_u64(&s, "inodes_used"), Some(2));
    // Who keeps the limit and moves the data, as the daemon says (on a kernel with
    // passthrough, as here): the memory volume's own tmpfs, at write(2); the disk
    // volume's daemon, which every write reaches.
    let (kept_by, data_path) = match m {
        Medium::Memory => ("tmpfs", "kernel"),
        Medium::Disk => ("daemon", "kernel reads"),
    };
    assert_eq!(json_str(&s, "limit_kept_by"), kept_by);
    assert_eq!(json_str(&s, "data_path"), data_path);
    let pid = json_u64(&s, "pid").unwrap() as u32;
    assert_eq!(k.daemons(), vec![pid]);
    let table = String::from_utf8(k.run(&["status"]).stdout).unwrap();
    assert!(
        table.contains("scratch")
            && table.contains("8.0Mi")
            && table.contains("KEPT BY")
            && table.contains(kept_by)
            && table.contains("serving"),
        "{table}"
    );

    let out = k.teardown("scratch");
    assert_success(&out, "teardown");
    k.assert_gone("scratch");
    // Gone, or a zombie waiting for init to reap it: either way its memory is returned.
    let rss = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    assert!(
        !rss.contains("VmRSS"),
        "the daemon still holds memory: {rss}"
    );
    assert_success(&k.teardown("scratch"), "a second teardown");
    assert_success(
        &k.run(&["teardown", "--pod-uid", "never-seen", "--volume", "x"]),
        "teardown of nothing",
    );
}

fn setup_again_changes_nothing_and_a_different_request_is_refused(m: Medium) {
    let k = KubeletRoot::new();
    let flags = ["--medium", k8s_medium(m), "--size-limit", "4Mi"];
    let v = k.setup("cache", &flags);
    fs::write(v.join("kept"), b"data").unwrap();
    // `ready` dated in the past: a setup that wrote it again would show.
    let ready_file = k.meta_dir("cache").join("ready");
    run(Command::new("touch")
        .args(["-d", "2020-01-01"])
        .arg(&ready_file));
    let ready = fs::metadata(&ready_file).unwrap();
    let pids = k.daemons();
    assert_eq!(k.setup("cache", &flags), v);
    assert_eq!(k.daemons(), pids, "the same daemon serves it");
    assert_eq!(fs::read(v.join("kept")).unwrap(), b"data");
    let again = fs::metadata(k.meta_dir("cache").join("ready")).unwrap();
    assert_eq!(
        (again.mtime(), again.mtime_nsec()),
        (ready.mtime(), ready.mtime_nsec()),
        "ready was not rewritten"
    );

    let other = if m == Medium::Memory { "" } else { "Memory" };
    for different in [
        vec!["--medium", other, "--size-limit", "4Mi"],
        vec!["--medium", k8s_medium(m), "--size-limit", "8Mi"],
        vec!["--medium", k8s_medium(m), "--size-limit", "4Mi", "--sticky"],
    ] {
        let out = k.run(
            &[
                &["setup", "--pod-uid", POD, "--volume", "cache"],
                &different[..],
            ]
            .concat(),
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "{different:?}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("already set up with"),
            "{}",
            stderr(&out)
        );
        assert_eq!(fs::read(v.join("kept")).unwrap(), b"data", "untouched");
        assert_eq!(k.daemons(), pids);
    }
}

/// Kills the one daemon below `k` with SIGKILL and waits until it is gone.
fn kill_daemon(k: &KubeletRoot) {
    let pids = k.daemons();
    assert_eq!(pids.len(), 1, "{pids:?}");
    // SAFETY: kill takes integers only; the pid is the daemon `setup` started for this
    // test's volume.
    unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) };
    // Until all its threads are gone: only then is /dev/fuse closed.
    assert!(
        emptydirfs::control::volume::daemon::wait_exited(pids[0], Duration::from_secs(10)),
        "daemon survived SIGKILL"
    );
}

fn a_killed_daemon_is_cleared_by_teardown(m: Medium) {
    let k = KubeletRoot::new();
    let v = k.setup("scratch", &["--medium", k8s_medium(m)]);
    fs::write(v.join("f"), vec![1u8; 1 << 20]).unwrap();
    kill_daemon(&k);
    assert_eq!(
        errno(fs::metadata(v.join("f"))),
        libc::ENOTCONN,
        "users get ENOTCONN"
    );
    assert_eq!(json_str(&k.status_json("scratch"), "health"), "dead mount");
    let out = k.teardown("scratch");
    assert_success(&out, "teardown");
    k.assert_gone("scratch");
}

fn a_killed_daemon_is_replaced_by_setup(m: Medium) {
    let k = KubeletRoot::new();
    let flags = [
        "--medium",
        k8s_medium(m),
        "--size-limit",
        "16Mi",
        "--fs-group",
        "4242",
    ];
    let v = k.setup("scratch", &flags);
    fs::create_dir(v.join("d")).unwrap();
    fs::write(v.join("d/f"), vec![5u8; 2 << 20]).unwrap();
    let used = json_u64(&k.status_json("scratch"), "used_bytes").unwrap();
    kill_daemon(&k);

    let out = k.run(
        &[
            &["setup", "--pod-uid", POD, "--volume", "scratch"],
            &flags[..],
        ]
        .concat(),
    );
    assert_success(&out, "setup after a crash");
    assert_eq!(k.daemons().len(), 1);
    let s = k.status_json("scratch");
    assert_eq!(json_str(&s, "health"), "serving");
    let root = fs::metadata(&v).unwrap();
    assert_eq!(
        (root.mode() & 0o7777, root.gid()),
        (0o2777, 4242),
        "root mode and group"
    );
    match m {
        Medium::Disk => {
            assert!(stderr(&out).contains("same data"), "{}", stderr(&out));
            assert_eq!(
                fs::read(v.join("d/f")).unwrap(),
                vec![5u8; 2 << 20],
                "data is back"
            );
            assert_eq!(json_u64(&s, "used_bytes"), Some(used), "usage is back");
        }
        Medium::Memory => {
            assert!(stderr(&out).contains("starts empty"), "{}", stderr(&out));
            assert_eq!(
                fs::read_dir(&v).unwrap().count(),
                0,
                "a memory volume comes back empty"
            );
            assert_eq!(json_u64(&s, "used_bytes"), Some(0));
        }
    }
    assert_success(&k.teardown("scratch"), "teardown");
    k.assert_gone("scratch");
}

fn fs_group_makes_new_files_inherit_the_group(m: Medium) {
    let k = KubeletRoot::new();
    let v = k.setup("shared", &["--medium", k8s_medium(m), "--fs-group", "4242"]);
    assert_fs_group_applies(&v, 4242);
}

fn sticky_root_keeps_users_from_deleting_each_others_files(m: Medium) {
    let k = KubeletRoot::new();
    for (name, sticky) in [("open", false), ("sticky", true)] {
        let flags: &[&str] = if sticky { &["--sticky"] } else { &[] };
        let v = k.setup(name, &[&["--medium", k8s_medium(m)], flags].concat());
        assert_sticky_root(&v, sticky);
    }
}

fn concurrent_setups_end_with_one_volume_and_one_daemon(m: Medium) {
    let k = KubeletRoot::new();
    let outs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    k.run(&[
                        "setup",
                        "--pod-uid",
                        POD,
                        "--volume",
                        "race",
                        "--medium",
                        k8s_medium(m),
                        "--size-limit",
                        "4Mi",
                    ])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for out in &outs {
        assert_success(out, "a concurrent setup");
    }
    assert_eq!(k.daemons().len(), 1, "one daemon");
    assert_eq!(
        mounts_below(k.path()),
        vec![k.volume_dir("race")],
        "one mount"
    );
    let outs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3).map(|_| s.spawn(|| k.teardown("race"))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for out in &outs {
        assert_success(out, "a concurrent teardown");
    }
    k.assert_gone("race");
}

fn teardown_of_a_busy_volume_succeeds_and_the_user_gets_errors(m: Medium) {
    let k = KubeletRoot::new();
    let v = k.setup("busy", &["--medium", k8s_medium(m)]);
    // A shell sitting in the volume, and a writer holding a file open.
    let script = format!(
        "cd {} && exec 3>f && while echo data >&3; do sleep 0.01; done; echo gone >&2; sleep 1",
        v.display()
    );
    let mut user = Command::new("sh")
        .args(["-c", &script])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually("the writer to be in the volume", SOON, || {
        fs::metadata(v.join("f")).is_ok_and(|m| m.len() > 0)
    });
    let out = k.teardown("busy");
    assert_success(&out, "teardown");
    k.assert_gone("busy");
    wait_timeout(&mut user, Duration::from_secs(10)).expect("the writer hangs");
    let mut err = String::new();
    std::io::Read::read_to_string(user.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("gone"), "the writer's writes failed: {err}");
}

#[test]
fn status_counts_come_from_the_daemon_not_a_walk() {
    let k = KubeletRoot::new();
    let v = k.setup("many", &["--medium", "Memory"]);
    for i in 0..2000 {
        fs::write(v.join(format!("f{i}")), b"x").unwrap();
    }
    let s = k.status_json("many");
    assert_eq!(json_u64(&s, "inodes_used"), Some(2001));
    assert_eq!(json_u64(&s, "used_bytes"), Some(2000 * 4096));
    let st = statvfs(&v);
    assert_eq!(
        json_u64(&s, "inode_limit"),
        Some(st.f_files),
        "a memory volume's default limit"
    );
}

fn a_stopped_daemon_is_never_killed_by_setup(m: Medium) {
    let k = KubeletRoot::new();
    let flags = ["--medium", k8s_medium(m)];
    let v = k.setup("paused", &flags);
    fs::write(v.join("kept"), b"data").unwrap();
    let pid = k.daemons()[0];
    stop_daemon(pid);
    let out = run_within(
        &k,
        &[
            &["setup", "--pod-uid", POD, "--volume", "paused"],
            &flags[..],
        ]
        .concat(),
        ANSWERS_WITHIN,
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("not answering"), "{}", out.stderr);
    assert_eq!(
        json_str(&status_within(&k, "paused"), "health"),
        "not answering"
    );
    signal(pid, libc::SIGCONT);
    assert_eq!(k.daemons(), vec![pid], "the same daemon");
    assert_eq!(
        fs::read(v.join("kept")).unwrap(),
        b"data",
        "its data untouched"
    );
    // A stopped daemon does not stop teardown: it is let go on to handle its SIGTERM.
    stop_daemon(pid);
    let out = run_within(
        &k,
        &[
            "teardown",
            "--pod-uid",
            POD,
            "--volume",
            "paused",
            "--grace",
            "1",
        ],
        ANSWERS_WITHIN,
    );
    assert!(out.status.success(), "teardown: {}", out.stderr);
    k.assert_gone("paused");
}

/// A bind mount of the volume left elsewhere (a container's view kubelet did not clean
/// up) is detached by teardown, not left as a dead mount.
fn teardown_leaves_no_mount_of_the_volume_anywhere(m: Medium) {
    let k = KubeletRoot::new();
    let v = k.setup("bound", &["--medium", k8s_medium(m)]);
    fs::write(v.join("f"), b"x").unwrap();
    let view = View::of(&v);
    assert_eq!(fs::read(view.path.join("f")).unwrap(), b"x");
    let out = run_within(
        &k,
        &["teardown", "--pod-uid", POD, "--volume", "bound"],
        SLOW,
    );
    assert!(out.status.success(), "teardown: {}", out.stderr);
    assert!(!is_mounted(&view.path), "the bind mount is left");
    k.assert_gone("bound");
}

fn an_interrupted_teardown_is_finished_by_the_next(m: Medium) {
    let k = KubeletRoot::new();
    k.setup("half", &["--medium", k8s_medium(m)]);
    // As if a teardown died after moving the meta dir aside, and the mount point is a
    // file someone wrote while it was unmounted.
    assert_success(&k.teardown("half"), "teardown");
    let deleting = k.meta_dir("half").with_file_name("half.deleting~");
    fs::create_dir_all(deleting.join("data/d")).unwrap();
    fs::write(deleting.join("data/d/f"), b"old").unwrap();
    fs::create_dir_all(k.volume_dir("half").parent().unwrap()).unwrap();
    fs::write(k.volume_dir("half"), b"not a directory").unwrap();
    let out = k.teardown("half");
    assert_success(&out, "a teardown after an interrupted one");
    k.assert_gone("half");
    assert!(!deleting.exists());
}

fn the_daemon_keeps_none_of_the_callers_descriptors(m: Medium) {
    // A caller reading setup's output through a pipe must see its end when setup exits,
    // not when the daemon does.
    let k = KubeletRoot::new();
    let script = format!(
        "exec 7>&1; {BIN} setup --pod-uid {POD} --volume fds --medium '{}' --kubelet-root {} 7>&1",
        k8s_medium(m),
        k.path().display()
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read to the end on a thread: if the daemon kept the pipe, the end never comes.
    let mut pipe = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut pipe, &mut out);
        let _ = tx.send(out);
    });
    let out = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("setup's output never ended: the daemon holds the caller's pipe");
    assert!(child.wait().unwrap().success());
    assert_eq!(out.trim_end(), k.volume_dir("fds").to_str().unwrap());
    let pid = k.daemons()[0];
    let fds: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| {
            fs::read_link(e.path())
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        })
        .collect();
    assert!(
        !fds.iter().any(|f| f.starts_with("pipe:")),
        "the daemon holds a pipe: {fds:?}"
    );
}
