//! Access control for `tcplab.v1.LabService`: the token comes from the
//! `authorization: Bearer <token>` metadata and [`AccessConfig::check`]
//! decides, with `Get*`/`List*`/`Watch*` RPCs as reads
//! ([`crate::auth::grpc_method_reads`]).
//!
//! This is a tower wrapper around the generated server rather than a
//! `tonic::service::Interceptor`, because tonic hands an interceptor the
//! metadata but not the request path, and the path names the RPC, which
//! decides whether the read-only token may make it. It wraps only the lab
//! service: server reflection and `grpc.health.v1` stay open for tools and
//! probes (they reveal no session data).

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use tonic::codegen::http;
use tonic::server::NamedService;

use crate::auth::AccessConfig;

/// A gRPC service that answers UNAUTHENTICATED / PERMISSION_DENIED unless
/// the request's token allows the RPC.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    access: Arc<AccessConfig>,
}

impl<S> Authenticated<S> {
    /// `inner` behind `access`.
    pub fn new(inner: S, access: Arc<AccessConfig>) -> Authenticated<S> {
        Authenticated { inner, access }
    }
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for Authenticated<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if !self.access.enabled() {
            return Either::Left(self.inner.call(req));
        }
        let method = req.uri().path().rsplit('/').next().unwrap_or("");
        let changes = !crate::auth::grpc_method_reads(method);
        let presented = req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(crate::auth::bearer);
        match self.access.check(presented, changes) {
            Ok(_) => Either::Left(self.inner.call(req)),
            Err(e) => Either::Right(ready(Ok(tonic::Status::from(e).into_http()))),
        }
    }
}
