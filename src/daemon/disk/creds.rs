//! Acting with a caller's identity, for one thread, while creating a file.
//!
//! New files must belong to the caller from their first moment, so the creating thread
//! switches its filesystem uid and gid (`setfsuid`/`setfsgid` are per thread in the
//! kernel; the raw syscalls are used so glibc does not broadcast them). Switching away
//! from fsuid 0 drops the filesystem capabilities from the effective set; they are raised
//! again from the permitted set, because the kernel has already checked the caller's
//! permissions against the attributes we report (`default_permissions`), and the daemon
//! must still reach directories the caller may only enter through supplementary groups.
//! Dropping the guard returns the thread to fsuid 0, which restores the capabilities.
//!
//! Modes arrive with the caller's umask already applied by the kernel, so the creating
//! thread's own must not apply again: the guard also sets the thread's umask to 0, on a
//! filesystem state of the thread's own ([`crate::common::umask`]), so that no other
//! thread's umask is ever seen and nothing changes the process-wide one.

use crate::common::umask;
use crate::daemon::fs::{Caller, Errno, Result};
use std::marker::PhantomData;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

fn raise_effective_to_permitted() -> Result<()> {
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget reads `hdr`, a live CapHeader laid out as the kernel's header (version
    // 3, pid 0: this thread), and writes the two CapData structs that version 3 uses, which
    // `data` holds.
    if unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) } < 0 {
        return Err(Errno::last());
    }
    for d in &mut data {
        d.effective = d.permitted;
    }
    // SAFETY: capset reads `hdr` and the two CapData of version 3 from `data`, both live
    // and laid out as the kernel's structs.
    if unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// While alive, files this thread creates belong to the caller.
///
/// Neither `Send` nor `Sync` (the raw-pointer marker): the ids it switched are this
/// thread's, so it must be dropped, and the ids restored, on the thread that made it.
pub struct AsCaller(PhantomData<*const ()>);

// The compiler's check that `AsCaller` stays `!Send` (static_assertions'
// `assert_not_impl_any`): with it `Send`, both impls below apply and `_` is ambiguous.
trait AmbiguousIfSend<A> {
    fn check() {}
}
impl<T: ?Sized> AmbiguousIfSend<()> for T {}
impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}
const _: fn() = || <AsCaller as AmbiguousIfSend<_>>::check();

impl AsCaller {
    pub fn new(who: &Caller) -> Result<AsCaller> {
        umask::own_umask(0).map_err(|e| {
            log::error!("giving a request thread its own umask: {e}");
            Errno::from(e)
        })?;
        // SAFETY: setfsgid and setfsuid take an integer id and touch nothing but this
        // thread's credentials.
        unsafe {
            libc::syscall(libc::SYS_setfsgid, who.gid);
            libc::syscall(libc::SYS_setfsuid, who.uid);
        }
        let guard = AsCaller(PhantomData);
        // They return the previous id whatever happens: ask again (-1 changes nothing)
        // to make sure the switch took, or the file would be created as root.
        // SAFETY: setfsuid and setfsgid take an integer id and touch nothing but this
        // thread's credentials; -1 (u32::MAX) changes nothing and returns the current id.
        let (uid, gid) = unsafe {
            (
                libc::syscall(libc::SYS_setfsuid, u32::MAX),
                libc::syscall(libc::SYS_setfsgid, u32::MAX),
            )
        };
        if (uid as u32, gid as u32) != (who.uid, who.gid) {
            return Err(Errno::EPERM);
        }
        if who.uid != 0 {
            raise_effective_to_permitted()?;
        }
        Ok(guard)
    }
}

impl Drop for AsCaller {
    fn drop(&mut self) {
        // SAFETY: setfsuid and setfsgid take an integer id and touch nothing but this
        // thread's credentials (the guard is !Send: this is the thread that switched them).
        unsafe {
            libc::syscall(libc::SYS_setfsuid, 0);
            libc::syscall(libc::SYS_setfsgid, 0);
        }
    }
}
