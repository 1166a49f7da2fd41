//! Real programs that use emptyDir in the wild, unchanged: a PostgreSQL cluster.
//! (git and `sort -T` are in `shell.rs`.)

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The newest PostgreSQL server installed (`/usr/lib/postgresql/<N>/bin`).
fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run scripts/install-test-deps.sh")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no PostgreSQL server in /usr/lib/postgresql")
}

/// Runs a PostgreSQL program as the `postgres` user; panics with its output on failure.
fn as_postgres(program: &Path, args: &[&str]) -> Output {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args)
        .current_dir("/")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Stops the cluster however a test ends.
struct Cluster {
    ctl: PathBuf,
    data: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&self.ctl)
            .args(["-D", &self.data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// initdb, start, pgbench -i and a short pgbench run, a clean stop, a start again and
/// pg_amcheck over every table and index, and a final clean stop.
fn postgresql_runs_unchanged(m: Medium) {
    let bin = pg_bin();
    let v = Volume::start(m, &["--size-limit", "1Gi"]);
    std::fs::set_permissions(&v.mnt, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let sock = TempDir::new("pgsock");
    sh(&format!("chown postgres {}", sock.path().display()));
    let data = v.path("pgdata").display().to_string();
    let port = if m == Medium::Memory {
        "54391"
    } else {
        "54392"
    };
    let opts = format!(
        "-k {} -p {port} -c listen_addresses=''",
        sock.path().display()
    );
    let host = sock.path().display().to_string();
    as_postgres(&bin.join("initdb"), &["-A", "trust", "-D", &data]);
    let cluster = Cluster {
        ctl: bin.join("pg_ctl"),
        data: data.clone(),
    };
    let start = || {
        as_postgres(
            &bin.join("pg_ctl"),
            &[
                "-D",
                &data,
                "-o",
                &opts,
                "-w",
                "-l",
                &format!("{data}/log"),
                "start",
            ],
        )
    };
    start();
    let pgbench = bin.join("pgbench");
    as_postgres(
        &pgbench,
        &["-q", "-i", "-s", "5", "-h", &host, "-p", port, "postgres"],
    );
    let out = as_postgres(
        &pgbench,
        &[
            "-c", "2", "-j", "2", "-T", "5", "-h", &host, "-p", port, "postgres",
        ],
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("number of failed transactions: 0"),
        "{report}"
    );
    as_postgres(
        &bin.join("pg_ctl"),
        &["-D", &data, "-m", "fast", "-w", "stop"],
    );
    start();
    as_postgres(
        &bin.join("pg_amcheck"),
        &[
            "--install-missing",
            "--heapallindexed",
            "-a",
            "-h",
            &host,
            "-p",
            port,
        ],
    );
    let out = as_postgres(
        &bin.join("psql"),
        &[
            "-At",
            "-h",
            &host,
            "-p",
            port,
            "-c",
            "select count(*) from pgbench_accounts",
            "postgres",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "500000");
    as_postgres(
        &bin.join("pg_ctl"),
        &["-D", &data, "-m", "fast", "-w", "stop"],
    );
    let tps = report
        .lines()
        .find(|l| l.starts_with("tps = "))
        .unwrap_or("tps = ?");
    crate::load::record_reliability(
        &format!("postgresql-{}", m.name()),
        &format!(
            "initdb, pgbench -i -s 5, 5 s of pgbench -c 2 ({}), 0 failed transactions; pg_amcheck clean after a restart; 500000 rows",
            tps.split(" (").next().unwrap_or(tps)
        ),
    );
    drop(cluster);
    v.assert_counters_match_backing();
}

on_every_medium!(postgresql_runs_unchanged);
