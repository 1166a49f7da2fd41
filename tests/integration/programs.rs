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
        .bounded_output();
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

/// A PostgreSQL cluster in `data`, on a socket of its own, stopped however a test ends.
struct Pg {
    bin: PathBuf,
    data: String,
    host: String,
    port: &'static str,
    opts: String,
    _sock: TempDir,
    _cluster: Cluster,
}

impl Pg {
    /// `initdb` in `dir/pgdata` (`dir` is made writable for the `postgres` user).
    fn init(dir: &Path, port: &'static str) -> Pg {
        let bin = pg_bin();
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let sock = TempDir::new("pgsock");
        sh(&format!("chown postgres {}", sock.path().display()));
        let data = dir.join("pgdata").display().to_string();
        as_postgres(&bin.join("initdb"), &["-A", "trust", "-D", &data]);
        Pg {
            opts: format!(
                "-k {} -p {port} -c listen_addresses=''",
                sock.path().display()
            ),
            host: sock.path().display().to_string(),
            _cluster: Cluster {
                ctl: bin.join("pg_ctl"),
                data: data.clone(),
            },
            bin,
            data,
            port,
            _sock: sock,
        }
    }

    fn start(&self) {
        let log = format!("{}/log", self.data);
        as_postgres(
            &self.bin.join("pg_ctl"),
            &[
                "-D", &self.data, "-o", &self.opts, "-w", "-l", &log, "start",
            ],
        );
    }

    fn stop(&self) {
        as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data, "-m", "fast", "-w", "stop"],
        );
    }

    /// pgbench with `args`; its report.
    fn pgbench(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend(["-h", &self.host, "-p", self.port, "postgres"]);
        String::from_utf8_lossy(&as_postgres(&self.bin.join("pgbench"), &all).stdout).into_owned()
    }

    /// Transactions committed in the `postgres` database so far.
    fn commits(&self) -> u64 {
        let sql = "select xact_commit from pg_stat_database where datname = 'postgres'";
        let out = as_postgres(
            &self.bin.join("psql"),
            &[
                "-At", "-h", &self.host, "-p", self.port, "-c", sql, "postgres",
            ],
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// `pg_amcheck` of every relation (a failure panics), and the accounts counted.
    fn check(&self) -> String {
        let (h, p) = (self.host.as_str(), self.port);
        as_postgres(
            &self.bin.join("pg_amcheck"),
            &[
                "--install-missing",
                "--heapallindexed",
                "-a",
                "-h",
                h,
                "-p",
                p,
            ],
        );
        let sql = "select count(*) from pgbench_accounts";
        let out = as_postgres(
            &self.bin.join("psql"),
            &["-At", "-h", h, "-p", p, "-c", sql, "postgres"],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

fn tps(report: &str) -> String {
    let line = report
        .lines()
        .find(|l| l.starts_with("tps = "))
        .unwrap_or("tps = ?");
    line.split(" (").next().unwrap_or(line).to_string()
}

/// initdb, start, pgbench -i and a short pgbench run, a clean stop, a start again and
/// pg_amcheck over every table and index, and a final clean stop.
fn postgresql_runs_unchanged(m: Medium) {
    let v = Volume::start(m, &["--size-limit", "1Gi"]);
    let port = if m == Medium::Memory {
        "54391"
    } else {
        "54392"
    };
    let pg = Pg::init(&v.mnt, port);
    pg.start();
    pg.pgbench(&["-q", "-i", "-s", "5"]);
    let report = pg.pgbench(&["-c", "2", "-j", "2", "-T", "5"]);
    assert!(
        report.contains("number of failed transactions: 0"),
        "{report}"
    );
    pg.stop();
    pg.start();
    assert_eq!(pg.check(), "500000");
    pg.stop();
    crate::load::record_reliability(
        &format!("postgresql-{}", m.name()),
        &format!(
            "initdb, pgbench -i -s 5, 5 s of pgbench -c 2 ({}), 0 failed transactions; pg_amcheck clean after a restart; 500000 rows",
            tps(&report)
        ),
    );
    drop(pg);
    v.assert_counters_match_backing();
}

/// pgbench running while the volume's daemon is handed over: no failed transaction, and
/// `pg_amcheck` is clean afterwards.
fn postgresql_runs_across_a_handoff(m: Medium) {
    let k = crate::kubelet::KubeletRoot::new();
    let v = k.setup(
        "pg",
        &[
            "--medium",
            crate::kubelet::k8s_medium(m),
            "--size-limit",
            "1Gi",
        ],
    );
    let port = if m == Medium::Memory {
        "54393"
    } else {
        "54394"
    };
    // As a container sees it (kubelet's pod directories are 0750).
    let view = crate::kubelet::View::of(&v);
    let pg = Pg::init(&view.path, port);
    pg.start();
    pg.pgbench(&["-q", "-i", "-s", "5"]);
    let report = std::thread::scope(|s| {
        let before = pg.commits();
        let bench = s.spawn(|| pg.pgbench(&["-c", "2", "-j", "2", "-T", "8"]));
        // The hand-off lands while pgbench commits transactions.
        eventually("pgbench to commit transactions", SLOW, || {
            pg.commits() > before + 200
        });
        crate::handoff::upgrade(&k, "pg");
        bench.join().unwrap()
    });
    assert!(
        report.contains("number of failed transactions: 0"),
        "{report}"
    );
    pg.stop();
    pg.start();
    assert_eq!(pg.check(), "500000");
    pg.stop();
    crate::load::record_reliability(
        &format!("postgresql-handoff-{}", m.name()),
        &format!(
            "8 s of pgbench -c 2 ({}) with a hand-off after 3 s: 0 failed transactions; pg_amcheck clean",
            tps(&report)
        ),
    );
}

on_every_medium!(postgresql_runs_unchanged, postgresql_runs_across_a_handoff);
