//! Publish, use, stats and unpublish of a volume, on every medium.

use super::fixture::*;
use crate::harness::*;
use crate::kubelet::{View, assert_fs_group_applies, assert_sticky_root};

fn publish_use_and_unpublish_leave_nothing(m: Medium) {
    let node = Node::start(&[]);
    let pod = node.pod();
    let v = node.volume(&pod, "scratch");
    node.client
        .publish(&publish_request(&v, &medium_attrs(m), None))
        .unwrap();
    assert!(is_mounted(&v.target));
    let st = statvfs(&v.target);
    assert_eq!(
        st.f_blocks * st.f_frsize,
        64 << 20,
        "df shows the sizeLimit"
    );

    let used_before = node.client.stats(&v.id, &v.target).unwrap().usage[0].used;
    // As a container sees it: a bind mount, another uid.
    let view = View::of(&v.target);
    let out = sh_as(
        1000,
        1000,
        &format!("echo hello > {0}/f && cat {0}/f", view.path.display()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");

    let stats = node.client.stats(&v.id, &v.target).unwrap();
    let bytes = &stats.usage[0];
    assert_eq!(bytes.total, 64 << 20);
    assert_eq!(bytes.used - used_before, 4096, "one block of data more");
    // Available is what is left for data: the root directory (disk) is not data.
    assert_eq!(bytes.available, bytes.total - (bytes.used - used_before));
    let cond = stats.volume_condition.unwrap();
    assert!(!cond.abnormal, "{cond:?}");
    drop(view);

    node.client.unpublish(&v.id, &v.target).unwrap();
    node.assert_gone(&v);
    node.kubelet_cleanup(&v);
    // Again (kubelet retries after a timeout): still success.
    node.client.unpublish(&v.id, &v.target).unwrap();
}

/// fsGroup arrives as `volume_mount_group`; `sticky` as an attribute.
fn the_fs_group_and_the_sticky_bit_are_kubelets(m: Medium) {
    let node = Node::start(&[]);
    let pod = node.pod();
    let shared = node.volume(&pod, "shared");
    node.client
        .publish(&publish_request(&shared, &medium_attrs(m), Some(4242)))
        .unwrap();
    assert_fs_group_applies(&shared.target, 4242);
    for (name, sticky) in [("open", "false"), ("sticky", "true")] {
        let v = node.volume(&pod, name);
        let attrs = [medium_attrs(m), vec![("sticky", sticky)]].concat();
        node.client
            .publish(&publish_request(&v, &attrs, None))
            .unwrap();
        assert_sticky_root(&v.target, sticky == "true");
        node.client.unpublish(&v.id, &v.target).unwrap();
        node.assert_gone(&v);
    }
    node.client.unpublish(&shared.id, &shared.target).unwrap();
    node.assert_gone(&shared);
}

on_every_medium!(
    publish_use_and_unpublish_leave_nothing,
    the_fs_group_and_the_sticky_bit_are_kubelets
);
