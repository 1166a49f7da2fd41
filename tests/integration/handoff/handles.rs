//! What the kernel holds by node id and generation across a hand-off: file handles made
//! before it (of inodes the kernel forgot before it, kept in the disk daemon's state, and
//! of inodes it still caches), and the attributes a successor drops when a write clears
//! setid bits.

use super::*;
use crate::harness::*;
use crate::kubelet::*;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;

fn read_handle(h: &FileHandle, mount: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = h.open(mount, libc::O_RDONLY)?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

/// Handles made before two hand-offs open after them, whether the kernel forgot their
/// inodes before the hand-off, kept one cached across it (a file held open), or forgets
/// them after it; a directory's handle climbs to its path; a file deleted after the
/// hand-off gets ESTALE.
fn file_handles_survive_handoffs(m: Medium) {
    let k = KubeletRoot::new();
    let v = k.setup(
        "scratch",
        &["--medium", k8s_medium(m), "--size-limit", "64Mi"],
    );
    fs::create_dir_all(v.join("d/e")).unwrap();
    for name in ["forgotten", "held", "deleted"] {
        fs::write(v.join("d").join(name), name).unwrap();
    }
    let handle = |rel: &str| FileHandle::of(&v.join(rel)).unwrap();
    let (forgotten, held, deleted, dir) = (
        handle("d/forgotten"),
        handle("d/held"),
        handle("d/deleted"),
        handle("d/e"),
    );
    let e_ino = fs::metadata(v.join("d/e")).unwrap().ino();
    let holder = fs::File::open(v.join("d/held")).unwrap();
    // The kernel forgets every inode but the held file's: a disk daemon hands on what
    // it remembers of them.
    drop_caches();

    upgrade(&k, "scratch");
    fs::remove_file(v.join("d/deleted")).unwrap();
    for round in [
        "after the hand-off",
        "forgotten after it",
        "after a second one",
    ] {
        match round {
            "forgotten after it" => drop_caches(),
            "after a second one" => {
                upgrade(&k, "scratch");
            }
            _ => {}
        }
        assert_eq!(
            read_handle(&forgotten, &v).unwrap(),
            b"forgotten",
            "{round}"
        );
        assert_eq!(read_handle(&held, &v).unwrap(), b"held", "{round}");
        assert_eq!(errno(read_handle(&deleted, &v)), libc::ESTALE, "{round}");
        let d = dir
            .open(&v, libc::O_RDONLY | libc::O_DIRECTORY)
            .unwrap_or_else(|e| panic!("{round}: the directory's handle: {e}"));
        assert_eq!(d.metadata().unwrap().ino(), e_ino, "{round}");
        assert_eq!(path_of(&d), v.join("d/e"), "{round}");
    }
    drop(holder);
    assert_success(&k.teardown("scratch"), "teardown");
}

/// A successor tells the kernel too that a write cleared setid bits: another user
/// appends to a setuid file right after a hand-off, and `stat` shows the bit gone at once.
fn a_successor_drops_the_cached_mode_after_a_write(m: Medium) {
    let k = KubeletRoot::new();
    let v = k.setup(
        "scratch",
        &["--medium", k8s_medium(m), "--size-limit", "64Mi"],
    );
    let view = View::of(&v);
    let f = view.path.join("setid");
    fs::write(&f, b"data\n").unwrap();
    std::os::unix::fs::chown(&f, Some(1000), Some(1000)).unwrap();
    fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o6644)).unwrap();
    upgrade(&k, "scratch");
    let out = sh_as(
        1000,
        1000,
        &format!("echo more >> {0} && stat -c %A {0}", f.display()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "-rw-r-Sr--");
    drop(view);
    assert_success(&k.teardown("scratch"), "teardown");
}

on_every_medium!(
    file_handles_survive_handoffs,
    a_successor_drops_the_cached_mode_after_a_write,
);
