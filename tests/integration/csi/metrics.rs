//! `/metrics`: each volume's limits and usage by namespace, pod and volume, whether its
//! daemon is up, and the calls by code.

use super::fixture::*;
use std::io::{Read, Write};

fn get(port: u16, path: &str) -> String {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

/// The value of the series `name{labels...}` whose labels contain `has`.
fn value(text: &str, name: &str, has: &str) -> Option<u64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(has))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn metrics_show_each_volume_against_its_limits_and_the_calls() {
    let node = Node::start(&["--metrics-address", "127.0.0.1:0"]);
    let port = node.metrics_port();
    let pod = node.pod();
    let v = node.volume(&pod, "cache");
    node.client
        .publish(&publish_request(
            &v,
            &[
                ("medium", "Memory"),
                ("sizeLimit", "32Mi"),
                ("inodeLimit", "100"),
            ],
            None,
        ))
        .unwrap();
    std::fs::write(v.target.join("f"), vec![1u8; 1 << 20]).unwrap();
    let mut bad = publish_request(&v, &[("sizeLimit", "12Zi")], None);
    bad.volume_id = "csi-bad".into();
    node.client.publish(&bad).unwrap_err();

    let text = get(port, "/metrics");
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    let labels = format!(
        "namespace=\"default\",pod=\"{}\",volume=\"cache\",medium=\"Memory\"",
        pod.name
    );
    assert_eq!(
        value(&text, "emptydirfs_volume_size_limit_bytes", &labels),
        Some(32 << 20),
        "{text}"
    );
    assert_eq!(
        value(&text, "emptydirfs_volume_used_bytes", &labels),
        Some(1 << 20),
        "{text}"
    );
    assert_eq!(
        value(&text, "emptydirfs_volume_inode_limit", &labels),
        Some(100)
    );
    assert_eq!(
        value(&text, "emptydirfs_volume_inodes_used", &labels),
        Some(2),
        "the root and f"
    );
    assert_eq!(
        value(&text, "emptydirfs_volume_daemon_up", &labels),
        Some(1)
    );
    assert_eq!(
        value(
            &text,
            "emptydirfs_volume_daemon_info",
            "limit_kept_by=\"tmpfs\",data_path=\"kernel\""
        ),
        Some(1),
        "a memory volume's limit is kept by its tmpfs, its data moved by the kernel: {text}"
    );
    let calls = "emptydirfs_csi_calls_total";
    assert_eq!(
        value(&text, calls, "method=\"NodePublishVolume\",code=\"OK\""),
        Some(1),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            calls,
            "method=\"NodePublishVolume\",code=\"INVALID_ARGUMENT\""
        ),
        Some(1)
    );

    crash(&v);
    let text = get(port, "/metrics");
    assert_eq!(
        value(&text, "emptydirfs_volume_daemon_up", &labels),
        Some(0),
        "{text}"
    );
    assert!(get(port, "/other").starts_with("HTTP/1.1 404"));
    node.client.unpublish(&v.id, &v.target).unwrap();
    let text = get(port, "/metrics");
    assert_eq!(
        value(&text, "emptydirfs_volume_daemon_up", &labels),
        None,
        "gone with the volume"
    );
    assert_eq!(
        value(&text, calls, "method=\"NodeUnpublishVolume\",code=\"OK\""),
        Some(1)
    );
}
