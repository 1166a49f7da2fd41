//! The gRPC face of the plugin, and the only part that knows tonic: one tower service
//! that routes each request by its path, decodes it, runs the call (the node's work on a
//! blocking thread), counts the answer and encodes it. Methods we do not serve answer
//! `UNIMPLEMENTED`.

use super::error::{Code, CsiError, CsiResult};
use super::metrics::Metrics;
use super::node::Node;
use super::proto::*;
use super::request;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

/// Who the plugin says it is.
#[derive(Clone, Debug)]
pub struct Identity {
    pub driver_name: String,
    pub node_id: String,
}

#[derive(Clone)]
pub struct Service {
    pub identity: Arc<Identity>,
    pub node: Arc<Node>,
    pub metrics: Arc<Metrics>,
}

fn status(e: CsiError) -> Status {
    let code = match e.code {
        Code::Ok => tonic::Code::Ok,
        Code::InvalidArgument => tonic::Code::InvalidArgument,
        Code::NotFound => tonic::Code::NotFound,
        Code::AlreadyExists => tonic::Code::AlreadyExists,
        Code::FailedPrecondition => tonic::Code::FailedPrecondition,
        Code::Aborted => tonic::Code::Aborted,
        Code::ResourceExhausted => tonic::Code::ResourceExhausted,
        Code::Unimplemented => tonic::Code::Unimplemented,
        Code::Internal => tonic::Code::Internal,
        Code::Unavailable => tonic::Code::Unavailable,
    };
    Status::new(code, e.message)
}

/// Decodes `Req`, runs `call`, encodes its answer or error.
async fn unary<Req, Resp, F, Fut>(req: http::Request<Body>, call: F) -> http::Response<Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: FnMut(Request<Req>) -> Fut,
    Fut: Future<Output = Result<Response<Resp>, Status>>,
{
    let mut grpc = tonic::server::Grpc::new(ProstCodec::<Resp, Req>::default());
    grpc.unary(tower::service_fn(call), req).await
}

impl Service {
    /// Runs blocking node work off the runtime's threads, and counts its answer.
    async fn blocking<T: Send + 'static>(
        &self,
        rpc: &'static str,
        work: impl FnOnce(&Node) -> CsiResult<T> + Send + 'static,
    ) -> Result<Response<T>, Status> {
        let node = self.node.clone();
        // The work goes on if the caller gives up (a kubelet timeout): a publish is never
        // left half done because its call was cancelled.
        let r = tokio::task::spawn_blocking(move || work(&node))
            .await
            .unwrap_or_else(|e| {
                Err(super::error::err(
                    Code::Internal,
                    format!("{rpc} failed: {e}"),
                ))
            });
        self.metrics
            .count(rpc, r.as_ref().err().map_or(Code::Ok, |e| e.code));
        if let Err(e) = &r {
            log::info!("{rpc}: {e}");
        }
        r.map(Response::new).map_err(status)
    }

    /// A call the node serves: decoded, run on a blocking thread, counted, encoded.
    async fn node_call<Req, Resp>(
        &self,
        req: http::Request<Body>,
        rpc: &'static str,
        work: fn(&Node, Req) -> CsiResult<Resp>,
    ) -> http::Response<Body>
    where
        Req: prost::Message + Default + Send + 'static,
        Resp: prost::Message + Send + 'static,
    {
        unary(req, |r: Request<Req>| {
            let s = self.clone();
            async move {
                let r = r.into_inner();
                s.blocking(rpc, move |node| work(node, r)).await
            }
        })
        .await
    }

    async fn route(self, req: http::Request<Body>) -> http::Response<Body> {
        match req.uri().path() {
            path::GET_PLUGIN_INFO => {
                unary(req, |_: Request<Empty>| async {
                    Ok(Response::new(GetPluginInfoResponse {
                        name: self.identity.driver_name.clone(),
                        vendor_version: env!("CARGO_PKG_VERSION").into(),
                        manifest: Default::default(),
                    }))
                })
                .await
            }
            // No controller service: an inline ephemeral volume needs none.
            path::GET_PLUGIN_CAPABILITIES => {
                unary(req, |_: Request<Empty>| async {
                    Ok(Response::new(GetPluginCapabilitiesResponse::default()))
                })
                .await
            }
            path::PROBE => {
                unary(req, |_: Request<Empty>| async {
                    Ok(Response::new(ProbeResponse {
                        ready: Some(BoolValue {
                            value: self.node.is_ready(),
                        }),
                    }))
                })
                .await
            }
            path::NODE_GET_INFO => {
                unary(req, |_: Request<Empty>| async {
                    Ok(Response::new(NodeGetInfoResponse {
                        node_id: self.identity.node_id.clone(),
                        max_volumes_per_node: 0,
                        accessible_topology: None,
                    }))
                })
                .await
            }
            path::NODE_GET_CAPABILITIES => {
                unary(req, |_: Request<Empty>| async {
                    Ok(Response::new(node_capabilities()))
                })
                .await
            }
            path::NODE_PUBLISH_VOLUME => {
                self.node_call(
                    req,
                    "NodePublishVolume",
                    |node, r: NodePublishVolumeRequest| {
                        let p = request::check_publish(&node.settings.kubelet_root, &r)?;
                        node.publish(&p).map(|()| Empty {})
                    },
                )
                .await
            }
            path::NODE_UNPUBLISH_VOLUME => {
                self.node_call(
                    req,
                    "NodeUnpublishVolume",
                    |node, r: NodeUnpublishVolumeRequest| {
                        node.unpublish(&r.volume_id, &r.target_path)
                            .map(|()| Empty {})
                    },
                )
                .await
            }
            path::NODE_GET_VOLUME_STATS => {
                self.node_call(
                    req,
                    "NodeGetVolumeStats",
                    |node, r: NodeGetVolumeStatsRequest| node.stats(&r.volume_id, &r.volume_path),
                )
                .await
            }
            other => {
                self.metrics.count("other", Code::Unimplemented);
                Status::unimplemented(format!("{other} is not served by this plugin (a node-only driver of inline ephemeral volumes)")).into_http()
            }
        }
    }
}

/// What the node service offers; asked on every mount and stats poll, so built cheaply.
pub fn node_capabilities() -> NodeGetCapabilitiesResponse {
    use node_service_capability::{Rpc, RpcType, Type};
    let caps = [
        RpcType::GetVolumeStats,
        RpcType::VolumeCondition,
        RpcType::VolumeMountGroup,
        RpcType::SingleNodeMultiWriter,
    ];
    NodeGetCapabilitiesResponse {
        capabilities: caps
            .iter()
            .map(|t| NodeServiceCapability {
                r#type: Some(Type::Rpc(Rpc { r#type: *t as i32 })),
            })
            .collect(),
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl tower::Service<http::Request<Body>> for Service {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let s = self.clone();
        Box::pin(async move { Ok(s.route(req).await) })
    }
}
