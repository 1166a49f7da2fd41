//! The CSI node plugin, driven over its socket by a real gRPC client as kubelet drives
//! it (kubelet's paths, `vol_data.json`, `csi-<sha256>` volume ids, retries), each volume
//! used as a container uses it: through a bind mount, as another uid.

mod cgroups;
pub mod client;
mod deploy;
pub mod fixture;
mod grpcio;
mod idempotency;
mod lifecycle;
mod metrics;
mod orphans;
mod refusals;
mod restart;
mod rpc;
mod upgrade;
mod wedged;
