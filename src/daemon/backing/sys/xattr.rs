//! Extended attributes of any file type, through `/proc/self/fd/N` of an `O_PATH`
//! descriptor (a magic link naming the inode itself, not a path through the backing
//! tree). Safety as in `sys.rs`.

use super::*;

pub fn getxattr(fd: BorrowedFd<'_>, name: &CStr) -> Result<Vec<u8>> {
    let p = proc_fd(fd.as_raw_fd());
    loop {
        // SAFETY: `p` and `name` are NUL-terminated CStrs; with a null buffer and size 0
        // the kernel writes nothing.
        let size = check_size("getxattr", unsafe {
            libc::getxattr(p.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0)
        })?;
        let mut buf = vec![0u8; size];
        // SAFETY: `p` and `name` are NUL-terminated CStrs, and the kernel writes at most
        // `size` bytes to `buf`, a live Vec of that length.
        match check_size("getxattr", unsafe {
            libc::getxattr(p.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), size)
        }) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(e) if e == Errno::ERANGE => continue, // grew in between
            Err(e) => return Err(e),
        }
    }
}

pub fn listxattr(fd: BorrowedFd<'_>) -> Result<Vec<u8>> {
    let p = proc_fd(fd.as_raw_fd());
    loop {
        // SAFETY: `p` is a NUL-terminated CString; with a null buffer and size 0 the kernel
        // writes nothing.
        let size = check_size("listxattr", unsafe {
            libc::listxattr(p.as_ptr(), std::ptr::null_mut(), 0)
        })?;
        let mut buf = vec![0u8; size];
        // SAFETY: `p` is a NUL-terminated CString, and the kernel writes at most `size`
        // bytes to `buf`, a live Vec of that length.
        match check_size("listxattr", unsafe {
            libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), size)
        }) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(e) if e == Errno::ERANGE => continue,
            Err(e) => return Err(e),
        }
    }
}

pub fn setxattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8], flags: i32) -> Result<()> {
    let p = proc_fd(fd.as_raw_fd());
    // SAFETY: `p` and `name` are NUL-terminated CStrs, and the kernel reads `value.len()`
    // bytes from `value`, a live slice.
    check("setxattr", unsafe {
        libc::setxattr(
            p.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
    .map(drop)
}

pub fn removexattr(fd: BorrowedFd<'_>, name: &CStr) -> Result<()> {
    let p = proc_fd(fd.as_raw_fd());
    // SAFETY: `p` and `name` are NUL-terminated CStrs that outlive the call.
    check("removexattr", unsafe {
        libc::removexattr(p.as_ptr(), name.as_ptr())
    })
    .map(drop)
}
