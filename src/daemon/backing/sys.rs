//! Thin wrappers over the `*at` system calls the disk backend uses.
//!
//! Every call names a file by a descriptor, or by a directory descriptor and one name
//! component, never by a path built from names; nothing here follows a symlink
//! (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `AT_EMPTY_PATH`). xattrs of any file type are
//! reached through `/proc/self/fd/N` of an `O_PATH` descriptor, which names the inode
//! itself (a magic link, not a path through the backing tree).
//!
//! # Safety
//! Each wrapper makes one system call in an `unsafe` block whose `SAFETY` comment says
//! why it is sound. They rest on the same few facts: a `BorrowedFd` is open for at least
//! the call (the borrow outlives it); a `CStr` is NUL-terminated and outlives the call; a
//! buffer's pointer and length come from one live slice or `Vec`, so the kernel reads or
//! writes no more than it holds; a descriptor a call returns is new, and becomes an
//! `OwnedFd` exactly once.

use super::trouble;
use crate::daemon::fs::{Errno, Result};
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

mod dirents;
mod xattr;
pub use dirents::*;
pub use xattr::*;

pub fn cstr(name: &OsStr) -> Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| Errno::EINVAL)
}

/// The result of the system call `op`; a failure is noted ([`trouble`]).
fn check(op: &str, rc: libc::c_int) -> Result<libc::c_int> {
    if rc < 0 {
        Err(trouble::last(op))
    } else {
        Ok(rc)
    }
}

fn check_size(op: &str, rc: libc::ssize_t) -> Result<usize> {
    if rc < 0 {
        Err(trouble::last(op))
    } else {
        Ok(rc as usize)
    }
}

/// Retries a call interrupted by a signal.
fn retry<T>(mut f: impl FnMut() -> Result<T>) -> Result<T> {
    loop {
        match f() {
            Err(e) if e.0 == libc::EINTR => continue,
            r => return r,
        }
    }
}

pub fn openat(dir: BorrowedFd<'_>, name: &CStr, flags: i32, mode: u32) -> Result<OwnedFd> {
    let fd = retry(|| {
        // SAFETY: `dir` is borrowed, so open for the call; `name` is a NUL-terminated CStr
        // that outlives it.
        check("openat", unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                mode,
            )
        })
    })?;
    // SAFETY: `fd` was just returned by a successful openat: a new descriptor nothing else
    // owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An `O_PATH` descriptor of `name` in `dir`, the symlink itself if it is one.
pub fn open_path(dir: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd> {
    openat(dir, name, libc::O_PATH, 0)
}

pub fn fstat(fd: BorrowedFd<'_>) -> Result<libc::stat> {
    // SAFETY: libc::stat is plain integers, for which all-zero bytes are a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is borrowed (open), the empty path is a static CStr, and `st` is a live,
    // writable libc::stat.
    check("fstatat", unsafe {
        libc::fstatat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            &mut st,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

pub fn fstatat(dir: BorrowedFd<'_>, name: &CStr) -> Result<libc::stat> {
    // SAFETY: libc::stat is plain integers, for which all-zero bytes are a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is borrowed (open), `name` is a NUL-terminated CStr, and `st` is a
    // live, writable libc::stat.
    check("fstatat", unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

pub fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> Result<()> {
    // SAFETY: `dir` is borrowed (open) and `name` a NUL-terminated CStr, both for the call.
    check("mkdirat", unsafe {
        libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode)
    })
    .map(drop)
}

pub fn mknodat(dir: BorrowedFd<'_>, name: &CStr, mode: u32, rdev: u64) -> Result<()> {
    // SAFETY: `dir` is borrowed (open) and `name` a NUL-terminated CStr, both for the call.
    check("mknodat", unsafe {
        libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, rdev)
    })
    .map(drop)
}

pub fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> Result<()> {
    // SAFETY: `target` and `name` are NUL-terminated CStrs and `dir` is borrowed (open) for
    // the call.
    check("symlinkat", unsafe {
        libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr())
    })
    .map(drop)
}

/// Links the inode behind `fd` (any kind of descriptor) as `name` in `dir`.
pub fn link_fd(fd: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &CStr) -> Result<()> {
    // SAFETY: `fd` and `dir` are borrowed (open), the empty path and `name` are
    // NUL-terminated CStrs.
    check("linkat", unsafe {
        libc::linkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    })
    .map(drop)
}

pub fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: i32) -> Result<()> {
    // SAFETY: `dir` is borrowed (open) and `name` a NUL-terminated CStr, both for the call.
    check("unlinkat", unsafe {
        libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags)
    })
    .map(drop)
}

pub fn renameat2(
    from: BorrowedFd<'_>,
    a: &CStr,
    to: BorrowedFd<'_>,
    b: &CStr,
    flags: u32,
) -> Result<()> {
    // SAFETY: renameat2 takes two descriptors, both borrowed (open), two NUL-terminated
    // CStr names and integer flags, the argument order of the system call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            from.as_raw_fd(),
            a.as_ptr(),
            to.as_raw_fd(),
            b.as_ptr(),
            flags,
        )
    };
    check("renameat2", rc as libc::c_int).map(drop)
}

pub fn readlink(fd: BorrowedFd<'_>) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: `fd` is borrowed (open), the path is a static empty CStr, and the kernel
    // writes at most `buf.len()` bytes to `buf`, a live Vec of that length.
    let n = check_size("readlinkat", unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    })?;
    buf.truncate(n);
    Ok(buf)
}

pub fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> Result<()> {
    // fchmodat2 (Linux 6.6) takes AT_EMPTY_PATH on O_PATH descriptors.
    // SAFETY: fchmodat2 (452 on every architecture, as all system calls from 424 on) takes
    // a borrowed (open) descriptor, a static empty CStr, and integers.
    let rc = unsafe { libc::syscall(452, fd.as_raw_fd(), c"".as_ptr(), mode, libc::AT_EMPTY_PATH) };
    match check("fchmodat2", rc as libc::c_int) {
        Err(e) if e == Errno::ENOSYS => {
            // Older kernels: chmod through the magic link, which names the inode itself.
            // Symlinks have no mode of their own to change.
            if fstat(fd)?.st_mode & libc::S_IFMT == libc::S_IFLNK {
                return Err(Errno::EOPNOTSUPP);
            }
            let p = proc_fd(fd.as_raw_fd());
            // SAFETY: `p` is a NUL-terminated CString that outlives the call.
            check("chmod", unsafe { libc::chmod(p.as_ptr(), mode) }).map(drop)
        }
        r => r.map(drop),
    }
}

pub fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> Result<()> {
    // SAFETY: `fd` is borrowed (open) and the path is a static empty CStr; the ids are
    // integers.
    check("fchownat", unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            uid,
            gid,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

pub fn utimens(fd: BorrowedFd<'_>, times: &[libc::timespec; 2]) -> Result<()> {
    // SAFETY: `fd` is borrowed (open), the path is a static empty CStr and `times` points
    // to the two timespecs the call reads.
    check("utimensat", unsafe {
        libc::utimensat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            times.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

pub fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> Result<usize> {
    retry(|| {
        // SAFETY: `fd` is borrowed (open) and the kernel writes at most `buf.len()` bytes
        // to `buf`, a live `&mut [u8]` of that length.
        check_size("pread", unsafe {
            libc::pread(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                offset as i64,
            )
        })
    })
}

pub fn pwrite(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> Result<usize> {
    retry(|| {
        // SAFETY: `fd` is borrowed (open) and the kernel reads `buf.len()` bytes from
        // `buf`, a live slice of that length.
        check_size("pwrite", unsafe {
            libc::pwrite(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                offset as i64,
            )
        })
    })
}

pub fn ftruncate(fd: BorrowedFd<'_>, size: u64) -> Result<()> {
    retry(|| {
        // SAFETY: `fd` is borrowed (open) for the call; the size is an integer.
        check("ftruncate", unsafe {
            libc::ftruncate(fd.as_raw_fd(), size as i64)
        })
        .map(drop)
    })
}

pub fn fallocate(fd: BorrowedFd<'_>, mode: i32, offset: u64, len: u64) -> Result<()> {
    retry(|| {
        // SAFETY: `fd` is borrowed (open) for the call; the rest are integers.
        check("fallocate", unsafe {
            libc::fallocate(fd.as_raw_fd(), mode, offset as i64, len as i64)
        })
        .map(drop)
    })
}

pub fn lseek(fd: BorrowedFd<'_>, offset: i64, whence: i32) -> Result<i64> {
    // SAFETY: `fd` is borrowed (open) for the call; the rest are integers.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), offset, whence) };
    if r < 0 {
        Err(trouble::last("lseek"))
    } else {
        Ok(r)
    }
}

pub fn fsync(fd: BorrowedFd<'_>, datasync: bool) -> Result<()> {
    // SAFETY: `fd` is borrowed (open) for the call; fsync and fdatasync take nothing else.
    let rc = unsafe {
        if datasync {
            libc::fdatasync(fd.as_raw_fd())
        } else {
            libc::fsync(fd.as_raw_fd())
        }
    };
    check(if datasync { "fdatasync" } else { "fsync" }, rc).map(drop)
}

pub fn copy_file_range(
    i: BorrowedFd<'_>,
    off_in: u64,
    o: BorrowedFd<'_>,
    off_out: u64,
    len: usize,
) -> Result<usize> {
    let (mut a, mut b) = (off_in as i64, off_out as i64);
    retry(|| {
        // SAFETY: `i` and `o` are borrowed (open); `a` and `b` are live i64 offsets the
        // kernel updates; no buffer of ours is read or written.
        check_size("copy_file_range", unsafe {
            libc::copy_file_range(i.as_raw_fd(), &mut a, o.as_raw_fd(), &mut b, len, 0)
        })
    })
}

pub fn statvfs(fd: BorrowedFd<'_>) -> Result<libc::statvfs> {
    // SAFETY: libc::statvfs is plain integers, for which all-zero bytes are a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is borrowed (open) and `st` is a live, writable libc::statvfs.
    check("fstatvfs", unsafe {
        libc::fstatvfs(fd.as_raw_fd(), &mut st)
    })?;
    Ok(st)
}

/// Reopens the inode behind an `O_PATH` descriptor with real access `flags`, through
/// its `/proc/self/fd` magic link (which names the inode, not a path in the tree).
pub fn reopen(fd: BorrowedFd<'_>, flags: i32) -> Result<OwnedFd> {
    let proc = proc_fd(fd.as_raw_fd());
    let rc = retry(|| {
        // SAFETY: `proc` is a NUL-terminated CString that outlives the call; O_CREAT is
        // cleared, so no mode argument is read.
        check("open", unsafe {
            libc::open(
                proc.as_ptr(),
                (flags | libc::O_CLOEXEC) & !libc::O_NOFOLLOW & !libc::O_CREAT,
            )
        })
    })?;
    // SAFETY: `rc` was just returned by a successful open: a new descriptor nothing else
    // owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc) })
}

/// The `/proc/self/fd` magic link of `fd` (it names the inode, not a path in the tree).
fn proc_fd(fd: RawFd) -> CString {
    CString::new(format!("/proc/self/fd/{fd}")).unwrap()
}
