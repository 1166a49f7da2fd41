//! A second gRPC client, Python's grpcio (installed at a pinned version by
//! `scripts/install-test-deps.sh`): it sends the socket's path, percent-encoded, as
//! `:authority`, which h2 alone resets (`RST_STREAM` `PROTOCOL_ERROR`); the plugin serves
//! it as it serves kubelet's `localhost`, and a raw path too.

use super::fixture::*;
use std::process::Command;

const PYTHON: &str = "/opt/emptydirfs-test/grpcio/bin/python";
const CLIENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/integration/csi/grpcio_client.py"
);

/// Runs the grpcio client against `target` (with `authority` if given); returns what it
/// printed and the `:authority` it sent, from grpcio's own trace.
fn grpcio(target: &str, authority: Option<&str>) -> (String, Vec<String>) {
    assert!(
        std::path::Path::new(PYTHON).exists(),
        "{PYTHON} is missing: run scripts/install-test-deps.sh"
    );
    let out = Command::new(PYTHON)
        .arg(CLIENT)
        .arg(target)
        .args(authority)
        .env("GRPC_TRACE", "http")
        .env("GRPC_VERBOSITY", "debug")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = String::from_utf8_lossy(&out.stderr)
        .split(":authority: ")
        .skip(1)
        .filter_map(|s| s.split([',', ' ', '}']).next().map(str::to_string))
        .collect();
    (stdout, sent)
}

#[test]
fn grpcio_is_served_with_the_authority_it_sends() {
    let node = Node::start(&[]);
    let socket = node.socket().display().to_string();
    let want =
        "/csi.v1.Identity/GetPluginInfo csi.emptydirfs.io\n/csi.v1.Node/NodeGetInfo node-1\n"
            .repeat(3);
    for target in [format!("unix://{socket}"), format!("unix:{socket}")] {
        let (answers, sent) = grpcio(&target, None);
        assert_eq!(answers, want, "{target}");
        let encoded = socket.trim_start_matches('/').replace('/', "%2F");
        assert!(
            !sent.is_empty() && sent.iter().all(|a| *a == encoded),
            "grpcio sent the socket's path as :authority ({encoded}): {sent:?}"
        );
    }
    // The raw path, as other clients send it, and what grpc-go sends.
    for authority in [socket.as_str(), "localhost"] {
        let (answers, sent) = grpcio(&format!("unix://{socket}"), Some(authority));
        assert_eq!(answers, want, "{authority}");
        assert!(sent.iter().all(|a| a == authority), "{sent:?}");
    }
    // The tonic client of the other tests is served alike meanwhile.
    assert_eq!(node.client.node_info().node_id, "node-1");
}
