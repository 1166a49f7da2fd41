//! `emptydirfs csi`: the CSI node plugin that gives pods emptydirfs volumes as CSI
//! ephemeral inline volumes (kubelet calls `NodePublishVolume` at the pod's target path
//! and `NodeUnpublishVolume` when the pod goes).
//!
//! Volumes outlive the plugin: each daemon runs in a cgroup below its pod's (or the
//! driver's own), never in the plugin's, and every volume is recorded in the state dir,
//! so a plugin killed and started again serves unpublish and stats for all of them while
//! their pods go on using them. SIGTERM stops the plugin without touching any volume.
//!
//! # Layout
//! - [`proto`]: the CSI messages we serve, written from the spec;
//! - [`grpc`]: the gRPC service (the only tonic-facing code): routing, decoding, counting;
//! - `authority`, `hpack`: what clients send as `:authority` on a unix socket made one
//!   that h2 takes (grpcio sends the socket's path);
//! - [`request`]: a publish checked as hostile input; [`policy`]: the operator's caps;
//! - [`node`]: publish, unpublish and stats on the shared volume lifecycle;
//! - [`state`]: the state dir and its volume records;
//! - [`placement`]: the daemon's cgroup below the pod's, the pod's limits;
//! - [`orphans`]: collecting volumes of pods that are gone; [`metrics`]: `/metrics`;
//! - [`error`]: gRPC codes and messages.

mod authority;
pub mod error;
pub mod grpc;
mod hpack;
pub mod metrics;
pub mod node;
pub mod orphans;
pub mod placement;
pub mod policy;
pub mod proto;
pub mod request;
pub mod state;

use crate::control::cgroup::Cgroups;
use crate::error::{Failure, failed, invalid};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What `emptydirfs csi` was asked for.
#[derive(Clone, Debug)]
pub struct CsiOptions {
    /// `unix:///path/to/csi.sock`.
    pub endpoint: String,
    pub node_id: String,
    pub driver_name: String,
    pub state_dir: PathBuf,
    pub kubelet_root: PathBuf,
    pub policy: policy::Policy,
    /// Where the node's cgroup filesystems are mounted.
    pub cgroup_fs: PathBuf,
    /// Kubelet's `--cgroup-root`.
    pub kubelet_cgroup_root: PathBuf,
    /// The driver's own cgroup, for daemons whose pod's cgroup is not found.
    pub fallback_cgroup: PathBuf,
    pub orphan_grace: Duration,
    /// How long a daemon gets to exit on SIGTERM at unpublish.
    pub stop_grace: Duration,
    pub metrics_address: Option<SocketAddr>,
    /// Once loaded, hand every volume whose daemon runs another build to a new daemon.
    pub upgrade_daemons: bool,
}

/// Checks a driver name as the CSI spec wants it: at most 63 characters, alphanumerics
/// at both ends, only `-`, `.` and alphanumerics between.
pub fn check_driver_name(name: &str) -> Result<String, String> {
    let b = name.as_bytes();
    let alnum = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let ok = !b.is_empty()
        && b.len() <= 63
        && alnum(b.first())
        && alnum(b.last())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.');
    if ok {
        Ok(name.to_string())
    } else {
        Err(format!(
            "invalid driver name {name:?}: at most 63 letters, digits, '-' and '.', starting and ending with a letter or digit (such as csi.emptydirfs.io)"
        ))
    }
}

/// The socket path of a `unix://` endpoint.
pub fn endpoint_path(endpoint: &str) -> Result<PathBuf, String> {
    match endpoint.strip_prefix("unix://") {
        Some(p) if p.starts_with('/') && p.len() > 1 => Ok(PathBuf::from(p)),
        _ => Err(format!(
            "invalid endpoint {endpoint:?}: use unix:///absolute/path/csi.sock"
        )),
    }
}

/// Runs the plugin until SIGTERM or SIGINT.
pub fn run(opts: &CsiOptions) -> Result<(), Failure> {
    let socket = endpoint_path(&opts.endpoint).map_err(invalid)?;
    if opts.node_id.is_empty() || opts.node_id.len() > 256 {
        return Err(invalid("--node-id must be 1 to 256 bytes"));
    }
    let kubelet_root = crate::control::volume::names::check_kubelet_root(&opts.kubelet_root)?;
    // Before any thread: a thread joins a namespace alone, and later threads (and the
    // daemons they start) inherit the one it is in.
    join_host_cgroup_namespace()?;
    let state = state::StateDir::open(&opts.state_dir)?;
    let _lock = state.lock()?;
    let cgroups = Cgroups::discover(&opts.cgroup_fs).map_err(|e| {
        failed(format!(
            "finding the node's cgroups under {}: {e} (give the host's cgroup filesystem with --cgroup-fs)",
            opts.cgroup_fs.display()
        ))
    })?;
    log::info!(
        "cgroup {:?} hierarchies: {:?}",
        cgroups.version,
        cgroups
            .hierarchies
            .iter()
            .map(|h| h.root.display().to_string())
            .collect::<Vec<_>>()
    );
    let placer = placement::Placer {
        cgroups,
        kubelet_root: opts.kubelet_cgroup_root.clone(),
        fallback: opts.fallback_cgroup.clone(),
        oom_score_adj: placement::oom_score_adj(),
    };
    let settings = node::Settings {
        kubelet_root,
        policy: opts.policy.clone(),
        stop_grace: opts.stop_grace,
    };
    let node = Arc::new(node::Node::new(settings, state, placer));
    let metrics = Arc::new(metrics::Metrics::default());
    let listener = bind(&socket)?;

    if let Some(addr) = opts.metrics_address {
        let tcp = TcpListener::bind(addr)
            .map_err(|e| failed(format!("--metrics-address {addr}: {e}")))?;
        // The address bound (port 0 asks the kernel for a free one).
        let bound = tcp.local_addr().unwrap_or(addr);
        log::info!("metrics at http://{bound}/metrics");
        let (m, n) = (metrics.clone(), node.clone());
        thread("metrics", move || metrics::serve(tcp, m, n))?;
    }
    let (loader, upgrade) = (node.clone(), opts.upgrade_daemons);
    thread("load", move || {
        if let Err(e) = loader.load() {
            log::error!("loading the state of existing volumes: {e}");
        }
        if upgrade {
            let n = loader.upgrade_daemons();
            log::info!("{n} volumes handed to daemons of this build");
        }
    })?;
    let (collector, grace) = (node.clone(), opts.orphan_grace);
    let every = (grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    thread("orphans", move || orphans::run(collector, grace, every))?;

    let service = grpc::Service {
        identity: Arc::new(grpc::Identity {
            driver_name: opts.driver_name.clone(),
            node_id: opts.node_id.clone(),
        }),
        node,
        metrics,
    };
    log::info!(
        "{} serving on {} (node {})",
        opts.driver_name,
        socket.display(),
        opts.node_id
    );
    let result = serve(service, listener);
    let _ = std::fs::remove_file(&socket);
    result
}

fn thread(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), Failure> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
        .map_err(|e| failed(format!("starting the {name} thread: {e}")))
}

/// Binds the socket, mode 0600, replacing an old socket file (never anything else).
fn bind(socket: &Path) -> Result<std::os::unix::net::UnixListener, Failure> {
    match std::fs::symlink_metadata(socket) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(socket)
            .map_err(|e| failed(format!("removing the old socket {}: {e}", socket.display())))?,
        Ok(_) => {
            return Err(invalid(format!(
                "{} exists and is not a socket; refusing to replace it",
                socket.display()
            )));
        }
        Err(_) => {}
    }
    // Bound on a thread whose own umask makes the socket 0600 from its first moment (no
    // window before a chmod), while other threads create files with the usual one.
    let bound =
        crate::common::umask::with_umask(0o177, || std::os::unix::net::UnixListener::bind(socket))
            .and_then(|bound| bound);
    let listener = bound.map_err(|e| failed(format!("listening on {}: {e}", socket.display())))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| failed(format!("chmod {}: {e}", socket.display())))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| failed(format!("{}: {e}", socket.display())))?;
    Ok(listener)
}

/// How long connections get to close after SIGTERM, and calls under way to finish: the
/// plugin exits within a second whatever they do (a call cut short is finished by the
/// next plugin: the state dir is the only truth, and kubelet repeats unfinished calls).
const DRAIN: Duration = Duration::from_millis(400);
const FINISH: Duration = Duration::from_millis(300);

/// Serves gRPC until SIGTERM or SIGINT, then exits within a second.
fn serve(
    service: grpc::Service,
    listener: std::os::unix::net::UnixListener,
) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .thread_name("grpc")
        .build()
        .map_err(|e| failed(format!("starting the gRPC runtime: {e}")))?;
    let result = rt.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(|e| failed(e.to_string()))?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| failed(e.to_string()))?;
        let listener =
            tokio::net::UnixListener::from_std(listener).map_err(|e| failed(e.to_string()))?;
        // Every connection through the `:authority` fix (see `authority.rs`).
        let incoming = tokio_stream::StreamExt::map(
            tokio_stream::wrappers::UnixListenerStream::new(listener),
            |conn| conn.map(authority::Fixed::new),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tonic::transport::Server::builder().serve_with_incoming_shutdown(
            service,
            incoming,
            async move {
                let _ = stopped.await;
            },
        );
        tokio::pin!(server);
        let sig = tokio::select! {
            r = &mut server => return r.map_err(|e| failed(format!("serving gRPC: {e}"))),
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        log::info!("{sig}: stopping; every volume stays as it is");
        let _ = stop.send(());
        // A graceful HTTP/2 close waits for each client to answer a ping: a client that
        // does not is not waited for long.
        match tokio::time::timeout(DRAIN, server).await {
            Ok(r) => r.map_err(|e| failed(format!("serving gRPC: {e}"))),
            Err(_) => {
                log::warn!("connections still open {DRAIN:?} after {sig}; exiting");
                Ok(())
            }
        }
    });
    rt.shutdown_timeout(FINISH);
    result
}

/// A plugin in a container may be in a cgroup namespace of its own, from which no process
/// can be moved into a pod's cgroup. With the host's pid namespace (`hostPID`), pid 1 is
/// the host's init and its cgroup namespace the host's: join it.
fn join_host_cgroup_namespace() -> Result<(), Failure> {
    let ns = |p: &str| std::fs::read_link(p).ok();
    let (host, ours) = (ns("/proc/1/ns/cgroup"), ns("/proc/self/ns/cgroup"));
    if host.is_none() || host == ours {
        return Ok(());
    }
    let f = std::fs::File::open("/proc/1/ns/cgroup")
        .map_err(|e| failed(format!("opening the host's cgroup namespace: {e}")))?;
    use std::os::fd::AsRawFd;
    // SAFETY: `f` is an open descriptor of a namespace file, borrowed for the call; setns
    // touches only the calling thread's namespaces.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWCGROUP) } != 0 {
        return Err(failed(format!(
            "joining the host's cgroup namespace: {} (the plugin needs CAP_SYS_ADMIN and hostPID)",
            std::io::Error::last_os_error()
        )));
    }
    log::info!("joined the host's cgroup namespace");
    Ok(())
}
