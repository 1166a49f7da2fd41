//! The options of the volume's own mount (the one `serve` made, at its mount point) that
//! decide access times: `relatime` (a new mount's default), `strictatime`, `noatime`,
//! `nodiratime`, read-only. A remount changes them (`mount -o remount,bind,noatime MNT`);
//! the kernel tells a FUSE daemon nothing of it, so the daemon reads them itself with
//! `statmount(2)` (Linux 6.8) of its mount's id, at most every [`FRESH_MS`] ms: a remount
//! takes effect for reads that reach the daemon, or for files opened, that long after.
//!
//! Only that mount's: another mount of the volume (a bind mount into a container, with
//! options of its own) cannot be told apart, since a request does not say which mount it
//! came through.

use super::atime::{Options, Rule};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// How long options read are trusted, in milliseconds.
pub const FRESH_MS: u64 = 100;

/// `statmount(2)`, the same number on every architecture (not in the libc crate yet).
const SYS_STATMOUNT: libc::c_long = 457;
const STATMOUNT_SB_BASIC: u64 = 0x1;
const STATMOUNT_MNT_BASIC: u64 = 0x2;
/// `MNT_ID_REQ_SIZE_VER0`.
const MNT_ID_REQ_SIZE: u32 = 24;
const FUSE_SUPER_MAGIC: u64 = 0x6573_5546;
const SB_RDONLY: u32 = 1;
/// `MOUNT_ATTR_*` (`linux/mount.h`).
const ATTR_RDONLY: u64 = 0x1;
const ATTR_ATIME_MASK: u64 = 0x70;
const ATTR_NOATIME: u64 = 0x10;
const ATTR_STRICTATIME: u64 = 0x20;
const ATTR_NODIRATIME: u64 = 0x80;

#[repr(C)]
struct MntIdReq {
    size: u32,
    spare: u32,
    mnt_id: u64,
    param: u64,
}

/// What `statmount` says of a mount: its `MOUNT_ATTR_*` and its superblock's flags and
/// magic number.
struct Mount {
    attr: u64,
    sb_flags: u32,
    magic: u64,
}

fn statmount(id: u64) -> std::io::Result<Mount> {
    let req = MntIdReq {
        size: MNT_ID_REQ_SIZE,
        spare: 0,
        mnt_id: id,
        param: STATMOUNT_SB_BASIC | STATMOUNT_MNT_BASIC,
    };
    // `struct statmount` and room for strings (none asked for), 8-byte aligned.
    let mut buf = [0u64; 512];
    // SAFETY: `req` is a valid request of the size it says; `buf` is writable for the
    // length given; the kernel writes no more than that.
    let rc = unsafe {
        libc::syscall(
            SYS_STATMOUNT,
            &req as *const MntIdReq,
            buf.as_mut_ptr(),
            std::mem::size_of_val(&buf),
            0,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Offsets of `struct statmount`: mask 8, sb_magic 24, sb_flags 32, mnt_attr 64.
    let mask = buf[1];
    if mask & (STATMOUNT_SB_BASIC | STATMOUNT_MNT_BASIC) != STATMOUNT_SB_BASIC | STATMOUNT_MNT_BASIC
    {
        return Err(std::io::Error::other("statmount gave no mount attributes"));
    }
    Ok(Mount {
        attr: buf[8],
        sb_flags: buf[4] as u32,
        magic: buf[3],
    })
}

/// The access-time options of a mount with these `MOUNT_ATTR_*` and superblock flags.
fn options_of(m: &Mount) -> Options {
    if m.attr & ATTR_RDONLY != 0 || m.sb_flags & SB_RDONLY != 0 {
        return Options::NEVER;
    }
    let files = match m.attr & ATTR_ATIME_MASK {
        ATTR_NOATIME => Rule::Never,
        ATTR_STRICTATIME => Rule::Always,
        _ => Rule::Relative,
    };
    let dirs = if m.attr & ATTR_NODIRATIME != 0 {
        Rule::Never
    } else {
        files
    };
    Options { files, dirs }
}

/// The unique id (`STATX_MNT_ID_UNIQUE`) of the mount at `path`, found without sending
/// the volume a request (`AT_STATX_DONT_SYNC`: its daemon may be this thread's).
fn mount_id(path: &Path) -> std::io::Result<u64> {
    let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
        .map_err(std::io::Error::other)?;
    // SAFETY: an all-zero `statx` is a valid value of the plain C struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `stx` writable; both outlive the call.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_STATX_DONT_SYNC | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_MNT_ID_UNIQUE,
            &mut stx,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if stx.stx_mask & libc::STATX_MNT_ID_UNIQUE == 0 {
        return Err(std::io::Error::other("the kernel gives no unique mount id"));
    }
    Ok(stx.stx_mnt_id)
}

/// The volume's mount, and its options as last read.
pub struct VolumeMount {
    /// Its unique mount id; 0 until known.
    id: AtomicU64,
    /// When the options were last read (ms since `epoch`, shifted left 8) and their
    /// [`Options::bits`].
    seen: AtomicU64,
    epoch: Instant,
}

impl Default for VolumeMount {
    fn default() -> Self {
        VolumeMount {
            id: AtomicU64::new(0),
            seen: AtomicU64::new(u64::from(Options::DEFAULT.bits())),
            epoch: Instant::now(),
        }
    }
}

impl VolumeMount {
    /// From now on, follows the options of the FUSE mount at `mountpoint` (the volume,
    /// mounted or taken over by this daemon). Until then, and if this fails, the options
    /// are [`Options::DEFAULT`].
    pub fn watch(&self, mountpoint: &Path) -> Result<(), String> {
        let id = mount_id(mountpoint).map_err(|e| format!("the mount's id: {e}"))?;
        let m = statmount(id).map_err(|e| format!("statmount: {e}"))?;
        if m.magic != FUSE_SUPER_MAGIC {
            return Err(format!("the mount at {} is not FUSE", mountpoint.display()));
        }
        self.id.store(id, Relaxed);
        self.remember(options_of(&m));
        Ok(())
    }

    fn remember(&self, o: Options) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.seen.store(now << 8 | u64::from(o.bits()), Relaxed);
    }

    /// The mount's options now (read again when older than [`FRESH_MS`]).
    pub fn options(&self) -> Options {
        let seen = self.seen.load(Relaxed);
        let last = Options::from_bits(seen as u8);
        let id = self.id.load(Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64;
        if id == 0 || now.saturating_sub(seen >> 8) < FRESH_MS {
            return last;
        }
        match statmount(id) {
            Ok(m) => {
                let o = options_of(&m);
                self.remember(o);
                o
            }
            Err(e) => {
                // The mount is going away (unmounted, lazily): keep what it had.
                log::debug!("reading the volume's mount options: {e}");
                self.remember(last);
                last
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_of_mount_attributes() {
        let o = |attr, sb_flags| {
            options_of(&Mount {
                attr,
                sb_flags,
                magic: FUSE_SUPER_MAGIC,
            })
        };
        assert_eq!(o(0, 0), Options::DEFAULT);
        assert_eq!(o(ATTR_NOATIME, 0), Options::NEVER);
        let strict = o(ATTR_STRICTATIME | ATTR_NODIRATIME, 0);
        assert_eq!((strict.files, strict.dirs), (Rule::Always, Rule::Never));
        assert_eq!(o(ATTR_RDONLY | ATTR_STRICTATIME, 0), Options::NEVER);
        assert_eq!(o(ATTR_STRICTATIME, SB_RDONLY), Options::NEVER);
    }

    #[test]
    fn only_a_fuse_mount_is_followed() {
        // The root of this process's mount namespace is no volume.
        let v = VolumeMount::default();
        assert!(v.watch(Path::new("/")).is_err());
        assert_eq!(v.options(), Options::DEFAULT);
    }
}
