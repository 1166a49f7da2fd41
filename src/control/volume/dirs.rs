//! A volume's directories, whichever front end laid them out: created with their modes
//! (and undone on failure), locked, and removed without ever deleting through a mount.

use crate::error::{Failure, failed, invalid};
use crate::mounts::{self, Unmounted};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What one setup or publish created, so that a failed one leaves nothing behind.
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

/// `path` must be a real directory (not a symlink to one). A mount point is one (the
/// kernel resolved it when it was mounted) and is not looked at: `lstat` of a volume's
/// mount point would ask its daemon, which may never answer.
pub fn check_is_dir(path: &Path) -> Result<(), Failure> {
    if is_mount_point(path) {
        return Ok(());
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(not_a_directory(path)),
        Err(e) => Err(failed(format!("{}: {e}", path.display()))),
    }
}

/// The refusal of a layout path that exists and is no directory (a file, a symlink).
pub fn not_a_directory(path: &Path) -> Failure {
    invalid(format!(
        "{} exists and is not a directory; refusing to use it",
        path.display()
    ))
}

/// An exclusive `flock` on a directory, released on drop (or when the process dies, so a
/// killed holder never leaves it locked).
pub struct DirLock(#[allow(dead_code)] OwnedFd);

impl DirLock {
    /// Waits for the lock on the directory at `path`. `Ok(None)`: the directory is gone, or
    /// was removed (and maybe made again) while we waited, so the lock taken is on a
    /// directory no longer at the path; the caller decides whether to try again.
    pub fn lock(path: &Path) -> Result<Option<DirLock>, Failure> {
        DirLock::take(path, libc::LOCK_EX)
    }

    /// As [`DirLock::lock`], but `Ok(None)` at once when another holds it, too.
    pub fn try_lock(path: &Path) -> Result<Option<DirLock>, Failure> {
        DirLock::take(path, libc::LOCK_EX | libc::LOCK_NB)
    }

    fn take(path: &Path, how: i32) -> Result<Option<DirLock>, Failure> {
        let dir = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
        {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(failed(format!(
                    "opening {} to lock it: {e}",
                    path.display()
                )));
            }
        };
        let locked = dir
            .metadata()
            .map_err(|e| failed(format!("{}: {e}", path.display())))?;
        let fd = OwnedFd::from(dir);
        // SAFETY: `fd` is open (owned here); flock takes integers otherwise.
        while unsafe { libc::flock(fd.as_raw_fd(), how) } != 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) => return Ok(None),
                _ => return Err(failed(format!("locking {}: {e}", path.display()))),
            }
        }
        match std::fs::symlink_metadata(path) {
            Ok(now) if (now.dev(), now.ino()) == (locked.dev(), locked.ino()) => {
                Ok(Some(DirLock(fd)))
            }
            _ => Ok(None),
        }
    }
}

/// Moves `dir` aside to `aside` (so that a crash mid-delete never leaves a half-deleted
/// live volume: a `.deleting~` name is only ever finished), then deletes it. What an
/// interrupted delete left at `aside` goes first.
pub fn delete_aside(dir: &Path, aside: &Path) -> Result<(), Failure> {
    remove_tree(aside)?;
    if std::fs::symlink_metadata(dir).is_ok() {
        std::fs::rename(dir, aside)
            .map_err(|e| failed(format!("moving {} aside: {e}", dir.display())))?;
    }
    remove_tree(aside)
}

/// Removes a tree that may be absent. Anything mounted inside it is first detached
/// (lazily), so the delete never reaches into another filesystem (nor waits for one: a
/// wedged FUSE filesystem mounted inside is detached before anything below it is looked
/// at).
pub fn remove_tree(path: &Path) -> Result<(), Failure> {
    detach_mounts_below(path)?;
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
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

/// Whether something is mounted at `path`, from the mount table (never by looking at
/// `path` itself). Unreadable mount table: assume so, and touch nothing.
pub fn is_mount_point(path: &Path) -> bool {
    mounts::mounted_at(path).map_or(true, |m| m.is_some())
}

/// Removes the mount point (and anything written into it while unmounted), never
/// through a mount, and never looking into one that is still mounted.
pub fn remove_mount_dir(path: &Path) -> Result<(), Failure> {
    if is_mount_point(path) {
        return Ok(()); // the caller reports it
    }
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => remove_tree(path),
        Ok(_) => std::fs::remove_file(path)
            .map_err(|e| failed(format!("removing {}: {e}", path.display()))),
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
