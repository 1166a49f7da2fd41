//! Setuid and setgid bits after writes, truncates, `O_TRUNC` opens, `fallocate`,
//! `copy_file_range`, chowns and chgrps, by owners, group members, strangers and root:
//! on every medium exactly as on a tmpfs beside it (with `FUSE_HANDLE_KILLPRIV_V2`
//! the daemon clears them, not the kernel).

use crate::harness::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// Who acts: a uid, a gid, supplementary groups; `None` is root.
type Actor = Option<(u32, u32, &'static str)>;

/// (name, mode, owner uid:gid, actor, what the actor does to `f`)
type Case = (&'static str, u32, (u32, u32), Actor, &'static str);

const CASES: &[Case] = &[
    (
        "write by a stranger",
        0o6777,
        (1000, 1000),
        Some((1001, 1001, "")),
        "echo y >> f",
    ),
    (
        "write by the owner",
        0o6777,
        (1000, 1000),
        Some((1000, 1000, "")),
        "echo y >> f",
    ),
    ("write by root", 0o6777, (1000, 1000), None, "echo y >> f"),
    (
        "write, non-exec setgid, by a group member",
        0o2666,
        (1000, 1000),
        Some((1001, 1000, "")),
        "echo y >> f",
    ),
    (
        "write, non-exec setgid, by a supplementary member",
        0o2666,
        (1000, 1000),
        Some((1001, 1001, "1000")),
        "echo y >> f",
    ),
    (
        "write, non-exec setgid, by a stranger",
        0o2666,
        (1000, 1000),
        Some((1002, 1002, "")),
        "echo y >> f",
    ),
    (
        "truncate by a stranger",
        0o6777,
        (1000, 1000),
        Some((1001, 1001, "")),
        "truncate -s 1 f",
    ),
    (
        "truncate by root",
        0o6777,
        (1000, 1000),
        None,
        "truncate -s 1 f",
    ),
    (
        "O_TRUNC open by a stranger",
        0o6777,
        (1000, 1000),
        Some((1001, 1001, "")),
        ": > f",
    ),
    ("O_TRUNC open by root", 0o6777, (1000, 1000), None, ": > f"),
    (
        "fallocate by a stranger",
        0o6777,
        (1000, 1000),
        Some((1001, 1001, "")),
        "fallocate -l 65536 f",
    ),
    (
        "copy_file_range by a stranger",
        0o6777,
        (1000, 1000),
        Some((1001, 1001, "")),
        "python3 -c \"import os; s = os.open('src', os.O_RDONLY); d = os.open('f', os.O_WRONLY); os.copy_file_range(s, d, 4, 0, 0)\"",
    ),
    (
        "chown by root, setuid",
        0o4755,
        (1000, 1000),
        None,
        "chown 1001 f",
    ),
    (
        "chgrp by root, executable setgid",
        0o2755,
        (1000, 1000),
        None,
        "chgrp 1001 f",
    ),
    (
        "chgrp by root, non-exec setgid",
        0o2644,
        (1000, 1000),
        None,
        "chgrp 1001 f",
    ),
    (
        "chgrp by the owner, non-exec setgid",
        0o2664,
        (1000, 1000),
        Some((1000, 1000, "1001")),
        "chgrp 1001 f",
    ),
    (
        "chgrp by the owner, setuid",
        0o4775,
        (1000, 1000),
        Some((1000, 1000, "1001")),
        "chgrp 1001 f",
    ),
    (
        "chmod by the owner keeps what it sets",
        0o0755,
        (1000, 1000),
        Some((1000, 1000, "")),
        "chmod 4755 f",
    ),
    (
        "a directory written into keeps its setgid",
        0o2777,
        (1000, 1000),
        Some((1001, 1001, "")),
        "rm -f f.d/x; echo > f.d/x",
    ),
];

/// Runs `script` in a shell as `actor`.
fn as_actor(actor: Actor, script: &str) -> std::process::Output {
    let mut cmd = match actor {
        None => std::process::Command::new("sh"),
        Some((u, g, groups)) => {
            let groups = if groups.is_empty() {
                "--clear-groups".to_string()
            } else {
                format!("--groups={groups}")
            };
            let mut c = std::process::Command::new("setpriv");
            c.args([
                format!("--reuid={u}"),
                format!("--regid={g}"),
                groups,
                "sh".into(),
            ]);
            c
        }
    };
    cmd.args(["-c", script]).bounded_output()
}

/// Runs every case in `dir`; returns the mode each left, by name.
fn modes(dir: &Path) -> Vec<(String, String)> {
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let mut out = Vec::new();
    for (i, (name, mode, (uid, gid), actor, op)) in CASES.iter().enumerate() {
        let case = dir.join(format!("case{i}"));
        std::fs::create_dir(&case).unwrap();
        std::fs::set_permissions(&case, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        std::fs::write(case.join("src"), b"data").unwrap();
        let target = if name.contains("directory") {
            std::fs::create_dir(case.join("f.d")).unwrap();
            case.join("f.d")
        } else {
            std::fs::write(case.join("f"), b"content").unwrap();
            case.join("f")
        };
        std::os::unix::fs::chown(&target, Some(*uid), Some(*gid)).unwrap();
        std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(*mode))
            .unwrap();
        let script = format!("cd {} && {op}", case.display());
        let done = as_actor(*actor, &script);
        assert!(
            done.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&done.stderr)
        );
        let md = std::fs::metadata(&target).unwrap();
        out.push((
            name.to_string(),
            format!("{:o} {}:{}", md.mode() & 0o7777, md.uid(), md.gid()),
        ));
    }
    out
}

fn setid_bits_are_cleared_as_on_tmpfs(m: Medium) {
    let tmpfs = crate::conformance::Tmpfs::new("64m");
    let want = modes(&tmpfs.path);
    let v = Volume::start(m, &[]);
    let got = modes(&v.mnt);
    let differ: Vec<String> = want
        .iter()
        .zip(&got)
        .filter(|(w, g)| w != g)
        .map(|(w, g)| format!("{}: {} on the volume, {} on tmpfs", w.0, g.1, w.1))
        .collect();
    assert!(differ.is_empty(), "{differ:#?}");
    // And the cases did clear something: this compares more than two unchanged tables.
    assert!(want.iter().any(|(_, m)| m.starts_with("777 ")), "{want:?}");
}

/// (name, actor, what it does to `f`), each to a file that has `security.capability`.
const CAPS_CASES: &[(&str, Actor, &str)] = &[
    ("write by a stranger", Some((1001, 1001, "")), "echo y >> f"),
    ("write by root", None, "echo y >> f"),
    ("truncate by root", None, "truncate -s 1 f"),
    ("O_TRUNC open by root", None, ": > f"),
    (
        "O_TRUNC open by a stranger",
        Some((1001, 1001, "")),
        ": > f",
    ),
    ("chown by root", None, "chown 1001 f"),
    ("a read keeps them", None, "cat f > /dev/null"),
];

/// What `getcap` says of each case's file after it.
fn caps(dir: &Path) -> Vec<String> {
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let mut out = Vec::new();
    for (i, (name, actor, op)) in CAPS_CASES.iter().enumerate() {
        let case = dir.join(format!("caps{i}"));
        std::fs::create_dir(&case).unwrap();
        std::fs::set_permissions(&case, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        let f = case.join("f");
        std::fs::write(&f, b"content").unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        run(Command::new("setcap").arg("cap_net_raw+ep").arg(&f));
        let done = as_actor(*actor, &format!("cd {} && {op}", case.display()));
        assert!(
            done.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&done.stderr)
        );
        let got = run(Command::new("getcap").arg(&f));
        out.push(format!(
            "{name}: {}",
            got.replace(f.to_str().unwrap(), "f").trim()
        ));
    }
    out
}

/// File capabilities go on a write, truncate or chown by anyone, root included, as on a
/// tmpfs (the kernel removes them; the daemon must not keep or restore them).
fn file_capabilities_are_removed_as_on_tmpfs(m: Medium) {
    let tmpfs = crate::conformance::Tmpfs::new("64m");
    let want = caps(&tmpfs.path);
    let v = Volume::start(m, &[]);
    assert_eq!(caps(&v.mnt), want);
    assert!(
        want.iter().any(|c| c.ends_with("cap_net_raw=ep")),
        "{want:?}"
    );
    assert!(want.iter().any(|c| c.ends_with(": ")), "{want:?}");
}

on_every_medium!(
    setid_bits_are_cleared_as_on_tmpfs,
    file_capabilities_are_removed_as_on_tmpfs
);
