//! A memfd of the process's own, mapped shared: memory that whoever holds the memfd sees
//! as written (another process reading it through `/proc/<pid>/fd`, a successor after a
//! crash), every store visible at once, none lost with the writer.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

/// A mapping of a whole memfd, unmapped on drop.
pub struct SharedMap {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by the SharedMap (unmapped in drop); what its users store
// in it and how they synchronise is theirs to say (atomics, or `&mut`).
unsafe impl Send for SharedMap {}
// SAFETY: as above: the SharedMap itself only hands out the address.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// A new memfd named `name` (as `/proc/<pid>/fd` shows it) of `len` zero bytes.
    pub fn create(name: &CStr, len: usize) -> io::Result<SharedMap> {
        // SAFETY: memfd_create reads the NUL-terminated name and takes integer flags.
        let raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: memfd_create returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: `fd` is an open memfd we own; a size is an integer.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        SharedMap::map(fd)
    }

    /// The whole of the memfd `fd` (one another process wrote), mapped.
    pub fn map(fd: OwnedFd) -> io::Result<SharedMap> {
        let len = std::fs::File::from(fd.try_clone()?).metadata()?.len() as usize;
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "an empty memfd"));
        }
        // SAFETY: mapping `len` bytes of a memfd of exactly that size, shared; the result
        // is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
        Ok(SharedMap { fd, ptr, len })
    }

    /// The first byte: page-aligned, `len()` bytes valid for as long as `self` lives.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Bytes mapped (never 0: an empty memfd is refused).
    pub fn bytes(&self) -> usize {
        self.len
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped; nothing borrows it past `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
