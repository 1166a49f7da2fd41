//! Access times: reads (`read`, `O_DIRECT`, `mmap`) and listings update them as tmpfs
//! does under the options of the volume's mount (`relatime` by default, `strictatime`,
//! `noatime`, `nodiratime`, read-only, changed by a remount), and `O_NOATIME` opens leave
//! them alone. Each expectation was checked on a tmpfs first.

use super::*;
use crate::harness::*;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::process::Command;

/// 2020-01-01T00:00:00Z.
pub const Y2020: i64 = 1_577_836_800;

pub fn atime(p: &Path) -> (i64, i64) {
    let m = meta(p);
    (m.atime(), m.atime_nsec())
}

/// Sets the atime of `p` to `secs` (the mtime stays; the ctime becomes now).
pub fn set_atime(p: &Path, secs: i64) {
    let times = [
        libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
    ];
    let c = cpath(p);
    // SAFETY: `c` is NUL-terminated and `times` two timespecs, as utimensat reads them.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) };
    assert_eq!(rc, 0, "utimensat: {}", std::io::Error::last_os_error());
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Whether `p`'s atime is now (to the second, give or take a slow machine).
pub fn is_now(p: &Path) -> bool {
    (atime(p).0 - now()).abs() <= 5
}

pub fn read_all(p: &Path) {
    let mut data = Vec::new();
    File::open(p).unwrap().read_to_end(&mut data).unwrap();
}

fn list(dir: &Path) {
    fs::read_dir(dir).unwrap().for_each(drop);
}

/// `mount -o remount,bind,OPTIONS` of the volume mounted at `mnt` (its per-mount
/// options).
pub fn remount(mnt: &Path, options: &str) {
    run(Command::new("mount")
        .args(["-o", &format!("remount,bind,{options}")])
        .arg(mnt));
}

/// The hand repro, and `relatime`'s rule: a read updates the atime when it is not after
/// the last change (of the data or of the inode), not again until the next change.
fn reads_update_atime_as_relatime(m: Medium) {
    let v = Volume::start(m, &[]);
    let f = v.path("f");
    write_file(&f, b"hello\n");
    set_atime(&f, Y2020);
    read_all(&f);
    assert!(
        is_now(&f),
        "the first read updates the atime: {:?}",
        atime(&f)
    );
    let read = atime(&f);
    sleep_tick();
    read_all(&f);
    assert_eq!(atime(&f), read, "read since the last change: unchanged");
    // The kernel holds the file's pages now; a read must still update an older atime.
    set_atime(&f, Y2020);
    read_all(&f);
    assert!(is_now(&f), "an atime set back is updated by the next read");
    let read = atime(&f);
    sleep_tick();
    fs::OpenOptions::new()
        .append(true)
        .open(&f)
        .and_then(|mut w| std::io::Write::write_all(&mut w, b"more\n"))
        .unwrap();
    read_all(&f);
    assert!(atime(&f) > read, "a read after a write updates it");
    let read = atime(&f);
    sleep_tick();
    fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    read_all(&f);
    assert!(atime(&f) > read, "a read after a chmod updates it");
    // An atime after every change and less than a day old stays.
    set_atime(&f, now() + 3600);
    let future = atime(&f);
    read_all(&f);
    assert_eq!(atime(&f), future, "an atime after the last change stays");
}

/// Reads that bypass the page cache (`O_DIRECT`) and reads through a mapping update the
/// atime too.
fn direct_and_mapped_reads_update_atime(m: Medium) {
    let v = Volume::start(m, &[]);
    let f = v.path("f");
    write_file(&f, &[7u8; 8192]);
    read_all(&f);
    set_atime(&f, Y2020);
    let direct = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&f)
        .unwrap();
    let layout = std::alloc::Layout::from_size_align(4096, 4096).unwrap();
    // SAFETY: the layout has a non-zero size; the buffer is freed below.
    let buf = unsafe { std::alloc::alloc(layout) };
    assert!(!buf.is_null());
    // SAFETY: `buf` is 4096 writable bytes, aligned for O_DIRECT.
    let n = unsafe {
        libc::pread(
            std::os::fd::AsRawFd::as_raw_fd(&direct),
            buf.cast(),
            4096,
            0,
        )
    };
    // SAFETY: allocated above with this layout, and not used after.
    unsafe { std::alloc::dealloc(buf, layout) };
    assert_eq!(
        n,
        4096,
        "O_DIRECT read: {}",
        std::io::Error::last_os_error()
    );
    assert!(
        is_now(&f),
        "an O_DIRECT read updates the atime: {:?}",
        atime(&f)
    );
    drop(direct);

    set_atime(&f, Y2020);
    let file = File::open(&f).unwrap();
    let map = Mapping::of(&file, 8192, false);
    assert_eq!(map.bytes()[4096], 7);
    assert!(is_now(&f), "a read through a mapping updates the atime");
}

/// Listing a directory updates its atime as reading a file does; opening it does not.
fn listing_updates_a_directory_atime(m: Medium) {
    let v = Volume::start(m, &[]);
    let d = v.path("d");
    fs::create_dir(&d).unwrap();
    write_file(&d.join("x"), b"");
    set_atime(&d, Y2020);
    drop(File::open(&d).unwrap());
    assert_eq!(atime(&d).0, Y2020, "an open alone leaves it");
    list(&d);
    assert!(is_now(&d), "a listing updates it: {:?}", atime(&d));
    let listed = atime(&d);
    sleep_tick();
    list(&d);
    assert_eq!(atime(&d), listed, "listed since the last change: unchanged");
}

/// A file opened `O_NOATIME` (by its owner) reads without updating the atime.
fn o_noatime_reads_leave_it(m: Medium) {
    let v = Volume::start(m, &[]);
    let f = v.path("f");
    write_file(&f, b"data");
    set_atime(&f, Y2020);
    let mut r = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(&f)
        .unwrap();
    r.read_to_end(&mut Vec::new()).unwrap();
    assert_eq!(atime(&f).0, Y2020);
    read_all(&f);
    assert!(is_now(&f), "a plain read still updates it");
}

/// The options of the volume's own mount decide, as a remount changes them: `noatime`,
/// `strictatime`, `nodiratime`, read-only. The daemon reads them anew at most every
/// 100 ms, so each is waited for.
fn the_volume_mount_options_decide(m: Medium) {
    let v = Volume::start(m, &[]);
    let (f, d) = (v.path("f"), v.path("d"));
    write_file(&f, b"data");
    fs::create_dir(&d).unwrap();

    remount(&v.mnt, "noatime");
    eventually("reads under noatime to leave the atime", SOON, || {
        set_atime(&f, Y2020);
        read_all(&f);
        atime(&f).0 == Y2020
    });
    set_atime(&d, Y2020);
    list(&d);
    assert_eq!(atime(&d).0, Y2020, "noatime: listings leave it too");

    remount(&v.mnt, "strictatime");
    eventually(
        "every read to update the atime under strictatime",
        SOON,
        || {
            read_all(&f);
            let first = atime(&f);
            sleep_tick();
            read_all(&f);
            atime(&f) > first
        },
    );

    // Each wait below ends on what only the new options do.
    remount(&v.mnt, "ro,strictatime");
    // An atime of 2020 that a read leaves: strictatime would move it to now (a read
    // leaving an atime that is already now would not tell the two apart).
    eventually(
        "reads on a read-only mount to leave the atime",
        SOON,
        || {
            remount(&v.mnt, "rw,strictatime");
            set_atime(&f, Y2020);
            remount(&v.mnt, "ro,strictatime");
            read_all(&f);
            atime(&f).0 == Y2020
        },
    );

    remount(&v.mnt, "rw,relatime,nodiratime");
    eventually("a read to update the atime again", SOON, || {
        set_atime(&f, Y2020);
        read_all(&f);
        is_now(&f)
    });
    set_atime(&d, Y2020);
    list(&d);
    assert_eq!(atime(&d).0, Y2020, "nodiratime: listings leave it");
    remount(&v.mnt, "relatime");
}

on_every_medium!(
    reads_update_atime_as_relatime,
    direct_and_mapped_reads_update_atime,
    listing_updates_a_directory_atime,
    o_noatime_reads_leave_it,
    the_volume_mount_options_decide,
);
