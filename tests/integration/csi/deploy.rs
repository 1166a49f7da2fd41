//! The manifests in deploy/ agree with the code: the driver's name, the registrar's
//! socket path, and every flag the DaemonSet gives the plugin (it starts with them).

use super::fixture::*;

const DAEMONSET: &str = include_str!("../../../deploy/kubernetes/daemonset.yaml");
const CSIDRIVER: &str = include_str!("../../../deploy/kubernetes/csidriver.yaml");

/// The `args` list of the container named `name` (one `- value` per line).
fn container_args(name: &str) -> Vec<String> {
    let mut lines = DAEMONSET
        .lines()
        .skip_while(|l| l.trim() != format!("- name: {name}"));
    lines.find(|l| l.trim() == "args:").expect("args");
    lines
        .take_while(|l| l.trim_start().starts_with("- ") || l.trim_start().starts_with('#'))
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.trim_start().trim_start_matches("- ").to_string())
        .collect()
}

#[test]
fn the_daemonset_starts_the_plugin_this_code_builds() {
    let plugin = container_args("plugin");
    assert_eq!(plugin[0], "csi");
    // The flags that name this node's paths are the fixture's; every other one is the
    // manifest's, as it is.
    let ours = [
        "--endpoint",
        "--node-id",
        "--state-dir",
        "--kubelet-root",
        "--cgroup-fs",
        "--metrics-address",
    ];
    let kept: Vec<&str> = plugin[1..]
        .iter()
        .map(String::as_str)
        .filter(|a| !ours.iter().any(|o| a.starts_with(&format!("{o}="))))
        .collect();
    assert!(
        kept.iter().any(|a| a.starts_with("--max-size-limit=")),
        "{kept:?}"
    );
    for flag in ours {
        assert!(
            plugin.iter().any(|a| a.starts_with(&format!("{flag}="))),
            "the manifest sets {flag}"
        );
    }
    let node = Node::start(&kept);
    let name = node.client.plugin_info().name;
    assert!(
        CSIDRIVER.contains(&format!("name: {name}")),
        "the CSIDriver is named {name}"
    );
    let registrar = container_args("node-driver-registrar");
    assert!(
        registrar.contains(&format!(
            "--kubelet-registration-path=/var/lib/kubelet/plugins/{name}/csi.sock"
        )),
        "{registrar:?}"
    );
    assert!(DAEMONSET.contains(&format!("path: /var/lib/kubelet/plugins/{name}\n")));
    assert!(plugin.contains(&"--endpoint=unix:///csi/csi.sock".to_string()));
}
