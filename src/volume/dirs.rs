//! Directories of the layout: created with their modes (and undone on failure), locked,
//! and removed without ever deleting through a mount.

use super::layout::Layout;
use crate::error::{Failure, failed, invalid};
use crate::mounts::{self, Unmounted};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What one `setup` created, so that a failed setup leaves nothing behind.
#[derive(Default)]
pub struct Created {
    /// Directories, in creation order, and whether their whole tree is ours.
    dirs: Vec<(PathBuf, bool)>,
    files: Vec<PathBuf>,
}

impl Created {
    /// Creates `path` with exactly `mode` unless it is already a directory. Something
    /// else there (a file, a symlink) is refused: the layout is never followed elsewhere.
    /// `owns_tree`: on undo, remove everything below it too (a meta dir).
    pub fn dir(&mut self, path: &Path, mode: u32, owns_tree: bool) -> Result<(), Failure> {
        match std::fs::DirBuilder::new().mode(mode).create(path) {
            Ok(()) => {
                self.dirs.push((path.to_path_buf(), owns_tree));
                // The umask may have taken bits away: set the mode explicitly, as kubelet does.
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| failed(format!("chmod {}: {e}", path.display())))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => check_is_dir(path),
            Err(e) => Err(failed(format!("creating {}: {e}", path.display()))),
        }
    }

    /// Records a file this setup created.
    pub fn file(&mut self, path: &Path) {
        self.files.push(path.to_path_buf());
    }

    /// Removes what was created, newest first. Parents shared with other volumes are
    /// only removed when empty. Call it after unmounting anything mounted on them.
    pub fn undo(self) {
        for f in self.files.iter().rev() {
            let _ = std::fs::remove_file(f);
        }
        for (d, owns_tree) in self.dirs.iter().rev() {
            let _ = if *owns_tree {
                remove_tree(d).map_err(|e| io::Error::other(e.to_string()))
            } else {
                std::fs::remove_dir(d)
            };
        }
    }
}

/// `path` must be a real directory (not a symlink to one).
pub fn check_is_dir(path: &Path) -> Result<(), Failure> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(invalid(format!(
            "{} exists and is not a directory; refusing to use it",
            path.display()
        ))),
        Err(e) => Err(failed(format!("{}: {e}", path.display()))),
    }
}

/// An exclusive `flock` on a pod's directory: setups and teardowns of one pod's volumes
/// run one at a time, so two setups of a volume end with one daemon. Released on drop.
///
/// A failed setup may remove the pod directory it created (holding the lock), so after
/// locking, the locked directory must still be the one at the path; if not, lock again.
pub struct PodLock(#[allow(dead_code)] OwnedFd);

impl PodLock {
    /// Creates `pods/<UID>` if needed (recorded in `created`) and locks it.
    pub fn acquire(l: &Layout, created: &mut Created) -> Result<PodLock, Failure> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let pod_dir = l.pod_dir();
        for _ in 0..100 {
            created.dir(&l.pods_dir(), 0o750, false)?;
            created.dir(&pod_dir, 0o750, false)?;
            let dir = match std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&pod_dir)
            {
                Ok(d) => d,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(failed(format!(
                        "opening {} to lock it: {e}",
                        pod_dir.display()
                    )));
                }
            };
            let locked = dir
                .metadata()
                .map_err(|e| failed(format!("{}: {e}", pod_dir.display())))?;
            let fd = OwnedFd::from(dir);
            while unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) } != 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(failed(format!("locking {}: {e}", pod_dir.display())));
                }
            }
            match std::fs::symlink_metadata(&pod_dir) {
                Ok(now) if (now.dev(), now.ino()) == (locked.dev(), locked.ino()) => {
                    return Ok(PodLock(fd));
                }
                _ => continue, // removed (and maybe made again) while we waited
            }
        }
        Err(failed(format!(
            "{} keeps disappearing; cannot lock it",
            pod_dir.display()
        )))
    }
}

/// Removes a tree that may be absent. Anything mounted inside it is first detached
/// (lazily), so the delete never reaches into another filesystem.
pub fn remove_tree(path: &Path) -> Result<(), Failure> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    detach_mounts_below(path)?;
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(failed(format!("deleting {}: {e}", path.display()))),
    }
}

/// Unmounts (lazily if busy) every mount strictly below `path`, deepest first.
fn detach_mounts_below(path: &Path) -> Result<(), Failure> {
    let table = mounts::list().map_err(|e| failed(format!("reading the mount table: {e}")))?;
    let mut below: Vec<PathBuf> = table
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|m| m.starts_with(path) && m != path)
        .collect();
    below.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for m in below {
        log::warn!(
            "{} is mounted inside {}: detaching it",
            m.display(),
            path.display()
        );
        mounts::unmount(&m).map_err(|e| failed(format!("unmounting {}: {e}", m.display())))?;
    }
    Ok(())
}

/// Refuses a layout with anything but a real directory on the way (a symlink would lead
/// reads, deletes and mounts elsewhere).
pub fn check_layout(l: &Layout) -> Result<(), Failure> {
    for dir in l.directories() {
        check_dir_if_present(&dir)?;
    }
    Ok(())
}

/// Refuses a layout directory that is not a real directory .
fn check_dir_if_present(path: &Path) -> Result<bool, Failure> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => check_is_dir(path).map(|()| true),
        Err(_) => Ok(false),
    }
}

/// Unmounts everything stacked at `path` (lazily where busy or dead).
pub fn unmount_all(path: &Path) -> Result<(), Failure> {
    for _ in 0..16 {
        match mounts::unmount(path) {
            Ok(Unmounted::NotMounted) => return Ok(()),
            Ok(_) => continue,
            // The directory itself is missing: nothing can be mounted there.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(failed(format!("unmounting {}: {e}", path.display()))),
        }
    }
    Err(failed(format!(
        "{} stays mounted after 16 unmounts",
        path.display()
    )))
}
