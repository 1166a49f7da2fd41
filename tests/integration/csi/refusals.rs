//! Hostile and malformed calls: each refused with the code the spec gives and a message
//! that names the value, and nothing created (no target, record, daemon or cgroup).

use super::client::assert_refused;
use super::fixture::*;
use emptydirfs::control::csi::proto::{self, volume_capability};
use tonic::Code;

/// Nothing of any publish exists on the node.
fn assert_nothing_created(node: &Node, v: &Vol) {
    assert!(
        std::fs::symlink_metadata(&v.target).is_err(),
        "a target was created"
    );
    let records = std::fs::read_dir(node.state_dir().join("volumes"))
        .unwrap()
        .count();
    assert_eq!(records, 0, "a record was created");
    assert_eq!(node.daemons(), Vec::<u32>::new(), "a daemon was started");
}

/// A change that spoils a good request.
type Change = Box<dyn Fn(&mut proto::NodePublishVolumeRequest)>;

#[test]
fn bad_publishes_are_refused_with_the_value_named_and_nothing_created() {
    let node = Node::start(&["--allow-medium", "disk", "--allow-medium", "Memory"]);
    let pod = node.pod();
    let v = node.volume(&pod, "scratch");
    let ok = publish_request(&v, &[("medium", "Memory")], None);
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "no volume id",
            Box::new(|r| r.volume_id.clear()),
            "volume_id",
        ),
        (
            "a volume id with a slash",
            Box::new(|r| r.volume_id = "../../etc".into()),
            "../../etc",
        ),
        (
            "no target",
            Box::new(|r| r.target_path.clear()),
            "target_path",
        ),
        (
            "a target outside the kubelet root",
            Box::new(|r| r.target_path = "/tmp/x/mount".into()),
            "/tmp/x/mount",
        ),
        (
            "a target with ..",
            Box::new(|r| {
                r.target_path = r.target_path.replace("/mount", "/../../../../../etc/mount")
            }),
            "etc",
        ),
        (
            "a target that is not kubelet's",
            Box::new(|r| r.target_path = r.target_path.replace("/mount", "/data")),
            "/data",
        ),
        (
            "no capability",
            Box::new(|r| r.volume_capability = None),
            "volume_capability",
        ),
        (
            "a block device",
            Box::new(|r| {
                r.volume_capability.as_mut().unwrap().access_type =
                    Some(volume_capability::AccessType::Block(proto::Empty {}))
            }),
            "block",
        ),
        (
            "a multi-node mode",
            Box::new(|r| {
                r.volume_capability.as_mut().unwrap().access_mode =
                    Some(volume_capability::AccessMode {
                        mode: volume_capability::Mode::MultiNodeMultiWriter as i32,
                    })
            }),
            "MultiNodeMultiWriter",
        ),
        (
            "a filesystem type",
            Box::new(|r| mount(r).fs_type = "ext4".into()),
            "ext4",
        ),
        (
            "mount flags",
            Box::new(|r| mount(r).mount_flags = vec!["exec".into()]),
            "exec",
        ),
        (
            "a mount group that is no gid",
            Box::new(|r| mount(r).volume_mount_group = "wheel".into()),
            "wheel",
        ),
        ("readonly", Box::new(|r| r.readonly = true), "readonly"),
        (
            "an unknown attribute",
            Box::new(|r| attr(r, "size", "1Gi")),
            "size",
        ),
        (
            "an unknown medium",
            Box::new(|r| attr(r, "medium", "SSD")),
            "SSD",
        ),
        (
            "a forbidden medium",
            Box::new(|r| attr(r, "medium", "HugePages-2Mi")),
            "HugePages",
        ),
        (
            "a bad quantity",
            Box::new(|r| attr(r, "sizeLimit", "12Zi")),
            "12Zi",
        ),
        (
            "a zero size",
            Box::new(|r| attr(r, "sizeLimit", "0")),
            "\"0\"",
        ),
        (
            "a negative inode limit",
            Box::new(|r| attr(r, "inodeLimit", "-1")),
            "-1",
        ),
        (
            "a bad sticky",
            Box::new(|r| attr(r, "sticky", "yes")),
            "yes",
        ),
        (
            "another pod's uid",
            Box::new(|r| attr(r, "csi.storage.k8s.io/pod.uid", "0000-1111")),
            "0000-1111",
        ),
    ];
    for (what, change, names) in cases {
        let mut r = ok.clone();
        change(&mut r);
        let e = node.client.publish(&r).expect_err(what);
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
        assert!(
            e.message().contains(names),
            "{what}: the message names {names:?}: {}",
            e.message()
        );
        assert_nothing_created(&node, &v);
    }
    // And the good one works.
    node.client.publish(&ok).unwrap();
    node.client.unpublish(&v.id, &v.target).unwrap();
}

fn mount(r: &mut proto::NodePublishVolumeRequest) -> &mut volume_capability::MountVolume {
    match r
        .volume_capability
        .as_mut()
        .unwrap()
        .access_type
        .as_mut()
        .unwrap()
    {
        volume_capability::AccessType::Mount(m) => m,
        _ => unreachable!(),
    }
}

fn attr(r: &mut proto::NodePublishVolumeRequest, k: &str, v: &str) {
    r.volume_context.insert(k.into(), v.into());
}

#[test]
fn bad_unpublishes_and_stats_and_unserved_methods() {
    let node = Node::start(&[]);
    let pod = node.pod();
    let v = node.volume(&pod, "scratch");
    assert_refused(
        node.client.unpublish("", &v.target),
        Code::InvalidArgument,
        "volume_id",
    );
    assert_refused(
        node.client.unpublish(&v.id, std::path::Path::new("")),
        Code::InvalidArgument,
        "target_path",
    );
    assert_refused(
        node.client.unpublish(&v.id, std::path::Path::new("/etc")),
        Code::InvalidArgument,
        "/etc",
    );
    // Unknown volume, missing target: success (kubelet repeats unpublishes).
    node.client.unpublish(&v.id, &v.target).unwrap();
    let stats = |id: &str, p: &std::path::Path| node.client.stats(id, p).map(drop);
    assert_refused(stats(&v.id, &v.target), Code::NotFound, &v.id);
    assert_refused(stats("", &v.target), Code::InvalidArgument, "volume_id");
    node.client
        .publish(&publish_request(&v, &[], None))
        .unwrap();
    assert_refused(
        stats(&v.id, std::path::Path::new("/elsewhere")),
        Code::NotFound,
        "/elsewhere",
    );
    node.client.unpublish(&v.id, &v.target).unwrap();

    for path in [
        "/csi.v1.Node/NodeStageVolume",
        "/csi.v1.Node/NodeExpandVolume",
        "/csi.v1.Controller/CreateVolume",
    ] {
        let e = node
            .client
            .call::<_, proto::Empty>(path, proto::Empty {}, super::client::KUBELET_TIMEOUT)
            .unwrap_err();
        assert_eq!(e.code(), Code::Unimplemented, "{path}");
        assert!(e.message().contains(path), "{e:?}");
    }
}
