//! A disk volume's usage across hand-offs: its directories' blocks are counted apart from
//! its data (state format 3), so data keeps the whole limit after a hand-off, and a
//! volume taken over from an older build (whose state counted them as data) finds them
//! by a walk.

use super::*;
use crate::harness::*;
use crate::kubelet::*;

/// Writes `path` until ENOSPC; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = open_rw(path);
    let mut written = 0;
    loop {
        match f.write(&[0x5A; 65536]) {
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                return written;
            }
        }
    }
}

/// `df`'s Used of the volume and `du` of its backing directory, in bytes.
fn used_and_du(k: &KubeletRoot, v: &Path) -> (u64, u64) {
    let st = statvfs(v);
    let used = (st.f_blocks - st.f_bfree) * st.f_frsize;
    (used, du_bytes(&k.meta_dir("v").join("data")))
}

#[test]
fn a_disk_volume_from_a_state_before_format_3_counts_its_directories_apart() {
    const LIMIT: u64 = 4 << 20;
    let k = KubeletRoot::new();
    let out = std::process::Command::new(BIN)
        .args(["setup", "--pod-uid", POD, "--volume", "v", "--medium", ""])
        .args(["--size-limit", "4Mi", "--kubelet-root"])
        .arg(k.path())
        .env("EMPTYDIRFS_TEST_FAULT", "state-format-1")
        .output()
        .unwrap();
    assert_success(&out, "setup");
    let v = k.volume_dir("v");
    for d in 0..30 {
        std::fs::create_dir(v.join(format!("d{d}"))).unwrap();
    }
    std::fs::write(v.join("d0/f"), vec![1u8; 1 << 20]).unwrap();
    let (used, du) = used_and_du(&k, &v);
    assert_eq!(used, du, "df Used is du of the backing directory");
    let directories = du - (1 << 20);
    assert!(
        directories >= 31 * 4096,
        "31 directories hold {directories}"
    );

    upgrade(&k, "v"); // from a format 1 state: the successor walks
    assert_eq!(
        used_and_du(&k, &v),
        (du, du),
        "the same usage after the hand-off"
    );
    assert_eq!(
        fill(&v.join("d1/fill")),
        LIMIT - (1 << 20),
        "data has the whole limit: directories are not data"
    );
    assert_eq!(
        used_and_du(&k, &v),
        (LIMIT, LIMIT + directories),
        "df: full; du: the limit and the directories"
    );

    upgrade(&k, "v"); // format 3 both ways
    assert_eq!(used_and_du(&k, &v), (LIMIT, LIMIT + directories));
    assert_eq!(errno(std::fs::write(v.join("d2/byte"), b"x")), libc::ENOSPC);
    std::fs::remove_file(v.join("d1/fill")).unwrap();
    assert_eq!(fill(&v.join("d1/fill")), LIMIT - (1 << 20));
    assert_success(&k.teardown("v"), "teardown");
}
