//! How open files of a disk volume are served (passthrough, direct: `fuse/iomode.rs`)
//! across a hand-off: the kernel's backing ids and each file's mode pass to the
//! successor, or the next open of a file read by passthrough would fail with EIO.

use super::*;
use crate::harness::*;
use crate::kubelet::*;
use std::fs::File;
use std::os::unix::fs::FileExt;

fn rw(p: &Path) -> File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap()
}

#[test]
fn passthrough_and_direct_files_are_handed_on() {
    let k = KubeletRoot::new();
    let v = k.setup("scratch", &["--medium", "", "--size-limit", "16Mi"]);
    let (f, g) = (v.join("f"), v.join("g"));
    std::fs::write(&f, vec![1u8; 1 << 20]).unwrap();
    std::fs::write(&g, vec![2u8; 8192]).unwrap();
    // f: read by passthrough and written beside it; g: written, mapped shared.
    let reader = File::open(&f).unwrap();
    let writer = rw(&f);
    let mapped = rw(&g);
    let mut map = Mapping::of(&mapped, 8192, true);
    upgrade(&k, "scratch");
    // A new reader of f shares the handed-on backing id (another would be EIO).
    let second = File::open(&f).unwrap_or_else(|e| panic!("a new reader of f: {e}"));
    writer.write_all_at(b"after", 0).unwrap();
    for r in [&reader, &second] {
        let mut b = [0u8; 5];
        r.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(&b, b"after", "readers see the write");
    }
    assert_eq!(
        cached_pages(&second),
        0,
        "read by passthrough, not cached by FUSE"
    );
    // f is still kept without holes: growing it past the limit is ENOSPC.
    assert_eq!(errno(writer.set_len(64 << 20)), libc::ENOSPC);
    // g's mapping still writes the file.
    map.bytes_mut()[..3].copy_from_slice(b"map");
    map.sync();
    let mut b = [0u8; 3];
    File::open(&g).unwrap().read_exact_at(&mut b, 0).unwrap();
    assert_eq!(&b, b"map");
    drop((map, reader, second, writer, mapped));
    // Once all are closed, f opens in every mode again, on a fresh id.
    let again = File::open(&f).unwrap();
    let w = rw(&f);
    w.write_all_at(b"again", 0).unwrap();
    let mut b = [0u8; 5];
    again.read_exact_at(&mut b, 0).unwrap();
    assert_eq!(&b, b"again");
    drop((again, w));
    assert_success(&k.teardown("scratch"), "teardown");
}

/// A volume taken over from a build that wrote state format 1 (it cached every open)
/// caches every open from then on, across later hand-offs too: its files may still be
/// open in cached mode, beside which the kernel refuses passthrough.
#[test]
fn a_volume_from_a_format_1_daemon_caches_every_open() {
    let k = KubeletRoot::new();
    let out = std::process::Command::new(BIN)
        .args(["setup", "--pod-uid", POD, "--volume", "v", "--medium", ""])
        .arg("--kubelet-root")
        .arg(k.path())
        .env("EMPTYDIRFS_TEST_FAULT", "state-format-1")
        .bounded_output();
    assert_success(&out, "setup");
    let v = k.volume_dir("v");
    let f = v.join("f");
    std::fs::write(&f, vec![3u8; 1 << 20]).unwrap();
    let held = File::open(&f).unwrap();
    upgrade(&k, "v");
    upgrade(&k, "v");
    let reader = File::open(&f).unwrap();
    let mut b = vec![0u8; 1 << 20];
    reader.read_exact_at(&mut b, 0).unwrap();
    assert!(b.iter().all(|&x| x == 3));
    assert!(
        cached_pages(&reader) > 0,
        "cached by FUSE, as before format 2"
    );
    let w = rw(&f);
    w.write_all_at(b"x", 0).unwrap();
    let mut one = [0u8; 1];
    held.read_exact_at(&mut one, 0).unwrap();
    assert_eq!(&one, b"x");
    drop((held, reader, w));
    assert_success(&k.teardown("v"), "teardown");
}
