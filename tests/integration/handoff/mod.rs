//! Hand-offs: a volume's daemon replaced by `emptydirfs upgrade` while programs use the
//! volume (through a bind mount, as another uid). Nothing they do may fail, and nothing
//! of the volume may change.

mod atime;
mod descriptors;
mod faults;
mod handles;
mod iomodes;
mod usage;
mod workloads;

use crate::harness::*;
use crate::kubelet::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// `emptydirfs upgrade` of `name` in [`POD`], with the environment given.
pub fn upgrade_with(k: &KubeletRoot, name: &str, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args([
        "upgrade",
        "--pod-uid",
        POD,
        "--volume",
        name,
        "--kubelet-root",
    ])
    .arg(k.path());
    for (key, v) in env {
        cmd.env(key, v);
    }
    cmd.bounded_output()
}

/// A hand-off that must succeed; returns the new daemon's pid.
pub fn upgrade(k: &KubeletRoot, name: &str) -> u32 {
    let before = daemon_of(k, name);
    let out = upgrade_with(k, name, &[]);
    assert_success(&out, "upgrade");
    let after = daemon_of(k, name);
    assert_ne!(before, after, "another daemon serves");
    assert!(
        !Path::new(&format!("/proc/{before}")).exists()
            || std::fs::read(format!("/proc/{before}/cmdline"))
                .unwrap_or_default()
                .is_empty(),
        "the old daemon {before} is gone"
    );
    after
}

/// The one daemon serving `name`.
pub fn daemon_of(k: &KubeletRoot, name: &str) -> u32 {
    let pids = daemons_below(&k.volume_dir(name));
    assert_eq!(pids.len(), 1, "one daemon for {name}: {pids:?}");
    pids[0]
}

/// A writer appending numbered records to `path` and fsyncing each, until stopped; it
/// counts what it wrote and every error it saw.
pub struct Appender {
    stop: Arc<AtomicBool>,
    pub written: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
    path: PathBuf,
}

impl Appender {
    pub fn start(path: PathBuf) -> Appender {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let (s, w, p) = (stop.clone(), written.clone(), path.clone());
        let thread = std::thread::spawn(move || {
            let mut errors = Vec::new();
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .unwrap();
            while !s.load(Ordering::Relaxed) {
                let n = w.load(Ordering::Relaxed);
                if let Err(e) = f
                    .write_all(format!("{n:08}\n").as_bytes())
                    .and_then(|()| f.sync_data())
                {
                    errors.push(e.to_string());
                    if errors.len() > 10 {
                        break;
                    }
                    continue;
                }
                w.fetch_add(1, Ordering::Relaxed);
            }
            errors
        });
        Appender {
            stop,
            written,
            thread: Some(thread),
            path,
        }
    }

    /// Stops it; asserts it saw no error and that every record is there, in order.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let errors = self.thread.take().unwrap().join().unwrap();
        assert_eq!(errors, Vec::<String>::new(), "the writer saw errors");
        let n = self.written.load(Ordering::Relaxed);
        let text = std::fs::read_to_string(&self.path).unwrap();
        let want: String = (0..n).map(|i| format!("{i:08}\n")).collect();
        assert!(text == want, "{n} records, in order");
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
