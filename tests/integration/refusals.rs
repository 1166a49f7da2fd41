//! The setup helper's refusals: bad input of every entry point, a layout reached through
//! a symlink, a daemon that cannot start. Each leaves nothing created and nothing lost.

use crate::harness::*;
use crate::kubelet::*;
use std::fs;
use std::process::Command;

#[test]
fn bad_inputs_are_refused_and_nothing_is_created() {
    let k = KubeletRoot::new();
    let other = TempDir::new("other");
    let file = other.path().join("not-a-dir");
    let missing = k.path().join("missing");
    let link = TempDir::new("link");
    let symlinked = link.path().join("root");
    std::os::unix::fs::symlink(k.path(), &symlinked).unwrap();
    let root = k.path().to_str().unwrap().to_string();
    let long = "a".repeat(64);
    let dotted = format!(
        "{root}/../{}",
        k.path().file_name().unwrap().to_str().unwrap()
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--volume", ".."], "invalid volume name"),
        (vec!["--volume", "a/b"], "invalid volume name"),
        (vec!["--volume", ""], "invalid volume name"),
        (vec!["--volume", "Scratch"], "invalid volume name"),
        (vec!["--volume", &long], "invalid volume name"),
        (vec!["--pod-uid", "../etc"], "invalid pod UID"),
        (vec!["--pod-uid", "a/b"], "invalid pod UID"),
        (vec!["--pod-uid", ""], "invalid pod UID"),
        (vec!["--size-limit", "12Zi"], "invalid quantity \"12Zi\""),
        (vec!["--size-limit", "0"], "greater than zero"),
        (vec!["--size-limit", "-1Gi"], "must not be negative"),
        (vec!["--inode-limit", "0"], "greater than zero"),
        (
            vec!["--medium", "tmpfs"],
            "unknown storage medium \"tmpfs\"",
        ),
        (
            vec!["--medium", "memory"],
            "unknown storage medium \"memory\"",
        ),
        (vec!["--fs-group", "staff"], "invalid value"),
        (vec!["--fs-group", "4294967295"], "invalid value"),
        (
            vec!["--kubelet-root", missing.to_str().unwrap()],
            "does not exist",
        ),
        (
            vec!["--kubelet-root", file.to_str().unwrap()],
            "is not a directory",
        ),
        (
            vec!["--kubelet-root", symlinked.to_str().unwrap()],
            "symlink",
        ),
        (vec!["--kubelet-root", &dotted], "symlink"),
        (vec!["--bogus"], "unexpected argument"),
    ];
    fs::write(&file, b"").unwrap();
    for (change, want) in &cases {
        // Defaults, with one thing changed; the last --kubelet-root given wins.
        let mut args = vec![
            "setup",
            "--pod-uid",
            POD,
            "--volume",
            "ok",
            "--kubelet-root",
            &root,
        ];
        for pair in change.chunks(2) {
            match args.iter().position(|a| *a == pair[0]) {
                Some(i) if pair.len() == 2 => args[i + 1] = pair[1],
                _ => args.extend(pair),
            }
        }
        let out = Command::new(BIN).args(&args).bounded_output();
        assert_eq!(out.status.code(), Some(2), "{change:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(want),
            "{change:?}: wanted {want:?} in {}",
            stderr(&out)
        );
        assert_eq!(
            k.entries(),
            Vec::<String>::new(),
            "{change:?} created something"
        );
    }
    fs::remove_file(&file).unwrap();
    // Bad teardowns next to a live volume delete nothing of it.
    let live = k.setup("live", &["--medium", "Memory"]);
    fs::write(live.join("keep"), b"data").unwrap();
    for args in [
        vec!["teardown", "--pod-uid", POD, "--volume", ".."],
        vec!["teardown", "--pod-uid", POD, "--volume", "LIVE"],
        vec!["teardown", "--pod-uid", "a/../b", "--volume", "live"],
        vec!["teardown", "--pod-uid", "..", "--volume", "live"],
        vec!["status", "--pod-uid", "a/b"],
    ] {
        let out = k.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(fs::read(live.join("keep")).unwrap(), b"data", "{args:?}");
    }
    assert_success(&k.teardown("live"), "teardown");
    let out = Command::new(BIN)
        .args(["status", "--kubelet-root", missing.to_str().unwrap()])
        .bounded_output();
    assert_eq!(out.status.code(), Some(2));
    k.assert_gone("live");
}

#[test]
fn a_daemon_that_cannot_start_fails_setup_and_leaves_nothing() {
    // ramfs gives no file handles, so a disk volume's daemon refuses to serve from it.
    let dir = TempDir::new("ramfs");
    run(Command::new("mount")
        .args(["-t", "ramfs", "ramfs"])
        .arg(dir.path()));
    let root = dir.path();
    let out = Command::new(BIN)
        .args([
            "setup",
            "--pod-uid",
            POD,
            "--volume",
            "scratch",
            "--kubelet-root",
        ])
        .arg(root)
        .bounded_output();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("file handles"),
        "the daemon's error is shown: {}",
        stderr(&out)
    );
    let left = sh(&format!("find {} -mindepth 1", root.display()));
    assert_eq!(left, "", "setup left something behind");
    assert_eq!(daemons_below(root), Vec::<u32>::new());
    assert_eq!(
        mounts_below(root),
        vec![root.to_path_buf()],
        "only the ramfs itself"
    );
}

#[test]
fn a_layout_through_a_symlink_is_refused_and_nothing_outside_is_touched() {
    let k = KubeletRoot::new();
    k.setup("v", &["--medium", "Memory"]);
    assert_success(&k.teardown("v"), "teardown");
    let victim = TempDir::new("victim");
    fs::create_dir(victim.path().join("v")).unwrap();
    fs::write(victim.path().join("v/precious"), b"keep").unwrap();
    let plugins = k.meta_dir("v").parent().unwrap().to_path_buf();
    let _ = fs::remove_dir(&plugins);
    std::os::unix::fs::symlink(victim.path(), &plugins).unwrap();
    for args in [
        vec!["teardown", "--pod-uid", POD, "--volume", "v"],
        vec![
            "setup",
            "--pod-uid",
            POD,
            "--volume",
            "v",
            "--medium",
            "Memory",
        ],
    ] {
        let out = k.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
        assert_eq!(fs::read(victim.path().join("v/precious")).unwrap(), b"keep");
    }
    assert_eq!(k.daemons(), Vec::<u32>::new());
}
