use std::sync::Arc;
use std::task::{Context, Poll};

use foobar_core::{Accepted, BoxError};
use http::{Request, Response, StatusCode};
use tower_service::Service;

use super::layer::{FirewallLayer, Shared};
use super::rules::Rules;
use crate::accept_future::AcceptFuture;
use crate::client_addr::{ClientAddr, TrustedProxies};
use crate::error::Refused;
use crate::response_future::{Rejection, ResponseFuture};
use crate::unknown_client::UnknownClient;

/// The firewall service; made by [`FirewallLayer`]. It is a
/// `Service<Accepted<IO>>` (connection level) and a
/// `Service<http::Request<B>>` (request level). See the
/// [module docs](super).
#[derive(Clone, Debug)]
pub struct Firewall<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Firewall<S> {
    /// Wraps `inner` with `rules`, trusting no proxy.
    pub fn new(inner: S, rules: Rules) -> Self {
        Self::from_shared(inner, FirewallLayer::new(rules).shared)
    }

    pub(super) fn from_shared(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// A layer that wraps services in `Firewall`.
    pub fn layer(rules: Rules) -> FirewallLayer {
        FirewallLayer::new(rules)
    }

    /// The proxies whose forwarding headers are believed.
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.shared.trusted
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Connection level: refuse denied peers before any further work (TLS).
impl<S, IO> Service<Accepted<IO>> for Firewall<S>
where
    S: Service<Accepted<IO>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = AcceptFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, accepted: Accepted<IO>) -> Self::Future {
        let addr = accepted.info.client_addr().ip();
        if self.shared.rules.is_allowed(addr) {
            AcceptFuture::inner(self.inner.call(accepted))
        } else {
            self.shared.denied_connections.increment(1);
            tracing::debug!(%addr, "connection denied by the firewall");
            AcceptFuture::denied(Refused::Denied { addr })
        }
    }
}

/// Request level: resolve the client address (trusted proxies), record it as
/// [`ClientAddr`], answer 403 to denied clients.
impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Firewall<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<crate::GuardBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let client = match req.extensions().get::<ClientAddr>() {
            Some(ClientAddr(addr)) => Some(*addr),
            None => ClientAddr::connection_peer(req.extensions()).map(|peer| {
                let addr = self.shared.trusted.resolve(peer.ip(), req.headers());
                req.extensions_mut().insert(ClientAddr(addr));
                addr
            }),
        };
        let Some(addr) = client else {
            return match self.shared.unknown_client {
                UnknownClient::Allow => ResponseFuture::inner(self.inner.call(req)),
                UnknownClient::Refuse => {
                    self.shared.unknown_alarm.raise();
                    ResponseFuture::rejected(unknown_client(req.headers()))
                }
            };
        };
        if self.shared.rules.is_allowed(addr) {
            ResponseFuture::inner(self.inner.call(req))
        } else {
            self.shared.denied_requests.increment(1);
            tracing::debug!(client = %addr, "request denied by the firewall");
            ResponseFuture::rejected(
                Rejection::new(StatusCode::FORBIDDEN, "forbidden\n").for_request(req.headers()),
            )
        }
    }
}

/// The refusal of a request whose client address is unknown.
pub(crate) fn unknown_client(headers: &http::HeaderMap) -> Rejection {
    Rejection::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal server error: client address unknown\n",
    )
    .for_request(headers)
}
