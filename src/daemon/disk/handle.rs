//! Kernel file handles: how the disk backend names an inode without holding it open.
//!
//! `name_to_handle_at` turns an open descriptor into a few bytes that stay valid for the
//! inode's life; `open_by_handle_at` (CAP_DAC_READ_SEARCH) turns them back into an
//! `O_PATH` descriptor. So the daemon needs no descriptor per inode the kernel knows,
//! which keeps a volume of 100,000 files far below RLIMIT_NOFILE.

use super::{sys, trouble};
use crate::daemon::fs::{Errno, Result};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

const MAX_HANDLE_SZ: usize = 128;

#[repr(C)]
struct RawHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE_SZ],
}

/// An inode's file handle.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Handle {
    kind: i32,
    bytes: Box<[u8]>,
}

impl Handle {
    /// The generation the volume gives the inode behind this handle (not the root's:
    /// that is 0): the 32-bit FNV-1a digest of the handle's type and bytes. The
    /// backing filesystem's handle holds the inode's number and its own generation, so a
    /// number reused by a new inode comes with another handle, and another generation
    /// but with a chance of 2^-32 (as likely as two of ext4's own random generations
    /// meeting). The same inode always gets the same one: across hand-offs, restarts and
    /// the kernel forgetting it (so never change this function).
    pub fn generation(&self) -> u32 {
        let bytes = self
            .kind
            .to_le_bytes()
            .into_iter()
            .chain(self.bytes.iter().copied());
        bytes.fold(0x811c_9dc5, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        })
    }

    pub fn write_state(&self, w: &mut crate::daemon::state::Writer) {
        w.i32(self.kind);
        w.bytes(&self.bytes);
    }

    pub fn read_state(
        r: &mut crate::daemon::state::Reader<'_>,
    ) -> std::result::Result<Handle, crate::daemon::state::Refused> {
        let kind = r.i32()?;
        let bytes = r.bytes()?;
        if bytes.len() > MAX_HANDLE_SZ {
            return Err(format!("a file handle of {} bytes", bytes.len()));
        }
        Ok(Handle {
            kind,
            bytes: bytes.into(),
        })
    }

    /// The handle of the inode behind `fd` (an `O_PATH` descriptor will do).
    pub fn of(fd: BorrowedFd<'_>) -> Result<Handle> {
        let mut raw = RawHandle {
            handle_bytes: MAX_HANDLE_SZ as u32,
            handle_type: 0,
            f_handle: [0; MAX_HANDLE_SZ],
        };
        let mut mount_id: libc::c_int = 0;
        // SAFETY: `fd` is borrowed (open), the path is a static empty CStr, `raw` is a
        // live, writable RawHandle laid out as the kernel's `struct file_handle` with
        // `handle_bytes` (128) bytes after its header, which is all the kernel may write,
        // and `mount_id` is a live c_int.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_name_to_handle_at,
                fd.as_raw_fd(),
                c"".as_ptr(),
                &mut raw as *mut RawHandle,
                &mut mount_id,
                libc::AT_EMPTY_PATH,
            )
        };
        if rc < 0 {
            return Err(trouble::last("name_to_handle_at"));
        }
        // The kernel fills at most the MAX_HANDLE_SZ bytes it was offered.
        let bytes = raw.f_handle.get(..raw.handle_bytes as usize);
        Ok(Handle {
            kind: raw.handle_type,
            bytes: bytes.ok_or(Errno::EOVERFLOW)?.into(),
        })
    }

    /// Opens the inode with `flags` (`O_PATH` for a descriptor that only names it);
    /// `mount` is any descriptor on the same filesystem, not `O_PATH`. ESTALE when the
    /// inode is gone.
    pub fn open(&self, mount: BorrowedFd<'_>, flags: i32) -> Result<OwnedFd> {
        let mut raw = RawHandle {
            handle_bytes: self.bytes.len() as u32,
            handle_type: self.kind,
            f_handle: [0; MAX_HANDLE_SZ],
        };
        // A handle is never longer than MAX_HANDLE_SZ (`of`, `read_state` check it).
        let room = raw
            .f_handle
            .get_mut(..self.bytes.len())
            .ok_or(Errno::ESTALE)?;
        room.copy_from_slice(&self.bytes);
        // SAFETY: `mount` is borrowed (open) and `raw` is a live RawHandle whose
        // `handle_bytes` (at most 128) bytes follow its header, as the kernel reads them.
        let rc = retry_eintr(|| unsafe {
            libc::syscall(
                libc::SYS_open_by_handle_at,
                mount.as_raw_fd(),
                &mut raw as *mut RawHandle,
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        });
        if rc < 0 {
            return Err(trouble::last("open_by_handle_at"));
        }
        // SAFETY: `rc` was just returned by a successful open_by_handle_at: a new
        // descriptor nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
    }
}

/// Checks that the filesystem under `fd` gives file handles that open again.
pub fn supported(fd: BorrowedFd<'_>) -> Result<()> {
    let h = Handle::of(fd)?;
    let reopened = h.open(fd, libc::O_PATH)?;
    let (a, b) = (
        sys::fstat(fd)?,
        sys::fstat(std::os::fd::AsFd::as_fd(&reopened))?,
    );
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
        return Err(Errno::EOPNOTSUPP);
    }
    Ok(())
}

fn retry_eintr(mut f: impl FnMut() -> libc::c_long) -> libc::c_long {
    loop {
        let rc = f();
        if rc >= 0 || Errno::last().0 != libc::EINTR {
            return rc;
        }
    }
}
