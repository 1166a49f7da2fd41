//! What processes hold across a hand-off keeps working: a file being written, a file
//! unlinked while open, a shared writable mapping, a directory half listed, a shell's
//! working directory; and the kernel's references (lookups, opens) are carried over
//! exactly: what it forgets afterwards is freed once, nothing earlier, nothing leaked.

use super::*;
use crate::harness::*;
use crate::kubelet::*;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

fn descriptors_opened_before_keep_working(m: Medium) {
    let k = KubeletRoot::new();
    // An inode limit of its own: `df -i` of a disk volume shows the node's free inodes
    // otherwise, which other tests change meanwhile.
    let flags = [
        "--medium",
        k8s_medium(m),
        "--size-limit",
        "64Mi",
        "--inode-limit",
        "10000",
    ];
    let v = k.setup("scratch", &flags);
    // A file being written.
    let mut writing = open_rw(v.join("writing"));
    writing.write_all(b"before|").unwrap();
    // A file unlinked while open: its space stays held until the last close.
    let mut unlinked = open_rw(v.join("unlinked"));
    unlinked.write_all(&vec![9u8; 1 << 20]).unwrap();
    std::fs::remove_file(v.join("unlinked")).unwrap();
    // A shared writable mapping.
    let mapped = open_rw(v.join("mapped"));
    mapped.set_len(8192).unwrap();
    let mut map = Mapping::of(&mapped, 8192, true);
    map.bytes_mut()[..6].copy_from_slice(b"mapped");
    // Written back now: a disk volume charges the page when the kernel writes it back
    // (on its own, whenever: maybe during the hand-off, after `df_before`).
    mapped.sync_all().unwrap();
    // A directory half listed.
    std::fs::create_dir(v.join("d")).unwrap();
    for i in 0..200 {
        std::fs::write(v.join(format!("d/{i:03}")), b"").unwrap();
    }
    let mut listing = std::fs::read_dir(v.join("d")).unwrap();
    let mut seen: Vec<String> = (&mut listing)
        .take(80)
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    // A shell sitting in the volume.
    let view = View::of(&v);
    let mut shell = std::process::Command::new("setpriv")
        .args(["--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c"])
        .arg("cd d && read line && ls | wc -l && echo from-shell > ../shell-was-here")
        .current_dir(&view.path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let df_before = (statvfs(&v).f_bfree, statvfs(&v).f_ffree);

    upgrade(&k, "scratch");

    assert_eq!(
        (statvfs(&v).f_bfree, statvfs(&v).f_ffree),
        df_before,
        "usage carried over"
    );
    writing.write_all(b"after").unwrap();
    writing.sync_all().unwrap();
    assert_eq!(std::fs::read(v.join("writing")).unwrap(), b"before|after");
    let mut back = vec![0u8; 1 << 20];
    unlinked.read_exact_at(&mut back, 0).unwrap();
    assert!(back.iter().all(|&b| b == 9), "the unlinked file reads back");
    unlinked.seek(SeekFrom::End(0)).unwrap();
    unlinked.write_all(b"more").unwrap();
    map.bytes_mut()[6..12].copy_from_slice(b"-after");
    map.sync();
    let mut got = [0u8; 12];
    mapped.read_exact_at(&mut got, 0).unwrap();
    assert_eq!(&got, b"mapped-after", "the mapping writes through");
    seen.extend(listing.map(|e| e.unwrap().file_name().into_string().unwrap()));
    seen.sort();
    let want: Vec<String> = (0..200).map(|i| format!("{i:03}")).collect();
    assert_eq!(seen, want, "the listing goes on, each entry once");
    writeln!(shell.stdin.take().unwrap(), "go").unwrap();
    let out = shell.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "200");
    assert_eq!(
        std::fs::read(v.join("shell-was-here")).unwrap(),
        b"from-shell\n"
    );

    // The unlinked file's space and inode come back at its last close, exactly once.
    let free = statvfs(&v).f_bfree;
    drop(unlinked);
    eventually("the unlinked file's space to come back", SOON, || {
        statvfs(&v).f_bfree >= free + 256
    });
    drop((map, writing, mapped, view));
}

/// Lookups the kernel holds are carried over: it forgets them after the hand-off, and
/// every inode is freed once, when the last of them goes, not before (a wrong count would
/// either leak the inodes, or answer ESTALE to a name the kernel still caches).
fn lookups_are_carried_over_and_forgotten_once(m: Medium) {
    let k = KubeletRoot::new();
    let flags = [
        "--medium",
        k8s_medium(m),
        "--size-limit",
        "64Mi",
        "--inode-limit",
        "10000",
    ];
    let v = k.setup("scratch", &flags);
    let empty = statvfs(&v).f_ffree;
    // A shell sitting in a directory that is removed after the hand-off: the kernel still
    // refers to it, so the daemon must keep it until the kernel forgets it.
    std::fs::create_dir(v.join("gone")).unwrap();
    let mut shell = std::process::Command::new("sh")
        .args(["-c", "cd gone && read line && stat -c %h ."])
        .current_dir(&v)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let cwd = format!("/proc/{}/cwd", shell.id());
    crate::harness::eventually(
        "the shell to sit in the volume",
        crate::harness::SOON,
        || std::fs::read_link(&cwd).is_ok_and(|p| p == v.join("gone")),
    );
    std::fs::create_dir(v.join("d")).unwrap();
    for i in 0..500 {
        std::fs::write(v.join(format!("d/{i}")), format!("{i}")).unwrap();
        std::fs::hard_link(v.join(format!("d/{i}")), v.join(format!("d/{i}.link"))).unwrap();
    }
    // Half of them the kernel looks up again (cached names), half it will look up anew.
    for i in 0..250 {
        std::fs::metadata(v.join(format!("d/{i}"))).unwrap();
    }
    upgrade(&k, "scratch");
    std::fs::remove_dir(v.join("gone")).unwrap();
    writeln!(shell.stdin.take().unwrap(), "go").unwrap();
    let out = shell.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the shell's removed directory: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..500 {
        assert_eq!(
            std::fs::read_to_string(v.join(format!("d/{i}.link"))).unwrap(),
            format!("{i}")
        );
    }
    // The kernel drops its caches (forgets everything it can), then the tree goes.
    std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
    for i in 0..500 {
        std::fs::remove_file(v.join(format!("d/{i}"))).unwrap();
        assert_eq!(
            std::fs::read_to_string(v.join(format!("d/{i}.link"))).unwrap(),
            format!("{i}")
        );
    }
    upgrade(&k, "scratch");
    std::fs::remove_dir_all(v.join("d")).unwrap();
    eventually("every inode to be freed", SOON, || {
        statvfs(&v).f_ffree == empty
    });
    let log = std::fs::read_to_string(k.meta_dir("scratch").join("daemon.log")).unwrap();
    assert!(
        !log.contains("panicked"),
        "no daemon counted a forget it did not have: {log}"
    );
}

/// Where a listing ends goes with it: a listing that renames each entry it meets away
/// and back (each comes back after the others) ends after a hand-off as before it, each
/// entry once (the memory medium's open directories travel in the state).
fn a_listing_that_renames_its_entries_ends_across_a_handoff(m: Medium) {
    let k = KubeletRoot::new();
    let v = k.setup(
        "scratch",
        &["--medium", k8s_medium(m), "--size-limit", "64Mi"],
    );
    let d = v.join("d");
    std::fs::create_dir(&d).unwrap();
    for n in ["f0", "f1", "f2"] {
        std::fs::write(d.join(n), b"").unwrap();
    }
    let mut listing = std::fs::read_dir(&d).unwrap();
    let mut seen = vec![listing.next().unwrap().unwrap().file_name()];
    // The first call read all three; each now comes back after where it was.
    for n in ["f0", "f1", "f2"] {
        std::fs::rename(d.join(n), d.join("moving")).unwrap();
        std::fs::rename(d.join("moving"), d.join(n)).unwrap();
    }
    upgrade(&k, "scratch");
    seen.extend(listing.take(10).map(|e| e.unwrap().file_name()));
    seen.sort();
    assert_eq!(seen, ["f0", "f1", "f2"], "each entry once");
}

on_every_medium!(
    descriptors_opened_before_keep_working,
    lookups_are_carried_over_and_forgotten_once,
    a_listing_that_renames_its_entries_ends_across_a_handoff,
);
