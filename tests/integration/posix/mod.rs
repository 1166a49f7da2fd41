//! POSIX behaviour every backend must show, compared with what tmpfs does: names
//! (`names.rs`), attributes, times, xattrs and permissions (`attrs.rs`), access times
//! (`atime.rs`), file data (`data.rs`), file handles (`handles.rs`).

pub mod atime;
mod attrs;
mod data;
mod handles;
mod names;

use std::fs;
use std::path::Path;

pub(super) fn meta(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()))
}

pub(super) fn write_file(p: &Path, data: &[u8]) {
    fs::write(p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

/// Lets the clock move on, so that two times taken around it differ (not a wait for
/// anything to happen).
pub(crate) fn sleep_tick() {
    std::thread::sleep(std::time::Duration::from_millis(20));
}
