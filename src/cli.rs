//! Command-line interface: the arguments of each command.

pub use crate::common::serve_args::ServeArgs;
use crate::control::csi::CsiOptions;
use crate::control::csi::policy::Policy;
use crate::control::emptydir::setup::SetupRequest;
use crate::control::volume::names::{self, DEFAULT_KUBELET_ROOT};
use crate::control::volume::spec::{self, MediumArg, MediumKind};
use crate::quantity;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "emptydirfs",
    version,
    about = "FUSE filesystem for Kubernetes emptyDir volumes with hard limits"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Mount one volume at MOUNTPOINT and serve it in the foreground until SIGTERM/SIGINT.
    Serve(ServeArgs),
    /// Set up a pod's emptyDir volume where kubelet would, start its daemon detached, and
    /// print the volume's path once it is mounted. Idempotent.
    Setup(SetupArgs),
    /// Stop a volume's daemon, unmount it and delete it with all its data. Idempotent.
    Teardown(TeardownArgs),
    /// List the volumes under the kubelet root, with usage from their daemons' counters.
    Status(StatusArgs),
    /// Hand a volume from its daemon to a new daemon of this program (an upgrade with no
    /// error for the pod; a Memory volume keeps its data).
    Upgrade(UpgradeArgs),
    /// Serve the CSI node plugin (Identity and Node services) on a unix socket, giving
    /// pods emptydirfs volumes as CSI ephemeral inline volumes.
    Csi(CsiArgs),
}

/// A number of seconds (a value that is one, or nothing: never clap's "unexpected
/// argument" for a negative number).
fn seconds(s: &str) -> Result<u64, String> {
    s.parse::<u64>()
        .map_err(|_| "expected a number of seconds (0 or more)".to_string())
}

/// A grace period: a number of seconds from 0 to 3600.
fn grace_seconds(s: &str) -> Result<u64, String> {
    s.parse::<u64>()
        .ok()
        .filter(|&n| n <= 3600)
        .ok_or_else(|| "expected a number of seconds from 0 to 3600".to_string())
}

#[derive(clap::Args, Debug)]
pub struct CsiArgs {
    /// Where to serve gRPC, as unix:///path/to/csi.sock.
    #[arg(long, value_name = "URL")]
    pub endpoint: String,
    /// This node's name (NodeGetInfo); usually the Kubernetes node name.
    #[arg(long, value_name = "NODE")]
    pub node_id: String,
    /// The driver's name (GetPluginInfo), as in the CSIDriver object and pods' `csi.driver`.
    #[arg(long, value_name = "NAME", default_value = "csi.emptydirfs.io", value_parser = crate::control::csi::check_driver_name)]
    pub driver_name: String,
    /// Where volumes are recorded and disk volumes keep their data (a host directory).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/emptydirfs")]
    pub state_dir: PathBuf,
    /// Kubelet's root directory (its --root-dir), below which pods' volumes are.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_KUBELET_ROOT)]
    pub kubelet_root: PathBuf,
    /// A medium pods may ask for: disk, Memory, HugePages (repeat it; default: all).
    #[arg(long = "allow-medium", value_name = "MEDIUM", value_enum)]
    pub allow_medium: Vec<MediumKind>,
    /// No volume is larger: a larger sizeLimit is lowered to this.
    #[arg(long, value_name = "QUANTITY", value_parser = quantity::parse_positive)]
    pub max_size_limit: Option<u64>,
    /// The sizeLimit of a volume that gives none (default: none for disk; the pod's memory
    /// limit, or half of the node's memory, for Memory).
    #[arg(long, value_name = "QUANTITY", value_parser = quantity::parse_positive)]
    pub default_size_limit: Option<u64>,
    /// No volume has more inodes: a larger inodeLimit is lowered to this.
    #[arg(long, value_name = "N", value_parser = quantity::parse_positive)]
    pub max_inode_limit: Option<u64>,
    /// The inodeLimit of a volume that gives none.
    #[arg(long, value_name = "N", value_parser = quantity::parse_positive)]
    pub default_inode_limit: Option<u64>,
    /// Where the host's cgroup filesystems are mounted.
    #[arg(long, value_name = "DIR", default_value = "/sys/fs/cgroup")]
    pub cgroup_fs: PathBuf,
    /// Kubelet's --cgroup-root: where pods' cgroups are searched for.
    #[arg(long, value_name = "CGROUP", default_value = "/")]
    pub kubelet_cgroup_root: PathBuf,
    /// The driver's own cgroup, for daemons of pods whose cgroup is not found.
    #[arg(long, value_name = "CGROUP", default_value = "/emptydirfs")]
    pub fallback_cgroup: PathBuf,
    /// Seconds a volume whose pod is gone stays before the plugin deletes it.
    #[arg(long, value_name = "SECONDS", default_value_t = 600, allow_hyphen_values = true, value_parser = seconds)]
    pub orphan_grace: u64,
    /// Seconds a volume's daemon gets to exit on SIGTERM at unpublish before SIGKILL (0 to
    /// 3600); then its FUSE connection is aborted (what the pod still waits for fails).
    #[arg(long, value_name = "SECONDS", default_value_t = 10, allow_hyphen_values = true, value_parser = grace_seconds)]
    pub stop_grace: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics (such as 0.0.0.0:9810).
    #[arg(long, value_name = "ADDR")]
    pub metrics_address: Option<std::net::SocketAddr>,
    /// At start, hand every volume whose daemon runs another build to a new daemon of
    /// this one, one at a time (an upgrade reaches running pods, with no error for them).
    #[arg(long)]
    pub upgrade_daemons: bool,
}

impl CsiArgs {
    pub fn options(&self) -> CsiOptions {
        let allowed_media = if self.allow_medium.is_empty() {
            vec![MediumKind::Disk, MediumKind::Memory, MediumKind::HugePages]
        } else {
            self.allow_medium.clone()
        };
        CsiOptions {
            endpoint: self.endpoint.clone(),
            node_id: self.node_id.clone(),
            driver_name: self.driver_name.clone(),
            state_dir: self.state_dir.clone(),
            kubelet_root: self.kubelet_root.clone(),
            policy: Policy {
                allowed_media,
                max_size_limit: self.max_size_limit,
                default_size_limit: self.default_size_limit,
                max_inode_limit: self.max_inode_limit,
                default_inode_limit: self.default_inode_limit,
            },
            cgroup_fs: self.cgroup_fs.clone(),
            kubelet_cgroup_root: self.kubelet_cgroup_root.clone(),
            fallback_cgroup: self.fallback_cgroup.clone(),
            orphan_grace: std::time::Duration::from_secs(self.orphan_grace),
            stop_grace: std::time::Duration::from_secs(self.stop_grace),
            metrics_address: self.metrics_address,
            upgrade_daemons: self.upgrade_daemons,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct SetupArgs {
    /// The pod's UID (letters, digits and '-').
    #[arg(long, value_name = "UID", value_parser = names::check_pod_uid)]
    pub pod_uid: String,
    /// The volume's name in the pod spec (a DNS-1123 label).
    #[arg(long, value_name = "NAME", value_parser = names::check_volume_name)]
    pub volume: String,
    /// Kubernetes medium: "" (the node's disk), Memory, HugePages, HugePages-2Mi, HugePages-1Gi.
    #[arg(long, default_value = "", hide_default_value = true, value_parser = spec::parse_medium)]
    pub medium: MediumArg,
    /// Hard size limit (sizeLimit), a Kubernetes quantity; default: none for disk, half of RAM for Memory.
    #[arg(long, value_name = "QUANTITY", allow_hyphen_values = true, value_parser = quantity::parse_positive)]
    pub size_limit: Option<u64>,
    /// Hard limit on inodes; default: the backing filesystem's (disk), RAM pages / 2 (Memory).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = quantity::parse_positive)]
    pub inode_limit: Option<u64>,
    /// The pod's fsGroup: the root gets this group and the setgid bit (02777), so new files inherit it.
    #[arg(long, value_name = "GID", allow_hyphen_values = true, value_parser = clap::value_parser!(u32).range(0..u32::MAX as i64))]
    pub fs_group: Option<u32>,
    /// Give the root the sticky bit (01777), as /tmp has.
    #[arg(long)]
    pub sticky: bool,
    /// Kubelet's root directory (its --root-dir), below which pods' volumes are.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_KUBELET_ROOT)]
    pub kubelet_root: PathBuf,
}

impl SetupArgs {
    pub fn request(&self) -> SetupRequest {
        SetupRequest {
            kubelet_root: self.kubelet_root.clone(),
            pod_uid: self.pod_uid.clone(),
            volume: self.volume.clone(),
            medium: self.medium,
            size_limit: self.size_limit,
            inode_limit: self.inode_limit,
            fs_group: self.fs_group,
            sticky: self.sticky,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct TeardownArgs {
    /// The pod's UID (letters, digits and '-').
    #[arg(long, value_name = "UID", value_parser = names::check_pod_uid)]
    pub pod_uid: String,
    /// The volume's name in the pod spec (a DNS-1123 label).
    #[arg(long, value_name = "NAME", value_parser = names::check_volume_name)]
    pub volume: String,
    /// Seconds the daemon gets to exit after SIGTERM before SIGKILL (0 to 3600).
    #[arg(long, value_name = "SECONDS", default_value_t = 10, allow_hyphen_values = true, value_parser = grace_seconds)]
    pub grace: u64,
    /// Kubelet's root directory (its --root-dir), below which pods' volumes are.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_KUBELET_ROOT)]
    pub kubelet_root: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct UpgradeArgs {
    /// The pod's UID (letters, digits and '-').
    #[arg(long, value_name = "UID", value_parser = names::check_pod_uid)]
    pub pod_uid: String,
    /// The volume's name in the pod spec (a DNS-1123 label).
    #[arg(long, value_name = "NAME", value_parser = names::check_volume_name)]
    pub volume: String,
    /// Kubelet's root directory (its --root-dir), below which pods' volumes are.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_KUBELET_ROOT)]
    pub kubelet_root: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Only this pod's volumes.
    #[arg(long, value_name = "UID", value_parser = names::check_pod_uid)]
    pub pod_uid: Option<String>,
    /// A JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Kubelet's root directory (its --root-dir), below which pods' volumes are.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_KUBELET_ROOT)]
    pub kubelet_root: PathBuf,
}
