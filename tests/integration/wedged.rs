//! A daemon that is stopped or wedged never hangs anything else: every command of the
//! setup helper answers within its timeout, reports the volume as not answering (for how
//! long, with the requests the kernel holds), leaves no process or thread of ours in
//! uninterruptible sleep, and once the daemon goes on the volume serves again with
//! nothing lost. The CSI plugin's side is in `csi/wedged.rs`.
//!
//! Two ways to wedge a daemon: a disk volume whose backing directory is a bindfs mount
//! that is then stopped (the daemon is blocked in its own `fstatvfs` of the backing
//! directory, holding the `statfs` it read: it reproduces every time), and SIGSTOP of the
//! daemon at random moments under a workload.

use crate::harness::*;
use crate::kubelet::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a command may take against a wedged volume: the daemon's answer timeout
/// (2 s) and a start, with room for a loaded machine.
pub const ANSWERS_WITHIN: Duration = Duration::from_secs(8);

/// bindfs over `src` at `mnt`, in the foreground, so that the test can stop it. On drop
/// it goes on, ends and is detached.
pub struct Bindfs {
    pub mnt: PathBuf,
    proc: Option<Guarded>,
}

impl Bindfs {
    pub fn mount(src: &Path, mnt: &Path) -> Bindfs {
        std::fs::create_dir_all(mnt).unwrap();
        let proc = Guarded::spawn(Command::new("bindfs").arg("-f").arg(src).arg(mnt), "bindfs");
        eventually("bindfs to mount", SOON, || is_mounted(mnt));
        Bindfs {
            mnt: mnt.to_path_buf(),
            proc: Some(proc),
        }
    }

    fn pid(&self) -> i32 {
        self.proc.as_ref().unwrap().id() as i32
    }

    pub fn stop(&self) {
        signal(self.pid() as u32, libc::SIGSTOP);
        eventually("bindfs to stop", SOON, || {
            process_state(self.pid() as u32) == Some('T')
        });
    }

    pub fn resume(&self) {
        signal(self.pid() as u32, libc::SIGCONT);
    }
}

impl Drop for Bindfs {
    fn drop(&mut self) {
        self.resume();
        if is_mounted(&self.mnt) {
            lazy_unmount(&self.mnt);
        }
        drop(self.proc.take()); // killed and reaped
    }
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill has no memory effects.
    unsafe { libc::kill(pid as i32, sig) };
}

/// The scheduler state of process `pid` (`R`, `S`, `D`, `T`, ...).
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Stops daemon `pid` and waits until it is stopped.
pub fn stop_daemon(pid: u32) {
    signal(pid, libc::SIGSTOP);
    eventually("the daemon to stop", SOON, || {
        process_state(pid) == Some('T')
    });
}

/// Fails if a process of the control side started by this test (an `emptydirfs`
/// command or plugin that is not a daemon, anywhere below this test process), or this
/// test process itself, has a thread in uninterruptible sleep that stays there: such a
/// thread is waiting for a daemon that may never answer, and its process could not exit.
/// A thread seen in that state only for a moment (a process paging its binary in from a
/// busy disk, a child between fork and exec) is not stuck: a thread counts if it is in
/// it at every look for [`STUCK_FOR`].
pub fn assert_nothing_of_ours_is_stuck() {
    let deadline = std::time::Instant::now() + STUCK_FOR;
    let mut stuck = threads_in_uninterruptible_sleep();
    while !stuck.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let now = threads_in_uninterruptible_sleep();
        stuck.retain(|(tid, _)| now.iter().any(|(t, _)| t == tid));
    }
    if let Some((tid, what)) = stuck.first() {
        panic!("thread {tid} stayed in uninterruptible sleep for {STUCK_FOR:?}: {what}");
    }
}

/// How long a thread must stay in uninterruptible sleep to be stuck.
const STUCK_FOR: std::time::Duration = std::time::Duration::from_secs(3);

/// The threads of our processes (see above) in uninterruptible sleep now: their ids,
/// with what they are.
fn threads_in_uninterruptible_sleep() -> Vec<(String, String)> {
    let me = std::process::id();
    let mut found = Vec::new();
    for pid in descendants(me).into_iter().chain([me]) {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if pid != me && !comm.starts_with("emptydirfs") {
            continue; // a "pod" of the test, bindfs, fio...
        }
        if pid != me && daemon_cmdline(pid).is_some_and(|c| c.contains(" serve ")) {
            continue; // a daemon may be blocked on its backing disk: that is the wedge
        }
        for t in std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next());
            if state == Some('D') {
                let wchan = std::fs::read_to_string(t.path().join("wchan")).unwrap_or_default();
                found.push((
                    format!("{pid}/{}", t.file_name().to_string_lossy()),
                    format!(
                        "process {pid} ({}), waiting in {wchan}: {stat}",
                        comm.trim()
                    ),
                ));
            }
        }
    }
    found
}

/// Every process below `root` (children, their children, ...).
fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

fn daemon_cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

/// Runs `emptydirfs <args> --kubelet-root <root>` and waits for it within `limit`.
pub fn run_within(k: &KubeletRoot, args: &[&str], limit: Duration) -> Finished {
    let what = format!("emptydirfs {}", args.join(" "));
    Guarded::spawn(
        Command::new(BIN)
            .args(args)
            .arg("--kubelet-root")
            .arg(k.path()),
        &what,
    )
    .wait_within(limit)
}

/// `status --json` of `name` within the limit, as its JSON object.
pub fn status_within(k: &KubeletRoot, name: &str) -> String {
    let out = run_within(k, &["status", "--json", "--pod-uid", POD], ANSWERS_WITHIN);
    assert!(out.status.success(), "status: {}", out.stderr);
    out.stdout
        .lines()
        .find(|l| l.contains(&format!("\"volume\":\"{name}\"")))
        .unwrap_or_else(|| panic!("{name} not in status: {}", out.stdout))
        .to_string()
}

/// Files with known bytes written into `dir`, read back by [`assert_files`].
pub fn write_files(dir: &Path, n: usize) {
    for i in 0..n {
        let data: Vec<u8> = (0..8192 + i * 77).map(|b| (b * 7 + i) as u8).collect();
        std::fs::write(dir.join(format!("f{i}")), data).unwrap();
    }
}

pub fn assert_files(dir: &Path, n: usize) {
    for i in 0..n {
        let want: Vec<u8> = (0..8192 + i * 77).map(|b| (b * 7 + i) as u8).collect();
        assert_eq!(
            std::fs::read(dir.join(format!("f{i}"))).unwrap(),
            want,
            "f{i}"
        );
    }
}

/// A "pod" asking the volume for its size (`statfs`): the request the wedged daemon
/// reads and then cannot answer.
pub fn pod_statfs(v: &Path) -> Guarded {
    Guarded::spawn(Command::new("stat").arg("-f").arg(v), "the pod's statfs")
}

#[test]
fn a_disk_volume_on_a_stopped_backing_filesystem_hangs_no_command() {
    let k = KubeletRoot::new();
    let src = TempDir::new("bindfs-src");
    // The volume's data directory is a bindfs mount of `src`, made before setup.
    let data = k.meta_dir("w").join("data");
    let bindfs = Bindfs::mount(src.path(), &data);
    let v = k.setup("w", &["--medium", "", "--size-limit", "64Mi"]);
    write_files(&v, 5);
    assert_eq!(json_str(&status_within(&k, "w"), "health"), "serving");

    bindfs.stop();
    let mut pod = pod_statfs(&v);
    let mut obj = String::new();
    eventually("status to say the daemon is not answering", SLOW, || {
        obj = status_within(&k, "w");
        json_str(&obj, "health") == "not answering"
    });
    assert!(
        json_u64(&obj, "not_answering_seconds").is_some_and(|s| s >= 5),
        "how long: {obj}"
    );
    assert!(
        json_u64(&obj, "requests_waiting").is_some_and(|n| n >= 1),
        "the pod's statfs waits in the kernel: {obj}"
    );
    assert!(
        json_str(&obj, "health_detail").contains("in progress"),
        "{obj}"
    );
    // The table says it too.
    let table = run_within(&k, &["status", "--pod-uid", POD], ANSWERS_WITHIN);
    assert!(
        table.stdout.contains("not answering for"),
        "{}",
        table.stdout
    );

    // setup again: refused at once, the daemon left alone.
    let out = run_within(
        &k,
        &[
            "setup",
            "--pod-uid",
            POD,
            "--volume",
            "w",
            "--size-limit",
            "64Mi",
        ],
        ANSWERS_WITHIN,
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("not answering"), "{}", out.stderr);
    // upgrade: no serving daemon to hand off from.
    let out = run_within(
        &k,
        &["upgrade", "--pod-uid", POD, "--volume", "w"],
        ANSWERS_WITHIN,
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("not answering"), "{}", out.stderr);
    assert_nothing_of_ours_is_stuck();
    assert!(
        !pod.try_finished(),
        "the pod's statfs cannot have been answered"
    );

    // The backing filesystem goes on: the pod's request is answered, nothing is lost.
    bindfs.resume();
    let out = pod.wait_within(SLOW);
    assert!(out.status.success(), "the pod's statfs: {}", out.stderr);
    eventually("the volume to serve again", SLOW, || {
        json_str(&status_within(&k, "w"), "health") == "serving"
    });
    assert_files(&v, 5);
    write_files(&v, 6);
    assert_files(&v, 6);
    let out = run_within(&k, &["teardown", "--pod-uid", POD, "--volume", "w"], SLOW);
    assert!(out.status.success(), "teardown: {}", out.stderr);
    drop(bindfs);
    k.assert_gone("w");
}

#[test]
fn teardown_of_a_disk_volume_on_a_stopped_backing_filesystem_ends_and_leaves_nothing() {
    // fusectl is reached through a mount of our own, attached nowhere: the node's
    // mount table stays as it was.
    let fusectl = Path::new("/sys/fs/fuse/connections");
    let fusectl_mounted = is_mounted(fusectl);
    let k = KubeletRoot::new();
    let src = TempDir::new("bindfs-src");
    let bindfs = Bindfs::mount(src.path(), &k.meta_dir("w").join("data"));
    let v = k.setup("w", &["--medium", "", "--size-limit", "64Mi"]);
    write_files(&v, 2);
    bindfs.stop();
    let pod = pod_statfs(&v);
    eventually("status to say the daemon is not answering", SLOW, || {
        json_str(&status_within(&k, "w"), "health") == "not answering"
    });
    eventually(
        "status to count the pod's request waiting in the kernel",
        SLOW,
        || json_u64(&status_within(&k, "w"), "requests_waiting").is_some_and(|n| n >= 1),
    );
    let started = Instant::now();
    let out = run_within(
        &k,
        &[
            "teardown",
            "--pod-uid",
            POD,
            "--volume",
            "w",
            "--grace",
            "1",
        ],
        SLOW,
    );
    assert!(out.status.success(), "teardown: {}", out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // The pod's request ended with an error (the connection was aborted), not a hang.
    let out = pod.wait_within(SOON);
    assert!(
        !out.status.success(),
        "the pod's statfs of a deleted volume"
    );
    assert_nothing_of_ours_is_stuck();
    // bindfs was detached below the meta dir, never entered.
    assert!(!is_mounted(&bindfs.mnt));
    k.assert_gone("w");
    assert_eq!(
        is_mounted(fusectl),
        fusectl_mounted,
        "fusectl's place in the mount table"
    );
}

/// A workload of a pod: files written, checksummed, renamed, some removed, in `dir`, as
/// uid 1000 through a bind mount; its manifest is checked at the end.
pub fn workload(dir: &Path, rounds: usize) -> Guarded {
    let script = format!(
        "set -e; cd {d}; for i in $(seq 1 {rounds}); do \
           head -c $((4096 + i * 131)) /dev/urandom > t$i; mv t$i f$i; \
           sha256sum f$i >> manifest; mkdir -p d$((i % 7)); echo $i > d$((i % 7))/n; \
           if [ $((i % 5)) -eq 0 ]; then rm f$((i - 1)); sed -i \"/ f$((i - 1))\\$/d\" manifest; fi; \
         done; sha256sum -c --quiet manifest",
        d = dir.display()
    );
    Guarded::spawn(
        Command::new("setpriv")
            .args(["--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c"])
            .arg(script),
        "the pod's workload",
    )
}

/// A small, seeded random number source (the seed is printed, so a failure repeats).
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64
            | 1;
        eprintln!("random seed {seed}");
        Rng(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn stopped_at_random_moments_under_a_workload(m: Medium) {
    let k = KubeletRoot::new();
    let v = k.setup("w", &["--medium", k8s_medium(m), "--size-limit", "256Mi"]);
    let pid = k.daemons()[0];
    let view = View::of(&v);
    let work = workload(&view.path, 400);
    let mut rng = Rng::new();
    for round in 0..6 {
        std::thread::sleep(Duration::from_millis(50 + rng.below(300)));
        stop_daemon(pid);
        let obj = status_within(&k, "w");
        assert_eq!(
            json_str(&obj, "health"),
            "not answering",
            "round {round}: {obj}"
        );
        assert!(json_str(&obj, "health_detail").contains("stopped"), "{obj}");
        assert!(json_u64(&obj, "not_answering_seconds").is_some(), "{obj}");
        assert_eq!(json_u64(&obj, "pid"), Some(u64::from(pid)), "{obj}");
        let out = run_within(
            &k,
            &[
                "setup",
                "--pod-uid",
                POD,
                "--volume",
                "w",
                "--medium",
                k8s_medium(m),
                "--size-limit",
                "256Mi",
            ],
            ANSWERS_WITHIN,
        );
        assert_eq!(out.status.code(), Some(1), "round {round}: {}", out.stderr);
        assert!(out.stderr.contains("not answering"), "{}", out.stderr);
        if round == 0 {
            let out = run_within(
                &k,
                &["upgrade", "--pod-uid", POD, "--volume", "w"],
                ANSWERS_WITHIN,
            );
            assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
        }
        assert_nothing_of_ours_is_stuck();
        signal(pid, libc::SIGCONT);
        eventually("the volume to serve again", SLOW, || {
            json_str(&status_within(&k, "w"), "health") == "serving"
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
        k.daemons(),
        vec![pid],
        "the same daemon serves: nothing restarted it"
    );
    drop(view);
    // A teardown of a stopped daemon does not wait for its grace period: it is let go on
    // to handle its SIGTERM.
    stop_daemon(pid);
    let out = run_within(
        &k,
        &[
            "teardown",
            "--pod-uid",
            POD,
            "--volume",
            "w",
            "--grace",
            "30",
        ],
        ANSWERS_WITHIN,
    );
    assert!(out.status.success(), "teardown: {}", out.stderr);
    k.assert_gone("w");
}

on_every_medium!(stopped_at_random_moments_under_a_workload);
