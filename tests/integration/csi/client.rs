//! A gRPC client of the plugin, over its unix socket, as kubelet's (grpc-go) is: one
//! connection, unary calls with a deadline.

use emptydirfs::control::csi::proto::{self, path};
use http::uri::PathAndQuery;
use std::path::Path;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};
use tonic_prost::ProstCodec;

/// Kubelet's deadline for a CSI call.
pub const KUBELET_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Client {
    rt: tokio::runtime::Runtime,
    channel: Channel,
}

impl Client {
    /// Connects lazily: the first call connects (and fails with UNAVAILABLE if nothing
    /// listens).
    pub fn new(socket: &Path) -> Client {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let endpoint = Endpoint::from_shared(format!("unix://{}", socket.display())).unwrap();
        let channel = {
            let _guard = rt.enter();
            endpoint.connect_lazy()
        };
        Client { rt, channel }
    }

    /// One unary call to `path` with a deadline (sent as `grpc-timeout`, as grpc-go does).
    pub fn call<Req, Resp>(
        &self,
        path: &'static str,
        msg: Req,
        deadline: Duration,
    ) -> Result<Resp, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.rt.block_on(async {
            let mut grpc = tonic::client::Grpc::new(self.channel.clone());
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(format!("channel not ready: {e}")))?;
            let mut req = Request::new(msg);
            req.set_timeout(deadline);
            let call = grpc.unary(
                req,
                PathAndQuery::from_static(path),
                ProstCodec::<Req, Resp>::default(),
            );
            match tokio::time::timeout(deadline, call).await {
                Ok(r) => r.map(|r| r.into_inner()),
                Err(_) => Err(Status::deadline_exceeded("client deadline")),
            }
        })
    }

    pub fn probe(&self) -> Result<bool, Status> {
        let r: proto::ProbeResponse = self.call(path::PROBE, proto::Empty {}, KUBELET_TIMEOUT)?;
        Ok(r.ready.is_none_or(|b| b.value))
    }

    pub fn plugin_info(&self) -> proto::GetPluginInfoResponse {
        self.call(path::GET_PLUGIN_INFO, proto::Empty {}, KUBELET_TIMEOUT)
            .unwrap()
    }

    pub fn plugin_capabilities(&self) -> proto::GetPluginCapabilitiesResponse {
        self.call(
            path::GET_PLUGIN_CAPABILITIES,
            proto::Empty {},
            KUBELET_TIMEOUT,
        )
        .unwrap()
    }

    pub fn node_info(&self) -> proto::NodeGetInfoResponse {
        self.call(path::NODE_GET_INFO, proto::Empty {}, KUBELET_TIMEOUT)
            .unwrap()
    }

    pub fn node_capabilities(&self) -> proto::NodeGetCapabilitiesResponse {
        self.call(
            path::NODE_GET_CAPABILITIES,
            proto::Empty {},
            KUBELET_TIMEOUT,
        )
        .unwrap()
    }

    pub fn publish(&self, req: &proto::NodePublishVolumeRequest) -> Result<(), Status> {
        self.publish_within(req, KUBELET_TIMEOUT)
    }

    pub fn publish_within(
        &self,
        req: &proto::NodePublishVolumeRequest,
        deadline: Duration,
    ) -> Result<(), Status> {
        self.call::<_, proto::Empty>(path::NODE_PUBLISH_VOLUME, req.clone(), deadline)
            .map(drop)
    }

    /// Publishes as kubelet does until it is final: again after every not-final answer
    /// (ABORTED, UNAVAILABLE, DEADLINE_EXCEEDED, ...), backing off from 500 ms (shortened
    /// here), for at most `limit`.
    pub fn publish_retrying(
        &self,
        req: &proto::NodePublishVolumeRequest,
        limit: Duration,
    ) -> Result<(), Status> {
        let deadline = std::time::Instant::now() + limit;
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.publish(req) {
                Err(s) if !is_final(&s) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                r => return r,
            }
        }
    }

    pub fn unpublish(&self, volume_id: &str, target: &Path) -> Result<(), Status> {
        let req = proto::NodeUnpublishVolumeRequest {
            volume_id: volume_id.into(),
            target_path: target.display().to_string(),
        };
        self.call::<_, proto::Empty>(path::NODE_UNPUBLISH_VOLUME, req, KUBELET_TIMEOUT)
            .map(drop)
    }

    pub fn stats(
        &self,
        volume_id: &str,
        volume_path: &Path,
    ) -> Result<proto::NodeGetVolumeStatsResponse, Status> {
        let req = proto::NodeGetVolumeStatsRequest {
            volume_id: volume_id.into(),
            volume_path: volume_path.display().to_string(),
            staging_target_path: String::new(),
        };
        self.call(path::NODE_GET_VOLUME_STATS, req, KUBELET_TIMEOUT)
    }
}

/// Kubelet's rule: these codes, and errors of the connection itself, leave the volume
/// uncertain and the call is repeated.
pub fn is_final(s: &Status) -> bool {
    let transport = std::error::Error::source(s).is_some();
    !transport
        && !matches!(
            s.code(),
            Code::Cancelled
                | Code::DeadlineExceeded
                | Code::Unavailable
                | Code::ResourceExhausted
                | Code::Aborted
        )
}

/// Asserts a refusal's code and that its message names `names`.
#[track_caller]
pub fn assert_refused(r: Result<(), Status>, code: Code, names: &str) {
    let s = r.expect_err("expected a refusal");
    assert_eq!(s.code(), code, "{s:?}");
    assert!(
        s.message().contains(names),
        "the message names {names:?}: {:?}",
        s.message()
    );
}
