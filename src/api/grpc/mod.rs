//! The gRPC API (`tcplab.v1.LabService`, [`pb`]): the REST API's operations
//! over tonic, on the same [`LabService`].
//!
//! Each RPC is a thin adapter: convert the request message into the service
//! model type ([`convert`]), call the one [`LabService`] method REST calls,
//! convert the reply back. A [`crate::service::Error`] becomes a
//! [`tonic::Status`] in one place ([`error`]).
//!
//! [`router`] also serves gRPC server reflection (v1 and v1alpha, so that
//! `grpcurl` and friends work without the `.proto`) and the standard health
//! service (`grpc.health.v1.Health`) with `tcplab.v1.LabService` SERVING.
//! [`serve`] runs all of it on a listener until a shutdown signal, the way
//! the REST server does, so tests bind `127.0.0.1:0`.
//!
//! `WatchEvents` streams with a live session keep their HTTP/2 connection
//! open, so a graceful shutdown completes once the sessions have ended
//! ([`LabService::shutdown`] ends them all).

pub mod auth;
pub mod codec;
pub mod convert;
pub mod error;
pub mod labs;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;

use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt as _};
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::service::{LabService, StreamItem};
use convert::{parse_close_how, parse_side, renamed};
use pb::lab_service_server::{LabService as LabRpc, LabServiceServer};

/// The messages and the server/client code generated from
/// `proto/tcplab/v1/lab.proto` by `build.rs`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("tcplab.v1");
}

/// The encoded `FileDescriptorSet` of `lab.proto` that `build.rs` writes, which
/// server reflection serves so that clients need no copy of the `.proto`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tcplab_descriptor.bin"));

/// The gRPC name of the lab service (`tcplab.v1.LabService`), as the health
/// service reports it.
pub const SERVICE_NAME: &str = <LabServiceServer<GrpcLab> as NamedService>::NAME;

/// The stream `WatchEvents` answers with: events (and the caught-up marker,
/// if asked for), then possibly one final `ABORTED` status if the subscriber
/// lagged.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEventsResponse, Status>> + Send + 'static>>;

/// The implementation of the generated `LabService` trait: holds the shared
/// service layer and nothing else, because every RPC is convert, call,
/// convert back.
#[derive(Clone)]
pub struct GrpcLab {
    service: LabService,
}

impl GrpcLab {
    /// The gRPC adapter over `service` (a clone of the one REST uses).
    pub fn new(service: LabService) -> GrpcLab {
        GrpcLab { service }
    }
}

/// Wraps a reply message, so each RPC body reads as one expression.
fn reply<T>(message: T) -> Result<Response<T>, Status> {
    Ok(Response::new(message))
}

#[tonic::async_trait]
impl LabRpc for GrpcLab {
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let req = request.into_inner().try_into()?;
        reply(self.service.create_session(req).await?.into())
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        reply(self.service.list_sessions(request.into_inner().into()).await?.into())
    }

    async fn get_session(&self, request: Request<pb::SessionRef>) -> Result<Response<pb::Session>, Status> {
        reply(self.service.get_session(request.into_inner().session_id).await?.into())
    }

    async fn end_session(&self, request: Request<pb::SessionRef>) -> Result<Response<pb::Session>, Status> {
        reply(self.service.end_session(request.into_inner().session_id).await?.into())
    }

    async fn patch_profile(&self, request: Request<pb::PatchProfileRequest>) -> Result<Response<pb::Profile>, Status> {
        let r = request.into_inner();
        let settings = convert::profile_settings(r.profile.unwrap_or_default())?;
        reply(self.service.patch_profile(r.session_id, settings).await?.into())
    }

    async fn add_host(&self, request: Request<pb::AddHostRequest>) -> Result<Response<pb::Host>, Status> {
        let req = request.into_inner();
        let sid = req.session_id;
        reply(self.service.add_host(sid, req.try_into()?).await?.into())
    }

    async fn list_hosts(&self, request: Request<pb::SessionRef>) -> Result<Response<pb::ListHostsResponse>, Status> {
        let hosts = self.service.list_hosts(request.into_inner().session_id).await?;
        reply(pb::ListHostsResponse { hosts: hosts.into_iter().map(Into::into).collect() })
    }

    async fn set_link(&self, request: Request<pb::SetLinkRequest>) -> Result<Response<pb::Link>, Status> {
        let req = request.into_inner();
        let sid = req.session_id;
        reply(self.service.set_link(sid, req.into()).await?.into())
    }

    async fn list_links(&self, request: Request<pb::SessionRef>) -> Result<Response<pb::ListLinksResponse>, Status> {
        let links = self.service.list_links(request.into_inner().session_id).await?;
        reply(pb::ListLinksResponse { links: links.into_iter().map(Into::into).collect() })
    }

    async fn add_listener(&self, request: Request<pb::AddListenerRequest>) -> Result<Response<pb::Listener>, Status> {
        let req = request.into_inner();
        let sid = req.session_id;
        reply(self.service.add_listener(sid, req.into()).await?.into())
    }

    async fn list_listeners(
        &self,
        request: Request<pb::SessionRef>,
    ) -> Result<Response<pb::ListListenersResponse>, Status> {
        let listeners = self.service.list_listeners(request.into_inner().session_id).await?;
        reply(pb::ListListenersResponse { listeners: listeners.into_iter().map(Into::into).collect() })
    }

    async fn open_connection(
        &self,
        request: Request<pb::OpenConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let req = request.into_inner();
        let sid = req.session_id;
        reply(self.service.open_connection(sid, req.into()).await?.into())
    }

    async fn list_connections(
        &self,
        request: Request<pb::SessionRef>,
    ) -> Result<Response<pb::ListConnectionsResponse>, Status> {
        let connections = self.service.list_connections(request.into_inner().session_id).await?;
        reply(pb::ListConnectionsResponse { connections: connections.into_iter().map(Into::into).collect() })
    }

    async fn accept(&self, request: Request<pb::ListenerRef>) -> Result<Response<pb::Connection>, Status> {
        let r = request.into_inner();
        reply(self.service.accept(r.session_id, r.listener_id).await?.into())
    }

    async fn close_listener(
        &self,
        request: Request<pb::ListenerRef>,
    ) -> Result<Response<pb::CloseListenerResponse>, Status> {
        let r = request.into_inner();
        self.service.close_listener(r.session_id, r.listener_id).await?;
        reply(pb::CloseListenerResponse {})
    }

    async fn get_connection(&self, request: Request<pb::ConnectionRef>) -> Result<Response<pb::Connection>, Status> {
        let r = request.into_inner();
        reply(self.service.get_connection(r.session_id, r.connection_id).await?.into())
    }

    async fn send(&self, request: Request<pb::SendRequest>) -> Result<Response<pb::SendResponse>, Status> {
        let req = request.into_inner();
        let (sid, cid) = (req.session_id, req.connection_id);
        reply(self.service.send(sid, cid, req.try_into()?).await?.into())
    }

    async fn get_received(&self, request: Request<pb::SideRequest>) -> Result<Response<pb::ReceivedResponse>, Status> {
        let r = request.into_inner();
        reply(self.service.received(r.session_id, r.connection_id, parse_side(r.side)?).await?.try_into()?)
    }

    async fn close(&self, request: Request<pb::CloseRequest>) -> Result<Response<pb::Connection>, Status> {
        let r = request.into_inner();
        let req = crate::service::model::CloseRequest { side: parse_side(r.side)?, how: parse_close_how(r.how)? };
        reply(self.service.close(r.session_id, r.connection_id, req).await?.into())
    }

    async fn abort(&self, request: Request<pb::SideRequest>) -> Result<Response<pb::Connection>, Status> {
        let r = request.into_inner();
        let side = crate::service::model::SideRequest { side: parse_side(r.side)? };
        reply(self.service.abort(r.session_id, r.connection_id, side).await?.into())
    }

    async fn add_fault(&self, request: Request<pb::AddFaultRequest>) -> Result<Response<pb::Fault>, Status> {
        let req = request.into_inner();
        let sid = req.session_id;
        reply(self.service.add_fault(sid, req.try_into()?).await?.into())
    }

    async fn list_faults(&self, request: Request<pb::SessionRef>) -> Result<Response<pb::ListFaultsResponse>, Status> {
        let faults = self.service.list_faults(request.into_inner().session_id).await?;
        reply(pb::ListFaultsResponse { faults: faults.into_iter().map(Into::into).collect() })
    }

    async fn delete_fault(&self, request: Request<pb::FaultRef>) -> Result<Response<pb::DeleteFaultResponse>, Status> {
        let r = request.into_inner();
        self.service.delete_fault(r.session_id, r.fault_id).await?;
        reply(pb::DeleteFaultResponse {})
    }

    async fn release_fault(
        &self,
        request: Request<pb::FaultRef>,
    ) -> Result<Response<pb::ReleaseFaultResponse>, Status> {
        let r = request.into_inner();
        reply(pb::ReleaseFaultResponse { released: self.service.release_fault(r.session_id, r.fault_id).await? })
    }

    async fn inject(&self, request: Request<pb::InjectRequest>) -> Result<Response<pb::InjectResponse>, Status> {
        let req = request.into_inner();
        let sid = req.session_id;
        let result =
            self.service.inject(sid, req.try_into()?).await.map_err(|e| renamed(e, "options", "options_json"))?;
        reply(pb::InjectResponse { segment_id: result.segment_id })
    }

    async fn clock(&self, request: Request<pb::ClockRequest>) -> Result<Response<pb::ClockResponse>, Status> {
        let req = request.into_inner();
        let sid = req.session_id;
        reply(self.service.clock(sid, req.try_into()?).await?.into())
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let req = request.into_inner();
        let sid = req.session_id;
        let page = self.service.events(sid, req.try_into()?).await.map_err(|e| renamed(e, "kind", "kinds"))?;
        reply(page.into())
    }

    async fn list_segments(
        &self,
        request: Request<pb::SessionRef>,
    ) -> Result<Response<pb::ListSegmentsResponse>, Status> {
        reply(self.service.segments(request.into_inner().session_id).await?.into())
    }

    async fn get_pcap(&self, request: Request<pb::SessionRef>) -> Result<Response<pb::PcapResponse>, Status> {
        let capture = self.service.pcap(request.into_inner().session_id).await?;
        reply(pb::PcapResponse { pcap: capture.pcap, truncated: capture.truncated })
    }

    async fn run_packetdrill(
        &self,
        request: Request<pb::RunPacketdrillRequest>,
    ) -> Result<Response<pb::RunPacketdrillResponse>, Status> {
        let pb::RunPacketdrillRequest { session_id, script, profile, defines } = request.into_inner();
        let profile = profile.map(crate::engine::Profile::try_from).transpose()?;
        let req = crate::service::packetdrill::RunPacketdrill { script, profile, defines };
        reply(self.service.run_packetdrill(session_id, req).await?.into())
    }

    async fn list_profiles(
        &self,
        _: Request<pb::ListProfilesRequest>,
    ) -> Result<Response<pb::ListProfilesResponse>, Status> {
        reply(self.service.list_profiles()?.into())
    }

    async fn list_labs(&self, _: Request<pb::ListLabsRequest>) -> Result<Response<pb::ListLabsResponse>, Status> {
        reply(self.service.list_labs()?.into())
    }

    async fn get_lab(&self, request: Request<pb::LabRef>) -> Result<Response<pb::Lab>, Status> {
        reply(self.service.get_lab(&request.into_inner().name)?.into())
    }

    async fn run_lab(&self, request: Request<pb::RunLabRequest>) -> Result<Response<pb::RunLabResponse>, Status> {
        let result = match labs::LabRequest::try_from(request.into_inner())? {
            labs::LabRequest::Builtin(name, req) => self.service.run_lab(&name, req).await?,
            labs::LabRequest::Toml(req) => self.service.run_lab_toml(req).await?,
        };
        reply(result.into())
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(&self, request: Request<pb::WatchEventsRequest>) -> Result<Response<EventStream>, Status> {
        let pb::WatchEventsRequest { session_id, after_seq, kinds, connection, durable, caught_up } =
            request.into_inner();
        let kinds = convert::kinds_filter(&kinds)?;
        let subscription = self
            .service
            .subscribe(session_id, after_seq, kinds.as_deref(), connection, durable)
            .await
            .map_err(|e| renamed(e, "kind", "kinds"))?;
        let subscription = if caught_up { subscription.with_caught_up() } else { subscription };
        // A gRPC stream says "the session ended" by closing with OK.
        let events = subscription.into_stream().filter_map(stream_item);
        reply(Box::pin(events) as EventStream)
    }
}

/// One item of a subscription as a `WatchEvents` item: an event, the
/// caught-up marker, or the final ABORTED status that tells a lagging client
/// where to resume (the subscription ends right after it); the session's end
/// is the stream's own end (status OK), so it is no item.
fn stream_item(item: StreamItem) -> Option<Result<pb::WatchEventsResponse, Status>> {
    use pb::watch_events_response::Item;
    let item = match item {
        StreamItem::Event { event, durable } => Item::Event(pb::Event { durable, ..pb::Event::from(&*event) }),
        StreamItem::CaughtUp { last_seq } => Item::CaughtUp(pb::CaughtUp { last_seq }),
        StreamItem::Lagged { last_seq } => {
            return Some(Err(Status::aborted(format!("subscriber lagged; resume with after_seq={last_seq}"))));
        }
        StreamItem::End { .. } => return None,
    };
    Some(Ok(pb::WatchEventsResponse { item: Some(item) }))
}

/// The gRPC routes and the handle of their health service, for a caller that
/// wants to report NOT_SERVING itself (e.g. when it serves gRPC inside its own
/// server) with [`mark_not_serving`].
///
/// # Panics
/// Never in practice: reflection is built from [`FILE_DESCRIPTOR_SET`], which
/// `build.rs` produced from the same `.proto` the code was generated from (a
/// unit test decodes it).
pub async fn router_with_health(service: LabService) -> (Routes, HealthReporter) {
    router_with_access(service, std::sync::Arc::default()).await
}

/// [`router_with_health`] with the lab service behind `access` (reflection
/// and health stay open; see [`auth`]).
///
/// # Panics
/// As [`router_with_health`].
pub async fn router_with_access(
    service: LabService,
    access: std::sync::Arc<crate::auth::AccessConfig>,
) -> (Routes, HealthReporter) {
    let max_message = service.limits().max_body_bytes;
    let lab = LabServiceServer::new(GrpcLab::new(service)).max_decoding_message_size(max_message);
    let lab = auth::Authenticated::new(lab, access);
    // Our own build artifact, not client input: a failure here is a build bug.
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("build.rs wrote a valid descriptor set for reflection v1");
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("build.rs wrote a valid descriptor set for reflection v1alpha");
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status(SERVICE_NAME, ServingStatus::Serving).await;
    let routes =
        Routes::new(lab).add_service(reflection_v1).add_service(reflection_v1alpha).add_service(health).prepare();
    (routes, reporter)
}

/// Everything the gRPC port serves, for
/// `tonic::transport::Server::builder().add_routes(..)` (or, through
/// `Routes::into_axum_router`, for an axum server): the lab service,
/// reflection v1 and v1alpha, and health with `tcplab.v1.LabService` SERVING.
///
/// `async` because the health reporter's setter is.
pub async fn router(service: LabService) -> Routes {
    router_with_health(service).await.0
}

/// Reports the server and `tcplab.v1.LabService` NOT_SERVING, then ends every
/// health `Watch` stream, which would otherwise hold a graceful shutdown open
/// forever. Call it once shutdown has begun; from then on `Check` answers
/// NOT_FOUND for both names.
pub async fn mark_not_serving(reporter: &mut HealthReporter) {
    for name in ["", SERVICE_NAME] {
        reporter.set_service_status(name, ServingStatus::NotServing).await;
    }
    // A watcher sees NOT_SERVING before it sees the channel close.
    for name in ["", SERVICE_NAME] {
        reporter.clear_service_status(name).await;
    }
}

/// Serves the gRPC API on `listener` until `shutdown` completes, then drains
/// in-flight calls (health reports NOT_SERVING first). The caller binds the
/// listener, so tests can use `127.0.0.1:0`.
///
/// # Errors
/// A transport failure of the server.
pub async fn serve(
    service: LabService,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    serve_with_access(service, std::sync::Arc::default(), listener, shutdown).await
}

/// [`serve`] with the lab service behind `access` (see [`auth`]).
///
/// # Errors
/// A transport failure of the server.
pub async fn serve_with_access(
    service: LabService,
    access: std::sync::Arc<crate::auth::AccessConfig>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let metrics = crate::api::metrics::GrpcMetricsLayer::new(service.metrics().clone());
    let (routes, mut reporter) = router_with_access(service, access).await;
    let shutdown = async move {
        shutdown.await;
        mark_not_serving(&mut reporter).await;
    };
    tonic::transport::Server::builder()
        .layer(metrics)
        .add_routes(routes)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}
