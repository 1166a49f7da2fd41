//! Nobody gets out of a volume: symlinks that point outside are served as symlinks, and
//! renames racing requests never make the daemon touch anything outside.
//!
//! The kernel resolves a symlink in the caller's own view (with the caller's rights), as
//! on any filesystem; what must never happen is the daemon, which runs as root, following
//! one. So the racing walkers here run as an unprivileged user next to a canary directory
//! that only root may change: any change to it would have been made by the daemon.

use crate::harness::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// A root-owned directory with one file; its state as a string to compare later.
fn canary(dir: &Path) -> impl Fn() -> String + '_ {
    fs::create_dir(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join("victim"), b"canary").unwrap();
    move || {
        let mut state = sh(&format!(
            "cd {} && ls -la --time-style=full-iso . && getfattr -h -d -m - . victim 2>&1",
            dir.display()
        ));
        state.push_str(&String::from_utf8_lossy(
            &fs::read(dir.join("victim")).unwrap(),
        ));
        state
    }
}

fn symlinks_out_are_served_as_symlinks(m: Medium) {
    let v = Volume::start(m, &[]);
    let outside = TempDir::new("outside");
    let canary_dir = outside.path().join("canary");
    let state = canary(&canary_dir);
    let before = state();
    let etc_before = sh("ls -la --time-style=full-iso /etc | md5sum");
    std::os::unix::fs::symlink("/etc", v.path("x")).unwrap();
    std::os::unix::fs::symlink("../../../../../..", v.path("y")).unwrap();
    std::os::unix::fs::symlink(&canary_dir, v.path("z")).unwrap();
    if m == Medium::Disk {
        // Links made in the backing directory itself, as a crashed daemon may leave them.
        std::os::unix::fs::symlink("/", v.backing.join("w")).unwrap();
    }
    let ls = sh(&format!("ls -l {}", v.mnt.display()));
    assert!(
        ls.contains("x -> /etc") && ls.contains("y -> ../../../../../.."),
        "{ls}"
    );
    // Changes to the links themselves stay on the links.
    let mnt = v.mnt.display();
    sh(&format!(
        "cd {mnt} && setfattr -h -n trusted.t -v 1 z && chown -h 1000:1000 z x && \
         touch -h -d '2001-01-01' z && getfattr -h -n trusted.t z"
    ));
    let z = fs::symlink_metadata(v.path("z")).unwrap();
    assert!(z.file_type().is_symlink() && z.uid() == 1000);
    // An unprivileged user is refused through them, by the kernel, in its own view.
    let out = sh_as(
        1000,
        1000,
        &format!("mkdir {mnt}/z/evil; echo pwn > {mnt}/z/victim; rm -f {mnt}/z/victim"),
    );
    assert!(!out.status.success());
    // Removing and renaming the links leaves their targets alone.
    sh(&format!("cd {mnt} && mv z z2 && rm x y z2"));
    if m == Medium::Disk {
        sh(&format!("cd {mnt} && ls -l w && rm w"));
    }
    assert_eq!(state(), before, "the canary was touched");
    assert_eq!(sh("ls -la --time-style=full-iso /etc | md5sum"), etc_before);
}

fn a_rename_race_never_leads_out(m: Medium) {
    let v = Volume::start(m, &[]);
    let outside = TempDir::new("outside");
    let canary_dir = outside.path().join("canary");
    let state = canary(&canary_dir);
    let before = state();
    fs::create_dir(v.path("d")).unwrap();
    fs::set_permissions(v.path("d"), fs::Permissions::from_mode(0o777)).unwrap();
    fs::set_permissions(&v.mnt, fs::Permissions::from_mode(0o777)).unwrap();
    let mnt = v.mnt.display();
    let canary = canary_dir.display();
    // One user swaps `d` between a directory and a symlink to the canary or to `/`
    // while another loop of the same user creates, changes and removes entries through
    // `d`, and a third walks it.
    let swapper = format!(
        "end=$(($(date +%s) + 3)); while [ $(date +%s) -lt $end ]; do \
         for target in {canary} /; do \
         mv {mnt}/d {mnt}/d.real 2>/dev/null; ln -s $target {mnt}/d 2>/dev/null; \
         rm -f {mnt}/d 2>/dev/null; mv {mnt}/d.real {mnt}/d 2>/dev/null; done; done"
    );
    // What a daemon following the symlink to `/` could change: entries of / (names,
    // modes, owners; their times move with other tests) and all of /etc.
    let root_state =
        || sh("stat -c '%n %a %u %g' /* | sort; ls -la --time-style=full-iso /etc | md5sum");
    let root_before = root_state();
    let finder = format!(
        "n=0; end=$(($(date +%s) + 3)); while [ $(date +%s) -lt $end ]; do \
         find {mnt}/d/ -maxdepth 2 -exec stat {{}} + >/dev/null 2>&1; \
         ls -laR {mnt}/d/ >/dev/null 2>&1; n=$((n+1)); done; echo done $n"
    );
    // New names each round and nothing deleted: anything the daemon made outside
    // while following a symlink would stay there to be seen.
    let walker = format!(
        "n=0; ok=0; end=$(($(date +%s) + 3)); while [ $(date +%s) -lt $end ]; do n=$((n+1)); \
         if echo pwn > {mnt}/d/victim.$n; then ok=$((ok+1)); fi; chmod 777 {mnt}/d/victim.$n; \
         mkdir {mnt}/d/sub.$n; setfattr -n user.x -v 1 {mnt}/d/victim.$n; \
         mv {mnt}/d/victim.$n {mnt}/d/moved.$n; ln {mnt}/d/moved.$n {mnt}/d/hard.$n; \
         done 2>/dev/null; echo done $ok"
    );
    let racers: Vec<_> = [swapper, walker, finder]
        .into_iter()
        .map(|script| std::thread::spawn(move || sh_as(1000, 1000, &script)))
        .collect();
    let outputs: Vec<String> = racers
        .into_iter()
        .map(|r| String::from_utf8_lossy(&r.join().unwrap().stdout).into_owned())
        .collect();
    let done = |out: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("done "))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(
        done(&outputs[1]) > 0,
        "the walker never got through: {outputs:?}"
    );
    assert!(done(&outputs[2]) > 0, "the finder never ran: {outputs:?}");
    assert_eq!(state(), before, "the canary was touched");
    assert_eq!(root_state(), root_before, "/ or /etc changed");
    if m == Medium::Disk {
        v.assert_counters_match_backing();
    }
}

on_every_medium!(
    symlinks_out_are_served_as_symlinks,
    a_rename_race_never_leads_out
);
