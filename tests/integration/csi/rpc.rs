//! Identity and the node's information: what kubelet and the registrar ask first.

use super::fixture::*;
use emptydirfs::csi::proto::node_service_capability::{RpcType, Type};

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
