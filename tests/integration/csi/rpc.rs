//! Identity and the node's information: what kubelet and the registrar ask first.

use super::fixture::*;
use crate::harness::BoundedOutput;
use emptydirfs::control::csi::proto::node_service_capability::{RpcType, Type};

#[test]
fn identity_and_node_information() {
    let node = Node::start(&[]);
    let info = node.client.plugin_info();
    assert_eq!(info.name, "csi.emptydirfs.io");
    assert_eq!(info.vendor_version, env!("CARGO_PKG_VERSION"));
    assert!(
        node.client.plugin_capabilities().capabilities.is_empty(),
        "no controller"
    );
    assert_eq!(node.client.node_info().node_id, "node-1");
    let caps: Vec<RpcType> = node
        .client
        .node_capabilities()
        .capabilities
        .iter()
        .map(|c| match &c.r#type {
            Some(Type::Rpc(r)) => RpcType::try_from(r.r#type).unwrap(),
            None => panic!("empty capability"),
        })
        .collect();
    assert_eq!(
        caps,
        [
            RpcType::GetVolumeStats,
            RpcType::VolumeCondition,
            RpcType::VolumeMountGroup,
            RpcType::SingleNodeMultiWriter
        ]
    );
    assert!(node.client.probe().unwrap());
}

#[test]
fn the_socket_is_private_and_only_a_socket_is_replaced() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let mut node = Node::start(&[]);
    let meta = std::fs::symlink_metadata(node.socket()).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // SIGKILL leaves the socket file: the next plugin replaces it.
    node.kill_plugin(libc::SIGKILL);
    assert!(node.socket().exists());
    node.start_plugin();
    // Anything else at that path is never removed.
    node.kill_plugin(libc::SIGKILL);
    std::fs::remove_file(node.socket()).unwrap();
    std::fs::write(node.socket(), b"not a socket").unwrap();
    let out = std::process::Command::new(crate::harness::BIN)
        .args(node.args())
        .bounded_output();
    assert_eq!(out.status.code(), Some(2), "refused input");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a socket"));
    assert_eq!(std::fs::read(node.socket()).unwrap(), b"not a socket");
}

#[test]
fn bad_flags_are_refused_before_anything_is_done() {
    let node = Node::start(&[]);
    for (flag, value, names) in [
        ("--endpoint", "tcp://0.0.0.0:1", "tcp://0.0.0.0:1"),
        ("--driver-name", "bad_name", "bad_name"),
        ("--max-size-limit", "12Zi", "12Zi"),
        ("--allow-medium", "tape", "tape"),
    ] {
        let mut args: Vec<String> = node.args();
        if let Some(i) = args.iter().position(|a| a == flag) {
            args[i + 1] = value.into();
        } else {
            args.extend([flag.to_string(), value.to_string()]);
        }
        let out = std::process::Command::new(crate::harness::BIN)
            .args(&args)
            .bounded_output();
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(names),
            "{flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// An old plugin pod still stopping while the new one starts: the new one waits for the
/// state dir, then serves.
#[test]
fn a_second_plugin_on_the_same_state_dir_waits_for_the_first() {
    let mut node = Node::start(&[]);
    let dir = crate::harness::TempDir::new("csi-second");
    let socket = dir.path().join("csi.sock");
    let mut args = node.args();
    let i = args.iter().position(|a| a == "--endpoint").unwrap();
    args[i + 1] = format!("unix://{}", socket.display());
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    let log = dir.path().join("log");
    let mut second = crate::harness::spawn_daemon(&args, &log, None);
    crate::harness::eventually(
        "the second plugin to say it waits for the first",
        crate::harness::SOON,
        || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("waiting for it to exit")
        },
    );
    assert!(
        !socket.exists(),
        "the second plugin does not serve while the first does"
    );
    node.kill_plugin(libc::SIGKILL);
    let client = super::client::Client::new(&socket);
    crate::harness::eventually("the second plugin to serve", crate::harness::SOON, || {
        socket.exists() && matches!(client.probe(), Ok(true))
    });
    let _ = second.kill();
    let _ = second.wait();
}
