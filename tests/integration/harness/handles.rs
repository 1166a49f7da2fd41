//! File handles as programs use them (`name_to_handle_at`, `open_by_handle_at`), the
//! kernel dropping what it caches, and acting as another uid on one thread.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const MAX_HANDLE_SZ: usize = 128;

/// `struct file_handle` with room for any handle.
#[repr(C)]
struct RawHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE_SZ],
}

/// A file handle of an inode, as `name_to_handle_at(2)` made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHandle {
    pub kind: i32,
    pub bytes: Vec<u8>,
}

impl FileHandle {
    /// The handle of what `path` names (not following a last symlink), as the calling
    /// thread's credentials may make it.
    pub fn of(path: &Path) -> io::Result<FileHandle> {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        let mut raw = RawHandle {
            handle_bytes: MAX_HANDLE_SZ as u32,
            handle_type: 0,
            f_handle: [0; MAX_HANDLE_SZ],
        };
        let mut mount_id: libc::c_int = 0;
        // SAFETY: `c` is a NUL-terminated path; `raw` has room for MAX_HANDLE_SZ bytes,
        // as its `handle_bytes` says; `mount_id` is a valid int to write.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_name_to_handle_at,
                libc::AT_FDCWD,
                c.as_ptr(),
                &mut raw as *mut RawHandle,
                &mut mount_id as *mut libc::c_int,
                0,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(FileHandle {
            kind: raw.handle_type,
            bytes: raw.f_handle[..raw.handle_bytes as usize].to_vec(),
        })
    }

    /// Opens the inode (`open_by_handle_at(2)`, which needs `CAP_DAC_READ_SEARCH`) with
    /// `flags`, on the filesystem mounted at `mount`.
    pub fn open(&self, mount: &Path, flags: i32) -> io::Result<File> {
        let m = File::open(mount)?;
        let mut raw = RawHandle {
            handle_bytes: self.bytes.len() as u32,
            handle_type: self.kind,
            f_handle: [0; MAX_HANDLE_SZ],
        };
        raw.f_handle[..self.bytes.len()].copy_from_slice(&self.bytes);
        // SAFETY: `m` is an open descriptor; `raw` holds a handle of the length it says.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_open_by_handle_at,
                m.as_raw_fd(),
                &mut raw as *mut RawHandle,
                flags | libc::O_CLOEXEC,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor to us, and nothing else owns it.
        Ok(unsafe { File::from_raw_fd(rc as i32) })
    }
}

/// Makes the kernel drop every dentry and inode nobody uses, on every filesystem (as
/// `echo 2 > /proc/sys/vm/drop_caches`): a FUSE volume's daemon then gets FORGETs.
pub fn drop_caches() {
    std::fs::write("/proc/sys/vm/drop_caches", "2").expect("drop_caches (needs root)");
}

/// Runs `f` on a thread of its own whose filesystem uid and gid are `uid` and `gid`:
/// the kernel checks its file accesses as that user's and drops its filesystem
/// capabilities (`CAP_DAC_READ_SEARCH` among them), as for a process of that user.
pub fn as_fs_user<T: Send + 'static>(
    uid: u32,
    gid: u32,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        // SAFETY: setfsgid and setfsuid take integers and change only this thread's
        // credentials (the raw syscalls, not a process-wide libc wrapper).
        unsafe {
            libc::syscall(libc::SYS_setfsgid, gid);
            libc::syscall(libc::SYS_setfsuid, uid);
        }
        f()
    })
    .join()
    .unwrap()
}

/// Where `/proc/self/fd` says descriptor `f` leads: the path the kernel has for it.
pub fn path_of(f: &File) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap()
}
