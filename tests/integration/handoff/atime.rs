//! Access times across a hand-off: the options of the volume's mount still decide,
//! before a remount and after one (the disk medium's private backing mount goes to the
//! successor, whose first requests give it the options in force).

use super::*;
use crate::posix::atime::*;
use crate::posix::sleep_tick;

fn the_volume_mount_options_decide_across_a_handoff(m: Medium) {
    let k = KubeletRoot::new();
    let v = k.setup(
        "scratch",
        &["--medium", k8s_medium(m), "--size-limit", "64Mi"],
    );
    let f = v.join("f");
    std::fs::write(&f, b"data").unwrap();
    remount(&v, "noatime");
    eventually("reads under noatime to leave the atime", SOON, || {
        set_atime(&f, Y2020);
        read_all(&f);
        atime(&f).0 == Y2020
    });
    upgrade(&k, "scratch");
    read_all(&f);
    assert_eq!(atime(&f).0, Y2020, "still noatime after the hand-off");
    remount(&v, "strictatime");
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
    upgrade(&k, "scratch");
    let first = atime(&f);
    sleep_tick();
    read_all(&f);
    assert!(
        atime(&f) > first,
        "still strictatime after a second hand-off"
    );
}

on_every_medium!(the_volume_mount_options_decide_across_a_handoff);
