//! Suites nobody on this project wrote, on every medium, each beside a kernel tmpfs
//! measured in the same run: pjdfstest (POSIX), fsx (data integrity under every kind of
//! I/O) and fio with crc32c verification (concurrent jobs, and filling to the limit).
//!
//! Each case writes a one-line summary to `target/tmp/conformance/` for
//! `scripts/conformance-report.sh`, which turns them into `docs/CONFORMANCE.md`'s tables.

use crate::harness::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const CONF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance");

on_every_medium!(
    pjdfstest_passes_every_case_tmpfs_passes,
    fsx_finds_no_miscompare,
    fio_jobs_verify_every_block,
    fio_fills_to_the_limit_and_every_block_reads_back,
);

/// A tmpfs of `size` in a temporary directory, unmounted on drop.
/// A kernel tmpfs of `size`, unmounted on drop (the reference the suites run beside).
pub(crate) struct Tmpfs {
    pub(crate) path: PathBuf,
    _dir: TempDir,
}

impl Tmpfs {
    pub(crate) fn new(size: &str) -> Tmpfs {
        let dir = TempDir::new("tmpfs");
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path));
        Tmpfs { path, _dir: dir }
    }
}

/// A program the suites need, installed by `scripts/install-test-deps.sh`.
fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed: run scripts/install-test-deps.sh"
    );
    Command::new(name)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Records a suite's result for the report.
fn record(suite: &str, target: &str, line: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("conformance");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{suite}-{target}.txt")),
        format!("{line}\n"),
    )
    .unwrap();
}

// ---- pjdfstest ------------------------------------------------------------------

/// Each case's outcome (`ok`, `skipped`, `FAILED`) and the failures' messages.
struct PjdResults {
    outcome: BTreeMap<String, String>,
    messages: BTreeMap<String, String>,
}

impl PjdResults {
    fn count(&self, what: &str) -> usize {
        self.outcome.values().filter(|o| *o == what).count()
    }

    fn summary(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped, {} total",
            self.count("ok"),
            self.count("FAILED"),
            self.count("skipped"),
            self.outcome.len()
        )
    }
}

fn run_pjdfstest(dir: &Path) -> PjdResults {
    let second = Tmpfs::new("64m");
    let cfg_dir = TempDir::new("pjdfstest");
    let cfg = cfg_dir.path().join("pjdfstest.toml");
    let template = std::fs::read_to_string(format!("{CONF}/pjdfstest.toml")).unwrap();
    std::fs::write(
        &cfg,
        template.replace("SECONDARY_FS", second.path.to_str().unwrap()),
    )
    .unwrap();
    let out = tool("pjdfstest")
        .arg("-c")
        .arg(&cfg)
        .arg("-p")
        .arg(dir)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .bounded_output();
    let all = text(&out);
    let mut r = PjdResults {
        outcome: BTreeMap::new(),
        messages: BTreeMap::new(),
    };
    let mut last_failed: Option<String> = None;
    for line in all.lines() {
        if let Some(msg) = line.strip_prefix('\t') {
            if let Some(name) = &last_failed {
                r.messages.entry(name.clone()).or_default().push_str(msg);
            }
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(name), Some(status)) = (words.next(), words.next()) else {
            continue;
        };
        if name.contains("::") && matches!(status, "ok" | "skipped" | "FAILED") {
            r.outcome.insert(name.to_string(), status.to_string());
            last_failed = (status == "FAILED").then(|| name.to_string());
        }
    }
    assert!(
        all.contains("Summary:") && r.outcome.len() > 300,
        "pjdfstest did not run: {all}"
    );
    r
}

/// The checked-in list of cases a medium cannot pass, with reasons.
fn known_failures(m: Medium) -> BTreeMap<String, String> {
    let list = std::fs::read_to_string(format!("{CONF}/pjdfstest-known.txt")).unwrap();
    list.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut parts = l.splitn(3, char::is_whitespace);
            let (medium, case, reason) = (parts.next()?, parts.next()?, parts.next().unwrap_or(""));
            (medium == m.name()).then(|| (case.to_string(), reason.trim().to_string()))
        })
        .collect()
}

fn pjdfstest_passes_every_case_tmpfs_passes(m: Medium) {
    static TMPFS: OnceLock<PjdResults> = OnceLock::new();
    let reference = TMPFS.get_or_init(|| {
        let t = Tmpfs::new("1g");
        let r = run_pjdfstest(&t.path);
        record("pjdfstest", "tmpfs", &r.summary());
        r
    });
    let v = Volume::start(m, &["--size-limit", "1Gi"]);
    let ours = run_pjdfstest(&v.mnt);
    record("pjdfstest", m.name(), &ours.summary());
    let known = known_failures(m);
    let failed: Vec<String> = ours
        .outcome
        .iter()
        .filter(|(case, o)| *o == "FAILED" && !known.contains_key(*case))
        .map(|(case, _)| {
            format!(
                "{case}: {}",
                ours.messages.get(case).map_or("", |s| s.as_str())
            )
        })
        .collect();
    let missing: Vec<&String> = reference
        .outcome
        .iter()
        .filter(|(case, o)| *o == "ok" && ours.outcome.get(*case).map(String::as_str) != Some("ok"))
        .map(|(case, _)| case)
        .filter(|case| !known.contains_key(*case))
        .collect();
    let now_passing: Vec<&String> = known
        .keys()
        .filter(|case| ours.outcome.get(*case).map(String::as_str) == Some("ok"))
        .collect();
    assert!(
        failed.is_empty(),
        "{}: failures not in the known list:\n{}",
        m.name(),
        failed.join("\n")
    );
    assert!(
        missing.is_empty(),
        "{}: cases that pass on tmpfs but not here: {missing:?}",
        m.name()
    );
    assert!(
        now_passing.is_empty(),
        "{}: listed as known failures but now pass (remove them from tests/conformance/pjdfstest-known.txt): {now_passing:?}",
        m.name()
    );
    assert_eq!(
        ours.outcome.len(),
        reference.outcome.len(),
        "the same cases ran"
    );
}

// ---- fsx ------------------------------------------------------------------------

/// Operations per run: 100,000 in CI; `FSX_OPS` changes it (`scripts/fsx-soak.sh`).
fn fsx_ops() -> u64 {
    std::env::var("FSX_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

/// The seed: 1 in CI; `FSX_SEED` changes it.
fn fsx_seed() -> u64 {
    std::env::var("FSX_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// Runs fsx on `dir` with a fixed seed; returns its verdict line, panicking on a miscompare.
/// fsx of `ops` operations with `seed` on a file in `dir`; panics on a miscompare.
pub(crate) fn run_fsx(dir: &Path, seed: u64, ops: u64) -> String {
    let artifacts = TempDir::new("fsx");
    let out = tool("fsx")
        .arg("-f")
        .arg(format!("{CONF}/fsx.toml"))
        .args(["-N", &ops.to_string(), "-S", &seed.to_string(), "-P"])
        .arg(artifacts.path())
        .arg(dir.join("fsx.file"))
        .bounded_output();
    let all = text(&out);
    // The verdict and what went wrong, without the log of the last operations.
    let is_op_log = |l: &str| {
        l.strip_prefix("[ERROR fsx]")
            .is_some_and(|r| r.trim_start().starts_with(|c: char| c.is_ascii_digit()))
    };
    let why: Vec<&str> = all.lines().filter(|l| !is_op_log(l)).take(40).collect();
    let last_ops: Vec<&str> = all.lines().filter(|l| is_op_log(l)).collect();
    assert!(
        out.status.success() && all.contains("All operations completed A-OK!"),
        "fsx on {} failed ({}), seed {seed}:\n{}\nlast operations:\n{}",
        dir.display(),
        out.status,
        why.join("\n"),
        last_ops[last_ops.len().saturating_sub(10)..].join("\n")
    );
    format!("{ops} operations, seed {seed}, 0 miscompares")
}

fn fsx_finds_no_miscompare(m: Medium) {
    static TMPFS: OnceLock<String> = OnceLock::new();
    TMPFS.get_or_init(|| {
        let t = Tmpfs::new("64m");
        let r = run_fsx(&t.path, fsx_seed(), fsx_ops());
        record("fsx", "tmpfs", &r);
        r
    });
    let v = Volume::start(m, &[]);
    record("fsx", m.name(), &run_fsx(&v.mnt, fsx_seed(), fsx_ops()));
    v.assert_counters_match_backing();
}

// ---- fio ------------------------------------------------------------------------

/// Runs fio with `args`, its verify state files kept out of the volume.
fn fio(args: &[&str]) -> String {
    let state = TempDir::new("fio-state");
    let out = tool("fio")
        .args(args)
        .current_dir(state.path())
        .bounded_output();
    let all = text(&out);
    assert!(out.status.success(), "fio {args:?} failed: {all}");
    assert!(
        !all.contains("verify failed") && !all.contains("bad magic"),
        "{all}"
    );
    all
}

fn fio_jobs_verify_every_block(m: Medium) {
    let job = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/fio/verify.fio");
    // Each soak round writes other patterns (`FIO_SEED`); CI uses fio's default seed.
    let seed = std::env::var("FIO_SEED")
        .map(|s| format!("--randseed={s}"))
        .unwrap_or_else(|_| "--randrepeat=1".into());
    static TMPFS: OnceLock<()> = OnceLock::new();
    TMPFS.get_or_init(|| {
        let t = Tmpfs::new("256m");
        fio(&[&format!("--directory={}", t.path.display()), &seed, job]);
        record("fio-verify", "tmpfs", "4 concurrent jobs, 0 verify errors");
    });
    let v = Volume::start(m, &["--size-limit", "256Mi"]);
    let out = fio(&[&format!("--directory={}", v.mnt.display()), &seed, job]);
    assert!(out.contains("err= 0"), "{out}");
    record("fio-verify", m.name(), "4 concurrent jobs, 0 verify errors");
    v.assert_counters_match_backing();
}

/// The fill jobs: (name, block size). Each writes its own file sequentially until
/// ENOSPC; all three run at once.
const FILL_JOBS: [(&str, u64); 3] = [
    ("fill-a", 64 << 10),
    ("fill-b", 4 << 10),
    ("fill-c", 1 << 20),
];

/// Fills `dir` with the three jobs, then reads back every whole block each wrote before
/// its ENOSPC and checks its crc32c. Returns the bytes the files hold.
fn fill_and_verify(dir: &Path) -> u64 {
    let mut args = vec![
        format!("--directory={}", dir.display()),
        "--ioengine=psync".into(),
        "--rw=write".into(),
        "--fill_device=1".into(),
        "--verify=crc32c".into(),
        "--do_verify=0".into(),
    ];
    for (name, bs) in FILL_JOBS {
        args.extend([format!("--name={name}"), format!("--bs={bs}")]);
    }
    let out = fio(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.contains("No space left on device"),
        "the jobs did not reach ENOSPC: {out}"
    );
    let mut total = 0;
    for (name, bs) in FILL_JOBS {
        let file = dir.join(format!("{name}.0.0"));
        let size = std::fs::metadata(&file).unwrap().len();
        total += size;
        let whole = size / bs * bs;
        assert!(whole > 0, "{name} wrote nothing");
        fio(&[
            &format!("--name={name}"),
            &format!("--filename={}", file.display()),
            "--ioengine=psync",
            "--rw=write",
            &format!("--bs={bs}"),
            &format!("--size={whole}"),
            "--verify=crc32c",
            "--verify_only",
            "--verify_fatal=1",
        ]);
    }
    total
}

fn fio_fills_to_the_limit_and_every_block_reads_back(m: Medium) {
    const LIMIT: u64 = 64 << 20;
    static TMPFS: OnceLock<()> = OnceLock::new();
    TMPFS.get_or_init(|| {
        let t = Tmpfs::new("64m");
        let held = fill_and_verify(&t.path);
        record(
            "fio-fill",
            "tmpfs",
            &format!("ENOSPC after {held} bytes of a 64 MiB size, every whole block verified"),
        );
    });
    let v = Volume::start(m, &["--size-limit", "64Mi"]);
    // Watch usage while the jobs run: the counters, and on disk what the backing holds.
    let done = std::sync::atomic::AtomicBool::new(false);
    let (held, peaks) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let (mut used, mut du) = (0, 0);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                used = used.max(v.used());
                if m == Medium::Disk {
                    du = du.max(du_bytes(&v.backing));
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            (used, du)
        });
        // Stop the watcher however the jobs end (a panic too), or the scope never ends.
        struct Done<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let stop = Done(&done);
        let held = fill_and_verify(&v.mnt);
        drop(stop);
        (held, watcher.join().unwrap())
    });
    let (peak_used, peak_du) = peaks;
    assert!(
        peak_used <= LIMIT,
        "df Used peaked at {peak_used}, over the limit"
    );
    // ext4 may add an extent block at writeback, counted after the fact (README).
    assert!(
        peak_du <= LIMIT + 16 * 4096,
        "the backing directory held {peak_du} bytes"
    );
    assert!(held <= LIMIT, "the files hold {held} bytes");
    assert!(
        held >= LIMIT - (2 << 20),
        "ENOSPC came early: the files hold only {held} bytes"
    );
    assert!(v.used() <= LIMIT);
    v.assert_counters_match_backing();
    record(
        "fio-fill",
        m.name(),
        &format!("ENOSPC after {held} bytes of a 64 MiB limit, every whole block verified"),
    );
}
