//! Fixtures for the setup helper: a kubelet root in a temporary directory, the commands
//! run against it, and what is left in it.

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const POD: &str = "0f7e3c2a-9b1d-4e5f-8a6b-1c2d3e4f5a6b";

/// The Kubernetes medium of a test configuration.
pub fn k8s_medium(m: Medium) -> &'static str {
    match m {
        Medium::Memory => "Memory",
        Medium::Disk => "",
    }
}

/// A kubelet root. On drop, every daemon serving below it is killed and every mount
/// below it detached before the directory is removed, so a failed test leaves nothing.
pub struct KubeletRoot {
    dir: TempDir,
}

impl KubeletRoot {
    pub fn new() -> KubeletRoot {
        KubeletRoot {
            dir: TempDir::new("kubelet"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `emptydirfs <args> --kubelet-root <root>`.
    pub fn run(&self, args: &[&str]) -> Output {
        output_within(
            Command::new(BIN)
                .args(args)
                .arg("--kubelet-root")
                .arg(self.path()),
            SLOW * 4,
        )
    }

    /// Sets up `name` in [`POD`] with extra flags; panics unless it succeeds. Returns the
    /// printed path.
    pub fn setup(&self, name: &str, flags: &[&str]) -> PathBuf {
        let out = self.run(&[&["setup", "--pod-uid", POD, "--volume", name], flags].concat());
        assert_success(&out, "setup");
        let printed = String::from_utf8(out.stdout).unwrap();
        let path = PathBuf::from(printed.trim_end());
        assert_eq!(
            path,
            self.volume_dir(name),
            "setup prints the volume's path"
        );
        path
    }

    pub fn teardown(&self, name: &str) -> Output {
        self.run(&["teardown", "--pod-uid", POD, "--volume", name])
    }

    pub fn volume_dir(&self, name: &str) -> PathBuf {
        self.path()
            .join("pods")
            .join(POD)
            .join("volumes/kubernetes.io~empty-dir")
            .join(name)
    }

    pub fn meta_dir(&self, name: &str) -> PathBuf {
        self.path()
            .join("pods")
            .join(POD)
            .join("plugins/kubernetes.io~empty-dir")
            .join(name)
    }

    /// `status --json` for the pod, as the text of one volume's object.
    pub fn status_json(&self, name: &str) -> String {
        let out = self.run(&["status", "--json", "--pod-uid", POD]);
        assert_success(&out, "status");
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines()
            .find(|l| l.contains(&format!("\"volume\":\"{name}\"")))
            .unwrap_or_else(|| panic!("{name} not in status: {text}"))
            .to_string()
    }

    /// The pids of daemons serving anything below the root.
    pub fn daemons(&self) -> Vec<u32> {
        daemons_below(self.path())
    }

    /// Every path below the root, sorted (the root itself excluded).
    pub fn entries(&self) -> Vec<String> {
        let out = sh(&format!(
            "cd {} && find . -mindepth 1 | sort",
            self.path().display()
        ));
        out.lines().map(String::from).collect()
    }

    /// Nothing of `name` is left: no daemon, no mount, no volume or meta directory.
    pub fn assert_gone(&self, name: &str) {
        assert_eq!(self.daemons(), Vec::<u32>::new(), "daemons left");
        assert_eq!(
            mounts_below(self.path()),
            Vec::<PathBuf>::new(),
            "mounts left"
        );
        for p in [self.volume_dir(name), self.meta_dir(name)] {
            assert!(
                std::fs::symlink_metadata(&p).is_err(),
                "{} left",
                p.display()
            );
        }
        let data: Vec<String> = self
            .entries()
            .into_iter()
            .filter(|e| e.contains("kubernetes.io~empty-dir"))
            .collect();
        assert_eq!(
            data,
            Vec::<String>::new(),
            "the plugin's directories are left"
        );
    }
}

impl Drop for KubeletRoot {
    fn drop(&mut self) {
        for pid in self.daemons() {
            // SAFETY: kill takes integers only; `pid` is a daemon this test's node started
            // (found serving its volume).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        // TempDir's drop detaches the mounts, then removes the tree.
    }
}

/// Pids of `emptydirfs serve` processes whose mount point is below `dir`.
pub fn daemons_below(dir: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // Daemons name themselves so; reading the command line of another process may
        // wait for its memory map, which a process faulting on a stopped volume holds.
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !comm.starts_with("emptydirfs") {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let serves_below =
            args.iter().any(|a| a == "serve") && args.iter().any(|a| Path::new(a).starts_with(dir));
        if serves_below {
            pids.push(pid);
        }
    }
    pids
}

pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A bind mount of a volume where a container would see it, reachable by any uid (the
/// kubelet's pod directories are 0750). Detached on drop.
pub struct View {
    pub path: PathBuf,
    _dir: TempDir,
}

impl View {
    pub fn of(volume: &Path) -> View {
        let dir = TempDir::new("view");
        let path = dir.path().join("v");
        std::fs::create_dir(&path).unwrap();
        run(Command::new("mount").arg("--bind").arg(volume).arg(&path));
        View { path, _dir: dir }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        lazy_unmount(&self.path);
    }
}

/// A JSON number field of a one-line object (`null` is `None`).
pub fn json_u64(obj: &str, key: &str) -> Option<u64> {
    let start = obj.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &obj[start..];
    let end = rest.find([',', '}']).unwrap();
    rest[..end].parse().ok()
}

/// A JSON string field of a one-line object.
pub fn json_str(obj: &str, key: &str) -> String {
    let start = obj.find(&format!("\"{key}\":\"")).unwrap() + key.len() + 4;
    let rest = &obj[start..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// The root of the volume at `v` is kubelet's under an fsGroup (02777, group `gid`), and
/// what another user creates in it, through a bind mount, gets that group.
pub fn assert_fs_group_applies(v: &Path, gid: u32) {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata(v).unwrap();
    assert_eq!((root.mode() & 0o7777, root.gid()), (0o2777, gid));
    let view = View::of(v);
    let out = sh_as(
        1000,
        1000,
        &format!(
            "cd {} && mkdir d && echo x > d/f && stat -c %g d d/f",
            view.path.display()
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{gid}\n{gid}\n"),
        "new files get the fsGroup"
    );
    assert_eq!(
        std::fs::metadata(v.join("d")).unwrap().mode() & 0o2000,
        0o2000,
        "subdirectories keep setgid"
    );
}

/// The root of the volume at `v` is 01777 if `sticky` (another user cannot delete a
/// user's file), else 0777 (they can).
pub fn assert_sticky_root(v: &Path, sticky: bool) {
    use std::os::unix::fs::MetadataExt;
    let want = if sticky { 0o1777 } else { 0o777 };
    assert_eq!(std::fs::metadata(v).unwrap().mode() & 0o7777, want);
    let view = View::of(v);
    let p = view.path.display();
    let out = sh_as(1000, 1000, &format!("echo mine > {p}/f"));
    assert!(out.status.success());
    let out = sh_as(1001, 1001, &format!("rm -f {p}/f"));
    assert_eq!(
        out.status.success(),
        !sticky,
        "sticky {sticky}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(v.join("f").exists(), sticky);
}
