//! Checks of publish requests, and the wire bytes of the messages against the field
//! numbers of the spec (computed by hand here, not by prost).

use super::*;
use crate::control::csi::error::Code;
use crate::control::csi::proto::*;
use prost::Message;

const ROOT: &str = "/var/lib/kubelet";
const UID: &str = "4c1a2b9e-77d0-4f3b-9e59-0c8f5d2a6e11";

fn target(name: &str) -> String {
    format!("{ROOT}/pods/{UID}/volumes/kubernetes.io~csi/{name}/mount")
}

#[test]
fn targets_are_kubelets_and_nothing_else() {
    let root = Path::new(ROOT);
    assert_eq!(
        check_target(root, &target("scratch"), "t").unwrap(),
        (UID.to_string(), "scratch".to_string())
    );
    for bad in [
        "".to_string(),
        "/tmp/x".into(),
        "var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/v/mount".into(),
        format!("{ROOT}/pods/{UID}/volumes/kubernetes.io~csi/v/mount/"),
        format!("{ROOT}/pods/{UID}/volumes/kubernetes.io~csi/v/./mount"),
        format!("{ROOT}/pods/{UID}/volumes/kubernetes.io~csi/v//mount"),
        format!("{ROOT}/pods/{UID}/volumes/kubernetes.io~csi/../v/mount"),
        format!("{ROOT}/pods/{UID}/volumes/kubernetes.io~empty-dir/v/mount"),
        format!("{ROOT}/pods/../volumes/kubernetes.io~csi/v/mount"),
        format!("{ROOT}/pods/{UID}/volumes/kubernetes.io~csi/UPPER/mount"),
        format!("{ROOT}x/pods/{UID}/volumes/kubernetes.io~csi/v/mount"),
    ] {
        let e = check_target(root, &bad, "target_path").unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument, "{bad}");
        assert!(e.message.contains("target_path"), "{bad}: {e}");
    }
}

#[test]
fn volume_ids_are_safe_directory_names() {
    assert!(check_volume_id(&format!("csi-{}", "a".repeat(64))).is_ok());
    for bad in [
        "",
        ".",
        "..",
        ".hidden",
        "a/b",
        "a b",
        &"x".repeat(129),
        "a\n",
    ] {
        assert!(check_volume_id(bad).is_err(), "{bad:?}");
    }
}

fn request(attrs: &[(&str, &str)]) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: "csi-1".into(),
        target_path: target("v"),
        volume_capability: Some(VolumeCapability {
            access_type: Some(volume_capability::AccessType::Mount(Default::default())),
            access_mode: Some(volume_capability::AccessMode {
                mode: volume_capability::Mode::SingleNodeWriter as i32,
            }),
        }),
        volume_context: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

#[test]
fn attributes_become_the_asked_volume_and_its_fingerprint() {
    let p = check_publish(
        Path::new(ROOT),
        &request(&[
            ("medium", "Memory"),
            ("sizeLimit", "1.5Gi"),
            ("inodeLimit", "10k"),
            ("sticky", "true"),
            ("csi.storage.k8s.io/pod.name", "web-0"),
            ("csi.storage.k8s.io/pod.namespace", "shop"),
            ("csi.storage.k8s.io/ephemeral", "true"),
        ]),
    )
    .unwrap();
    assert_eq!(
        p.asked,
        Asked {
            medium: MediumArg::Memory,
            size_limit: Some(1_610_612_736),
            inode_limit: Some(10_000),
            sticky: true,
            fs_group: None,
        }
    );
    assert_eq!(
        (
            p.pod.namespace.as_str(),
            p.pod.name.as_str(),
            p.pod.volume.as_str()
        ),
        ("shop", "web-0", "v")
    );
    assert_eq!(p.fingerprint["asked.sizeLimit"], "1.5Gi", "as given");
    assert_eq!(p.fingerprint["asked.medium"], "Memory");
    // No attributes: a disk volume with kubelet's defaults.
    let d = check_publish(Path::new(ROOT), &request(&[])).unwrap();
    assert_eq!(d.asked.medium, MediumArg::Disk);
    assert_eq!((d.pod.namespace.as_str(), d.pod.name.as_str()), ("-", "-"));
    let e = check_publish(
        Path::new(ROOT),
        &request(&[("csi.storage.k8s.io/pod.name", "a b")]),
    )
    .unwrap_err();
    assert!(e.message.contains("a b"), "{e}");
}

/// Encoded bytes of fields, from the spec's numbers: tag = (number << 3) | wire type.
#[test]
fn messages_use_the_specs_field_numbers() {
    // ProbeResponse.ready (1) = BoolValue { value (1) = true }.
    let probe = ProbeResponse {
        ready: Some(BoolValue { value: true }),
    };
    assert_eq!(probe.encode_to_vec(), [0x0a, 2, 0x08, 1]);
    // NodePublishVolumeRequest: target_path is 4, volume_capability 5 holding mount 2
    // holding volume_mount_group 3; readonly 6; volume_context 8.
    let mut r = NodePublishVolumeRequest {
        target_path: "t".into(),
        readonly: true,
        ..Default::default()
    };
    assert_eq!(r.encode_to_vec(), [0x22, 1, b't', 0x30, 1]);
    r = NodePublishVolumeRequest {
        volume_capability: Some(VolumeCapability {
            access_type: Some(volume_capability::AccessType::Mount(
                volume_capability::MountVolume {
                    volume_mount_group: "5".into(),
                    ..Default::default()
                },
            )),
            access_mode: Some(volume_capability::AccessMode { mode: 7 }),
        }),
        ..Default::default()
    };
    assert_eq!(
        r.encode_to_vec(),
        [0x2a, 9, 0x12, 3, 0x1a, 1, b'5', 0x1a, 2, 0x08, 7]
    );
    let ctx = NodePublishVolumeRequest {
        volume_context: [("k".to_string(), "v".to_string())].into(),
        ..Default::default()
    };
    assert_eq!(ctx.encode_to_vec(), [0x42, 6, 0x0a, 1, b'k', 0x12, 1, b'v']);
    // A decoded request skips secrets (7) without keeping them.
    let with_secret = [0x3a, 6, 0x0a, 1, b's', 0x12, 1, b'x', 0x0a, 1, b'i'];
    let d = NodePublishVolumeRequest::decode(&with_secret[..]).unwrap();
    assert_eq!(d.volume_id, "i");
    assert_eq!(d.encode_to_vec(), [0x0a, 1, b'i']);
    // NodeGetVolumeStatsResponse: usage (1) { available 1, total 2, used 3, unit 4 },
    // volume_condition (2) { abnormal 1, message 2 }.
    let s = NodeGetVolumeStatsResponse {
        usage: vec![VolumeUsage {
            available: 1,
            total: 2,
            used: 3,
            unit: volume_usage::Unit::Inodes as i32,
        }],
        volume_condition: Some(VolumeCondition {
            abnormal: true,
            message: "m".into(),
        }),
    };
    assert_eq!(
        s.encode_to_vec(),
        [
            0x0a, 8, 0x08, 1, 0x10, 2, 0x18, 3, 0x20, 2, 0x12, 5, 0x08, 1, 0x12, 1, b'm'
        ]
    );
    // NodeGetCapabilitiesResponse: capabilities (1) { rpc (1) { type (1) = 6 } }.
    let caps = NodeGetCapabilitiesResponse {
        capabilities: vec![NodeServiceCapability {
            r#type: Some(node_service_capability::Type::Rpc(
                node_service_capability::Rpc {
                    r#type: node_service_capability::RpcType::VolumeMountGroup as i32,
                },
            )),
        }],
    };
    assert_eq!(caps.encode_to_vec(), [0x0a, 4, 0x0a, 2, 0x08, 6]);
    // NodeGetInfoResponse.node_id (1); GetPluginInfoResponse name 1, vendor_version 2.
    let info = GetPluginInfoResponse {
        name: "n".into(),
        vendor_version: "v".into(),
        manifest: Default::default(),
    };
    assert_eq!(info.encode_to_vec(), [0x0a, 1, b'n', 0x12, 1, b'v']);
    let unpublish = NodeUnpublishVolumeRequest {
        volume_id: "i".into(),
        target_path: "t".into(),
    };
    assert_eq!(unpublish.encode_to_vec(), [0x0a, 1, b'i', 0x12, 1, b't']);
    let stats = NodeGetVolumeStatsRequest {
        volume_id: String::new(),
        volume_path: "p".into(),
        staging_target_path: String::new(),
    };
    assert_eq!(stats.encode_to_vec(), [0x12, 1, b'p']);
}
