//! Conversions between the backend's types and fuser's.

use crate::daemon::fs::{Attr, Caller, Errno, FileKind, SetTime, killpriv};
use fuser::{FileAttr, FileType, INodeNo, Request, TimeOrNow};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn kind(k: FileKind) -> FileType {
    match k {
        FileKind::Regular => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
    }
}

/// `io_block`: the `st_blksize` a regular file shows (other kinds show the block size).
pub fn attr(a: &Attr, io_block: u32) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.ctime,
        kind: kind(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: match a.kind {
            FileKind::Regular => io_block,
            _ => crate::daemon::fs::BLOCK_SIZE as u32,
        },
        flags: 0,
    }
}

/// The generation told with an entry (the kernel keeps 32 bits of it: `i_generation`).
pub fn generation(a: &Attr) -> fuser::Generation {
    fuser::Generation(a.generation.into())
}

/// The attributes of a negative entry (node id 0): only the id matters to the kernel.
pub fn absent() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: std::time::UNIX_EPOCH,
        mtime: std::time::UNIX_EPOCH,
        ctime: std::time::UNIX_EPOCH,
        crtime: std::time::UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: crate::daemon::fs::BLOCK_SIZE as u32,
        flags: 0,
    }
}

pub fn time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(before_epoch_fixed(t)),
    }
}

/// fuser 0.18 reads a time before 1970 given as (`-s`, `ns`), which means `-s + ns`, as
/// `-(s + ns)` (its own TODO in `time.rs`). Undo that: `-s - ns` becomes `-s + ns`.
/// fuser is pinned to =0.18.0; `posix::utimensat_nanoseconds` checks this.
pub fn before_epoch_fixed(t: SystemTime) -> SystemTime {
    match UNIX_EPOCH.duration_since(t) {
        Ok(d) if d.subsec_nanos() != 0 => {
            UNIX_EPOCH - Duration::from_secs(d.as_secs())
                + Duration::from_nanos(d.subsec_nanos().into())
        }
        _ => t,
    }
}

pub fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

/// What a SETATTR means for the file's setid bits with `FUSE_HANDLE_KILLPRIV_V2`. The
/// kernel flags the ones to clear (`FATTR_KILL_SUIDGID`), but fuser 0.18 drops that flag,
/// so it is told from what the kernel sends it with: a change of owner or group (always
/// flagged, for any caller), a change of size (flagged when the caller lacks
/// `CAP_FSETID`), and the empty SETATTR the kernel sends to clear them before a
/// `fallocate` or `copy_file_range` (likewise). Whether the caller has `CAP_FSETID` is
/// asked later, and only of a file with a setid bit ([`killpriv::cleared`]).
pub fn setattr_kill(who: &Caller, set: &crate::daemon::fs::SetAttr) -> Option<killpriv::Kill> {
    let chown = set.uid.is_some() || set.gid.is_some();
    let empty = set.mode.is_none()
        && !chown
        && set.size.is_none()
        && set.atime.is_none()
        && set.mtime.is_none()
        && set.ctime.is_none();
    if chown {
        Some(killpriv::Kill::Chown(*who))
    } else if set.size.is_some() || empty {
        Some(killpriv::Kill::Truncated(*who))
    } else {
        None
    }
}

pub fn errno(e: Errno) -> fuser::Errno {
    fuser::Errno::from_i32(e.0)
}
