//! `NodeGetVolumeStats` and how a volume is doing, from outside it (`volume/probe.rs`):
//! the daemon's counters over its control socket, how long a daemon has not answered
//! (as far as this plugin has seen), the usage last seen for a daemon that is gone.

use super::*;
use crate::control::csi::proto::{
    NodeGetVolumeStatsResponse, VolumeCondition, VolumeUsage, volume_usage,
};
use crate::control::volume::probe::{Health, Probed};

impl Node {
    /// `NodeGetVolumeStats`: from the daemon's counters, asked over its control socket
    /// (never a walk, never a request into the volume).
    pub fn stats(&self, id: &str, path: &str) -> CsiResult<NodeGetVolumeStatsResponse> {
        check_volume_id(id)?;
        if path.is_empty() {
            return Err(invalid_argument("volume_path is missing"));
        }
        self.check_ready()?;
        let not_found = |why: String| err(Code::NotFound, why);
        let r = self
            .state
            .load(id)?
            .ok_or_else(|| not_found(format!("volume {id} is not published on this node")))?;
        if Path::new(path) != r.target {
            return Err(not_found(format!(
                "volume {id} is published at {}, not at {path}",
                r.target.display()
            )));
        }
        let health = self.health(&r).health;
        if health == Health::NotMounted && std::fs::symlink_metadata(&r.target).is_err() {
            return Err(not_found(format!("{path} does not exist")));
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let (counters, condition) = match &health {
            Health::Serving(_, c) => {
                last.insert(id.to_string(), *c);
                (*c, None)
            }
            h => (
                last.get(id).copied().unwrap_or_default(),
                Some(match h {
                    Health::DeadMount => "the volume's daemon is gone: the volume answers ENOTCONN (Transport endpoint is not connected) until it is published again".to_string(),
                    Health::NotAnswering(stall) => format!(
                        "the volume's daemon is {stall}: the pod's calls into the volume wait until it answers"
                    ),
                    Health::NotMounted => "the volume is not mounted".into(),
                    Health::Failing(e) => format!("the volume fails: {e}"),
                    Health::Serving(..) => unreachable!(),
                }),
            ),
        };
        drop(last);
        Ok(stats_response(&r, &counters, condition))
    }

    /// How volume `r` is doing, from outside it (see `volume/probe.rs`). A daemon not
    /// answering is said to be so for at least as long as this plugin has seen it so.
    pub fn health(&self, r: &Record) -> Probed {
        let mut probed = probe(&r.target, &self.state.control_socket(&r.volume_id));
        let mut stalled = self.stalled.lock().unwrap_or_else(|e| e.into_inner());
        match &mut probed.health {
            Health::NotAnswering(stall) => {
                let first = *stalled
                    .entry(r.volume_id.clone())
                    .or_insert_with(Instant::now);
                let seen = first.elapsed();
                if stall.since.is_none_or(|s| s < seen) {
                    stall.since = Some(seen);
                }
            }
            _ => {
                stalled.remove(&r.volume_id);
            }
        }
        probed
    }
}

/// The usage lists of a stats answer: bytes always (the limit as total when the daemon
/// cannot tell), inodes where known.
fn stats_response(
    r: &Record,
    c: &Counters,
    abnormal: Option<String>,
) -> NodeGetVolumeStatsResponse {
    let n = |v: Option<u64>| v.map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX));
    let mut usage = vec![VolumeUsage {
        total: n(c.size.or(r.spec.size_limit)),
        used: n(c.used_bytes),
        available: n(c.available_bytes),
        unit: volume_usage::Unit::Bytes as i32,
    }];
    if c.inodes.is_some() {
        usage.push(VolumeUsage {
            total: n(c.inodes),
            used: n(c.inodes_used),
            available: n(c.inodes_free),
            unit: volume_usage::Unit::Inodes as i32,
        });
    }
    NodeGetVolumeStatsResponse {
        usage,
        volume_condition: Some(VolumeCondition {
            abnormal: abnormal.is_some(),
            message: abnormal.unwrap_or_else(|| "serving".into()),
        }),
    }
}
