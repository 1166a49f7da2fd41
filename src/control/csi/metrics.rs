//! Prometheus metrics at `/metrics`: each volume's limits and usage (labelled by
//! namespace, pod, volume and medium), whether its daemon is up, and the plugin's calls by
//! gRPC code. Kubelet exports no `kubelet_volume_stats_*` series for inline CSI volumes;
//! these are them. Usage comes from one `statfs` per volume (the daemons' counters),
//! never a walk, so a scrape costs the same however many files the volumes hold.
//!
//! The HTTP server is a small thread of its own (a scrape is a GET on a loopback or pod
//! address); it answers `/metrics`, and 404 for anything else.

use super::error::Code;
use super::node::Node;
use super::state::Record;
use crate::control::volume::probe::{Health, Probed};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Calls answered, by RPC and code.
#[derive(Default)]
pub struct Metrics {
    calls: Mutex<BTreeMap<(&'static str, Code), u64>>,
}

impl Metrics {
    pub fn count(&self, rpc: &'static str, code: Code) {
        *self
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((rpc, code))
            .or_default() += 1;
    }

    /// The whole exposition, in Prometheus' text format.
    pub fn render(&self, node: &Node) -> String {
        let mut out = String::new();
        let gauges: [(&str, &str); 8] = [
            (
                "emptydirfs_volume_size_limit_bytes",
                "The volume's size limit.",
            ),
            (
                "emptydirfs_volume_used_bytes",
                "Bytes the volume holds, from its daemon's counters.",
            ),
            ("emptydirfs_volume_inode_limit", "The volume's inode limit."),
            (
                "emptydirfs_volume_inodes_used",
                "Inodes the volume holds, from its daemon's counters.",
            ),
            (
                "emptydirfs_volume_daemon_up",
                "1 if the volume is mounted and its daemon answers, else 0.",
            ),
            (
                "emptydirfs_volume_handoffs",
                "Hand-offs of the volume from one daemon to the next.",
            ),
            (
                "emptydirfs_volume_not_answering_seconds",
                "How long the volume's daemon, alive, has not answered (0 while it answers).",
            ),
            (
                "emptydirfs_volume_requests_waiting",
                "Requests the kernel holds for the volume's daemon (sent, not yet answered).",
            ),
        ];
        let records: Vec<Record> = node
            .state
            .ids()
            .unwrap_or_default()
            .iter()
            .filter_map(|id| node.state.load(id).ok().flatten())
            .collect();
        // Every volume asked at once: a scrape costs one answer timeout at most, however
        // many daemons are stopped.
        let probed: Vec<Probed> = std::thread::scope(|s| {
            let handles: Vec<_> = records.iter().map(|r| s.spawn(|| node.health(r))).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Health::Failing("probing it panicked".into()).into())
                })
                .collect()
        });
        let mut rows: Vec<[Option<u64>; 8]> = Vec::new();
        let mut labels = Vec::new();
        let mut builds = Vec::new();
        for (r, p) in records.iter().zip(probed) {
            let health = &p.health;
            let c = match health {
                Health::Serving(_, c) => Some(*c),
                _ => None,
            };
            let memory = r.spec.medium == crate::control::volume::spec::VolumeMedium::Memory;
            let stalled = match health {
                Health::NotAnswering(s) => Some(s.since.map_or(0, |d| d.as_secs())),
                Health::Serving(..) => Some(0),
                _ => None,
            };
            builds.push(p.daemon.as_ref().map(|d| {
                (
                    d.build.clone(),
                    d.limit_kept_by.clone(),
                    d.data_path.clone(),
                )
            }));
            rows.push([
                r.spec.size_limit.or(c.and_then(|c| c.size)),
                c.and_then(|c| c.used_bytes),
                r.spec
                    .inode_limit
                    .or(c.filter(|_| memory).and_then(|c| c.inodes)),
                c.and_then(|c| c.inodes_used),
                Some(u64::from(c.is_some())),
                p.daemon.as_ref().and_then(|d| d.handoffs),
                stalled,
                p.waiting,
            ]);
            labels.push(format!(
                "namespace=\"{}\",pod=\"{}\",volume=\"{}\",medium=\"{}\",volume_id=\"{}\"",
                escape(&r.pod.namespace),
                escape(&r.pod.name),
                escape(&r.pod.volume),
                escape(&r.spec.medium.kubernetes_name()),
                escape(&r.volume_id)
            ));
        }
        for (i, (name, help)) in gauges.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (row, l) in rows.iter().zip(&labels) {
                if let Some(v) = row[i] {
                    let _ = writeln!(out, "{name}{{{l}}} {v}");
                }
            }
        }
        let info = "emptydirfs_volume_daemon_info";
        let _ = writeln!(
            out,
            "# HELP {info} The build of the volume's daemon, what keeps its size limit (tmpfs: the kernel, at write(2); daemon: each write reserved by the daemon) and who moves its data (kernel: passthrough; kernel reads; daemon).\n# TYPE {info} gauge"
        );
        for (daemon, l) in builds.iter().zip(&labels) {
            if let Some((build, kept, data)) = daemon {
                let _ = writeln!(
                    out,
                    "{info}{{{l},build=\"{}\",limit_kept_by=\"{}\",data_path=\"{}\"}} 1",
                    escape(build),
                    escape(kept),
                    escape(data)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP emptydirfs_csi_calls_total gRPC calls answered, by method and code.\n# TYPE emptydirfs_csi_calls_total counter"
        );
        for ((rpc, code), n) in self.calls.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                out,
                "emptydirfs_csi_calls_total{{method=\"{rpc}\",code=\"{}\"}} {n}",
                code.name()
            );
        }
        let _ = writeln!(
            out,
            "# HELP emptydirfs_csi_ready 1 once the state of existing volumes is loaded.\n# TYPE emptydirfs_csi_ready gauge\nemptydirfs_csi_ready {}",
            u8::from(node.is_ready())
        );
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `/metrics` on `listener` until the process ends.
pub fn serve(listener: TcpListener, metrics: Arc<Metrics>, node: Arc<Node>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        if let Err(e) = answer(conn, &metrics, &node) {
            log::debug!("metrics connection: {e}");
        }
    }
}

fn answer(mut conn: TcpStream, metrics: &Metrics, node: &Node) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // The headers are read and ignored (up to the blank line).
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, kind, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(node),
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics\n".into(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}
