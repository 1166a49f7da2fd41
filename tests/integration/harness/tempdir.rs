//! Temporary directories and the mounts below them: removed on every path, and after a
//! test binary killed by a signal, by the next one.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A directory under the system temp dir, removed with its contents on drop.
///
/// Its name carries the test process's pid (`emptydirfs-<tag>-<pid>-XXXXXX`). A test
/// binary killed by a signal runs no `Drop` (its daemons still go, by
/// `PR_SET_PDEATHSIG`, and unmount); the next test binary unmounts and removes what
/// such a dead process left.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(remove_dirs_of_dead_runs);
        let pid = std::process::id();
        let template = std::env::temp_dir().join(format!("emptydirfs-{tag}-{pid}-XXXXXX"));
        let c = CString::new(template.as_os_str().as_bytes()).unwrap();
        let raw = c.into_raw();
        // SAFETY: `raw` is the NUL-terminated buffer of a CString given up by into_raw;
        // mkdtemp rewrites its XXXXXX in place, within the buffer.
        let p = unsafe { libc::mkdtemp(raw) };
        // SAFETY: `raw` came from CString::into_raw just above and is taken back once;
        // mkdtemp changed only bytes before the NUL, so the length CString remembers still
        // holds.
        let c = unsafe { CString::from_raw(raw) };
        assert!(!p.is_null(), "mkdtemp: {}", io::Error::last_os_error());
        let dir = TempDir(PathBuf::from(OsStr::from_bytes(c.as_bytes())));
        // Tests act as other uids inside: let them through.
        std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        dir
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Never delete through a mount that is still there: unmount first.
        for m in mounts_below(&self.0) {
            lazy_unmount(&m);
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Unmounts and removes the temporary directories of test processes that are gone.
/// Whether no process `pid` exists (a test binary that died without running its `Drop`s).
pub fn process_is_gone(pid: i32) -> bool {
    pid > 0
        // SAFETY: kill with signal 0 only asks whether `pid` exists; it sends nothing and
        // touches no memory.
        && unsafe { libc::kill(pid, 0) } == -1
        && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

fn remove_dirs_of_dead_runs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("emptydirfs-") {
            continue;
        }
        // emptydirfs-<tag>-<pid>-XXXXXX: the pid is the field before the last.
        let Some(pid) = name.rsplit('-').nth(1).and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if process_is_gone(pid) {
            // What it mounted there (a tmpfs, a loop ext4) was its own: drop it as it would have.
            drop(TempDir(e.path()));
        }
    }
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    found
}

pub fn is_mounted(path: &Path) -> bool {
    mounts_below(path).iter().any(|p| p == path)
}

pub fn lazy_unmount(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated CString alive for the call; the flags are integers.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
}

/// A test binary killed by a signal leaves its temp dirs and what it mounted there (its
/// daemons go by themselves); the next run removes them, and leaves a live run's alone.
#[test]
fn a_killed_runs_temp_dirs_are_removed_by_the_next() {
    let dead = {
        let mut c = Command::new("true").spawn().unwrap();
        c.wait().unwrap();
        c.id()
    };
    let left = std::env::temp_dir().join(format!("emptydirfs-killed-{dead}-AbCdEf"));
    let fs = left.join("fs");
    std::fs::create_dir_all(&fs).unwrap();
    // Removed (after its mount) should the test fail.
    let _fixture = TempDir(left.clone());
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&fs)
        .status()
        .unwrap();
    assert!(mounted.success());
    std::fs::write(fs.join("data"), b"left behind").unwrap();
    let live = TempDir::new("live");

    remove_dirs_of_dead_runs();

    assert!(
        mounts_below(&left).is_empty(),
        "the dead run's tmpfs is still mounted"
    );
    assert!(!left.exists(), "the dead run's directory is still there");
    assert!(live.path().is_dir(), "a live run's directory was removed");
}
