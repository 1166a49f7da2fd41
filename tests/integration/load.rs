//! Load: many volumes of mixed media set up, used and torn down at once.

use crate::harness::BoundedOutput;
use crate::kubelet::*;
use std::process::Command;

/// Memory a daemon holds, in KiB: its own pages (RssAnon + RssFile) and a memory
/// volume's data file (a memfd, whose pages VmRSS does not show unless mapped).
fn held_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let own: u64 = status
        .lines()
        .filter(|l| l.starts_with("RssAnon:") || l.starts_with("RssFile:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    let data: u64 = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|t| t.to_string_lossy().starts_with("/memfd:emptydirfs-memory"))
        })
        .filter_map(|e| std::fs::metadata(e.path()).ok())
        .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) / 2)
        .sum();
    own + data
}

/// 50 volumes, half memory and half disk, set up at once, each running a short fio job
/// with crc32c verification, then torn down at once: no failure, nothing left.
#[test]
fn fifty_volumes_at_once() {
    const N: usize = 50;
    let k = KubeletRoot::new();
    let name = |i: usize| format!("vol-{i}");
    let medium = |i: usize| if i.is_multiple_of(2) { "Memory" } else { "" };
    let outs: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..N)
            .map(|i| {
                let k = &k;
                s.spawn(move || {
                    k.run(&[
                        "setup",
                        "--pod-uid",
                        POD,
                        "--volume",
                        &name(i),
                        "--medium",
                        medium(i),
                        "--size-limit",
                        "16Mi",
                    ])
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for out in &outs {
        assert_success(out, "setup");
    }
    let pids = k.daemons();
    assert_eq!(pids.len(), N, "one daemon per volume");
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..N)
            .map(|i| {
                let dir = k.volume_dir(&name(i));
                s.spawn(move || {
                    Command::new("fio")
                        .args([
                            "--name=v",
                            "--rw=randwrite",
                            "--bs=4k",
                            "--size=4m",
                            "--verify=crc32c",
                        ])
                        .args(["--do_verify=1", "--verify_fatal=1", "--ioengine=psync"])
                        // No state file: it would be left in the working directory.
                        .arg("--verify_state_save=0")
                        .arg(format!("--directory={}", dir.display()))
                        .current_dir(&dir)
                        .bounded_output()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, out) in results.iter().enumerate() {
        assert!(
            out.status.success(),
            "fio on {}: {}",
            name(i),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let total: u64 = pids.iter().map(|&p| held_kib(p)).sum();
    println!(
        "{N} daemons hold {} MiB in all after a 4 MiB fio job each",
        total / 1024
    );
    record_reliability(
        "fifty-volumes",
        &format!(
            "{N} volumes (25 memory, 25 disk), 4 MiB fio verify each: 0 failures; daemons hold {} MiB in all (own pages + memory volumes' data)",
            total / 1024
        ),
    );
    let outs: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..N)
            .map(|i| {
                let k = &k;
                s.spawn(move || k.teardown(&name(i)))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for out in &outs {
        assert_success(out, "teardown");
    }
    for i in 0..N {
        k.assert_gone(&name(i));
    }
}

/// Records a scenario's last result for docs/RELIABILITY.md.
pub fn record_reliability(scenario: &str, line: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("reliability");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{scenario}.txt")), format!("{line}\n")).unwrap();
}
